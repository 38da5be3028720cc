"""``kiln package RUN_DIR|models:/NAME@ALIAS|EXPORT_PATH --output DIR [--force] [--allow-unverified]``.

Writes a container build context serving the model's ONNX export without torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "package", help="write a container build context serving the model (ONNX, no torch)",
        description="Write DIR/Dockerfile (slim Python, non-root, HEALTHCHECK on /ready, labels "
                    "with the model's name, version, run and git commit), requirements.txt (the "
                    "serving dependencies, pinned), kiln's wheel, the model's ONNX export with its "
                    "parity record, deploy/kubernetes.yaml and a README. The export is checked as "
                    "kiln serve checks it. Nothing is overwritten without --force.",
        allow_abbrev=False,
    )
    parser.add_argument("source", help="a run directory, models:/NAME@ALIAS | models:/NAME/VERSION, "
                                       "or an ONNX export file (models/model.int8.onnx)")
    parser.add_argument("--output", "-o", required=True, help="the folder to write (empty or new)")
    parser.add_argument("--force", action="store_true",
                        help="replace the context's files in a folder that is not empty")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="package an export whose parity record failed or is missing; the "
                             "image's command then serves it with --allow-unverified too (refused "
                             "otherwise, exit 1)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiln.cli.args import source as check_source
    from kiln.package import package_model

    check_source(args.source)
    output = Path(args.output)
    result = package_model(args.source, output, force=args.force, allow_unverified=args.allow_unverified)
    labels = result.labels
    print(f"wrote the build context of {labels['kiln.model.name']} (version "
          f"{labels['kiln.model.version']}, parity {labels['kiln.model.parity']}) in {output}:")
    for path in result.files:
        print(f"  {path.relative_to(output)}")
    print(f"next: docker build -t {result.image} {output}   (or podman build)")
    return 0
