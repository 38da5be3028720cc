"""Command-line overrides: ``training.lr=1e-4`` and ``--training.lr 1e-4``, values parsed as YAML."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from kiln.config.entries import SECTIONS
from kiln.errors import ConfigError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def parse_overrides(tokens: Sequence[str]) -> list[tuple[str, Any]]:
    """Turn CLI tokens into ``(dotted.key, value)`` pairs; every bad token is reported at once."""
    pairs: list[tuple[str, Any]] = []
    problems: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--"):
            body = token[2:]
            if "=" in body:
                key, raw = body.split("=", 1)
            elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                key, raw = body, tokens[i + 1]
                i += 1
            else:
                problems.append(f"{token!r}: missing value; write '{token} VALUE' or '{body}=VALUE'")
                i += 1
                continue
        elif "=" in token:
            key, raw = token.split("=", 1)
        else:
            problems.append(
                f"{token!r}: not an override; write 'section.key=value' or '--section.key value'"
            )
            i += 1
            continue
        i += 1
        if not _KEY.match(key):
            problems.append(f"{token!r}: {key!r} is not a dotted key such as 'training.lr'")
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            problems.append(f"{token!r}: value {raw!r} is not valid YAML ({_first_line(exc)})")
            continue
        pairs.append((key, value))
    if problems:
        raise ConfigError("bad override:\n" + "\n".join(f"  - {p}" for p in problems))
    return pairs


def apply_overrides(raw: dict[str, Any], pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """Set each dotted key in a nested dict, creating sections as needed (later pairs win).

    ``model.name``/``model.target`` (``data.*`` alike) naming another entry switch the section:
    the keys the new entry does not take are dropped first (``kiln.config.entries``).
    """
    for key, value in pairs:
        *parents, leaf = key.split(".")
        union = SECTIONS.get(parents[0]) if len(parents) == 1 and leaf in ("name", "target") else None
        if union is not None and isinstance(raw.get(parents[0]), dict):
            section = raw[parents[0]]
            raw[parents[0]] = union.switched(section, {**section, leaf: value})
        node = raw
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}  # a missing or null section (e.g. early_stopping: null) becomes a mapping
                node[part] = child
            node = child
        node[leaf] = value
    return raw


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
