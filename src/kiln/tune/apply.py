"""``--apply OUT.yaml``: a finder's suggestion written into a new config file, never the old one.

The new file ``extends`` the config the finder read (so it keeps its comments and later edits),
and holds the overrides of the command line and the suggested values on top. Without a config
file (defaults and overrides only) it holds the whole resolved config. It is loaded back before
it is kept, so a file that would not load, or would not say what was suggested, is never written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from kiln.config.loader import load_config
from kiln.config.overrides import apply_overrides, parse_overrides
from kiln.config.schema import KilnConfig
from kiln.errors import KilnError, PathError
from kiln.runs.layout import write_text


def write_applied(out: str | Path, config: str | Path | None, overrides: Sequence[str],
                  resolved: KilnConfig, values: Mapping[str, Any]) -> Path:
    """Write ``values`` (dotted keys, e.g. ``{"training.lr": 0.01}``) into the new config ``out``."""
    out = Path(out).expanduser()
    if out.exists():
        raise PathError(f"{out} exists: --apply writes a new config file and never changes one",
                        hint="pass a new file name (or delete the old file first)")
    header = "# written by kiln tune: " + ", ".join(f"{k}={v}" for k, v in values.items()) + "\n"
    if config is None:
        raw = resolved.model_dump(mode="json")
        apply_overrides(raw, list(values.items()))
    else:
        raw = {"extends": _reference(Path(config), out)}
        apply_overrides(raw, [*parse_overrides(overrides), *values.items()])
    text = header + yaml.safe_dump(raw, sort_keys=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, text)
    try:
        check = load_config(out).model_dump(mode="json")
        for key, value in values.items():
            node: Any = check
            for part in key.split("."):
                node = node[part]
            if node != value:
                raise KilnError(f"{out} would set {key} to {node!r}, not the suggested {value!r}",
                                hint="report this as a bug of kiln tune --apply")
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out



def _reference(config: Path, out: Path) -> str:
    """How ``out`` names the config it extends: relative when the two sit close (the pair can
    move together), absolute when a relative path would climb further than one folder."""
    target = config.expanduser().resolve()
    relative = os.path.relpath(target, out.expanduser().resolve().parent)
    return str(target) if relative.startswith(os.path.join("..", "..")) else relative
