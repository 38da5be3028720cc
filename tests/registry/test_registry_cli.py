"""``kiln registry``, ``kiln compare`` and ``kiln ui`` on the command line."""

from __future__ import annotations

import csv
import io
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kiln.cli.main import main
from kiln.registry import audit_log, promote, register_run, show_model
from tests.conftest import run_cli
from tests.registry.conftest import FAILING_GATE, NOLOAD, PASSING_GATE, Store

pytestmark = pytest.mark.filterwarnings(NOLOAD)


def test_promote_refuses_a_failing_gate_with_exit_1_and_the_table(store: Store) -> None:
    version = register_run(store.baseline.run_dir, "cli-gated").version
    result = run_cli("registry", "promote", "cli-gated", str(version), "--alias", "production",
                     "--require", FAILING_GATE, "--require", PASSING_GATE,
                     env={"MLFLOW_TRACKING_URI": store.uri})
    assert result.returncode == 1, result.stderr
    measured = store.baseline.test_metrics["test_accuracy"]
    assert f"error: refusing to give version {version} of 'cli-gated' the alias 'production': 1 of 2 gates failed" in result.stderr
    assert f"{FAILING_GATE}: measured {measured:.6g}, short by {0.999 - measured:.6g}" in result.stderr
    assert "Traceback" not in result.stderr
    for text in ("test_accuracy", ">= 0.999", "FAIL", "PASS", f"{measured - 0.999:.4f}"):
        assert text in result.stdout, text
    assert show_model("cli-gated", store.uri).aliases == {}


def test_register_promote_describe_tag_list_show_audit(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    uri = ["--uri", store.uri]
    assert main(["registry", "register", str(store.baseline.run_dir), "--name", "cli-flow", *uri]) == 0
    assert "registered models:/cli-flow/1" in capsys.readouterr().out
    assert main(["registry", "register", str(store.wider.run_dir), "--name", "cli-flow", "--alias", "staging",
                 "--require", FAILING_GATE, *uri]) == 1
    assert "alias 'staging' NOT given" in capsys.readouterr().out
    assert main(["registry", "promote", "cli-flow", "1", "--alias", "production", "--require", PASSING_GATE, *uri]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "cli-flow@production -> version 1" in out
    assert main(["registry", "promote", "cli-flow", "2", "--alias", "production", *uri]) == 0
    assert "cli-flow@production -> version 2 (was version 1)" in capsys.readouterr().out
    assert main(["registry", "describe", "cli-flow", "--text", "digits classifier", *uri]) == 0
    assert main(["registry", "describe", "cli-flow", "--version", "2", "--text", "wider MLP", *uri]) == 0
    assert main(["registry", "tag", "cli-flow", "team=vision", *uri]) == 0
    assert main(["registry", "tag", "cli-flow", "reviewed=yes", "--version", "2", *uri]) == 0
    assert main(["registry", "tag", "cli-flow", "kiln.run_dir=/tmp", *uri]) == 1
    assert "reserved" in capsys.readouterr().err

    assert main(["registry", "list", *uri]) == 0
    listing = capsys.readouterr().out
    assert "cli-flow" in listing and "@production=2" in listing and "digits classifier" in listing
    assert main(["registry", "show", "cli-flow", *uri]) == 0
    shown = capsys.readouterr().out
    assert "team: vision" in shown and "@production" in shown and "wider MLP" in shown
    assert "kiln.audit" not in shown
    model = show_model("cli-flow", store.uri)
    assert model.description == "digits classifier" and model.versions[0].tags["reviewed"] == "yes"

    assert main(["registry", "audit", "cli-flow", "--alias", "production", *uri]) == 0
    trail = capsys.readouterr().out
    assert "promoted" in trail and "kiln registry promote" in trail
    second = audit_log("cli-flow", "production", store.uri)[-1]
    assert main(["registry", "audit", "cli-flow", "--alias", "production", "--at", second.at, *uri]) == 0
    assert "@production of cli-flow was version 2" in capsys.readouterr().out
    assert main(["registry", "audit", "cli-flow", "--alias", "production", "--at", "yesterday", *uri]) == 2
    assert "not an ISO 8601 time" in capsys.readouterr().err


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time five hours behind UTC, so reading a naive time as local time would show."""
    monkeypatch.setenv("TZ", "EST+5")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_audit_at_names_the_holder_at_any_time(
    store: Store, capsys: pytest.CaptureFixture[str], far_from_utc: None
) -> None:
    uri = ["--uri", store.uri]
    for run in (store.baseline, store.wider):
        register_run(run.run_dir, "cli-at", uri=store.uri)
    promote("cli-at", 1, "production", uri=store.uri)
    promote("cli-at", 2, "production", uri=store.uri)
    first, second = (datetime.fromisoformat(e.at) for e in audit_log("cli-at", "production", store.uri))
    between = first + (second - first) / 2
    assert first < between < second

    def holder(at: str) -> str:
        assert main(["registry", "audit", "cli-at", "--alias", "production", "--at", at, *uri]) == 0
        return capsys.readouterr().out

    # strictly between the two promotions, as naive UTC (the local zone is UTC-5 here), with an
    # offset, and with Z: version 1 still held the alias
    naive = between.astimezone(timezone.utc).replace(tzinfo=None).isoformat()
    eastern = between.astimezone(timezone(timedelta(hours=-5))).isoformat()
    zulu = between.astimezone(timezone.utc).replace(tzinfo=None).isoformat() + "Z"
    for at in (naive, eastern, zulu):
        out = holder(at)
        assert out.startswith(f"at {at}, @production of cli-at was version 1 (promoted {first.isoformat()} by "), out
    assert f"was version 2 (promoted {second.isoformat()}" in holder(second.isoformat())
    before = (first - timedelta(seconds=1)).astimezone(timezone.utc).replace(tzinfo=None).isoformat()
    assert holder(before) == (
        f"no version of cli-at held @production at {before} (according to kiln's audit trail)\n"
    )
    assert main(["registry", "audit", "cli-at", "--at", naive, *uri]) == 2  # --at needs --alias
    assert "--at needs --alias" in capsys.readouterr().err


def test_register_exits_1_on_a_failed_gate_even_without_an_alias(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["registry", "register", str(store.baseline.run_dir), "--name", "cli-noalias", "--uri", store.uri]
    assert main([*args, "--require", FAILING_GATE]) == 1
    assert main([*args, "--require", PASSING_GATE]) == 0
    assert [v.version for v in show_model("cli-noalias", store.uri).versions] == [2, 1]
    assert "FAIL" in capsys.readouterr().out


def test_unknown_model_is_an_error_without_traceback(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["registry", "show", "no-such-model", "--uri", store.uri]) == 1
    assert "error: no registered model named 'no-such-model'" in capsys.readouterr().err


def test_compare_marks_differing_params(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [str(store.baseline.run_dir), str(store.wider.run_dir)]
    assert main(["compare", *runs, "--format", "csv", "--sort", "test_accuracy", "--descending"]) == 0
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert rows["model.hidden"]["differs"] == "*" and rows["training.lr"]["differs"] == ""
    assert rows["model.hidden"][store.baseline.run_dir.name] == "[16]"
    assert rows["model.hidden"][store.wider.run_dir.name] == "[32]"
    assert float(rows["test_accuracy"][store.wider.run_dir.name]) == store.wider.test_metrics["test_accuracy"]

    assert main(["compare", *runs, "--format", "markdown", "--diff-only"]) == 0
    markdown = capsys.readouterr().out
    assert "| **model.hidden** \\* | [16] | [32] |" in markdown and "training.lr" not in markdown
    assert main(["compare", *runs]) == 0
    assert "model.hidden *" in capsys.readouterr().out

    assert main(["compare", "--experiment", "registry-tests", "--uri", store.uri, "--format", "csv"]) == 0
    from_mlflow = {row["name"]: row for row in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert from_mlflow["model.hidden"]["differs"] == "*"
    assert main(["compare", *runs, "--sort", "test_acc"]) == 2
    assert "Did you mean 'test_accuracy'?" in capsys.readouterr().err
    assert main(["compare"]) == 2


def test_ui_prints_the_url_then_runs_mlflow_ui_on_the_local_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    executed: list[list[str]] = []
    monkeypatch.setattr("kiln.cli.ui_cmd.os.execv", lambda path, argv: executed.append(list(argv)))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    output = tmp_path / "runs"
    assert main(["ui", "--output-dir", str(output), "--port", "5001"]) == 0
    db = f"sqlite:///{(output / 'mlflow.db').resolve()}"
    assert f"MLflow UI for {db} at http://127.0.0.1:5001" in capsys.readouterr().out
    assert executed == [[sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", db,
                         "--default-artifact-root", (output / "mlartifacts").resolve().as_uri(),
                         "--host", "127.0.0.1", "--port", "5001", "--workers", "1"]]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert main(["ui"]) == 0 and len(executed) == 1
    assert "open http://tracking.example:5000" in capsys.readouterr().out


def test_the_default_store_follows_the_runs_output_dir(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kiln.config.schema import RunConfig
    from kiln.registry import registry_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    output = store.root / "runs"  # the runs' run.output_dir: training tracked into its mlflow.db
    assert registry_uri(None, output) == store.uri
    assert registry_uri() == f"sqlite:///{(RunConfig().output_dir / 'mlflow.db').resolve()}"
    register_run(store.baseline.run_dir, "by-output-dir")
    assert main(["registry", "list", "--output-dir", str(output)]) == 0
    assert "by-output-dir" in capsys.readouterr().out
    elsewhere = tmp_path / "runs"
    assert main(["registry", "list", "--output-dir", str(elsewhere)]) == 1
    assert f"no MLflow store at {(elsewhere / 'mlflow.db').resolve()}" in capsys.readouterr().err
    assert main(["registry", "list", "--output-dir", str(output), "--uri", "sqlite:///" + str(elsewhere)]) == 1
    capsys.readouterr()  # --uri wins over --output-dir
