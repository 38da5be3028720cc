"""``kiln config show [-c FILE] [overrides]`` and ``kiln config schema``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kiln.cli.common import add_config_args


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("config", help="show the resolved config or its schema", allow_abbrev=False)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the resolved config as YAML", allow_abbrev=False)
    add_config_args(show)
    show.set_defaults(handler=run_show)
    schema = actions.add_parser("schema", help="print the config's JSON schema", allow_abbrev=False)
    schema.set_defaults(handler=run_schema)


def run_show(args: argparse.Namespace) -> int:
    from kiln.config import load_config, to_yaml

    print(to_yaml(load_config(args.config, args.overrides)), end="")
    return 0


def run_schema(args: argparse.Namespace) -> int:
    from kiln.config.schema import KilnConfig

    print(json.dumps(KilnConfig.model_json_schema(), indent=2))
    return 0
