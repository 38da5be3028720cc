"""Config loading: composition, overrides, and errors that name the problem and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.config import config_hash, load_config
from kiln.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_valid_and_digits_mlp() -> None:
    cfg = load_config()
    assert (cfg.data.name, cfg.model.name, cfg.run.output_dir.as_posix()) == ("digits", "mlp", "runs")


def test_both_override_forms_and_yaml_values() -> None:
    cfg = load_config(None, ["model.hidden=[256,128]", "--training.lr", "1e-4", "--training.epochs=7"])
    assert cfg.model.hidden == [256, 128]
    assert cfg.training.lr == pytest.approx(1e-4)
    assert cfg.training.epochs == 7


def test_override_value_split_on_first_equals() -> None:
    cfg = load_config(None, ["run.name=a=b"])
    assert cfg.run.name == "a=b"


def test_override_creates_optional_section() -> None:
    cfg = load_config(None, ["training.early_stopping.patience=3"])
    assert cfg.training.early_stopping is not None
    assert cfg.training.early_stopping.patience == 3
    assert load_config(None, ["training.early_stopping=null"]).training.early_stopping is None


def test_extends_composes_and_child_wins(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "training: {epochs: 3, batch_size: 16}\nmodel: {hidden: [8]}\n")
    child = write(tmp_path / "child.yaml", "extends: base.yaml\ntraining: {epochs: 5}\n")
    cfg = load_config(child)
    assert (cfg.training.epochs, cfg.training.batch_size, cfg.model.hidden) == (5, 16, [8])


def test_extends_cycle_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, ["training.lrr=0.1"])
    message = str(err.value)
    assert "training.lrr: unknown key" in message
    assert "Did you mean 'training.lr'?" in message
    assert "Allowed here:" in message and "optimizer" in message


def test_unknown_key_in_wrong_section_suggests_where_it_lives() -> None:
    with pytest.raises(ConfigError, match=r"Did you mean 'training\.scheduler\.warmup_steps'\?"):
        load_config(None, ["training.warmup_steps=10"])


def test_all_errors_reported_together(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bad.yaml",
        "training:\n  epochs: ten\n  batch_size: -1\n  optimizer: rmsprop\nmodel: {nme: mlp}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "4 problems" in message
    assert "training.epochs" in message and "'ten'" in message and "valid integer" in message
    assert "training.batch_size" in message and "greater than or equal to 1" in message
    assert "training.optimizer" in message and "'adam', 'adamw' or 'sgd'" in message
    assert "model.nme: unknown key. Did you mean 'model.name'?" in message


def test_unknown_catalog_names_suggest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'mpl'\. Did you mean 'mlp'\?"):
        load_config(None, ["model.name=mpl"])
    with pytest.raises(ConfigError, match=r"unknown dataset 'digit'\. Did you mean 'digits'\?"):
        load_config(None, ["data.name=digit"])


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.yaml", "run:\n  name: x\ntraining: [1, 2\n")
    with pytest.raises(ConfigError, match=r"YAML syntax error in .*broken\.yaml at line \d+"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (["training.lr"], "not an override"),
        (["--training.epochs"], "missing value"),
        (["9x.y=1"], "not a dotted key"),
        (["training.hidden=[1,"], "not valid YAML"),
    ],
)
def test_bad_override_syntax(tokens: list[str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(None, tokens)


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(write(tmp_path / "list.yaml", "- 1\n- 2\n"))


def test_hash_is_stable_and_changes_with_values() -> None:
    assert config_hash(load_config()) == config_hash(load_config())
    assert config_hash(load_config()) != config_hash(load_config(None, ["training.epochs=99"]))
