"""``kiln registry list|show|register|promote|describe|tag|audit``: the MLflow model registry.

A promotion whose gates fail exits 1 after printing which gate failed and by how much.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.cli.common import print_table
from kiln.errors import UsageError

if TYPE_CHECKING:
    from datetime import datetime

_URI_HELP = "tracking/registry URI (default: $MLFLOW_TRACKING_URI, else OUTPUT_DIR/mlflow.db)"
_OUTPUT_HELP = "where runs live (run.output_dir, default runs): its mlflow.db is the store without --uri"
_REQUIRE_HELP = "a gate the version's metrics must pass, e.g. 'test_accuracy>=0.98' (repeatable)"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("registry", help="registered models, versions, aliases, promotion", allow_abbrev=False)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help, allow_abbrev=False)
        sub.add_argument("--uri", help=_URI_HELP)
        sub.add_argument("--output-dir", metavar="OUTPUT_DIR", help=_OUTPUT_HELP)
        sub.set_defaults(handler=lambda args: handler(_resolve_store(args)))
        return sub

    action("list", "list registered models and their aliases", run_list)
    show = action("show", "show a registered model's versions", run_show)
    show.add_argument("name")
    register = action("register", "register a run's model as a new version", run_register)
    register.add_argument("run_dir", metavar="RUN_DIR")
    register.add_argument("--name", required=True, help="registered model name")
    register.add_argument("--alias", help="alias to give the new version if every gate passes")
    register.add_argument("--require", action="append", default=[], metavar="GATE",
                          help=_REQUIRE_HELP + "; default: the run config's gate.require")
    promote = action("promote", "point an alias at a version, if its metrics pass the gates", run_promote)
    promote.add_argument("name")
    promote.add_argument("version", help="a version number, or @ALIAS for the version holding that alias")
    promote.add_argument("--alias", required=True, help="e.g. production, staging")
    promote.add_argument("--require", action="append", default=[], metavar="GATE", help=_REQUIRE_HELP)
    describe = action("describe", "set the description of a model or version", run_describe)
    describe.add_argument("name")
    describe.add_argument("--version", help="describe this version instead of the model")
    describe.add_argument("--text", required=True)
    tag = action("tag", "set tags on a model or version", run_tag)
    tag.add_argument("name")
    tag.add_argument("tags", nargs="+", metavar="KEY=VALUE")
    tag.add_argument("--version", help="tag this version instead of the model")
    audit = action("audit", "who moved which alias when, on which gates", run_audit)
    audit.add_argument("name")
    audit.add_argument("--alias", help="only this alias")
    audit.add_argument("--at", metavar="TIME", help="which version held --alias at TIME (ISO 8601, UTC if no offset)")


def _resolve_store(args: argparse.Namespace) -> argparse.Namespace:
    """``args.uri`` made explicit: --uri, else $MLFLOW_TRACKING_URI, else --output-dir's store."""
    from kiln.cli.args import output_dir
    from kiln.registry import registry_uri

    if args.uri is None and args.output_dir is not None:
        args.uri = registry_uri(None, output_dir(args.output_dir))
    return args


def run_list(args: argparse.Namespace) -> int:
    from kiln.registry import list_models, registry_uri

    models = list_models(args.uri)
    if not models:
        print(f"no registered models in {registry_uri(args.uri)}: kiln registry register RUN_DIR --name NAME")
        return 0
    rows = [[m.name, m.latest_version, _aliases(m.aliases), m.updated, m.description] for m in models]
    print_table(f"registered models in {registry_uri(args.uri)}", ["name", "latest", "aliases", "updated", "description"], rows)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from kiln.registry.browse import show_model, visible_tags

    model = show_model(args.name, args.uri)
    print(f"{model.name}: {model.description or '(no description)'}")
    for key, value in sorted(visible_tags(model.tags).items()):
        print(f"  {key}: {value}")
    rows = [
        [v.version, ", ".join("@" + a for a in v.aliases), v.tags.get("kiln.run", v.run_id),
         _number(v.tags.get("test_accuracy")), v.created, v.description]
        for v in model.versions
    ]
    print_table(f"versions of {model.name}", ["version", "aliases", "run", "test_accuracy", "created", "description"], rows)
    return 0


def run_register(args: argparse.Namespace) -> int:
    from kiln.cli.args import run_dir
    from kiln.registry import register_run

    run_dir(args.run_dir)
    _check(alias=args.alias)
    require = args.require or _config_gates(args.run_dir)
    result = register_run(args.run_dir, args.name, alias=args.alias, require=require,
                          uri=args.uri, source="kiln registry register")
    print(f"registered {result.uri} (run {result.run_id})")
    if result.gates:
        _print_gates(f"gates for version {result.version}", result.gates)
    if args.alias is not None and not result.alias_set:
        print(f"alias {args.alias!r} NOT given: a gate failed (the version is registered without it)")
        return 1
    if args.alias is not None:
        _print_moved(args.name, result.version, args.alias, result.previous_version)
    # A failed gate exits 1 even without an alias at stake, so a script can stop on it.
    return 0 if all(g.passed for g in result.gates) else 1


def _config_gates(run: str) -> list[str]:
    """Without --require, the run config's ``gate.require``, as ``kiln gate`` reads it: a CI
    pipeline states its criteria once, in the config, for the gate and the registration alike."""
    from kiln.runs import RunDir

    folder = RunDir(Path(run))
    if not folder.config.is_file():  # a model package without its run's config: nothing to read
        return []
    require = list(folder.read_config().gate.require)
    if require:
        print(f"gates from the run config's gate.require: {', '.join(require)}")
    return require


def run_promote(args: argparse.Namespace) -> int:
    from kiln.registry import GateFailed, promote

    _check(alias=args.alias, version=args.version)
    try:
        result = promote(args.name, args.version, args.alias, args.require, uri=args.uri,
                         source="kiln registry promote")
    except GateFailed as exc:
        _print_gates(f"gates for version {exc.version} of {exc.name}", exc.results)
        raise
    if result.gates:
        _print_gates(f"gates for version {result.version} of {result.name} ({result.metrics_source})", result.gates)
    _print_moved(result.name, result.version, result.alias, result.previous_version)
    return 0


def run_describe(args: argparse.Namespace) -> int:
    from kiln.registry import describe

    _check(version=args.version)
    describe(args.name, args.text, version=args.version, uri=args.uri)
    print(f"described {args.name}" + (f" version {args.version}" if args.version else ""))
    return 0


def run_tag(args: argparse.Namespace) -> int:
    from kiln.registry import set_tags

    _check(version=args.version)
    tags = {}
    for item in args.tags:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"tag {item!r} is not KEY=VALUE (e.g. team=vision)")
        tags[key.strip()] = value
    set_tags(args.name, tags, version=args.version, uri=args.uri)
    print(f"tagged {args.name}" + (f" version {args.version}" if args.version else "") + f": {', '.join(tags)}")
    return 0


def run_audit(args: argparse.Namespace) -> int:
    from kiln.registry import audit_log, holder_at

    if args.at is not None:
        if args.alias is None:
            raise UsageError("--at needs --alias: which alias's holder do you want at that time?")
        entry = holder_at(args.name, args.alias, _parse_time(args.at), args.uri)
        if entry is None:
            print(f"no version of {args.name} held @{args.alias} at {args.at} (according to kiln's audit trail)")
            return 0
        print(f"at {args.at}, @{args.alias} of {args.name} was version {entry.version} "
              f"(promoted {entry.at} by {entry.user})")
        return 0
    entries = audit_log(args.name, args.alias, args.uri)
    if not entries:
        print(f"no alias changes of {args.name} recorded yet")
        return 0
    rows = [
        [e.at[:19].replace("T", " "), e.event, "@" + e.alias, e.version, e.previous_version, e.user,
         ", ".join(f"{g['gate']} {'ok' if g['passed'] else 'FAILED'}" for g in e.gates) or "-", e.source]
        for e in entries
    ]
    _print_audit(f"audit trail of {args.name}", rows)
    return 0


def _check(alias: str | None = None, version: str | None = None) -> None:
    """An alias or version (``@ALIAS`` too) that can never be valid is a usage error, found before
    the store is opened."""
    from kiln.cli.args import registry_value
    from kiln.registry.client import check_alias, check_version

    if alias is not None:
        registry_value(check_alias, alias)
    if version is not None and version.startswith("@"):
        registry_value(check_alias, version[1:])
    elif version is not None:
        registry_value(check_version, version)


def _print_audit(title: str, rows: list[list[Any]]) -> None:
    """Like print_table, but only the gates column wraps: the rest are short and read best whole."""
    import sys

    from rich.console import Console
    from rich.table import Table

    from kiln.cli.common import fmt

    table = Table(title=title, title_justify="left")
    for column in ("at (UTC)", "event", "alias", "version", "previous", "user", "gates", "by"):
        table.add_column(column, no_wrap=column != "gates", overflow="fold")
    for row in rows:
        table.add_row(*(fmt(v) for v in row))
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def _print_gates(title: str, results: Any) -> None:
    from kiln.runs.gates import COLUMNS, gate_rows

    print_table(title, COLUMNS, gate_rows(results))


def _print_moved(name: str, version: int, alias: str, previous: int | None) -> None:
    before = f" (was version {previous})" if previous is not None and previous != version else ""
    print(f"{name}@{alias} -> version {version}{before}")


def _aliases(aliases: dict[str, int]) -> str:
    return ", ".join(f"@{a}={v}" for a, v in sorted(aliases.items())) or "-"


def _parse_time(text: str) -> datetime:
    from datetime import datetime

    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text  # 3.10 does not read 'Z'
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        raise UsageError(f"--at {text!r} is not an ISO 8601 time, e.g. 2026-11-17T09:00 or 2026-11-17") from None


def _number(text: str | None) -> float | str | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return text
