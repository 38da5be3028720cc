"""The ``kiln`` command: a thin shell over library functions, one module per verb.

Exit codes: 0 success, 1 failure, 2 usage or config error, 130 interrupted, 143 terminated,
141 when the reader of its output went away (``| head``);
which error is which is written down in :mod:`kiln.errors`.
Heavy libraries are imported inside each verb, so ``kiln --help`` starts fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from kiln import __version__
from kiln.cli import (
    compare_cmd,
    config_cmd,
    data_cmd,
    eval_cmd,
    export_cmd,
    gate_cmd,
    generate_cmd,
    init_cmd,
    models_cmd,
    monitor_cmd,
    package_cmd,
    predict_cmd,
    registry_cmd,
    report_cmd,
    resume_cmd,
    runs_cmd,
    serve_cmd,
    sweep_cmd,
    sync_cmd,
    train_cmd,
    tune_cmd,
    ui_cmd,
)
from kiln.errors import KilnError, UsageError

VERBS = (
    train_cmd, resume_cmd, eval_cmd, export_cmd, gate_cmd, report_cmd, runs_cmd, compare_cmd,
    sync_cmd, registry_cmd, ui_cmd, config_cmd, data_cmd, models_cmd, sweep_cmd, serve_cmd,
    predict_cmd, generate_cmd, tune_cmd, init_cmd, package_cmd, monitor_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiln",
        description="kiln: one config in, one trustworthy run out.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"kiln {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    subparsers = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for verb in VERBS:
        verb.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kiln ARGV``; the exit code."""
    try:
        return _run(argv)
    except BrokenPipeError:  # the reader of our output left (kiln runs ls | head): nothing to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush would fail again
        return 141  # what a shell reports for a program stopped by SIGPIPE


def _run(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    debug = args.debug or "--debug" in rest
    rest = [token for token in rest if token != "--debug"]
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="kiln: %(message)s")
    if args.verb is None:
        parser.print_help()
        return 2
    if rest and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.overrides = [*getattr(args, "overrides", []), *rest]
    try:
        check_overrides(args)
        code: int = args.handler(args)
        return code
    except KilnError as exc:
        if debug:
            raise
        interrupted = exc.exit_code in (130, 143)  # stopped by a signal, on purpose
        if not (interrupted and _other_rank()):  # every rank stops; one tells how to resume
            print(str(exc) if interrupted else f"error: {without_worker_traceback(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        missing = missing_dependency(exc)
        if debug or missing is None:
            raise
        print(f"error: kiln {args.verb} needs {missing!r}, which is not installed in this environment "
              "(a serving install, as in the image of `kiln package`, has only what `kiln serve` of an "
              f"ONNX model needs). Install kiln with its dependencies: pip install kiln-ml", file=sys.stderr)
        return 1


# kiln's own dependencies (pyproject.toml) whose import name is not their package's name
_PACKAGE_OF_MODULE = {"sklearn": "scikit-learn", "yaml": "pyyaml", "PIL": "pillow"}


def missing_dependency(exc: ModuleNotFoundError) -> str | None:
    """The package to install when ``exc`` is one of kiln's declared dependencies missing (a
    torch-free serving install running a training verb), else None (a user's own module: its
    traceback is the useful answer)."""
    import importlib.util
    from importlib import metadata

    module = (exc.name or "").split(".")[0]
    if not module or importlib.util.find_spec(module) is not None:  # installed: a submodule failed
        return None
    package = _PACKAGE_OF_MODULE.get(module, module)
    try:
        requirements = metadata.requires("kiln-ml") or []
    except metadata.PackageNotFoundError:  # a source checkout without an install
        return None
    declared = {_requirement_name(r) for r in requirements if "extra ==" not in r}
    return package if _normalized(package) in declared else None


def _requirement_name(requirement: str) -> str:
    """``typing-extensions>=4.5`` -> ``typing-extensions``, normalized as pip compares names."""
    import re

    return _normalized(re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0])


def _normalized(name: str) -> str:
    """A package name as PEP 503 compares it: lower case, runs of ``-_.`` as one ``-``."""
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def without_worker_traceback(exc: BaseException) -> str:
    """The message of a kiln error raised in a DataLoader worker, without torch's wrapping.

    torch re-raises a worker's exception in the main process as the same type, with the message
    "Caught DataError in DataLoader worker process 0. Original Traceback (most recent call last):
    ..." followed by the traceback and the original "kiln.errors.DataError: <message>". The user
    needs the message (``--debug`` still shows everything).
    """
    text = str(exc)
    if not (text.startswith("Caught ") and "Original Traceback" in text):
        return text
    marker = f"\n{type(exc).__module__}.{type(exc).__qualname__}: "
    at = text.rfind(marker)
    if at == -1:
        return text
    worker = text.split(".", 1)[0].removeprefix(f"Caught {type(exc).__name__} in ")
    return f"{text[at + len(marker):].strip()} (in {worker})"


def check_overrides(args: argparse.Namespace) -> None:
    """Refuse malformed overrides before the verb does any work. ``--name`` without a dot is an
    option the verb does not have (every config key sits in a section: ``--training.lr``)."""
    if not args.overrides:
        return  # nothing to check: a verb without overrides need not import the config
    from kiln.config.overrides import parse_overrides

    unknown = [t for t in args.overrides if t.startswith("--") and "." not in t.split("=", 1)[0]]
    if unknown:
        verb = " ".join(v for v in (args.verb, getattr(args, "action", None)) if v)
        raise UsageError(
            f"unknown option {unknown[0]!r} for kiln {verb}",
            hint=f"`kiln {verb} --help` lists the options; config overrides name a section, "
                 "e.g. --training.lr 0.01 or training.lr=0.01",
        )
    parse_overrides(args.overrides)


def _other_rank() -> bool:
    """True in a torchrun worker other than rank 0 (read from the environment torchrun sets)."""
    from kiln.distributed.env import launch_env

    return launch_env().rank != 0


if __name__ == "__main__":
    raise SystemExit(main())
