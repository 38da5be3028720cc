"""``kiln data check -c CONFIG`` and ``kiln data preview -c CONFIG [--output PNG]``: look at an
image dataset before training on it.

``check`` runs the scan training runs (``kiln.data.images.scan``) and nothing else: it prints
the images per class of each split as training would see them, then every problem with its file
and reason. Exit 0 when training would start, 2 when the scan would stop it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.cli.common import add_config_args, print_table
from kiln.errors import UsageError

if TYPE_CHECKING:
    from kiln.config.image_options import ImageFolderOptions
    from kiln.config.schema import KilnConfig

DEFAULT_PREVIEW = "data_preview.png"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("data", help="check an image dataset or preview its augmentation",
                                   allow_abbrev=False)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="scan the images for problems and count them per class",
                               allow_abbrev=False)
    add_config_args(check)
    check.set_defaults(handler=run_check)
    preview = actions.add_parser("preview", help="write a PNG grid of augmented training samples",
                                 allow_abbrev=False)
    add_config_args(preview)
    preview.add_argument("--output", default=DEFAULT_PREVIEW, help=f"the PNG to write (default {DEFAULT_PREVIEW})")
    preview.set_defaults(handler=run_preview)


def run_check(args: argparse.Namespace) -> int:
    from kiln.config import load_config
    from kiln.data.images.build import LAYOUTS, imbalance_warnings, plan_splits
    from kiln.data.images.scan import ScanError, problem_list, scan

    cfg = load_config(args.config, args.overrides)
    options = _image_options(cfg, "check")
    result = scan(options)
    on_error = options.image.on_error
    stopping = result.stopping(on_error)
    try:
        plan = plan_splits(result, options, cfg.run.seed)
    except ScanError as exc:  # a class too small to carve: a problem like the scan's
        stopping = [*stopping, *exc.issues]
        plan = None
    if plan is not None:
        counts = plan.counts(result.class_names)
        columns = [name for name in counts if counts[name] is not None]
        rows = [[c, *(counts[s][c] for s in columns)] for c in result.class_names]  # type: ignore[index]
        rows.append(["total", *(sum(counts[s].values()) for s in columns)])  # type: ignore[union-attr]
        headers = ["class", *(f"{s} ({plan.origins[s]})" for s in columns)]
        unchanged = f" ({result.reused} unchanged since the last scan)" if result.reused else ""
        print_table(f"{result.source}: {LAYOUTS[result.layout]}, {result.scanned} files checked{unchanged}",
                    headers, rows)
        for line in imbalance_warnings(counts, options.imbalance_warning):
            print(f"warning: {line}")
    skipped = result.bad if on_error == "skip" else []
    for title, issues in (("left out (data.image.on_error=skip)", skipped), ("ignored", result.ignored)):
        if issues:
            print(f"{len(issues)} {title}:")
            print("\n".join(f"  - {i}" for i in issues))
    if stopping:
        print(problem_list(result.source, stopping))
        hint = "" if result.fatal or on_error == "skip" else "; data.image.on_error=skip would train without them"
        print(f"training would stop (data.image.on_error={on_error}){hint}")
        return 2
    print("ok: training would start")
    return 0


def run_preview(args: argparse.Namespace) -> int:
    from kiln.config import load_config
    from kiln.data.images.preview import write_preview

    cfg = load_config(args.config, args.overrides)
    path = write_preview(cfg, Path(args.output))
    print(f"wrote {path}")
    return 0


def _image_options(cfg: KilnConfig, action: str) -> ImageFolderOptions:
    from kiln.config.image_options import ImageFolderOptions

    if not isinstance(cfg.data, ImageFolderOptions):
        raise UsageError(f"kiln data {action} works on image folders; this config's data.name is "
                         f"{getattr(cfg.data, 'name', None)!r}", hint="set data.name=image_folder and data.path=<folder>")
    return cfg.data
