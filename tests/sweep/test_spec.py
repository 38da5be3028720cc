"""The sweep file: parsing, its checks against the config schema, and the shipped sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kiln.config import load_config
from kiln.errors import ConfigError
from kiln.sweep import load_sweep, parse_sweep, prepare_sweep
from kiln.sweep.paths import resolve_parameters
from tests.conftest import ROOT
from tests.sweep.conftest import base_overrides, write_sweep

SHIPPED = ROOT / "configs" / "sweeps"
GRID = {"training.lr": {"choice": [0.001, 0.01]}}


def _resolve(parameters: dict[str, object], **fields: object) -> dict[str, object]:
    spec = parse_sweep({"method": "random", "n_trials": 2, "parameters": parameters, **fields})
    resolved = resolve_parameters(spec, load_config(None).model_dump(mode="json"))
    return {p: s.choice for p, s in resolved.parameters.items()}


def test_a_typo_in_a_path_fails_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        _resolve({"training.learning_rate": {"choice": [0.1]}, "model.lr": {"choice": [0.1]},
                  "training.scheduler": {"choice": ["cosine"]}})
    message = str(info.value)
    assert "3 problem(s)" in message  # every problem at once
    assert "parameters['training.learning_rate']: is not a config key." in message
    # an alias (learning_rate), and the right key under the wrong section (model.lr)
    assert message.count("Did you mean 'training.lr'?") == 2
    assert "parameters['training.scheduler']: is a section, not a value" in message
    assert "mode, monitor, name" in message


def test_values_are_checked_and_typed_by_the_config_schema() -> None:
    with pytest.raises(ConfigError) as info:
        _resolve({"model.dropout": {"choice": [0.1, 1.5]}, "training.lr": {"uniform": [-1, 0.1]}})
    message = str(info.value)
    assert "parameters['model.dropout']: the value 1.5 is refused: model.dropout: Input should be less than 1" in message
    assert "parameters['training.lr']: the value -1.0 is refused" in message
    # YAML reads 1e-4 as a string; the schema makes it the float it means.
    assert _resolve({"training.lr": {"choice": ["1e-4", 0.01]}}) == {"training.lr": [0.0001, 0.01]}
    assert _resolve({"model.hidden": {"choice": [[32], [64, 32]]}}) == {"model.hidden": [[32], [64, 32]]}
    with pytest.raises(ConfigError, match="repeated values"):
        _resolve({"training.lr": {"choice": ["1.0e-3", 0.001]}})


def test_sweep_file_errors_teach() -> None:
    with pytest.raises(ConfigError) as info:
        parse_sweep({"method": "grid", "metrc": "val_loss", "parameters": GRID, "pruner": "meadian"})
    message = str(info.value)
    assert "metrc: unknown key. Did you mean 'metric'?" in message
    assert "pruner.name: Input should be 'none', 'median' or 'hyperband'" in message
    cases: dict[str, dict[str, Any]] = {
        "continuous range": {"method": "grid", "parameters": {"training.lr": {"loguniform": [1e-5, 1e-2]}}},
        "exceeds the grid's 2 points": {"method": "grid", "n_trials": 3, "parameters": GRID},
        "needs n_trials or timeout": {"method": "tpe", "parameters": GRID},
        "exactly one of choice, uniform": {"method": "tpe", "n_trials": 2,
                                           "parameters": {"training.lr": {"choice": [1], "uniform": [0, 1]}}},
        "only known at the end": {"method": "tpe", "n_trials": 2, "metric": "test_accuracy",
                                  "pruner": "median", "parameters": GRID},
        "must exceed interval": {"method": "grid", "parameters": GRID, "heartbeat": {"interval": 5, "grace_period": 5}},
    }
    for expected, raw in cases.items():
        with pytest.raises(ConfigError, match=expected):
            parse_sweep(raw)


def test_nothing_is_created_for_a_bad_sweep(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "sweep.yaml", parameters={"training.lrr": {"choice": [0.1]}})
    with pytest.raises(ConfigError, match=r"Did you mean 'training\.lr'"):
        prepare_sweep(None, sweep, base_overrides(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def test_shipped_grid_is_the_18_point_grid() -> None:
    spec = load_sweep(SHIPPED / "digits_grid.yaml")
    resolved = resolve_parameters(spec, load_config(ROOT / "configs/digits_mlp.yaml").model_dump(mode="json"))
    assert resolved.method == "grid" and resolved.budget() == 18 == resolved.grid_size()
    assert {p: s.choice for p, s in resolved.parameters.items()} == {
        "training.lr": [1e-4, 1e-3, 1e-2], "training.batch_size": [16, 32, 64], "model.dropout": [0.3, 0.5],
    }


def test_shipped_tpe_search_with_median_pruning() -> None:
    spec = load_sweep(SHIPPED / "digits_tpe.yaml")
    resolve_parameters(spec, load_config(ROOT / "configs/digits_mlp.yaml").model_dump(mode="json"))
    assert (spec.method, spec.pruner.name, spec.metric, spec.direction) == ("tpe", "median", "val_accuracy", "maximize")
    p = spec.parameters
    assert p["training.lr"].loguniform == (1e-5, 1e-2)
    assert p["training.batch_size"].choice == [16, 32, 64, 128]
    assert p["model.dropout"].uniform == (0.1, 0.5)


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_fits_the_demo_config(path: Path) -> None:
    spec = load_sweep(path)
    resolve_parameters(spec, load_config(ROOT / "configs/digits_mlp.yaml").model_dump(mode="json"))


def test_trials_and_best_yaml_never_share_the_base_configs_fixed_run_dir(tmp_path: Path) -> None:
    """A base config with run.dir (a fixed directory, issue 19) would put every trial in it."""
    from kiln.sweep.context import SweepContext

    base = load_config(ROOT / "configs/digits_mlp.yaml", [f"run.dir={tmp_path / 'fixed'}"])
    context = SweepContext.create(base, load_sweep(SHIPPED / "digits_grid.yaml"), "s", None)
    assert base.run.dir is not None
    assert context.trial_config(0, {}).run.dir is None and context.trial_config(1, {}).run.dir is None
    assert context.best_config({}).run.dir is None
