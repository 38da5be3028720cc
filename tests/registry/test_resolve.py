"""``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` wherever a run directory is accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

import kiln
from kiln.errors import RegistryError
from kiln.eval.run_eval import evaluate_run
from kiln.registry import parse_model_uri, promote, register_run, resolve_model_uri
from tests.registry.conftest import NOLOAD, PASSING_GATE, Store

pytestmark = pytest.mark.filterwarnings(NOLOAD)


@pytest.fixture(scope="module")
def production(store: Store) -> int:
    """``resolved`` v1 = baseline, v2 = wider and @production; the store's URI as the default."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store.uri)
        register_run(store.baseline.run_dir, "resolved")
        version = register_run(store.wider.run_dir, "resolved").version
        promote("resolved", version, "production", [PASSING_GATE])
    return version


@pytest.fixture
def default_store(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    return store


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        output: torch.Tensor = model(torch.linspace(-1, 1, 3 * 64).reshape(3, 1, 8, 8))
    return output


def test_load_model_through_the_production_alias_equals_the_run_dir(default_store: Store, production: int) -> None:
    from_alias = kiln.load_model("models:/resolved@production")
    from_version = kiln.load_model(f"models:/resolved/{production}")
    from_run = kiln.load_model(default_store.wider.run_dir)
    assert torch.equal(logits(from_alias), logits(from_run))
    assert torch.equal(logits(from_version), logits(from_run))
    assert not torch.equal(logits(kiln.load_model("models:/resolved/1")), logits(from_run))  # the baseline
    resolved = resolve_model_uri("models:/resolved@production")
    assert resolved.local and resolved.run_dir == default_store.wider.run_dir.resolve()


def test_a_version_whose_run_dir_is_elsewhere_is_downloaded_from_mlflow(
    default_store: Store, production: int, tmp_path: Path
) -> None:
    client = MlflowClient(default_store.uri)
    version = register_run(default_store.wider.run_dir, "moved").version
    client.set_model_version_tag("moved", str(version), "kiln.run_dir", str(tmp_path / "on-another-machine"))
    resolved = resolve_model_uri(f"models:/moved/{version}", cache_dir=tmp_path / "cache")
    assert not resolved.local and resolved.run_dir.is_relative_to(tmp_path / "cache")
    assert (resolved.run_dir / "config.yaml").is_file() and (resolved.package_dir / "model.json").is_file()
    model = kiln.load_model(resolved.run_dir)
    assert torch.equal(logits(model), logits(kiln.load_model(default_store.wider.run_dir)))
    again = resolve_model_uri(f"models:/moved/{version}", cache_dir=tmp_path / "cache")
    assert again.run_dir == resolved.run_dir  # cached


def test_eval_accepts_a_registry_uri(default_store: Store, production: int) -> None:
    by_uri = evaluate_run("models:/resolved@production", "val")
    by_dir = evaluate_run(default_store.wider.run_dir, "val")
    assert by_uri.metrics == by_dir.metrics
    summary = json.loads((default_store.wider.run_dir / "summary.json").read_text())
    assert by_uri.metrics["val_accuracy"] == summary["final"]["val_accuracy"]


def test_unknown_names_aliases_versions_and_forms_say_what_exists(default_store: Store, production: int) -> None:
    with pytest.raises(RegistryError, match=r"no registered model named 'resolvd'.* Did you mean 'resolved'\?"):
        kiln.load_model("models:/resolvd@production")
    with pytest.raises(RegistryError, match=r"has no alias 'prod'\. Aliases: @production -> version 2\. "):
        kiln.load_model("models:/resolved@prod")
    with pytest.raises(RegistryError, match=r"'resolved' has no version 9\. Versions: 1, 2$"):
        kiln.load_model("models:/resolved/9")
    with pytest.raises(RegistryError, match=r"not a model URI kiln understands: use models:/NAME@ALIAS"):
        kiln.load_model("models:/resolved/latest")


def test_parse_model_uri() -> None:
    assert parse_model_uri("models:/digits@production").alias == "production"
    assert parse_model_uri("models:/team/digits/3").name == "team/digits"
    assert parse_model_uri("models:/digits/3").version == "3"
    for bad in ("models:/digits", "models:/@x", "models:/digits/", "runs:/abc/model"):
        with pytest.raises(RegistryError):
            parse_model_uri(bad)
