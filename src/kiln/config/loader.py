"""Load a config: YAML files composed with ``extends:``, CLI overrides, then validation.

Every problem is collected and reported together, each with its dotted path, what was received,
what is allowed, and a did-you-mean for unknown keys.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kiln.catalog import did_you_mean
from kiln.config.entries import CUSTOM, SECTIONS, EntrySection
from kiln.config.overrides import apply_overrides, parse_overrides
from kiln.config.schema import KilnConfig
from kiln.errors import ConfigError

T = TypeVar("T", bound=BaseModel)


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), *, source: str | None = None
) -> KilnConfig:
    """Read ``path`` (or start from defaults), apply ``overrides`` and validate.

    >>> cfg = load_config(None, ["training.epochs=3", "--model.hidden", "[32]"])
    >>> (cfg.training.epochs, cfg.model.hidden)
    (3, [32])
    """
    raw = read_yaml(Path(path)) if path is not None else {}
    apply_overrides(raw, parse_overrides(overrides))
    return validate(raw, source=source or (str(path) if path is not None else "defaults"))


def read_yaml(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read one YAML mapping, merging the files it ``extends`` beneath it."""
    path = path.expanduser()
    if not path.is_file():
        hint = " (it is a directory)" if path.is_dir() else ""
        raise ConfigError(f"config file not found: {path}{hint}. Check the path passed to -c.")
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise ConfigError(f"config files extend each other in a cycle: {chain}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"YAML syntax error in {path}{where}: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error in {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of sections (run:, data:, ...), "
            f"got {type(data).__name__}"
        )
    parents = data.pop("extends", None)
    if parents is None:
        return data
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ConfigError(f"{path}: `extends` must be a file name or a list of file names")
    merged: dict[str, Any] = {}
    for parent in parents:
        merged = merge_layers(merged, read_yaml(path.parent / parent, (*_seen, resolved)))
    return merge_layers(merged, data)


def merge_layers(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``deep_merge`` of a config file onto what it extends; a ``model``/``data`` section of
    ``top`` that names another entry switches it (``kiln.config.entries``): the keys of ``base``'s
    section the new entry does not take are dropped."""
    base = dict(base)
    for key, union in SECTIONS.items():
        below, above = base.get(key), top.get(key)
        if isinstance(below, dict) and isinstance(above, dict):
            base[key] = union.switched(below, deep_merge(below, above))
    return deep_merge(base, top)


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Merge ``top`` onto ``base``: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def validate(raw: dict[str, Any], source: str = "config") -> KilnConfig:
    """Validate a raw mapping, turning every pydantic error into one readable ConfigError."""
    try:
        return KilnConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [describe_error(err) for err in exc.errors()]
        noun = "problem" if len(problems) == 1 else "problems"
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"invalid config ({source}), {len(problems)} {noun}:\n{lines}") from None


def validate_options(options: type[T], raw: Mapping[str, Any], where: str) -> T:
    """``raw`` validated by a plugin's own options model; ConfigError naming every problem under
    ``where`` (e.g. ``model.options``), with the keys it takes."""
    try:
        return options.model_validate(dict(raw))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            dotted = ".".join([where, *(str(part) for part in err["loc"])])
            if err["type"] == "extra_forbidden":
                keys = list(options.model_fields)
                hint = did_you_mean(str(err["loc"][-1]), keys, prefix=f"{where}.")
                problems.append(f"{dotted}: unknown key.{hint} {options.__name__} takes: {', '.join(keys)}")
            else:
                message = str(err["msg"]).removeprefix("Value error, ")
                problems.append(f"{dotted}: {message} (received {_short(err.get('input'))})")
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"invalid {where} for {options.__name__}:\n{lines}") from None


def describe_error(err: Any) -> str:
    loc = tuple(str(part) for part in err["loc"])
    shown, _ = _resolve(loc)  # the path a user writes: without the union's member tags
    dotted = ".".join(shown) or "(top level)"
    received = _short(err.get("input"))
    if err["type"] == "extra_forbidden":
        if len(loc) == 3 and loc[0] in SECTIONS:  # a key right under `model:` or `data:`
            foreign = _not_an_option(SECTIONS[loc[0]], loc[1], loc[2], err.get("input"), received)
            if foreign:
                return foreign
        allowed = sorted(_fields_at(loc[:-1]))
        prefix = ".".join(shown[:-1])
        # the very key in another section beats a near miss here (warmup_steps vs max_steps)
        hint = _elsewhere(loc[-1], cutoff=1.0)
        hint = hint or did_you_mean(loc[-1], allowed, prefix=f"{prefix}." if prefix else "")
        if not hint:  # maybe the key exists, but in another section
            hint = _elsewhere(loc[-1])
        member = f" ({SECTIONS[loc[0]].kind} {loc[1]})" if len(loc) == 3 and loc[0] in SECTIONS else ""
        return f"{dotted}: unknown key.{hint} Allowed here{member}: {', '.join(allowed)}"
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{dotted}: required, but missing"
    return f"{dotted}: {message} (received {received})"


def _not_an_option(union: EntrySection, tag: str, key: str, value: Any, received: str) -> str:
    """The message for a key another entry of the section takes ('' when none does)."""
    members = union.members()
    owners = [t for t, m in members.items() if t not in (tag, CUSTOM) and key in m.model_fields]
    if not owners:
        return ""
    where = f"{union.section}.{key}"
    if tag == CUSTOM:
        return (
            f"{where}: not an option of your own {union.kind} ({union.section}.target) (received "
            f"{received}); with {union.section}.target set, {union.section} takes: "
            f"{', '.join(union.keys(CUSTOM))}. Put the arguments of your {union.kind} under "
            f"{union.section}.options"
        )
    fits = [t for t in owners if _accepts(members[t], key, value)] or owners
    shown = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()
    setting = f"{where}={shown}" if len(shown) <= 40 and not isinstance(value, dict) else where
    names = fits[0] if len(fits) == 1 else f"{', '.join(fits[:-1])} or {fits[-1]}"
    takes = ", ".join(k for k in union.keys(tag) if k != "name")
    return (
        f"{where}: not an option of {union.kind} {tag!r} (received {received}); {tag} takes: "
        f"{takes}. {setting} needs {union.section}.name {names}"
    )


def _accepts(member: type[BaseModel], key: str, value: Any) -> bool:
    try:
        member.model_validate({key: value})
    except ValidationError:
        return False
    return True


def _elsewhere(key: str, cutoff: float = 0.8) -> str:
    """A did-you-mean naming the full path of a same-named (or close) key in another section."""
    paths = _all_paths(KilnConfig)
    leaves = sorted({p.rsplit(".", 1)[-1] for p in paths})
    close = difflib.get_close_matches(key, leaves, n=1, cutoff=cutoff)
    if not close:
        return ""
    where = [p for p in paths if p.rsplit(".", 1)[-1] == close[0]]
    return f" Did you mean {where[0]!r}?"


def _all_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key path of the schema; a union section's paths are those of all its members."""
    out: list[str] = []
    for name, field in model.model_fields.items():
        union = SECTIONS.get(name) if model is KilnConfig else None
        inners = list(union.members().values()) if union else [_model_in(field.annotation)]
        for inner in inners:
            paths = _all_paths(inner, f"{prefix}{name}.") if inner else [f"{prefix}{name}"]
            out.extend(p for p in paths if p not in out)
    return out


def _resolve(loc: tuple[str, ...]) -> tuple[tuple[str, ...], type[BaseModel] | None]:
    """``loc`` without the member tags pydantic puts after ``model``/``data``, and the section
    model it leads to (None where it leads to a value)."""
    model: type[BaseModel] | None = KilnConfig
    shown: list[str] = []
    i = 0
    while i < len(loc):
        part = loc[i]
        shown.append(part)
        union = SECTIONS.get(part) if model is KilnConfig else None
        if union is not None and i + 1 < len(loc):
            model, i = union.members().get(loc[i + 1]), i + 2
            continue
        field = model.model_fields.get(part) if model is not None else None
        model = _model_in(field.annotation) if field is not None else None
        i += 1
    return tuple(shown), model


def _fields_at(loc: tuple[str, ...]) -> list[str]:
    """Field names of the section at ``loc`` in the schema (for did-you-mean on unknown keys)."""
    _, model = _resolve(loc)
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):  # Optional[Section]
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def config_hash(cfg: KilnConfig) -> str:
    """sha256 of the resolved config's canonical JSON: equal configs have equal hashes."""
    canonical = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def to_yaml(cfg: KilnConfig) -> str:
    """The resolved config as YAML, loadable again with ``load_config``."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
