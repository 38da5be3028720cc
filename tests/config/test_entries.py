"""``model:`` and ``data:`` as unions on ``name``: each catalog entry takes its own options, an
option of another entry is refused naming what is allowed, and naming another entry in a later
layer (an override, a file that extends another) switches the section."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from kiln.config import load_config, parse_model_config, to_yaml
from kiln.config.data_options import (
    CsvOptions,
    DigitsOptions,
    SyntheticOptions,
    TargetData,
    TextOptions,
)
from kiln.config.entries import DATA, MODEL
from kiln.config.model_options import CnnOptions, MlpOptions, TargetModel, TransformerOptions
from kiln.config.schema import KilnConfig
from kiln.data import DATASETS
from kiln.errors import ConfigError
from kiln.models import MODELS

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def problem(*overrides: str, path: Path | None = None) -> str:
    """The one problem line of the ConfigError the overrides raise."""
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    lines = str(err.value).splitlines()
    assert len(lines) == 2, str(err.value)
    return lines[1].removeprefix("  - ")


def test_the_name_picks_the_entrys_options_model() -> None:
    assert load_config(None, []).model == MlpOptions() and load_config(None, []).data == DigitsOptions()
    cfg = load_config(None, ["model.name=cnn", "model.filters=[8]", "data.name=synthetic", "data.synthetic.n_samples=64"])
    assert cfg.model == CnnOptions(filters=[8])
    assert isinstance(cfg.data, SyntheticOptions) and cfg.data.synthetic.n_samples == 64
    assert load_config(None, ["model.name=transformer"]).model == TransformerOptions()
    # a target picks the member for your own code; its name is a free label
    own = load_config(None, ["model.target=pkg.mod:Net", "data.target=pkg.mod:data", "data.options={n: 3}"])
    assert own.model == TargetModel(target="pkg.mod:Net") and own.model.name == "custom"
    assert own.data == TargetData(target="pkg.mod:data", options={"n": 3}, name="custom")
    # `target: null` is no target
    assert load_config(None, ["model.target=null", "model.name=cnn"]).model == CnnOptions()


def test_an_option_of_another_entry_names_what_this_one_takes() -> None:
    assert problem("model.name=mlp", "model.filters=[64]") == (
        "model.filters: not an option of model 'mlp' (received [64]); mlp takes: hidden, dropout, "
        "activation, batch_norm. model.filters=[64] needs model.name cnn"
    )
    assert problem("data.task=language_modeling") == (
        "data.task: not an option of dataset 'digits' (received 'language_modeling'); digits takes: "
        "num_workers, persistent_workers, prefetch_factor, pin_memory, val_fraction, test_fraction, "
        "subset, normalize. "
        "data.task=language_modeling needs data.name text"
    )
    # only the entries whose option accepts the value are named
    assert problem("data.task=regression").endswith("data.task=regression needs data.name csv")
    assert problem("data.synthetic.n_samples=5").endswith("data.synthetic needs data.name synthetic")
    assert problem("model.target=pkg.mod:Net", "model.hidden=[3]") == (
        "model.hidden: not an option of your own model (model.target) (received [3]); with "
        "model.target set, model takes: name, target, options, channels_last. Put the arguments of your model "
        "under model.options"
    )


def test_an_unknown_key_or_name_gets_a_did_you_mean() -> None:
    assert problem("model.hiden=[3]") == (
        "model.hiden: unknown key. Did you mean 'model.hidden'? Allowed here (model mlp): "
        "activation, batch_norm, dropout, hidden, name"
    )
    assert problem("model.lr=0.1").startswith("model.lr: unknown key. Did you mean 'training.lr'?")
    assert problem("data.name=synthetic", "data.synthetic.n_sample=5") == (
        "data.synthetic.n_sample: unknown key. Did you mean 'data.synthetic.n_samples'? "
        "Allowed here: input_shape, n_samples, noise, num_classes"
    )
    assert problem("model.name=mpl") == (
        "model: unknown model 'mpl'. Did you mean 'mlp'? Known: cnn, mlp, timm, torchvision, transformer; or set "
        "`target: package.module:attr` to use your own (received {'name': 'mpl'})"
    )
    assert problem("model=mlp") == "model: the model section must be a mapping, e.g. {name: mlp} (received 'mlp')"
    assert problem("data.name=[1]") == "data: data.name must be a dataset name, e.g. digits (received {'name': [1]})"
    assert problem("model.name=cnn", "model.pool=min").startswith("model.pool: Input should be 'max', 'avg' or 'none'")


def test_an_override_naming_another_entry_switches_the_section(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="kiln"):
        cfg = load_config(CONFIGS / "mnist_cnn_enhanced.yaml", ["model.name=mlp"])
    assert cfg.model == MlpOptions(hidden=[128], dropout=0.5)  # what an mlp takes stays
    assert "model switches from cnn to mlp: dropped model.filters, model.kernel_size, model.pool, " \
           "model.conv_dropout" in caplog.text
    # later overrides apply after the switch, earlier ones were part of what it switched from
    assert load_config(None, ["model.hidden=[4]", "model.target=pkg:Net"]).model == TargetModel(target="pkg:Net")
    assert problem("model.target=pkg:Net", "model.hidden=[4]").startswith("model.hidden: not an option of your own model")
    # naming the entry the section already has switches nothing
    assert problem("model.filters=[8]", "model.name=mlp").startswith("model.filters: not an option of model 'mlp'")
    csv = load_config(CONFIGS / "char_transformer.yaml", ["data.name=csv", "data.path=t.csv"]).data
    assert csv == CsvOptions(path=Path("t.csv"), val_fraction=0.1, test_fraction=0.0)


def test_a_file_that_extends_another_and_names_another_entry_switches_it(tmp_path: Path) -> None:
    child = tmp_path / "mlp.yaml"
    child.write_text(f"extends: {CONFIGS / 'mnist_cnn_enhanced.yaml'}\nmodel: {{name: mlp}}\n", encoding="utf-8")
    assert load_config(child).model == MlpOptions(hidden=[128], dropout=0.5)
    text = tmp_path / "text.yaml"
    text.write_text(f"extends: {CONFIGS / 'mnist_base.yaml'}\ndata: {{name: text, path: a.txt}}\n", encoding="utf-8")
    assert load_config(text).data == TextOptions(path=Path("a.txt"), val_fraction=0.1)


def test_every_entry_round_trips_through_yaml(tmp_path: Path) -> None:
    sections = [f"model.name={name}" for name in MODELS.names()] + [f"data.name={n}" for n in DATASETS.names()]
    for override in [*sections, "model.target=pkg:Net", "data.target=pkg:data"]:
        cfg = load_config(None, [override])
        path = tmp_path / "c.yaml"
        path.write_text(to_yaml(cfg), encoding="utf-8")
        assert load_config(path) == cfg, override


def test_sections_stored_before_the_union_still_load(tmp_path: Path) -> None:
    """model.json and config.yaml of runs made when every knob of every entry was stored."""
    flat = {"name": "cnn", "target": None, "options": {}, "hidden": [8], "dropout": 0.0, "activation": "relu",
            "filters": [4], "kernel_size": 3, "pool": "max", "conv_dropout": 0.0, "batch_norm": False,
            "d_model": 128, "n_heads": 4, "n_layers": 4, "d_ff": None, "block_size": None, "tie_weights": True}
    assert parse_model_config(flat) == CnnOptions(hidden=[8], filters=[4])
    assert parse_model_config({**flat, "target": "pkg:Net"}) == TargetModel(name="cnn", target="pkg:Net")
    data = {"name": "csv", "target": None, "options": {}, "path": "t.csv", "download": False, "val_fraction": 0.1,
            "test_fraction": 0.2, "subset": None, "normalize": True, "num_workers": 0, "target_column": "y",
            "task": "auto", "val_path": None, "test_path": None,
            "synthetic": {"n_samples": 2000, "input_shape": [1, 28, 28], "num_classes": 10, "noise": 0.5},
            "text": {"block_size": 128, "url": "https://example.org/input.txt"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"data": data, "model": flat}), encoding="utf-8")
    cfg = load_config(path)
    assert cfg.data == CsvOptions(path=Path("t.csv"), target_column="y") and isinstance(cfg.model, CnnOptions)
    # a section that is not that whole layout is strict
    with pytest.raises(ValueError, match="filters"):
        parse_model_config({"name": "mlp", "target": None, "filters": [4]})


def test_the_schema_shows_every_entry() -> None:
    schema = KilnConfig.model_json_schema()
    refs = {one["$ref"].rsplit("/", 1)[-1] for one in schema["properties"]["model"]["oneOf"]}
    assert refs == {"MlpOptions", "CnnOptions", "TransformerOptions", "TorchvisionOptions", "TimmOptions", "TargetModel"}
    refs = {one["$ref"].rsplit("/", 1)[-1] for one in schema["properties"]["data"]["oneOf"]}
    assert refs == {e.options.__name__ for e in DATASETS if e.options} | {"TargetData"}
    mlp = schema["$defs"]["MlpOptions"]
    assert mlp["properties"]["dropout"] == {
        "default": 0.0, "description": "dropout after each dense hidden layer", "exclusiveMaximum": 1.0,
        "minimum": 0.0, "title": "Dropout", "type": "number",
    }
    assert mlp["additionalProperties"] is False
    json.dumps(schema)  # what `kiln config schema` prints


def test_members_follow_the_catalogs() -> None:
    assert list(MODEL.members()) == [*MODELS.names(), "custom"]
    assert list(DATA.members()) == [*DATASETS.names(), "custom"]
    assert all(e.params == tuple(k for k in e.options.model_fields if k != "name") for e in MODELS if e.options)
