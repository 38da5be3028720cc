"""Config loading to the letter: override parsing, composition, and every message a user reads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from kiln.config import config_hash, load_config
from kiln.config.loader import _short, deep_merge, describe_error, read_yaml, to_yaml, validate
from kiln.config.overrides import _first_line, apply_overrides, parse_overrides
from kiln.errors import ConfigError

TRAINING_KEYS = (
    "backbone_lr_scale, batch_size, betas, compile, early_stopping, epochs, eval_batch_size, eval_batches, "
    "eval_every_n_steps, grad_accum, grad_clip, l2, loss, lr, max_steps, momentum, nesterov, optimizer, "
    "precision, scheduler, unfreeze_at_epoch, weight_decay"
)
TOP_KEYS = "checkpoint, data, distributed, gate, model, run, tracking, training"


def _error(fn: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as err:
        fn(*args, **kwargs)  # type: ignore[operator]
    return str(err.value)


# -- overrides ----------------------------------------------------------------------------------


def test_override_forms_exact() -> None:
    got = parse_overrides(["--a.b=1=2", "x.y=a=b", "--c.d", "3", "--e.f", "-4", "g.h=", "i=[1, 2]", "k=null"])
    assert got == [("a.b", "1=2"), ("x.y", "a=b"), ("c.d", 3), ("e.f", -4), ("g.h", ""), ("i", [1, 2]),
                   ("k", None)]


def test_dashed_key_at_the_end_or_before_another_is_missing_its_value() -> None:
    assert _error(parse_overrides, ["--a.b", "--c.d", "1", "--e"]) == (
        "bad override:\n"
        "  - '--a.b': missing value; write '--a.b VALUE' or 'a.b=VALUE'\n"
        "  - '--e': missing value; write '--e VALUE' or 'e=VALUE'"
    )


def test_every_bad_token_is_reported_at_once() -> None:
    assert _error(parse_overrides, ["lr", "1x=2", "a.b=[1", "--a..b=3", "ok.key=4"]) == (
        "bad override:\n"
        "  - 'lr': not an override; write 'section.key=value' or '--section.key value'\n"
        "  - '1x=2': '1x' is not a dotted key such as 'training.lr'\n"
        "  - 'a.b=[1': value '[1' is not valid YAML (while parsing a flow sequence)\n"
        "  - '--a..b=3': 'a..b' is not a dotted key such as 'training.lr'"
    )


def test_a_token_after_a_bad_one_is_still_read() -> None:
    with pytest.raises(ConfigError) as err:
        parse_overrides(["nope", "--training.lr", "x=", "bad"])
    assert str(err.value).count("\n  - ") == 2
    assert "'bad': not an override" in str(err.value)


def test_first_line() -> None:
    assert _first_line(ValueError("first\nsecond")) == "first"
    assert _first_line(ValueError("  padded\nsecond")) == "padded"
    assert _first_line(yaml.YAMLError()) == "YAMLError"
    assert _first_line(ValueError(" \n ")) == "ValueError"


def test_apply_overrides_creates_and_replaces_sections() -> None:
    raw = {"training": {"early_stopping": None, "lr": 1}, "run": 3}
    out = apply_overrides(raw, [("training.early_stopping.patience", 2), ("run.name", "x"), ("training.lr", 2),
                                ("training.lr", 5), ("top", 1)])
    assert out is raw
    assert raw == {"training": {"early_stopping": {"patience": 2}, "lr": 5}, "run": {"name": "x"}, "top": 1}


# -- validation messages ------------------------------------------------------------------------


def test_source_names_the_file_the_defaults_or_the_caller(tmp_path: Path) -> None:
    bad = ["training.lr=0"]
    one = "1 problem:\n  - training.lr: Input should be greater than 0 (received 0)"
    assert _error(load_config, None, bad) == f"invalid config (defaults), {one}"
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lr: 0\n", encoding="utf-8")
    assert _error(load_config, path) == f"invalid config ({path}), {one}"
    assert _error(load_config, str(path)) == f"invalid config ({path}), {one}"
    assert _error(load_config, path, source="sweep trial 3") == f"invalid config (sweep trial 3), {one}"
    assert _error(validate, {"training": {"lr": 0}}) == f"invalid config (config), {one}"


def test_all_problems_together_plural() -> None:
    assert _error(load_config, None, ["training.lr=0", "training.epohcs=3", "model.hidden=[a]"]) == (
        "invalid config (defaults), 3 problems:\n"
        "  - model.hidden.0: Input should be a valid integer, unable to parse string as an integer "
        "(received 'a')\n"
        "  - training.lr: Input should be greater than 0 (received 0)\n"
        f"  - training.epohcs: unknown key. Did you mean 'training.epochs'? Allowed here: {TRAINING_KEYS}"
    )
    two = _error(validate, {"training": {"lr": 0, "epochs": 0}})
    assert two.startswith("invalid config (config), 2 problems:\n  - training.epochs: ")


def test_unknown_keys_hint_in_order_exact_elsewhere_then_near_here_then_near_elsewhere() -> None:
    # the very key in another section beats a near miss here (warmup_steps vs max_steps)
    assert _error(load_config, None, ["training.warmup_steps=3"]).endswith(
        f"  - training.warmup_steps: unknown key. Did you mean 'training.scheduler.warmup_steps'? "
        f"Allowed here: {TRAINING_KEYS}"
    )
    assert _error(load_config, None, ["warmup_steps=3"]).endswith(
        f"  - warmup_steps: unknown key. Did you mean 'training.scheduler.warmup_steps'? Allowed here: {TOP_KEYS}"
    )
    # a near miss of an elsewhere key does not beat a near miss here
    assert _error(load_config, None, ["training.warmup_step=3"]).endswith(
        f"  - training.warmup_step: unknown key. Did you mean 'training.max_steps'? Allowed here: {TRAINING_KEYS}"
    )
    assert _error(load_config, None, ["training.early_stopping.patiense=3"]).endswith(
        "  - training.early_stopping.patiense: unknown key. Did you mean 'training.early_stopping.patience'? "
        "Allowed here: min_delta, mode, monitor, patience, restore_best_weights"
    )
    # nothing close here: the same name in another section
    assert _error(load_config, None, ["training.monitor=x"]).endswith(
        f"  - training.monitor: unknown key. Did you mean 'training.scheduler.monitor'? Allowed here: {TRAINING_KEYS}"
    )
    assert _error(load_config, None, ["training.early_stopping.nme=x"]).endswith(
        "  - training.early_stopping.nme: unknown key. Did you mean 'run.name'? "
        "Allowed here: min_delta, mode, monitor, patience, restore_best_weights"
    )
    assert _error(validate, {"bogus": 1}).endswith(f"  - bogus: unknown key. Allowed here: {TOP_KEYS}")
    assert _error(validate, {"training": {"zzzzzz": 1}}).endswith(
        f"  - training.zzzzzz: unknown key. Allowed here: {TRAINING_KEYS}"
    )


def test_describe_error_forms() -> None:
    assert describe_error({"loc": (), "type": "dict_type", "msg": "Input should be a dict", "input": []}) == (
        "(top level): Input should be a dict (received [])"
    )
    assert describe_error({"loc": ("run", "name"), "type": "missing", "msg": "Field required", "input": {}}) == (
        "run.name: required, but missing"
    )
    assert describe_error({"loc": ("a", 0), "type": "value_error", "msg": "Value error, too big", "input": 5}) == (
        "a.0: too big (received 5)"
    )
    assert describe_error({"loc": ("a",), "type": "x", "msg": "Value error is here", "input": 5}) == (
        "a: Value error is here (received 5)"
    )
    assert describe_error({"loc": ("a",), "type": "x", "msg": "m", "input": None}) == "a: m (received None)"
    assert describe_error({"loc": ("a",), "type": "x", "msg": "m, Value error, "}) == "a: m, Value error,  (received None)"


def test_top_level_error_through_validate() -> None:
    assert _error(validate, []) == (
        "invalid config (config), 1 problem:\n"
        "  - (top level): Input should be a valid dictionary or instance of KilnConfig (received [])"
    )


def test_short_keeps_60_characters() -> None:
    assert _short("x" * 58) == "'" + "x" * 58 + "'"  # 60 with the quotes
    assert _short("x" * 59) == "'" + "x" * 56 + "..."
    assert len(_short("y" * 500)) == 60


# -- files --------------------------------------------------------------------------------------


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert _error(read_yaml, tmp_path / "none.yaml") == (
        f"config file not found: {tmp_path / 'none.yaml'}. Check the path passed to -c."
    )
    assert _error(read_yaml, tmp_path) == (
        f"config file not found: {tmp_path} (it is a directory). Check the path passed to -c."
    )


def test_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "c.yaml").write_text("run:\n  name: home\n", encoding="utf-8")
    assert read_yaml(Path("~/c.yaml")) == {"run": {"name": "home"}}


def test_yaml_errors_say_where(tmp_path: Path) -> None:
    alias = tmp_path / "alias.yaml"
    alias.write_text("a: *x\n", encoding="utf-8")
    assert _error(read_yaml, alias) == f"YAML syntax error in {alias} at line 1, column 4: found undefined alias 'x'"
    tab = tmp_path / "tab.yaml"
    tab.write_text("run:\n\tname: x\n", encoding="utf-8")
    assert _error(read_yaml, tab) == (
        f"YAML syntax error in {tab} at line 2, column 1: found character '\\t' that cannot start any token"
    )
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert _error(read_yaml, binary) == (
        f"config file {binary} is not UTF-8 text: 'utf-8' codec can't decode byte 0xff in position 0: "
        "invalid start byte"
    )


def test_utf8_text_is_read_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes("run:\n  name: café\n".encode())
    assert read_yaml(path) == {"run": {"name": "café"}}


def test_file_contents_shape(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n", encoding="utf-8")
    assert read_yaml(empty) == {}
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n", encoding="utf-8")
    assert _error(read_yaml, listed) == (
        f"config file {listed} must hold a mapping of sections (run:, data:, ...), got list"
    )


def test_extends_composes_in_order(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("run: {name: a, seed: 1}\ntraining: {lr: 0.1}\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("run: {name: b}\n", encoding="utf-8")
    (tmp_path / "one.yaml").write_text("extends: a.yaml\nrun: {seed: 2}\n", encoding="utf-8")
    (tmp_path / "two.yaml").write_text("extends: [a.yaml, b.yaml]\ntraining: {epochs: 3}\n", encoding="utf-8")
    assert read_yaml(tmp_path / "one.yaml") == {"run": {"name": "a", "seed": 2}, "training": {"lr": 0.1}}
    assert read_yaml(tmp_path / "two.yaml") == {
        "run": {"name": "b", "seed": 1}, "training": {"lr": 0.1, "epochs": 3},
    }


def test_extends_cycle_and_bad_extends(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("extends: b.yaml\n", encoding="utf-8")
    b.write_text("extends: [a.yaml]\n", encoding="utf-8")
    assert _error(read_yaml, a) == f"config files extend each other in a cycle: {a} -> {b} -> {a}"
    for bad in ("3", "[a.yaml, 3]", "{x: 1}"):
        e = tmp_path / "e.yaml"
        e.write_text(f"extends: {bad}\n", encoding="utf-8")
        assert _error(read_yaml, e) == f"{e}: `extends` must be a file name or a list of file names"


def test_deep_merge() -> None:
    base = {"a": {"x": 1, "y": {"p": 1}}, "b": 1, "c": {"k": 1}}
    out = deep_merge(base, {"a": {"y": {"q": 2}}, "b": {"n": 1}, "c": 5})
    assert out == {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "b": {"n": 1}, "c": 5}
    assert base == {"a": {"x": 1, "y": {"p": 1}}, "b": 1, "c": {"k": 1}}  # not changed


# -- hash and YAML round trip -------------------------------------------------------------------


def test_config_hash_is_sha256_of_canonical_json() -> None:
    cfg = load_config(None, ["training.lr=0.5"])
    canonical = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    assert config_hash(cfg) == hashlib.sha256(canonical.encode()).hexdigest()
    assert config_hash(cfg) != config_hash(load_config())


def test_to_yaml_keeps_section_order_and_loads_back(tmp_path: Path) -> None:
    cfg = load_config(None, ["training.lr=0.5", "run.name=x"])
    text = to_yaml(cfg)
    assert list(yaml.safe_load(text)) == list(cfg.model_dump())
    assert text.splitlines()[0] == f"{next(iter(cfg.model_dump()))}:"
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path) == cfg


def test_a_yaml_error_without_a_position(tmp_path: Path) -> None:
    path = tmp_path / "ctl.yaml"
    path.write_bytes(b"run:\n  name: a\x01b\n")
    assert _error(read_yaml, path) == (
        f"YAML error in {path}: unacceptable character #x0001: special characters are not allowed\n"
        '  in "<unicode string>", position 14'
    )


def test_a_near_miss_at_the_top_level_has_no_dot_prefix() -> None:
    assert _error(load_config, None, ["trainig.lr=1"]).endswith(
        f"  - trainig: unknown key. Did you mean 'training'? Allowed here: {TOP_KEYS}"
    )


def test_a_dashed_key_and_its_value_as_the_last_two_tokens() -> None:
    assert parse_overrides(["a.b=1", "--training.lr", "0.5"]) == [("a.b", 1), ("training.lr", 0.5)]
