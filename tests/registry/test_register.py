"""register_run against a real SQLite store: versions, provenance tags, tracking.register gates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from kiln.errors import ConfigError, RegistryError
from kiln.registry import register_run, show_model
from tests.registry.conftest import FAILING_GATE, NOLOAD, PASSING_GATE, Store
from tests.runs.summaries import summary_dict

pytestmark = pytest.mark.filterwarnings(NOLOAD)


def test_register_creates_a_version_pointing_at_the_run_with_provenance_tags(store: Store) -> None:
    run_dir = store.baseline.run_dir
    first = register_run(run_dir, "reg-basic")
    second = register_run(run_dir, "reg-basic", uri=store.uri)
    assert (first.version, second.version) == (1, 2)
    link = json.loads((run_dir / "logs/mlflow.json").read_text())
    assert first.run_id == link["run_id"] and first.source == f"runs:/{link['run_id']}/model"
    assert first.alias is None and not first.alias_set and first.uri == "models:/reg-basic/1"

    version = MlflowClient(store.uri).get_model_version("reg-basic", "1")
    assert version.run_id == link["run_id"]
    assert version.tags["kiln.run_dir"] == str(run_dir.resolve())
    assert version.tags["kiln.config_hash"] == store.baseline.summary.config_hash
    assert float(version.tags["test_accuracy"]) == store.baseline.test_metrics["test_accuracy"]
    assert len(version.tags["kiln.model_sha256"]) == 64
    assert json.loads(json.dumps(first.to_dict()))["registered"] is True


def test_register_with_passing_gate_sets_the_alias(store: Store) -> None:
    result = register_run(store.baseline.run_dir, "reg-alias", alias="staging", require=[PASSING_GATE])
    assert result.alias_set and result.previous_version is None
    assert [g.passed for g in result.gates] == [True]
    assert show_model("reg-alias", store.uri).aliases == {"staging": result.version}


def test_tracking_register_with_a_failing_gate_registers_without_the_alias(store: Store) -> None:
    """`tracking.register` in the config: the version exists, the alias was refused, and why is recorded."""
    registry = store.wider.summary.registry
    assert registry is not None
    assert registry["registered"] is True and registry["name"] == "gated"
    assert registry["alias"] == "production" and registry["alias_set"] is False
    assert registry["gates"][0]["gate"] == FAILING_GATE and registry["gates"][0]["passed"] is False
    summary = json.loads((store.wider.run_dir / "summary.json").read_text())
    assert summary["registry"] == registry

    client = MlflowClient(store.uri)
    model = client.get_registered_model("gated")
    assert model.aliases == {}
    version = client.get_model_version("gated", str(registry["version"]))
    assert version.tags["kiln.alias_refused"].startswith(f"production: {FAILING_GATE}: measured ")
    assert "short by" in version.tags["kiln.alias_refused"]
    (entry,) = [json.loads(v) for k, v in model.tags.items() if k.startswith("kiln.audit.")]
    assert entry["event"] == "refused" and entry["source"] == "tracking.register"


def finished_run(root: Path, status: str) -> None:
    """A run directory with only its config and a summary: nothing else, nothing in MLflow."""
    (root / "config.yaml").write_text("")
    (root / "summary.json").write_text(json.dumps(summary_dict(status=status)))


def test_a_run_not_tracked_in_mlflow_is_refused_with_the_fix(tmp_path: Path) -> None:
    finished_run(tmp_path, "completed")
    with pytest.raises(RegistryError, match=r"not tracked in MLflow .* kiln sync "):
        register_run(tmp_path, "never")


def test_an_unfinished_run_and_a_malformed_gate_are_refused_before_anything_is_written(store: Store, tmp_path: Path) -> None:
    finished_run(tmp_path, "crashed")
    with pytest.raises(RegistryError, match="status 'crashed'"):
        register_run(tmp_path, "never")
    with pytest.raises(ConfigError, match=r"gate 'test_accuracy=>0.9' is not a gate: expected METRIC OP NUMBER"):
        register_run(store.baseline.run_dir, "never", require=["test_accuracy=>0.9"])
    with pytest.raises(RegistryError, match="alias 'v2' is not allowed"):
        register_run(store.baseline.run_dir, "never", alias="v2")
    assert "never" not in [m.name for m in MlflowClient(store.uri).search_registered_models()]


def test_mlflow_errors_and_missing_stores_become_registry_errors(store: Store, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="MLflow failed: "):
        register_run(store.baseline.run_dir, "")
    missing = tmp_path / "nowhere" / "mlflow.db"
    with pytest.raises(RegistryError, match=f"no MLflow store at {missing}: nothing has been tracked there yet"):
        show_model("digits", f"sqlite:///{missing}")
    assert not missing.parent.exists()  # a typo does not create an empty store


def test_gates_read_what_kiln_gate_measured_into_the_run(store: Store, tmp_path: Path) -> None:
    """A cost metric (size_mb) is not in summary.json: once kiln gate measured it into eval/,
    registering and promoting on it pass; before, they fail naming it as not measured."""
    import shutil

    from kiln.cli.main import main
    from kiln.registry import promote

    run_dir = Path(shutil.copytree(store.baseline.run_dir, tmp_path / "measured"))
    before = register_run(run_dir, "reg-measured", alias="staging", require=["size_mb<5"])
    assert not before.alias_set and before.gates[0].measured is None
    assert main(["gate", str(run_dir), "--require", "size_mb<5"]) == 0  # measures eval/cost.json
    after = register_run(run_dir, "reg-measured", alias="staging", require=["size_mb<5"])
    assert after.alias_set and after.gates[0].measured is not None and after.gates[0].measured < 5
    promoted = promote("reg-measured", str(after.version), "production", ["size_mb<5"], uri=store.uri)
    assert promoted.gates[0].passed
