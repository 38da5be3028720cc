"""Every entry of the TRACKERS catalog, built the way a run builds it (``build_trackers``: the
entry's ``prepare`` on this thread, its constructor after), passes kiln's tracker contract.

The parameters come from the catalog itself, so a tracker registered later is checked without a
line here. MLflow runs in its detached worker process, against a SQLite store under tmp_path; each
test waits for that worker to finish and reads how it ended. W&B runs offline when its extra is
installed; when it is not, its case says so in its id and skips as a missing tool (a failure
under CI=true), never silently.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import require_tool

from kiln.config.catalogs import TRACKERS
from kiln.testing import TrackerContract, tiny_config
from kiln.tracking import build_trackers
from kiln.tracking.base import Tracker, TrackerSetup
from kiln.tracking.finisher import OUTCOME_FILE, wait_for_finisher

WANDB = importlib.util.find_spec("wandb") is not None


def case(name: str) -> object:
    if name == "wandb" and not WANDB:
        return pytest.param(name, id="wandb-not-installed")
    if name == "mlflow":  # a worker process that imports MLflow: seconds per test
        return pytest.param(name, id=name, marks=pytest.mark.slow)
    return pytest.param(name, id=name)


def built(name: str, tmp_path: Path) -> Tracker:
    """The tracker ``name`` as a run with ``tracking.backends=[name]`` builds it."""
    cfg = tiny_config(
        tmp_path / "runs", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "tracking.mlflow_start_delay=0", backends=(name,),
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    run, tags = "contract_20261123_000000", {"kiln.version": "test"}
    if name == "jsonl":  # the run writes events.jsonl itself; build_trackers leaves it out
        return TRACKERS.build(name, TrackerSetup(cfg, logs, run, tags))()
    (factory,) = build_trackers(cfg, logs, run, tags).values()
    return factory()


class TestEveryCatalogTracker(TrackerContract):
    @pytest.fixture(params=[case(name) for name in TRACKERS.names()])
    def tracker(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tracker]:
        name = request.param
        if name == "wandb":
            require_tool(WANDB, "the wandb extra: pip install 'kiln-ml[wandb]'")
        tracker = built(name, tmp_path)
        assert tracker.name == name
        yield tracker
        if name == "mlflow":  # closing hands the rest to the detached worker: wait for its end
            assert wait_for_finisher(tmp_path, timeout=120)
            outcome = json.loads((tmp_path / "logs" / OUTCOME_FILE).read_text())
            assert outcome.get("ok") is True, outcome


def test_every_catalog_tracker_is_checked() -> None:
    """The contract's cases are the catalog's names: none is left out."""
    assert TRACKERS.names() == ["csv", "jsonl", "mlflow", "tensorboard", "wandb"]
