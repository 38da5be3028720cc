"""``kiln models`` and ``kiln datasets``: what the catalogs hold."""

from __future__ import annotations

import argparse
from typing import Any

from kiln.cli.common import print_table


def add_parser(subparsers: Any) -> None:
    models = subparsers.add_parser("models", help="list built-in models and their parameters")
    models.set_defaults(handler=run_models)
    datasets = subparsers.add_parser("datasets", help="list built-in datasets")
    datasets.set_defaults(handler=run_datasets)


def run_models(args: argparse.Namespace) -> int:
    from kiln.config.schema import ModelConfig
    from kiln.models.catalog import MODELS

    defaults = ModelConfig()
    rows = [
        [e.name, e.description, ", ".join(f"{p}={getattr(defaults, p)}" for p in e.params)]
        for e in MODELS
    ]
    print_table("models (model.name)", ["name", "description", "parameters (defaults)"], rows)
    print("your own: model.target=package.module:attr with model.options={...}")
    return 0


def run_datasets(args: argparse.Namespace) -> int:
    from kiln.data.catalog import DATASETS

    print_table("datasets (data.name)", ["name", "description"], ([e.name, e.description] for e in DATASETS))
    print("your own: data.target=package.module:attr returning a kiln.DataBundle")
    return 0
