"""A full disk is a clear stop, not a corrupt run: real runs on a small tmpfs mounted by the test.

The first checkpoint fits on the tmpfs and the next one does not: ``kiln train`` stops with exit 1
and the documented message, no ``.tmp`` is left, the previous checkpoint verifies, events.jsonl
says what happened, and after the tmpfs is enlarged (``mount -o remount,size=...``) ``kiln
resume`` ends with weights bit-identical to a run that never ran out of room. The same with
``checkpoint.async_save``, whose failure surfaces from the background thread at the run's end.
Then a disk so full that events.jsonl cannot be written either: one warning, one error, no
traceback.

Mounting needs root (CI runs as root); the tests fail rather than skip without it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests.conftest import ROOT, run_cli

from kiln.checkpoint.manager import load_checkpoint
from kiln.checkpoint.manifest import verify
from kiln.checkpoint.write_error import size_text
from kiln.errors import TrackingError
from kiln.testing.tiny import TINY_OVERRIDES
from kiln.tracking.jsonl import JsonlTracker, read_events

# 512 hidden units: a checkpoint of about 500 kB, far more than the run's other files together,
# so the sizes below leave a margin of some 250 kB either way.
OVERRIDES = (*TINY_OVERRIDES, "model.hidden=[512]", "training.epochs=3", "tracking.backends=[jsonl]")
PAGE = 4096


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``where`` for the block, unmounted after it."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"these tests mount a tmpfs, which needs root (CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)  # a straggling process: detach


def resize(where: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "models" / "model.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The final weights of the run on a disk with room."""
    output = tmp_path_factory.mktemp("reference")
    done = run_cli("train", *OVERRIDES, f"run.output_dir={output}", "--quiet")
    assert done.returncode == 0, done.stderr
    (run_dir,) = output.iterdir()
    return weights(run_dir)


@pytest.mark.parametrize(
    ("size", "options", "failing", "previous"),
    [
        # keep one: the first checkpoint fits, the second (beside it until it commits) does not
        ("800k", (), "epoch0002-step00000042", "epoch0001-step00000021"),
        # keep two, written in the background: the third, the run's last, fails after training
        ("1300k", ("checkpoint.async_save=true", "checkpoint.keep_last_n=2"),
         "epoch0003-step00000063", "epoch0002-step00000042"),
    ],
    ids=["sync", "async"],
)
def test_a_full_disk_stops_the_run_cleanly_and_a_resume_after_freeing_space_is_exact(
    tmp_path: Path, reference: dict[str, torch.Tensor], size: str, options: tuple[str, ...],
    failing: str, previous: str,
) -> None:
    with tmpfs(tmp_path / "disk", size) as disk:
        done = run_cli("train", *OVERRIDES, *options, f"run.output_dir={disk}", "--quiet")
        (run_dir,) = disk.iterdir()
        checkpoints = run_dir / "checkpoints"

        assert done.returncode == 1, done.stderr
        records = read_events(run_dir / "logs" / "events.jsonl")
        (failed,) = [r for r in records if r["event"] == "checkpoint_failed"]
        needed, free = failed["bytes_needed"], failed["bytes_free"]
        assert failed == {
            "time": failed["time"], "event": "checkpoint_failed", "path": str(checkpoints / failing),
            "errno": "ENOSPC", "bytes_needed": needed, "bytes_free": free, "previous": str(checkpoints / previous),
        }
        # The room a checkpoint takes: its files (as the previous one's manifest lists them),
        # each rounded up to a page, plus its directory; the failing one is the same but for a few
        # bytes of counters.
        sizes = [f["bytes"] for f in verify(checkpoints / previous)["files"].values()]
        assert abs(needed - (PAGE + sum(-(-n // PAGE) * PAGE for n in sizes) + PAGE)) <= 2 * PAGE
        assert 0 < free < needed
        fewer = ", or keep fewer checkpoints (checkpoint.keep_last_n is 2, checkpoint.keep_best_n is 1; " \
                "1 keeps one of each)" if options else ""
        assert done.stderr == (
            f"error: could not write checkpoint {failing} in {checkpoints}: the disk is full (ENOSPC)\n"
            f"  needs: about {size_text(needed)} on that disk; {size_text(free)} are free there now\n"
            f"  intact: {previous} (the newest checkpoint: a resume starts there); the partial {failing}.tmp "
            "was removed\n"
            f"  hint: free at least {size_text(needed - free)} on that disk, or move the run directory (or only "
            f"its checkpoints/ folder, leaving a symlink in its place) to a disk with room{fewer}; then: "
            f"kiln resume {run_dir}\n"
        )
        assert sorted(p.name for p in checkpoints.iterdir()) == sorted(
            ["epoch0001-step00000021", previous] if options else [previous]
        )  # nothing half-written
        assert load_checkpoint(checkpoints / previous).meta["global_step"] == int(previous[-8:])
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "crashed" and summary["error"].startswith("CheckpointWriteError: ")

        resize(disk, "4m")
        resumed = run_cli("resume", str(run_dir), "--quiet")
        assert resumed.returncode == 0, resumed.stderr
        final = weights(run_dir)
        assert final.keys() == reference.keys()
        assert all(torch.equal(final[k], reference[k]) for k in final)


def fill(disk: Path) -> None:
    """Take every free byte of ``disk`` with a file of zeros."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * PAGE)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_events_jsonl_on_a_full_disk_warns_once_never_raises_and_refuses_a_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with tmpfs(tmp_path / "disk", "64k") as disk:
        path = disk / "logs" / "events.jsonl"
        tracker = JsonlTracker(path)
        fill(disk)  # the file is empty: its first byte needs a page there is not
        with caplog.at_level(logging.WARNING, logger="kiln.tracking"):
            for step in range(3):
                tracker.log_metrics({"loss": 1.0}, step, "step")  # deferred: buffered, no error yet
            tracker.log_event("checkpoint_failed", {"path": "x"})  # written through: fails here
            tracker.log_event("exception", {"type": "CheckpointWriteError"})
            tracker.flush()
            with pytest.raises(TrackingError) as refused:
                tracker.tell()
            tracker.close("crashed")
        assert [r.getMessage() for r in caplog.records] == [
            f"{path} could not be written (No space left on device, ENOSPC): records from now on are lost, "
            "and no checkpoint can be committed after them"
        ]
        assert str(refused.value) == (
            f"{path} could not be written (No space left on device, ENOSPC): the records since are lost, "
            "and a checkpoint must not point past lost records, so the run stops here. Its previous checkpoint "
            "is intact\n  hint: free space on that disk (or make it writable again), then resume the run: "
            "`kiln resume` its run directory"
        )
        assert path.read_bytes() == b""


# A run whose disk fills up completely at the end of its second epoch (another process took the
# room): its events.jsonl ends exactly at a page boundary, so its next record needs a page too.
FULL_DISK_RUN = textwrap.dedent("""
    import errno, logging, os, sys
    from pathlib import Path

    from kiln.errors import KilnError
    from kiln.train import Callback, Trainer
    from kiln.config.loader import load_config
    from tests.checkpoint.test_disk_full import PAGE, fill

    class FillDisk(Callback):
        trainer = None

        def on_epoch_end(self, state):
            if state.epoch != 1:
                return
            jsonl = self.trainer.components.tracker.jsonl
            while jsonl.tell() % PAGE:  # pad events.jsonl to a page boundary
                before = jsonl.tell()
                jsonl.log_event("pad", {"x": ""})
                record = jsonl.tell() - before
                jsonl.log_event("pad", {"x": "a" * max((-jsonl.tell()) % PAGE - record, 0)})
            fill(Path(sys.argv[1]))

    logging.basicConfig(level=logging.WARNING, format="kiln: %(message)s")  # as the CLI does
    fill_disk = FillDisk()
    trainer = Trainer(load_config(None, sys.argv[2:]), quiet=True, callbacks=[fill_disk])
    fill_disk.trainer = trainer
    try:
        trainer.fit()
    except KilnError as exc:  # as the CLI reports it
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
""")


def test_a_disk_too_full_for_events_jsonl_too_stops_with_one_warning_and_one_error(tmp_path: Path) -> None:
    script = tmp_path / "full_disk_run.py"
    script.write_text(FULL_DISK_RUN)
    with tmpfs(tmp_path / "disk", "4m") as disk:
        done = subprocess.run(
            [sys.executable, str(script), str(disk), *OVERRIDES, f"run.output_dir={disk}"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
        )
        (run_dir,) = [p for p in disk.iterdir() if p.is_dir()]
        events = run_dir / "logs" / "events.jsonl"
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert done.stderr == (
            f"kiln: {events} could not be written (No space left on device, ENOSPC): records from now on "
            "are lost, and no checkpoint can be committed after them\n"
            f"kiln: could not write {run_dir / 'summary.json'} (No space left on device): the error below "
            "says why the run stopped\n"
            f"error: {events} could not be written (No space left on device, ENOSPC): the records since are "
            "lost, and a checkpoint must not point past lost records, so the run stops here. Its previous "
            "checkpoint is intact\n  hint: free space on that disk (or make it writable again), then resume "
            "the run: `kiln resume` its run directory\n"
        )
        assert events.stat().st_size % PAGE == 0
        assert [r["event"] for r in read_events(events)][-1] == "pad"  # nothing after the disk filled
        (checkpoint,) = (run_dir / "checkpoints").iterdir()
        assert checkpoint.name == "epoch0001-step00000021"
        verify(checkpoint)
        assert not list(run_dir.rglob("*.tmp"))
