"""Two tiny runs tracked in a real SQLite MLflow store, shared by the registry tests.

``baseline`` (hidden=[16]) and ``wider`` (hidden=[32]), which also registers itself at the end of
training through ``tracking.register`` with a gate it cannot pass. Each test registers versions
under its own model name, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kiln.testing import tiny_config
from kiln.tracking.finisher import wait_for_finisher
from kiln.train import FitResult, Trainer

# SQLAlchemy 2.x deprecates a loader option MLflow's SQL store still uses; it is raised each time
# an MlflowClient opens the store. Not ours to fix, and nothing else is filtered.
NOLOAD = "ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"
FAILING_GATE = "test_accuracy>=0.999"  # a tiny two-epoch MLP reaches about 0.9
PASSING_GATE = "test_accuracy>=0.5"


@dataclass(frozen=True)
class Store:
    root: Path
    uri: str
    baseline: FitResult
    wider: FitResult


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("registry")
    output = root / "runs"
    # The embedded store of output_dir, so artifacts land in runs/mlartifacts (not the cwd).
    uri = f"sqlite:///{(output / 'mlflow.db').resolve()}"
    common = (f"tracking.uri={uri}", "run.experiment=registry-tests", "tracking.system_metrics=false")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The ``noload`` loader strategy", category=DeprecationWarning)
        baseline = Trainer(tiny_config(output, *common, "run.name=baseline", backends=("jsonl", "mlflow")), quiet=True).fit()
        wider = Trainer(tiny_config(
            output, *common, "run.name=wider", "model.hidden=[32]",
            "tracking.register.name=gated", "tracking.register.alias=production",
            f"tracking.register.require=['{FAILING_GATE}']", backends=("jsonl", "mlflow"),
        ), quiet=True).fit()
    for result in (baseline, wider):
        assert wait_for_finisher(result.run_dir)  # MLflow finishes after fit() returns
        assert (result.run_dir / "logs" / "mlflow.json").is_file(), result.summary.trackers
        assert result.summary.trackers.failed == {}, result.summary.trackers
    yield Store(root, uri, baseline, wider)
