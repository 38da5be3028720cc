"""Check a sweep's parameters against the config schema before any trial starts.

A typo in a path (``training.learning_rate``) or a value the schema refuses (``model.dropout: 1.5``)
fails at once, all problems together, instead of failing every trial one by one. Choice values
come back in the schema's own types (YAML reads ``1e-4`` as a string; the schema makes it 0.0001).
"""

from __future__ import annotations

import copy
import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from kiln.catalog import did_you_mean
from kiln.config.entries import EntrySection
from kiln.config.loader import validate
from kiln.config.overrides import apply_overrides
from kiln.config.schema import KilnConfig
from kiln.errors import ConfigError
from kiln.sweep.spec import ParameterSpec, SweepSpec


def resolve_parameters(spec: SweepSpec, base: dict[str, Any]) -> SweepSpec:
    """``spec`` with every path checked and every choice validated (and typed) by the schema."""
    problems: list[str] = []
    resolved: dict[str, ParameterSpec] = {}
    for path, param in spec.parameters.items():
        where = f"parameters[{path!r}]"
        path_problem = check_path(path)
        if path_problem is not None:
            problems.append(f"{where}: {path_problem}")
            continue
        values = []
        for value in param.candidates():
            try:
                cfg = validate(apply_overrides(copy.deepcopy(base), [(path, value)]), source=where)
            except ConfigError as exc:
                reasons = [line.strip()[2:] for line in str(exc).splitlines() if line.startswith("  - ")]
                problems.append(f"{where}: the value {value!r} is refused: {'; '.join(reasons)}")
                continue
            values.append(_read(cfg.model_dump(mode="json"), path, value))
        if param.choice is not None and len(values) == len(param.choice):
            try:
                param = ParameterSpec.model_validate({"choice": values})
            except ValidationError as exc:  # two spellings of one value, e.g. "1e-3" and 0.001
                reason = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
                problems.append(f"{where}: {reason}")
        resolved[path] = param
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"the sweep's parameters do not fit the config, {len(problems)} problem(s):\n{lines}")
    return spec.model_copy(update={"parameters": resolved})


def check_path(path: str) -> str | None:
    """None when ``path`` names a config value, else why not (with a did-you-mean)."""
    leaves, sections, open_maps = schema_paths()
    if path in leaves or any(path.startswith(f"{m}.") for m in open_maps):
        return None
    if path in sections:
        keys = sorted(p.removeprefix(f"{path}.") for p in leaves if p.startswith(f"{path}."))
        return f"is a section, not a value; search one of its keys: {', '.join(keys)}"
    return f"is not a config key.{_suggest(path, leaves, sections)} (See `kiln config show` for every key.)"


def schema_paths(model: type[BaseModel] = KilnConfig, prefix: str = "") -> tuple[set[str], set[str], set[str]]:
    """(value paths, section paths, free-form mapping paths such as ``model.options``)."""
    leaves: set[str] = set()
    sections: set[str] = set()
    open_maps: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        # model: and data: hold one section per catalog entry (kiln.config.entries)
        union = next((m for m in field.metadata if isinstance(m, EntrySection)), None)
        inners = list(union.members().values()) if union else _sections(field.annotation)
        if inners:
            sections.add(path)
            for inner in inners:
                sub = schema_paths(inner, f"{path}.")
                leaves |= sub[0]
                sections |= sub[1]
                open_maps |= sub[2]
        elif typing.get_origin(field.annotation) is dict:
            leaves.add(path)
            open_maps.add(path)
        else:
            leaves.add(path)
    return leaves, sections, open_maps


def _sections(annotation: Any) -> list[type[BaseModel]]:
    """The sections a field holds: its model, or the models of a union (Optional, tagged)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _sections(arg)]


# Names people reach for that kiln spells differently.
_ALIASES = {"learning_rate": "lr", "num_epochs": "epochs", "n_epochs": "epochs", "bs": "batch_size"}


def _suggest(path: str, leaves: set[str], sections: set[str]) -> str:
    """A did-you-mean: the right key under the wrong section (``model.lr``), a known alias
    (``learning_rate``), a typo within the section, then a typo anywhere."""
    section, _, leaf = path.rpartition(".")
    leaf = _ALIASES.get(leaf, leaf)
    in_section = sorted(p.rsplit(".", 1)[-1] for p in leaves if p.rpartition(".")[0] == section)
    if leaf in in_section:
        return f" Did you mean {f'{section}.{leaf}'!r}?"
    elsewhere = sorted(p for p in leaves if p.rsplit(".", 1)[-1] == leaf)
    if elsewhere:
        return f" Did you mean {elsewhere[0]!r}?"
    if section in sections:
        hint = did_you_mean(leaf, in_section, prefix=f"{section}.")
        if hint:
            return hint
    names = {p.rsplit(".", 1)[-1]: p for p in sorted(leaves)}
    close = difflib.get_close_matches(leaf, list(names), n=1, cutoff=0.8)
    return f" Did you mean {names[close[0]]!r}?" if close else did_you_mean(path, sorted(leaves))


def _read(data: dict[str, Any], path: str, given: Any) -> Any:
    """The value at ``path`` of a dumped config; ``given`` where the chosen entry leaves the key
    out (``model.target: null`` is no key of a catalog model)."""
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return given
        node = node[part]
    return node
