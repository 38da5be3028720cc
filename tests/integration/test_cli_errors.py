"""Every ``kiln`` verb given a wrong argument or a wrong path answers with the exit code of the rule
in :mod:`kiln.errors`, a message naming what was wrong, and no traceback.

Exit 2: the command line or the config is wrong (an unknown option, split, format or URI form; a
path that does not exist, a file where a directory is needed, a directory that is no run).
Exit 1: the work failed (a name the registry or tracking store does not hold, a storage that does
not open). Most cases run in this process through ``main``; a few run ``python -m kiln`` for real,
to prove the shell sees the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from kiln.cli.main import main
from tests.conftest import run_cli

MODEL = "errors-model"  # registered in the store with no version and no alias


@dataclass(frozen=True)
class Paths:
    run: Path  # a finished run (digits, tiny MLP)
    missing: Path  # nothing there
    file: Path  # a file where a directory is expected
    empty: Path  # a directory that is no run
    uri: str  # an MLflow store (SQLite) holding MODEL

    def fill(self, argv: str) -> list[str]:
        return [token.format(run=self.run, missing=self.missing, file=self.file, empty=self.empty,
                             uri=self.uri, model=MODEL) for token in argv.split()]


@pytest.fixture(scope="module")
def paths(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Paths:
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("cli-errors")
    (root / "notes.txt").write_text("not a run\n")
    (root / "empty").mkdir()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).create_registered_model(MODEL)
    return Paths(trained_run, root / "nothing", root / "notes.txt", root / "empty", uri)


def kiln(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and everything printed by ``kiln ARGV`` run in this process."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors exit from inside parse_args
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# (kiln arguments, exit code, what the message must say). {missing}, {file} and {empty} also
# appear in the message: the path named is the one typed.
MISSING_RUN = "is not a run directory: it does not exist"
FILE_RUN = "is not a run directory: it is a file"
EMPTY_RUN = "is not a run directory: it has no config.yaml"
NO_PACKAGE = "no model package at"
BAD_URI = "'models:/nope' is not a model URI kiln understands"

CASES: list[tuple[str, int, str]] = [
    # the command line itself
    ("nope", 2, "invalid choice: 'nope'"),
    ("train --qiet", 2, "unknown option '--qiet' for kiln train"),
    ("train epochs", 2, "'epochs': not an override"),
    ("train -c {missing}", 2, "config file not found: {missing}"),
    ("train -c {empty}", 2, "config file not found: {empty} (it is a directory)"),
    ("train --nproc 0", 2, "--nproc must be at least 1, got 0"),
    ("train --resume {missing}", 2, "{missing} " + MISSING_RUN),
    ("resume {run} --bogus", 2, "unknown option '--bogus' for kiln resume"),
    ("resume {missing}", 2, "{missing} " + MISSING_RUN),
    ("resume {file}", 2, "{file} " + FILE_RUN),
    ("resume {empty}", 2, "{empty} " + EMPTY_RUN),
    ("eval {run} --no-plot", 2, "unknown option '--no-plot' for kiln eval"),
    ("eval {run} --split tset", 2, "invalid choice: 'tset'"),
    ("eval {run} data.nme=x", 2, "data.nme: unknown key. Did you mean 'data.name'?"),
    ("eval {missing}", 2, "{missing} " + MISSING_RUN),
    ("eval {file}", 2, "{file} " + FILE_RUN),
    ("eval {empty}", 2, "{empty} " + EMPTY_RUN),
    ("eval models:/nope", 2, BAD_URI),
    ("report {run} --split tset", 2, "invalid choice: 'tset'"),
    ("report {missing}", 2, "{missing} " + MISSING_RUN),
    ("report {file}", 2, "{file} " + FILE_RUN),
    ("report models:/nope", 2, BAD_URI),
    ("gate {run} --split tset", 2, "invalid choice: 'tset'"),
    ("gate {run} --require accuracy~0.9", 2, "gate 'accuracy~0.9' is not a gate"),
    ("gate {empty} --require test_accuracy>=0.5", 2, "{empty} " + EMPTY_RUN),
    ("gate models:/nope", 2, BAD_URI),
    ("export {run} --format onx", 2, "unknown export format 'onx'. Did you mean 'onnx'?"),
    ("export {run} --rtol -1", 2, "--rtol -1.0 is out of range"),
    ("export {run} --batch-sizes 1,x", 2, "--batch-sizes '1,x' must be comma-separated integers"),
    ("export {run} --bogus", 2, "unrecognized arguments: --bogus"),
    ("export {missing}", 2, "{missing} does not exist"),
    ("export {file}", 2, NO_PACKAGE + " {file}"),
    ("export {empty}", 2, NO_PACKAGE + " {empty}"),
    ("export models:/nope", 2, BAD_URI),
    ("generate {missing} --prompt hi", 2, "{missing} does not exist"),
    ("generate {file} --prompt hi", 2, NO_PACKAGE + " {file}"),
    ("generate {run} --prompt hi", 2, "holds a classification model; kiln generate needs a language model"),
    ("generate models:/nope --prompt hi", 2, BAD_URI),
    ("serve {missing}", 2, "{missing} does not exist"),
    ("serve {empty}", 2, NO_PACKAGE + " {empty}"),
    ("serve {run} --backend trt", 2, "invalid choice: 'trt'"),
    ("serve {run} --port 70000", 2, "--port 70000 is not a TCP port"),
    ("serve models:/nope", 2, BAD_URI),
    ("serve {run} --accuracy-window 0", 2, "--accuracy-window must be at least 1, got 0"),
    ("serve {run} --log-max-mb -1", 2, "--log-max-mb must be a positive number, got -1.0"),
    ("serve {run} --drift-window 0", 2, "--drift-window must be at least 1, got 0"),
    ("monitor", 2, "the following arguments are required: ACTION"),
    ("monitor export {missing} --output {empty}/log.csv", 2, "{missing} does not exist"),
    ("monitor export {empty} --output {empty}/log.csv", 2, "no prediction log in {empty}"),
    ("monitor export {run} --output {empty}/log.xlsx", 2, "cannot tell the output format"),
    ("monitor report {missing} --output {empty}/drift.html", 2, "{missing} does not exist"),
    ("monitor assets {run} --output {empty}/assets --drift-psi -1", 2, "--drift-psi must be positive, got -1"),
    ("monitor assets {missing} --output {empty}/assets", 2, "{missing} is not a run directory"),
    ("init {file}", 2, "{file} is a file; kiln init writes a project into a folder"),
    ("package {run}", 2, "the following arguments are required: --output/-o"),
    ("package {run} --output {file}", 2, "--output {file} is a file; kiln package writes a build context into a folder"),
    ("package {missing} --output {empty}/image", 2, "{missing} does not exist"),
    ("package {empty} --output {empty}/image", 2, NO_PACKAGE + " {empty}"),
    ("package models:/nope --output {empty}/image", 2, BAD_URI),
    ("init {empty} --template nope", 2, "invalid choice: 'nope'"),
    ("predict {run} --input {missing} --output {empty}/out.csv", 2, "--input {missing} does not exist"),
    ("predict {missing} --input {file} --output {empty}/out.csv", 2, "{missing} does not exist"),
    ("predict {run} --input {file} --output {empty}/out.csv", 2, "cannot tell how to read {file}"),
    ("predict {run} --input {file} --output {empty}/out.xlsx", 2, "cannot tell the output format"),
    ("predict {run} --input {file} --output {empty}/out.csv --top-k 0", 2, "--top-k must be positive"),
    ("predict models:/nope --input {file} --output {empty}/out.csv", 2, BAD_URI),
    ("sync {missing}", 2, "{missing} " + MISSING_RUN),
    ("sync {file}", 2, "{file} " + FILE_RUN),
    ("sync {empty}", 2, "{empty} is not a run directory: it has no config.yaml or logs/events.jsonl"),
    ("compare", 2, "give either run directories or --experiment NAME"),
    ("compare {run} {missing}", 2, "{missing} " + MISSING_RUN),
    ("compare {run} {file}", 2, "{file} " + FILE_RUN),
    ("compare {run} --sort val_los", 2, "--sort 'val_los': no run has this metric. Did you mean 'val_loss'?"),
    ("compare {run} --format xml", 2, "invalid choice: 'xml'"),
    ("runs --output-dir {file}", 2, "--output-dir {file} is a file, not a directory of runs"),
    ("config nope", 2, "invalid choice: 'nope'"),
    ("data nope", 2, "invalid choice: 'nope'"),
    ("data check -c {missing}", 2, "config file not found: {missing}"),
    ("data check", 2, "kiln data check works on image folders; this config's data.name is 'digits'"),
    ("data check data.name=image_folder data.path={missing}", 2, "data.path {missing} does not exist"),
    ("config show -c {file}", 2, "config file {file} must hold a mapping of sections"),
    ("config show training.epochs=ten", 2, "training.epochs: Input should be a valid integer"),
    ("config schema --bogus", 2, "unrecognized arguments: --bogus"),
    ("models --bogus", 2, "unrecognized arguments: --bogus"),
    ("datasets --bogus", 2, "unrecognized arguments: --bogus"),
    ("sweep", 2, "kiln sweep needs a sweep file"),
    ("sweep -s {missing}", 2, "sweep file not found: {missing}"),
    ("sweep -s {file}", 2, "sweep file {file} must hold a mapping"),
    ("sweep -s {file} --bogus", 2, "unknown option '--bogus' for kiln sweep"),
    ("sweep-report {file}", 2, "{file} is a file, not a sweep directory"),
    ("tune", 2, "the following arguments are required: ACTION"),
    ("tune lr -c {missing}", 2, "config file not found: {missing}"),
    ("tune lr --apply {file}", 2, "{file} exists: --apply writes a new config file and never changes one"),
    ("tune lr --min-lr 1 --max-lr 0.1", 2, "the range test needs 0 < min_lr < max_lr, got min_lr=1.0, max_lr=0.1"),
    ("tune lr --steps 1", 2, "the range test needs at least 2 steps, got 1"),
    ("tune batch-size --max-batch-size 0", 2, "--max-batch-size must be at least 1, got 0"),
    ("tune batch-size -c {empty}", 2, "config file not found: {empty} (it is a directory)"),
    ("registry", 2, "the following arguments are required: ACTION"),
    ("registry nope", 2, "invalid choice: 'nope'"),
    ("registry register {missing} --name m --uri {uri}", 2, "{missing} " + MISSING_RUN),
    ("registry register {file} --name m --uri {uri}", 2, "{file} " + FILE_RUN),
    ("registry register {empty} --name m --uri {uri}", 2, "{empty} " + EMPTY_RUN),
    ("registry register {run} --name m --alias v2 --uri {uri}", 2, "alias 'v2' is not allowed"),
    ("registry promote {model} x --alias prod --uri {uri}", 2, "version 'x' is not a version number"),
    ("registry promote {model} 1 --alias latest --uri {uri}", 2, "alias 'latest' is not allowed"),
    ("registry tag {model} team --uri {uri}", 2, "tag 'team' is not KEY=VALUE"),
    ("registry describe {model} --version v1 --text t --uri {uri}", 2, "version 'v1' is not a version number"),
    ("registry audit {model} --at yesterday --alias prod --uri {uri}", 2, "--at 'yesterday' is not an ISO 8601 time"),
    # well formed, but the store does not hold it: found while doing the work
    ("registry show nope --uri {uri}", 1, "no registered model named 'nope' in {uri}"),
    ("registry promote {model} 1 --alias prod --uri {uri}", 1, f"'{MODEL}' has no version 1. Versions: (none)"),
    ("registry promote {model} @prod --alias staging --uri {uri}", 1, f"'{MODEL}' has no alias 'prod'. Aliases: (none)"),
    ("registry list --uri sqlite:///{missing}/mlflow.db", 1, "no MLflow store at {missing}/mlflow.db"),
    ("compare --experiment nope --uri {uri}", 1, "no MLflow experiment 'nope' in {uri}"),
    ("sweep-report {missing}", 1, "'{missing}' is neither a sweep directory nor a study"),
    ("sweep-report study --storage bogus://", 1, "cannot open the study storage bogus://"),
]


@pytest.mark.parametrize(("argv", "code", "message"), CASES, ids=[c[0].split(" {uri}")[0] for c in CASES])
def test_bad_arguments_and_paths(paths: Paths, capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch, argv: str, code: int, message: str) -> None:
    monkeypatch.chdir(tmp_path)  # nothing a refused command might leave lands in the repository
    exit_code, output = kiln(paths.fill(argv), capsys)
    assert (exit_code, message.format(**vars(paths)) in output) == (code, True), output
    assert "Traceback" not in output


def test_every_verb_has_a_case() -> None:
    from kiln.cli.main import build_parser

    parser = build_parser()
    verbs = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    covered = {argv.split()[0] for argv, _, _ in CASES} | {"ui"}  # ui: in a real process below
    assert verbs <= covered, sorted(verbs - covered)


def test_models_uri_with_an_alias_the_store_lacks(paths: Paths, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Verbs that take ``models:/NAME@ALIAS`` read the store from $MLFLOW_TRACKING_URI."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", paths.uri)
    for argv in (["eval", f"models:/{MODEL}@prod"], ["export", f"models:/{MODEL}@prod"],
                 ["serve", f"models:/{MODEL}@prod"], ["generate", f"models:/{MODEL}/3", "--prompt", "a"]):
        code, output = kiln(argv, capsys)
        assert code == 1, output
        assert f"'{MODEL}' has no" in output and "Traceback" not in output


@pytest.mark.slow
def test_the_shell_sees_the_same(paths: Paths, tmp_path: Path) -> None:
    """Real processes: the exit code reaches the shell and stderr holds the message, not a traceback
    (``kiln ui`` only here: with a good argument it would replace the process with MLflow's UI)."""
    cases = [
        (["eval", str(paths.missing)], 2, f"error: {paths.missing} {MISSING_RUN}"),
        (["ui", "--output-dir", str(paths.file)], 2, f"--output-dir {paths.file} is a file"),
        (["ui", "--uri", f"sqlite:///{paths.file}/mlflow.db"], 2, f"{paths.file} is a file, not a directory"),
        (["ui", "--port", "0"], 2, "--port 0 is not a TCP port"),
        (["sweep-report", "study", "--storage", "bogus://"], 1, "cannot open the study storage bogus://"),
        (["registry", "show", "nope", "--uri", paths.uri], 1, "no registered model named 'nope'"),
    ]
    for argv, code, message in cases:
        result = run_cli(*argv, cwd=tmp_path)
        assert (result.returncode, message in result.stderr) == (code, True), result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr


def test_a_missing_module_is_named_only_when_it_is_a_dependency_kiln_lacks() -> None:
    """The one-line "install kiln with its dependencies" error is for a declared dependency that
    is not installed (tests/package/test_serving_env.py meets it for real, without torch). A
    failing submodule of an installed package, the user's own module behind model.target and an
    optional extra keep their traceback: naming them "missing" would be wrong."""
    from kiln.cli.main import _normalized, _requirement_name, missing_dependency

    def missing(name: str) -> str | None:
        return missing_dependency(ModuleNotFoundError(f"No module named {name!r}", name=name))

    assert missing("numpy._core_gone") is None and missing("torch.not_a_module") is None  # installed
    assert (missing("my_project.models"), missing("onnxruntime_x"), missing("")) == (None, None, None)
    assert _requirement_name("typing-extensions>=4.5") == _normalized("typing_extensions") == "typing-extensions"
    assert _requirement_name("pydantic<3,>=2.6") == "pydantic" and _normalized("Ruamel.YAML") == "ruamel-yaml"


def test_a_reader_that_leaves_early_stops_kiln_quietly(tmp_path: Path) -> None:
    """`kiln config schema | head -1`, `kiln --help | head -1`: the reader closes the pipe; kiln
    exits 141 (as a program stopped by SIGPIPE) without a BrokenPipeError traceback."""
    import subprocess
    import sys

    for command in (["config", "schema"], ["--help"], ["train", "--help"]):  # help is printed before a verb runs
        read, write = os.pipe()
        os.close(read)  # the reader has already gone: every write fails with EPIPE
        with os.fdopen(write, "wb") as stdout:
            done = subprocess.run([sys.executable, "-m", "kiln", *command], stdout=stdout,
                                  stderr=subprocess.PIPE, text=True, timeout=120, cwd=tmp_path)
        # help text small enough to sit in the buffer is only lost at exit, quietly: 0 is fine there
        assert done.returncode in ((0, 141) if "--help" in command else (141,)) and not done.stderr, \
            (command, done.returncode, done.stderr)
