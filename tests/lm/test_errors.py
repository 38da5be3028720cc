"""Bad inputs to the language-model track fail early with a message naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.config import load_config
from kiln.data import build_data
from kiln.errors import ConfigError, DataError
from kiln.models.build import build_model
from kiln.train import Trainer
from tests.lm.conftest import lm_config, write_text


def test_missing_text_file(tmp_path: Path) -> None:
    cfg = lm_config(tmp_path, tmp_path / "nowhere.txt")
    with pytest.raises(DataError, match=r"nowhere.txt not found.*data.download=true"):
        build_data(cfg.data, 0)
    no_path = load_config(None, ["data.name=text"])
    with pytest.raises(ConfigError, match=r"needs data.path"):
        build_data(no_path.data, 0)


def test_block_size_larger_than_the_text(tmp_path: Path) -> None:
    cfg = lm_config(tmp_path, write_text(tmp_path, repeats=2), "data.text.block_size=64")
    with pytest.raises(DataError, match=r"block_size=64 but the training split has only 38 characters.*<= 37"):
        build_data(cfg.data, 0)


def test_text_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("café ".encode("latin-1") * 50)
    with pytest.raises(DataError, match=r"is not UTF-8 text"):
        build_data(lm_config(tmp_path, path).data, 0)


def test_characters_only_in_validation_map_to_a_replacement_token(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("ab" * 100 + "xyz" * 5, encoding="utf-8")  # the last 43 characters: validation
    data = build_data(lm_config(tmp_path, path, "data.test_fraction=0", "data.val_fraction=0.2").data, 0)
    assert data.spec.class_names == ("a", "b", "\ufffd")


def test_model_and_task_mismatches(tmp_path: Path) -> None:
    text = write_text(tmp_path)
    with pytest.raises(ConfigError, match=r"language_modeling needs data.name text"):
        load_config(None, ["data.task=language_modeling"])
    digits = build_data(load_config(None, []).data, 0)
    with pytest.raises(ConfigError, match=r"reads token ids"):
        build_model(load_config(None, ["model.name=transformer"]).model, digits.spec)
    lm = build_data(lm_config(tmp_path, text).data, 0)
    with pytest.raises(ConfigError, match=r"multiple of model.n_heads"):
        build_model(lm_config(tmp_path, text, "model.n_heads=3").model, lm.spec)
    with pytest.raises(ConfigError, match=r"shorter than the data's windows"):
        build_model(lm_config(tmp_path, text, "model.block_size=8").model, lm.spec)
    with pytest.raises(ConfigError, match=r"data.task language_modeling"):
        build_data(lm_config(tmp_path, text, "data.task=classification").data, 0)
    # refused by the config now (text takes no subset), naming the keys it does take
    with pytest.raises(ConfigError, match=r"data.subset: not an option of dataset 'text' .*text takes: "):
        build_data(lm_config(tmp_path, text, "data.subset=10").data, 0)


def test_step_evaluation_needs_a_validation_split(tmp_path: Path) -> None:
    cfg = lm_config(tmp_path, write_text(tmp_path), "data.val_fraction=0")
    with pytest.raises(ConfigError, match=r"eval_every_n_steps needs a validation split"):
        Trainer(cfg, quiet=True).fit()


def test_download_fetches_the_text_into_place(tmp_path: Path) -> None:
    served = write_text(tmp_path)
    target = tmp_path / "data" / "input.txt"
    cfg = lm_config(tmp_path, target, "data.download=true", f"data.text.url={served.as_uri()}")
    bundle = build_data(cfg.data, 0)
    assert target.read_bytes() == served.read_bytes()
    assert len(bundle.train) > 0  # type: ignore[arg-type]
    assert sorted(p.name for p in target.parent.iterdir()) == ["input.txt"]  # no .part file left


def test_failed_download_names_the_url_and_keeps_nothing(tmp_path: Path) -> None:
    missing = (tmp_path / "nowhere.txt").as_uri()
    target = tmp_path / "data" / "input.txt"
    cfg = lm_config(tmp_path, target, "data.download=true", f"data.text.url={missing}")
    with pytest.raises(DataError, match=rf"could not download {missing} to {target}: .*Put the file there by hand"):
        build_data(cfg.data, 0)
    assert list(target.parent.iterdir()) == []
