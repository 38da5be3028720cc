"""``kiln models`` and ``kiln datasets``: what the catalogs hold, with every entry's options.

Each entry's options come from its options model (``kiln.config.model_options``/``data_options``):
the key as it is written after ``model.``/``data.``, its default, and its description.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kiln.cli.common import print_table

if TYPE_CHECKING:
    from pydantic import BaseModel  # imported on use: building the CLI's parser imports no pydantic


def add_parser(subparsers: Any) -> None:
    models = subparsers.add_parser("models", help="list built-in models and their options")
    models.set_defaults(handler=run_models)
    datasets = subparsers.add_parser("datasets", help="list built-in datasets and their options")
    datasets.set_defaults(handler=run_datasets)


def run_models(args: argparse.Namespace) -> int:
    from kiln.config.entries import MODEL

    _print_catalog(MODEL.section, MODEL.catalog)
    print("your own: model.target=package.module:attr with model.options={...}")
    return 0


def run_datasets(args: argparse.Namespace) -> int:
    from kiln.config.entries import DATA

    _print_catalog(DATA.section, DATA.catalog)
    print("your own: data.target=package.module:attr returning a kiln.DataBundle, with data.options={...}")
    return 0


def _print_catalog(section: str, catalog: Any) -> None:
    rows: list[list[Any]] = []
    for entry in catalog:
        rows.append([entry.name, "", entry.description])
        if entry.options is not None:
            rows.extend(["", f"{key}={default}", about] for key, default, about in options_of(entry.options))
    print_table(f"{catalog.kind}s ({section}.name) and their options ({section}.KEY=VALUE)",
                ["name", "option=default", "description"], rows)


def options_of(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """``(key, default as YAML, description)`` of every option, nested sections spelled out
    (``synthetic.n_samples``); ``name`` is the entry itself, so it is left out."""
    from pydantic import BaseModel
    for key, field in model.model_fields.items():
        if key == "name" and not prefix:
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            yield from options_of(type(default), f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", _yaml(default), field.description or ""


def _yaml(value: Any) -> str:
    import yaml

    plain = str(value) if not isinstance(value, (bool, int, float, str, list, dict, type(None))) else value
    return str(yaml.safe_dump(plain, default_flow_style=True, width=1000)).strip().removesuffix("...").strip()
