"""Checkpoint files to the letter: manifest checks, atomic commits, names, retention and loading."""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import pytest
import torch

from kiln.checkpoint import atomic
from kiln.checkpoint.manager import (
    CheckpointInfo,
    CheckpointManager,
    checkpoint_name,
    load_checkpoint,
    safe_torch_load,
    to_cpu,
)
from kiln.checkpoint.manifest import FORMAT_VERSION, sha256_file, verify, write_manifest
from kiln.checkpoint.write_error import size_text, write_error
from kiln.errors import CheckpointError, CheckpointWriteError


def _err(fn: object, *args: object) -> str:
    with pytest.raises(CheckpointError) as err:
        fn(*args)  # type: ignore[operator]
    return str(err.value)


# -- manifest -----------------------------------------------------------------------------------


def _dir(tmp_path: Path) -> Path:
    d = tmp_path / "epoch0001-step00000010"
    d.mkdir()
    (d / "a.bin").write_bytes(b"abc")
    (d / "b.txt").write_bytes(b"x" * (1 << 20 | 5))  # more than one read block
    (d / "sub").mkdir()  # directories are not hashed
    return d


def test_sha256_file_over_several_blocks(tmp_path: Path) -> None:
    import hashlib

    p = tmp_path / "f"
    data = bytes(range(256)) * 9000
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()


def test_manifest_content(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    write_manifest(d, {"name": d.name})
    text = (d / "manifest.json").read_text(encoding="utf-8")
    m = json.loads(text)
    assert text.startswith('{\n  "format_version": 1,')  # indented, version first
    assert list(m) == ["format_version", "name", "files"] and FORMAT_VERSION == 1
    assert m["files"] == {
        "a.bin": {"sha256": sha256_file(d / "a.bin"), "bytes": 3},
        "b.txt": {"sha256": sha256_file(d / "b.txt"), "bytes": (1 << 20) + 5},
    }
    write_manifest(d, {})  # rewriting never lists the manifest itself
    assert "manifest.json" not in json.loads((d / "manifest.json").read_text())["files"]
    assert verify(d)["files"] == m["files"]


def test_verify_names_what_is_wrong(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    n = d.name
    assert _err(verify, d) == f"{n}: manifest.json is missing, so it cannot be verified"
    (d / "manifest.json").write_text("{", encoding="utf-8")
    assert _err(verify, d).startswith(f"{n}: manifest.json is unreadable (Expecting")
    (d / "manifest.json").write_text('{"files": {}}', encoding="utf-8")
    assert _err(verify, d) == f"{n}: manifest.json is unreadable ('format_version')"
    (d / "manifest.json").write_text('{"files": {}, "format_version": "x"}', encoding="utf-8")
    assert _err(verify, d).startswith(f"{n}: manifest.json is unreadable (invalid literal")
    (d / "manifest.json").write_text('[]', encoding="utf-8")
    assert _err(verify, d).startswith(f"{n}: manifest.json is unreadable (list indices")
    (d / "manifest.json").write_bytes(b'\xff{}')
    assert _err(verify, d).startswith(f"{n}: manifest.json is unreadable (")
    (d / "manifest.json").write_text('{"files": {}, "format_version": 2}', encoding="utf-8")
    assert _err(verify, d) == f"{n}: format version 2 is newer than this kiln reads (1); upgrade kiln"
    write_manifest(d, {})
    (d / "b.txt").write_bytes(b"short")
    assert _err(verify, d) == (
        f"{n}: b.txt has 5 bytes, the manifest says {(1 << 20) + 5} (truncated or overwritten)"
    )
    write_manifest(d, {})
    (d / "a.bin").write_bytes(b"abd")
    assert _err(verify, d) == f"{n}: a.bin fails its sha256 check (corrupted)"
    (d / "a.bin").unlink()
    assert _err(verify, d) == f"{n}: a.bin is missing"


# -- atomic -------------------------------------------------------------------------------------


def test_begin_gives_an_empty_tmp_dir(tmp_path: Path) -> None:
    final = tmp_path / "deep" / "ck"
    tmp = atomic.begin(final)
    assert tmp == tmp_path / "deep" / "ck.tmp" and tmp.is_dir() and not list(tmp.iterdir())
    (tmp / "junk").write_bytes(b"x")
    assert atomic.begin(final) == tmp and not list(tmp.iterdir())


def test_commit_renames_and_replaces(tmp_path: Path) -> None:
    final = tmp_path / "ck"
    final.mkdir()
    (final / "old").write_bytes(b"old")
    tmp = atomic.begin(final)
    (tmp / "new").write_bytes(b"new")
    atomic.commit(tmp, final)
    assert not tmp.exists() and [p.name for p in final.iterdir()] == ["new"]


def test_fsync_path_on_files_and_directories(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    atomic.fsync_path(f)
    atomic.fsync_path(tmp_path)
    with pytest.raises(FileNotFoundError):
        atomic.fsync_path(tmp_path / "none")


def test_abort_and_clean_leftovers(tmp_path: Path) -> None:
    tmp = atomic.begin(tmp_path / "a")
    (tmp / "f").write_bytes(b"x")
    atomic.abort(tmp)
    atomic.abort(tmp)  # already gone: no error
    assert not tmp.exists()
    (tmp_path / "b.tmp").mkdir()
    (tmp_path / "b.tmp" / "f").write_bytes(b"x")
    (tmp_path / "c.tmp").write_bytes(b"a file, not a leftover")
    (tmp_path / "d").mkdir()
    assert atomic.clean_leftovers(tmp_path) == [tmp_path / "b.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tmp", "d"]
    assert atomic.clean_leftovers(tmp_path / "none") == []


@pytest.mark.parametrize(
    ("code", "reason", "hint"),
    [(errno.EROFS, "the file system is read-only (EROFS)",
      "remount that file system read-write, or move the run directory (or only its checkpoints/ "
      "folder, leaving a symlink in its place) to a disk that is writable"),
     (errno.EACCES, "permission denied (EACCES)",
      "make {dir} writable for this user, or move the run directory (or only its checkpoints/ "
      "folder, leaving a symlink in its place) to a disk where it is"),
     (errno.EPERM, "permission denied (EPERM)", None),
     (errno.EIO, "Input/output error (EIO)", "fix the cause above; nothing committed was touched")],
)
def test_write_error_names_the_reason_the_room_and_what_is_intact(
    tmp_path: Path, code: int, reason: str, hint: str | None
) -> None:
    import os

    where = tmp_path / "epoch0002-step00000004"
    previous = tmp_path / "epoch0001-step00000002"
    err = write_error(OSError(code, os.strerror(code)), where, 12_288, previous, 1, 1)
    assert isinstance(err, CheckpointWriteError) and isinstance(err, CheckpointError)
    lines = str(err).splitlines()
    assert lines[:3] == [
        f"could not write checkpoint epoch0002-step00000004 in {tmp_path}: {reason}",
        "  needs: about 12 kB on that disk",  # no free figure: more room would not help
        "  intact: epoch0001-step00000002 (the newest checkpoint: a resume starts there); "
        "the partial epoch0002-step00000004.tmp was removed",
    ]
    if hint is not None:
        assert lines[3:] == ["  hint: " + hint.format(dir=tmp_path)]
    assert err.record() == {
        "path": str(where), "errno": reason.split("(")[1][:-1], "bytes_needed": 12_288,
        "bytes_free": None, "previous": str(previous),
    }


@pytest.mark.parametrize(("code", "room"), [(errno.ENOSPC, "on that disk"), (errno.EDQUOT, "of your quota (or have it raised)")])
@pytest.mark.parametrize(("keep", "fewer"), [((1, 1), False), ((3, 1), True)])
def test_write_error_for_lack_of_room_says_how_much_is_missing(
    tmp_path: Path, code: int, room: str, keep: tuple[int, int], fewer: bool
) -> None:
    import os
    import re

    err = write_error(OSError(code, os.strerror(code)), tmp_path / "epoch0002-step00000004", 10**15, None, *keep)
    assert err.bytes_free is not None and 0 < err.bytes_free < 10**15  # asked of tmp_path's disk
    text = str(err)
    assert re.search(r"^  needs: about 1000000\.00 GB on that disk; [0-9.]+ [kMG]?B are free there now$", text, re.M)
    assert "  intact: no checkpoint was committed before this one: a resume starts the run from its beginning" in text
    hint = text.splitlines()[-1]
    assert hint.startswith("  hint: free at least 99") and f" {room}, or move the run directory" in hint
    assert ("or keep fewer checkpoints (checkpoint.keep_last_n is 3, checkpoint.keep_best_n is 1; 1 keeps one "
            "of each)" in hint) is fewer


def test_write_error_without_strerror(tmp_path: Path) -> None:
    err = write_error(OSError("plain words"), tmp_path / "x", 4096, None, 1, 1)
    assert str(err).startswith(f"could not write checkpoint x in {tmp_path}: plain words\n")
    assert err.errno_name == ""


def test_size_text() -> None:
    assert [size_text(n) for n in (0, 1, 999, 1000, 484_123, 999_499, 12_345_678, 1_250_000_000)] == [
        "0 bytes", "1 byte", "999 bytes", "1 kB", "484 kB", "999 kB", "12.3 MB", "1.25 GB",
    ]


# -- names, info, retention ---------------------------------------------------------------------


def test_checkpoint_name() -> None:
    assert checkpoint_name(3, 120, 0) == "epoch0003-step00000120"
    assert checkpoint_name(3, 120, 40) == "epoch0003-step00000120-batch00040"
    assert checkpoint_name(12345, 1, 1) == "epoch12345-step00000001-batch00001"


def test_info_position_and_score() -> None:
    assert CheckpointInfo(Path("epoch0002-step00000030"), {}).position == (30, 2, 0)
    assert CheckpointInfo(Path("epoch0002-step00000030-batch00004"), {}).position == (30, 2, 4)
    assert CheckpointInfo(Path("x-epoch0002-step00000030"), {}).position == (-1, -1, -1)
    assert CheckpointInfo(Path("a"), {"monitor_value": 2}).score == 2.0
    assert CheckpointInfo(Path("a"), {"monitor_value": float("nan")}).score is None
    assert CheckpointInfo(Path("a"), {}).score is None


def _infos(values: list[float | None]) -> list[CheckpointInfo]:
    return [CheckpointInfo(Path(checkpoint_name(i, i, 0)), {"monitor_value": v}) for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("mode", "best_n", "last_n", "want"),
    [("min", 1, 1, {1, 4}), ("max", 1, 1, {2, 4}), ("min", 2, 1, {1, 3, 4}), ("min", 1, 2, {1, 3, 4}),
     ("max", 2, 3, {0, 2, 3, 4}), ("min", 0, 0, {1, 4})],
)
def test_keep_set(tmp_path: Path, mode: str, best_n: int, last_n: int, want: set[int]) -> None:
    infos = _infos([3.0, 1.0, 9.0, 2.0, None])
    manager = CheckpointManager(tmp_path, keep_best_n=best_n, keep_last_n=last_n, mode=mode)
    assert manager.keep_set(infos) == {infos[i].path for i in want}


def _save(manager: CheckpointManager, epoch: int, value: float | None, w: float = 1.0) -> Path:
    return manager.save({"w": torch.full((2,), w)}, {"state": {}, "param_groups": []}, {"k": epoch},
                        {"epoch": epoch, "global_step": epoch * 10, "batch_in_epoch": 0, "monitor_value": value})


def test_save_writes_every_file_and_prunes(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "c", keep_best_n=1, keep_last_n=1, mode="min")
    first = _save(manager, 0, 1.0)
    assert sorted(p.name for p in first.iterdir()) == [
        "manifest.json", "meta.json", "model.safetensors", "optimizer.pt", "trainer.pt",
    ]
    assert json.loads((first / "manifest.json").read_text())["name"] == first.name
    assert json.loads((first / "meta.json").read_text()) == {
        "epoch": 0, "global_step": 0, "batch_in_epoch": 0, "monitor_value": 1.0,
    }
    _save(manager, 1, 5.0)
    third = _save(manager, 2, 7.0)
    assert [i.path.name for i in manager.committed()] == [first.name, third.name]
    loaded = manager.load(third)
    assert loaded.trainer == {"k": 2} and loaded.meta["epoch"] == 2
    assert torch.equal(loaded.model["w"], torch.ones(2))
    manager.close()


def test_meta_values_json_cannot_hold_are_written_as_text(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best_n=1, keep_last_n=1, mode="min")
    path = manager.save({"w": torch.ones(1)}, {}, {}, {"epoch": 0, "global_step": 0, "batch_in_epoch": 0,
                                                         "where": tmp_path})
    assert json.loads((path / "meta.json").read_text())["where"] == str(tmp_path)


def test_committed_lists_damaged_meta_and_sorts_by_position(tmp_path: Path) -> None:
    gone = CheckpointManager(tmp_path.parent / f"{tmp_path.name}-gone", 1, 1, "min")
    gone.directory.rmdir()
    assert gone.committed() == []
    manager = CheckpointManager(tmp_path, keep_best_n=5, keep_last_n=5, mode="min")
    for name, meta in [("epoch0010-step00000100", "{}"), ("epoch0002-step00000020", "not json"),
                       ("epoch0002-step00000020-batch00001", "[1]")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "meta.json").write_text(meta, encoding="utf-8")
    (tmp_path / "epoch0003-step00000030").mkdir()  # no meta.json at all
    (tmp_path / "epoch0001-step00000001.tmp").mkdir()
    (tmp_path / "stray.txt").write_text("x", encoding="utf-8")
    infos = manager.committed()
    assert [i.path.name for i in infos] == [
        "epoch0002-step00000020", "epoch0002-step00000020-batch00001", "epoch0003-step00000030",
        "epoch0010-step00000100",
    ]
    assert [i.meta for i in infos] == [{}, {}, {}, {}]


def test_leftovers_are_removed_loudly_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "epoch0001-step00000001.tmp").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="kiln.checkpoint"):
        CheckpointManager(tmp_path, 1, 1, "min")
    assert [r.getMessage() for r in caplog.records] == [
        "removed a half-written checkpoint left by a killed process: epoch0001-step00000001.tmp"
    ]
    assert not (tmp_path / "epoch0001-step00000001.tmp").exists()


def test_load_latest_falls_back_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    manager = CheckpointManager(tmp_path, keep_best_n=5, keep_last_n=5, mode="min")
    assert manager.load_latest() is None
    good = _save(manager, 0, 1.0, w=3.0)
    bad = _save(manager, 1, 1.0)
    (bad / "trainer.pt").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="kiln.checkpoint"):
        latest = manager.load_latest()
    assert latest is not None and latest.path == good
    size = json.loads((bad / "manifest.json").read_text())["files"]["trainer.pt"]["bytes"]
    problem = f"{bad.name}: trainer.pt has 7 bytes, the manifest says {size} (truncated or overwritten)"
    assert latest.meta["skipped"] == [problem]
    assert [r.getMessage() for r in caplog.records] == [
        f"checkpoint refused: {problem}; falling back to the previous one"
    ]
    assert torch.equal(latest.model["w"], torch.full((2,), 3.0))
    (good / "manifest.json").unlink()
    assert _err(manager.load_latest) == (
        f"no usable checkpoint in {tmp_path}:\n  - {problem}\n"
        f"  - {good.name}: manifest.json is missing, so it cannot be verified"
    )


def test_load_latest_without_a_problem_has_no_skipped(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best_n=5, keep_last_n=5, mode="min")
    _save(manager, 0, 1.0)
    latest = manager.load_latest()
    assert latest is not None and "skipped" not in latest.meta


def test_unreadable_model_file(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best_n=5, keep_last_n=5, mode="min")
    path = _save(manager, 0, 1.0)
    (path / "model.safetensors").write_bytes(b"not safetensors")
    write_manifest(path, {})
    assert _err(load_checkpoint, path).startswith(f"{path.name}: model.safetensors is unreadable (")


def test_safe_torch_load_errors(tmp_path: Path) -> None:
    d = tmp_path / "ck"
    d.mkdir()
    torch.save([1, 2], d / "list.pt")
    assert _err(safe_torch_load, d / "list.pt") == "ck: list.pt does not hold a mapping"
    (d / "junk.pt").write_bytes(b"PK\x03\x04xx")  # a torn zip: RuntimeError inside torch
    assert _err(safe_torch_load, d / "junk.pt").startswith("ck: junk.pt is unreadable (PytorchStreamReader")
    (d / "garbage.pt").write_bytes(b"junk")  # struct.error inside torch's legacy reader
    assert _err(safe_torch_load, d / "garbage.pt").startswith("ck: garbage.pt is unreadable (")
    (d / "empty.pt").write_bytes(b"")
    assert _err(safe_torch_load, d / "empty.pt") == "ck: empty.pt is unreadable ()"
    assert _err(safe_torch_load, d / "none.pt").startswith("ck: none.pt is unreadable (")
    torch.save({"a": torch.ones(1), "b": [1, "x"]}, d / "ok.pt")
    got = safe_torch_load(d / "ok.pt")
    assert got["b"] == [1, "x"] and torch.equal(got["a"], torch.ones(1))


def test_to_cpu_copies_every_tensor() -> None:
    t = torch.ones(2)
    out = to_cpu({"a": [t, (t, 3)], "b": "s", "c": None})
    assert isinstance(out["a"], list) and isinstance(out["a"][1], tuple)
    assert out["a"][1][1] == 3 and out["b"] == "s" and out["c"] is None
    t.add_(1.0)
    assert out["a"][0].tolist() == [1.0, 1.0] and out["a"][1][0].tolist() == [1.0, 1.0]


def test_async_save_and_close(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best_n=5, keep_last_n=5, mode="min", async_save=True)
    path = _save(manager, 0, 1.0)
    manager.wait()
    assert path.is_dir() and manager.load(path).trainer == {"k": 0}
    _save(manager, 1, 1.0)
    manager.close()
    assert len(manager.committed()) == 2
    assert manager._executor is not None and manager._executor._shutdown


def test_file_formats_on_disk(tmp_path: Path) -> None:
    from safetensors import safe_open

    manager = CheckpointManager(tmp_path, keep_best_n=5, keep_last_n=5, mode="min")
    path = _save(manager, 0, 1.0)
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}
    assert (path / "meta.json").read_text(encoding="utf-8").startswith('{\n  "epoch": 0,\n')


def test_a_failed_save_leaves_no_tmp_directory(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best_n=5, keep_last_n=5, mode="min")
    with pytest.raises(Exception) as err:
        manager.save({"w": torch.ones(1)}, {}, {"f": lambda: 0},
                     {"epoch": 0, "global_step": 0, "batch_in_epoch": 0})
    assert not isinstance(err.value, CheckpointError)
    assert list(tmp_path.iterdir()) == []


def test_a_pickle_with_code_is_refused_naming_the_first_line(tmp_path: Path) -> None:
    import pickle

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("ran",))

    d = tmp_path / "ck"
    d.mkdir()
    (d / "trainer.pt").write_bytes(pickle.dumps({"x": Payload()}))
    message = _err(safe_torch_load, d / "trainer.pt")
    assert message.startswith(
        "ck: refused to load trainer.pt: it holds objects other than tensors and plain data (a tampered or "
        "malicious file?); nothing in it was run. Detail: Weights only load failed."
    )
    assert "\n" not in message


def test_async_save_writes_the_meta(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best_n=5, keep_last_n=5, mode="min", async_save=True)
    path = _save(manager, 3, 0.5)
    manager.close()
    assert manager.load(path).meta == {"epoch": 3, "global_step": 30, "batch_in_epoch": 0, "monitor_value": 0.5}
