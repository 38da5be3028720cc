"""events.jsonl byte for byte: what each call writes, what reaches the OS when, and the reader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from kiln.tracking.jsonl import FLUSH_EVERY, JsonlTracker, _clean, read_events


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_records_exact(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "logs" / "events.jsonl"  # parents are created
    t = JsonlTracker(path)
    assert (t.name, t.path, t.flush_every, FLUSH_EVERY) == ("jsonl", path, 0.2, 0.2)
    t.log_params({"lr": 0.1, 3: "x"})
    t.log_metrics({"loss": 0.5}, step=7, scope="epoch")
    t.log_event("fit_start", {"epochs": 2})
    t.log_artifact(tmp_path / "a.txt")
    t.close("completed")
    t.close("failed")  # a second close writes nothing
    got = _lines(path)
    for rec in got:
        assert isinstance(rec["time"], float) and next(iter(rec)) == "time"
        del rec["time"]
    assert got == [
        {"event": "params", "params": {"lr": 0.1, "3": "x"}},
        {"event": "metrics", "scope": "epoch", "step": 7, "metrics": {"loss": 0.5}},
        {"event": "fit_start", "epochs": 2},
        {"event": "artifact", "path": str(tmp_path / "a.txt")},
        {"event": "closed", "status": "completed"},
    ]
    raw = path.read_bytes()
    assert raw.endswith(b"}\n") and raw.count(b"\n") == 5


def test_time_is_rounded_to_milliseconds(tmp_path: Path) -> None:
    t = JsonlTracker(tmp_path / "e.jsonl")
    t.log_event("x", {})
    t.close("completed")
    stamp = _lines(tmp_path / "e.jsonl")[0]["time"]
    assert stamp == round(stamp, 3)


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"event":"old"}\n')
    t = JsonlTracker(path)
    t.log_event("new", {})
    t.close("completed")
    assert [r["event"] for r in _lines(path)] == ["old", "new", "closed"]


def test_an_ordinary_record_takes_orjsons_fast_path(tmp_path: Path) -> None:
    """orjson writes 1e-7 where json writes 1e-07: the bytes show which path wrote the line (the
    slow path gives the same values, ~5x slower, so only the bytes can tell)."""
    t = JsonlTracker(tmp_path / "e.jsonl")
    t.log_event("small", {"lr": 1e-7})
    t.close("completed")
    assert b'"lr":1e-7}' in (tmp_path / "e.jsonl").read_bytes().splitlines()[0]


def test_non_finite_and_odd_values(tmp_path: Path) -> None:
    t = JsonlTracker(tmp_path / "e.jsonl")
    t.log_event("odd", {"nan": float("nan"), "big": 2**70, "t": torch.tensor(2.0), "k": {1: [2.5]}})
    t.log_event("inf", {"inf": float("-inf"), "n": np.int64(3), "f": np.float32(1.5)})
    t.close("completed")
    got = _lines(tmp_path / "e.jsonl")
    # a huge int and a tensor go the slow way, through _clean (str of what JSON cannot hold)
    assert {k: got[0][k] for k in ("nan", "big", "t", "k")} == {
        "nan": None, "big": 2**70, "t": "tensor(2.)", "k": {"1": [2.5]},
    }
    assert {k: got[1][k] for k in ("inf", "n", "f")} == {"inf": None, "n": 3, "f": 1.5}
    slow = (tmp_path / "e.jsonl").read_bytes().splitlines()[0]
    assert b'"t":"tensor(2.)","k":{"1":[2.5]}}' in slow  # compact, like orjson's lines


def test_clean() -> None:
    assert _clean(float("nan")) is None
    assert _clean(float("inf")) is None
    assert _clean(-math.inf) is None
    assert _clean(1.5) == 1.5
    assert _clean({1: (2, float("nan")), "s": [True, None, "x"]}) == {"1": [2, None], "s": [True, None, "x"]}
    assert _clean(torch.tensor(1)) == "tensor(1)"
    assert _clean(Path("/a")) == "/a"
    # numpy scalars stay numbers on the slow path too, as orjson writes them on the fast one
    assert _clean({"f": np.float32(1.5), "n": np.int64(3), "x": np.float64("nan")}) == {"f": 1.5, "n": 3, "x": None}
    assert type(_clean(np.int64(3))) is int


def test_numpy_scalars_in_a_record_that_takes_the_slow_path_are_numbers(tmp_path: Path) -> None:
    t = JsonlTracker(tmp_path / "e.jsonl")
    t.log_event("mixed", {"t": torch.tensor(1.0), "f": np.float32(1.5), "n": np.int64(3)})
    t.close("completed")
    (record, *_) = _lines(tmp_path / "e.jsonl")
    assert (record["t"], record["f"], record["n"]) == ("tensor(1.)", 1.5, 3)


def test_everything_but_step_and_system_metrics_reaches_the_os_at_once(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    t = JsonlTracker(path, flush_every=3600.0)
    t.log_metrics({"a": 1.0}, step=1, scope="epoch")
    assert len(_lines(path)) == 1
    t.log_metrics({"a": 1.0}, step=1, scope="test")
    assert len(_lines(path)) == 2
    t.log_event("e", {})
    assert len(_lines(path)) == 3
    t.log_metrics({"a": 1.0}, step=2, scope="step")
    t.log_metrics({"a": 1.0}, step=2, scope="system")
    assert len(_lines(path)) == 3  # deferred: still in the buffer
    t.flush()
    assert len(_lines(path)) == 5
    t.log_metrics({"a": 1.0}, step=3, scope="step")
    assert len(_lines(path)) == 5
    size = t.tell()  # flushes, then reports the bytes in the file
    assert size == path.stat().st_size and len(_lines(path)) == 6
    t.close("completed")
    t.flush()  # after close: nothing to do, and no error
    assert len(_lines(path)) == 7


def test_a_deferred_record_is_flushed_once_flush_every_has_passed(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    t = JsonlTracker(path, flush_every=0.0)
    t.log_metrics({"a": 1.0}, step=1, scope="step")
    assert len(_lines(path)) == 1
    t.close("completed")


def test_flush_restarts_the_deferral_clock(tmp_path: Path) -> None:
    t = JsonlTracker(tmp_path / "e.jsonl", flush_every=3600.0)
    t._flushed_at = 0.0
    t.flush()
    assert t._flushed_at > 1e9
    t._flushed_at = 0.0
    t.log_event("e", {})  # an undeferred write also restarts it
    assert t._flushed_at > 1e9
    t.close("completed")


def test_read_events_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text('{"event": "a"}\n{"event": "b", "x": [1\n{"event": "c"}\n', encoding="utf-8")
    assert read_events(path) == [{"event": "a"}, {"event": "c"}]


@pytest.mark.parametrize("text", ["", "\n"])
def test_read_events_of_an_empty_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(text, encoding="utf-8")
    assert read_events(path) == []
