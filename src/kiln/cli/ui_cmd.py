"""``kiln ui [--port 5000] [--output-dir runs]``: the MLflow UI on kiln's tracking store.

Prints the URL, then replaces this process with ``mlflow ui`` (Ctrl-C stops it). It listens on
127.0.0.1 unless ``--host`` says otherwise: the UI has no authentication, so exposing it on a
network is a decision to make explicitly.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from kiln.errors import MissingExtraError, PathError, UsageError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("ui", help="start the MLflow UI on the local tracking store", allow_abbrev=False)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every one)")
    parser.add_argument("--output-dir", default="runs", help="where runs live (run.output_dir)")
    parser.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI, else OUTPUT_DIR/mlflow.db)")
    parser.set_defaults(handler=run)


def ui_command(uri: str, artifact_root: str | None, host: str, port: int) -> list[str]:
    """The ``mlflow ui`` command line, run with this interpreter so the venv's MLflow is used."""
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    if artifact_root is not None:
        command += ["--default-artifact-root", artifact_root]
    # One worker: a UI for one person needs no more, and MLflow's default of 4 takes seconds to start.
    return [*command, "--host", host, "--port", str(port), "--workers", "1"]


def run(args: argparse.Namespace) -> int:
    from kiln.cli.args import output_dir
    from kiln.settings import default_artifact_root, tracking_uri

    if importlib.util.find_spec("mlflow") is None:
        raise MissingExtraError("mlflow", "mlflow")
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a TCP port", allowed="1 to 65535")
    uri = tracking_uri(args.uri, output_dir(args.output_dir))
    if uri.startswith(("http://", "https://")):
        print(f"the tracking store is a server with its own UI: open {uri}")
        return 0
    if uri.startswith("sqlite:///"):  # checked here: `mlflow ui` would answer with a traceback
        db = Path(uri.removeprefix("sqlite:///"))
        blocker = db if db.is_dir() else next((p for p in db.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            what = "a directory" if blocker == db else "a file, not a directory"
            raise PathError(f"{uri} cannot be a SQLite store: {blocker} is {what}",
                            hint="pass --uri sqlite:///PATH/mlflow.db with PATH a directory")
        if not db.is_file():
            print(f"note: {uri} does not exist yet; train with the mlflow backend to fill it")
    shown = "localhost" if args.host == "0.0.0.0" else args.host
    print(f"MLflow UI for {uri} at http://{shown}:{args.port} (Ctrl-C to stop)", flush=True)
    command = ui_command(uri, default_artifact_root(uri), args.host, args.port)
    os.execv(command[0], command)  # replaces this process; returns only by raising
    return 0  # pragma: no cover
