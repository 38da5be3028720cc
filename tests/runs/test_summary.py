"""summary.json as a typed RunSummary: what kiln writes reads back whole, what earlier versions
wrote still reads, and a damaged or missing record is an error naming the file, never ``{}``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from kiln.errors import PathError, RunError
from kiln.runs.layout import read_json, read_json_if_present
from kiln.runs.summary import RunSummary
from tests.runs.summaries import FIRST_VERSION, summary_dict


def test_a_summary_written_by_the_first_kiln_version_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text(FIRST_VERSION)
    summary = RunSummary.read(path)
    assert (summary.status, summary.finished, summary.global_step, summary.epochs_trained) == ("completed", True, 46, 2)
    assert summary.best is None and summary.best_epoch is None  # the old {} means no best epoch
    assert (summary.max_steps, summary.batch, summary.glibc_malloc, summary.flush_denormal) == (None, None, None, None)
    assert summary.test == {"test_loss": 0.5, "test_accuracy": 0.86}
    assert summary.durations.total_s == 1.25 and summary.trackers.used == ["jsonl"]
    assert not hasattr(summary, "written_by_a_future_kiln")


def test_what_kiln_writes_reads_back_equal_with_ints_and_nan_kept(tmp_path: Path) -> None:
    best = {"monitor": "val_loss", "mode": "min", "value": 0.3, "epoch": 1, "metrics": {"epoch": 1, "val_loss": 0.3}}
    batch = {"world_size": 2, "batch_size_mode": "per_process", "per_process_batch": 32, "grad_accum": 1,
             "effective_batch": 64, "lr_scaling": "none", "lr_factor": 1.0, "base_lr": 0.01, "lr": 0.01}
    summary = RunSummary.model_validate(summary_dict(
        best=best, best_epoch=1, batch=batch, final={"epoch": 2, "val_loss": math.nan}, max_steps=40,
        registry={"registered": False, "error": "no MLflow"}))
    path = tmp_path / "summary.json"
    summary.write(path)
    raw = json.loads(path.read_text())
    assert list(raw) == list(RunSummary.model_fields)  # every key, in the documented order
    assert raw["final"]["epoch"] == 2 and isinstance(raw["final"]["epoch"], int)
    assert math.isnan(raw["final"]["val_loss"]) and raw["best"] == best and raw["batch"] == batch
    again = RunSummary.read(path)
    assert again.best is not None and again.best.epoch == 1 and again.batch is not None and again.batch.world_size == 2
    assert again.model_dump(exclude={"final"}) == summary.model_dump(exclude={"final"})


@pytest.mark.parametrize(("text", "problem"), [
    ('{"run": "x", ', "is not valid JSON"),
    ("[1, 2]", "holds a JSON list, not the object kiln writes"),
    (json.dumps(summary_dict(status="exploded")), "is not a run summary kiln can read: status:"),
    (json.dumps({k: v for k, v in summary_dict().items() if k != "global_step"}), "global_step: Field required"),
])
def test_a_damaged_summary_is_an_error_naming_the_file_and_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "summary.json"
    path.write_text(text)
    with pytest.raises(RunError) as err:
        RunSummary.read(path)
    assert str(err.value).startswith(str(path)) and problem in str(err.value)
    assert err.value.exit_code == 1


def test_records_are_never_a_silent_empty_dict(tmp_path: Path) -> None:
    missing = tmp_path / "cost.json"
    assert read_json_if_present(missing) is None  # absence is normal for optional records
    with pytest.raises(PathError, match=f"^{missing} is missing$"):
        read_json(missing)  # a record a run must have
    with pytest.raises(PathError, match="is missing \\(it is a directory\\)"):
        read_json(tmp_path)
    missing.write_text("")
    with pytest.raises(RunError, match=r"cost\.json is not valid JSON"):
        read_json_if_present(missing)  # there but empty: damaged, not absent
    missing.write_text('"text"')
    with pytest.raises(RunError, match="holds a JSON str"):
        read_json(missing)
    missing.write_text('{"metrics": {}}')
    assert read_json(missing) == read_json_if_present(missing) == {"metrics": {}}
