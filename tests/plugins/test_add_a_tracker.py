"""Adding a tracker: one module (tests/plugins/example_tracker.py) and one registration.

Once registered, the config accepts its name in ``tracking.backends`` and a run feeds it like any
built-in tracker; kiln's contract suite checks it, as a user checks their own tracker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.config.catalogs import TRACKERS
from kiln.errors import ConfigError
from kiln.testing import TrackerContract, tiny_config
from kiln.tracking import read_events
from kiln.train import Trainer
from tests.plugins.example_tracker import TextLogTracker


@pytest.fixture
def textlog() -> Iterator[str]:
    """The registration (a user's package does this once, in the module that sets kiln up)."""
    TRACKERS.register("textlog", "tests.plugins.example_tracker:prepare", "logs/metrics.txt, a line per epoch")
    yield "textlog"
    TRACKERS.unregister("textlog")


def test_a_registered_tracker_is_named_in_the_config_and_fed_by_the_run(textlog: str, tmp_path: Path) -> None:
    result = Trainer(tiny_config(tmp_path, backends=("jsonl", textlog)), quiet=True).fit()
    logs = result.run_dir / "logs"
    epochs = [r for r in read_events(logs / "events.jsonl") if r["event"] == "metrics" and r["scope"] == "epoch"]
    assert len(epochs) == 2  # the tiny config trains two epochs
    expected = [f"step {r['step']}: " + " ".join(f"{k}={v:.4g}" for k, v in sorted(r["metrics"].items()))
                for r in epochs]
    assert (logs / "metrics.txt").read_text().splitlines() == [*expected, "closed: completed"]
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["trackers"] == {"used": ["jsonl", "textlog"], "failed": {}}


def test_an_unregistered_name_is_refused_naming_the_known_trackers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tracking\.backends\.1: unknown tracker 'textlog'\. "
                                          r"Known: csv, jsonl, mlflow, tensorboard, wandb"):
        tiny_config(tmp_path, backends=("jsonl", "textlog"))


def test_a_misspelt_name_gets_a_did_you_mean(textlog: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown tracker 'txtlog'\. Did you mean 'textlog'\?"):
        tiny_config(tmp_path, backends=("jsonl", "txtlog"))


class TestTextLogTracker(TrackerContract):
    """The contract suite against the plugin itself: what a user writes for their own tracker."""

    @pytest.fixture
    def tracker(self, tmp_path: Path) -> TextLogTracker:
        return TextLogTracker(tmp_path / "metrics.txt")
