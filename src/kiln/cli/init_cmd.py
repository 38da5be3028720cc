"""``kiln init [DIR] [--template digits|csv|images|text] [--force]``: a ready kiln project."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    from kiln.project.templates import TEMPLATES

    parser = subparsers.add_parser(
        "init", help="write a ready project: config, CI workflow, tests, deploy manifest",
        description="Write kiln.yaml, .github/workflows/kiln.yml (train, gate, export; register on "
                    "main), tests/test_model.py, .gitignore, requirements.txt, README.md and "
                    "deploy/kubernetes.yaml into DIR. Nothing is overwritten without --force.",
        allow_abbrev=False,
    )
    parser.add_argument("directory", nargs="?", default=".", help="the project folder (default: here)")
    parser.add_argument("--template", choices=list(TEMPLATES), default="digits",
                        help="; ".join(f"{t.name}: {t.description}" for t in TEMPLATES.values()))
    parser.add_argument("--force", action="store_true", help="overwrite files that exist")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiln.project import init_project

    directory = Path(args.directory)
    written = init_project(directory, args.template, args.force)
    print(f"wrote a {args.template} project in {directory}:")
    for path in written:
        print(f"  {path.relative_to(directory)}")
    steps = ["python scripts/get_data.py"] if (directory / "scripts" / "get_data.py") in written else []
    steps += ["kiln train -c kiln.yaml", "python -m pytest tests"]
    print("next: " + "; ".join(steps))
    return 0
