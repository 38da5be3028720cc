"""``kiln monitor assets``: thresholds from options, the model's gate.require or the defaults;
rules that Debian's ``promtool`` accepts and whose alerts fire when they should (``promtool test
rules`` on input series); a dashboard whose JSON holds together.

The server side (every dashboard metric is one ``kiln serve`` exports; a real Prometheus loading
the rules and scraping a real server) is in test_prometheus.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from kiln.cli.main import main
from kiln.errors import UsageError
from kiln.monitor.assets import DASHBOARD_FILE, RULES_FILE, thresholds, write_assets
from kiln.monitor.assets_dashboard import DATASOURCE, dashboard, queries
from kiln.monitor.assets_rules import rules
from tests.conftest import require_tool
from tests.eval.test_gate_run import set_gate_require

PROMTOOL = shutil.which("promtool")
GATE = ("test_accuracy>=0.85", "latency_p99_ms<80", "best_val_loss<5")


def need_promtool() -> str:
    require_tool(PROMTOOL is not None, "promtool (Debian's prometheus package; .ci/run installs it)")
    assert PROMTOOL is not None
    return PROMTOOL


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need_promtool(), *map(str, args)], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def gated_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared run with a gate.require in its config, as a project's CI would set it."""
    copy = tmp_path_factory.mktemp("gated") / trained_run.name
    shutil.copytree(trained_run, copy)
    set_gate_require(copy, *GATE)
    return copy


# --- thresholds --------------------------------------------------------------------------------


def test_thresholds_come_from_the_gate_where_it_bounds_them() -> None:
    t = thresholds(GATE)
    assert (t.accuracy.value, t.accuracy.alert_op, t.accuracy.source) == (0.85, "<", "gate.require 'test_accuracy>=0.85'")
    assert (t.latency_p99_ms.value, t.latency_p99_ms.alert_op) == (80, ">=")  # passes under 80: fires from 80
    assert (t.error_rate.value, t.error_rate.source) == (0.01, "default")
    assert (t.drift_psi.value, t.min_samples) == (0.2, 100)
    # the test split's accuracy is preferred to validation's, and '>' fires at the threshold itself
    assert thresholds(["val_accuracy>=0.8", "test_accuracy>0.9"]).accuracy.value == 0.9
    assert thresholds(["val_accuracy>=0.8", "test_accuracy>0.9"]).accuracy.alert_op == "<="
    # neither another metric that ends in accuracy nor an upper bound on accuracy is a floor
    for criteria in (["balanced_accuracy>=0.99"], ["test_accuracy<=0.99"], ["test_accuracy==0.9"]):
        assert thresholds(criteria).accuracy.source == "default", criteria


def test_an_option_wins_over_the_gate_and_bad_values_are_usage_errors() -> None:
    t = thresholds(GATE, {"accuracy": 0.7, "latency_p99_ms": None, "drift_psi": 0.3})
    assert (t.accuracy.value, t.accuracy.source) == (0.7, "--accuracy-threshold")
    assert t.latency_p99_ms.source == "gate.require 'latency_p99_ms<80'"  # None: not given
    assert (t.drift_psi.value, t.drift_psi.source) == (0.3, "--drift-psi")
    with pytest.raises(UsageError, match=r"--accuracy-threshold is a share: between 0 and 1, got 1.5; "
                                         r"--latency-p99-ms must be positive, got 0"):
        thresholds((), {"accuracy": 1.5, "latency_p99_ms": 0})
    with pytest.raises(UsageError, match="--min-samples must be a whole number"):
        thresholds((), {"min_samples": 0})


def test_the_cli_takes_the_runs_gate_and_says_where_each_threshold_came_from(
        gated_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "assets", str(gated_run), "--output", str(tmp_path / "out"), "--error-rate", "0.05"]) == 0
    out = capsys.readouterr().out
    assert f"gate.require: {', '.join(GATE)}" in out
    assert "accuracy        alert when < 0.85  (gate.require 'test_accuracy>=0.85')" in out
    assert "5xx share       alert when > 0.05  (--error-rate)" in out
    exprs = {r["alert"]: r["expr"] for r in _rules(tmp_path / "out" / RULES_FILE)}
    assert exprs["KilnAccuracyBelowGate"] == "kiln_model_accuracy < 0.85\nand kiln_model_accuracy_samples >= 100"
    assert exprs["KilnHighLatencyP99"].endswith("\n>= 0.08")
    assert exprs["KilnHighErrorRate"].endswith("\n> 0.05")
    model = json.loads((tmp_path / "out" / DASHBOARD_FILE).read_text())
    assert model["title"] == f"kiln serving: {gated_run.name}"
    assert _threshold_steps(model, "Live accuracy") == [None, 0.85]


def test_the_cli_refuses_bad_arguments_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "assets", "--output", str(tmp_path), "--error-rate", "5"]) == 2
    assert "--error-rate is a share: between 0 and 1, got 5" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["monitor", "assets", "--output", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["monitor", "assets", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")
def test_a_registry_alias_gives_the_gate_of_the_run_behind_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from kiln.registry.register import register_run
    from kiln.testing import tiny_config
    from kiln.train import Trainer

    output = tmp_path / "runs"
    uri = f"sqlite:///{(output / 'mlflow.db').resolve()}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The ``noload`` loader strategy", category=DeprecationWarning)
        result = Trainer(tiny_config(output, f"tracking.uri={uri}", "tracking.system_metrics=false",
                                     "checkpoint.enabled=false", "gate.require=['val_accuracy>=0.6']",
                                     backends=("jsonl", "mlflow")), quiet=True).fit()
        register_run(result.run_dir, "watched-digits", alias="production", uri=uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["monitor", "assets", "models:/watched-digits@production", "--output", str(tmp_path / "out")]) == 0
    assert "alert when < 0.6  (gate.require 'val_accuracy>=0.6')" in capsys.readouterr().out
    model = json.loads((tmp_path / "out" / DASHBOARD_FILE).read_text())
    assert model["title"] == "kiln serving: models:/watched-digits@production"


# --- the rules, through promtool ---------------------------------------------------------------


def test_promtool_checks_the_rules_with_and_without_a_gate_and_refuses_a_broken_one(tmp_path: Path) -> None:
    for name, criteria in (("gated", GATE), ("defaults", ())):
        write_assets(tmp_path / name, thresholds(criteria))
        checked = promtool("check", "rules", tmp_path / name / RULES_FILE)
        assert checked.returncode == 0 and "SUCCESS: 5 rules found" in checked.stdout, checked.stdout + checked.stderr
    text = (tmp_path / "gated" / RULES_FILE).read_text()
    assert "rate(kiln_requests_total" in text
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace("rate(kiln_requests_total", "rate((kiln_requests_total", 1))
    checked = promtool("check", "rules", broken)
    assert checked.returncode != 0 and "parse error" in checked.stdout + checked.stderr, checked.stdout


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in {"job": "kiln", **labels}.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _alert_test(written: dict[str, Any]) -> dict[str, Any]:
    """promtool unit tests of every alert: one instance that breaches each bound, others that
    stay inside it or lack the feedback to judge; before ``for:`` has passed nothing fires."""
    r = {a["alert"]: a["annotations"] for a in written["groups"][0]["rules"]}

    def expect(alert: str, instance: str, value: str, **labels: str) -> dict[str, Any]:
        def render(text: str) -> str:  # the annotation as Prometheus renders it for this alert
            text = re.sub(r"\{\{ \$value[^}]*\}\}", value, text)
            return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: {"instance": instance, **labels}[m[1]], text)

        return {"exp_labels": {"severity": "critical" if alert in ("KilnAccuracyBelowGate", "KilnHighErrorRate")
                               else "warning", "job": "kiln", "instance": instance, **labels},
                "exp_annotations": {k: render(v) for k, v in r[alert].items()}}

    n = "30"  # minutes of samples, one a minute
    series = [
        # accuracy 0.8 < 0.9 with 500 labels: fires; 0.95: does not; 0.5 on 10 labels: too few to say
        _series("kiln_model_accuracy", f"0.8x{n}", instance="low"),
        _series("kiln_model_accuracy_samples", f"500x{n}", instance="low"),
        _series("kiln_model_accuracy", f"0.95x{n}", instance="high"),
        _series("kiln_model_accuracy_samples", f"500x{n}", instance="high"),
        _series("kiln_model_accuracy", f"0.5x{n}", instance="few"),
        _series("kiln_model_accuracy_samples", f"10x{n}", instance="few"),
        # drift: one feature over 0.2, one under; the predicted classes over 0.2 on one server only
        _series("kiln_input_drift_psi", f"0.35x{n}", instance="low", feature="feature_0"),
        _series("kiln_input_drift_psi", f"0.05x{n}", instance="low", feature="feature_1"),
        _series("kiln_prediction_drift_psi", f"0.3x{n}", instance="low"),
        _series("kiln_prediction_drift_psi", f"0.1x{n}", instance="high"),
        # 5 server errors a minute among 105 API answers on "low"; "high" fails only /ready (by design)
        _series("kiln_requests_total", f"0+100x{n}", instance="low", endpoint="/predict", status="200"),
        _series("kiln_requests_total", f"0+5x{n}", instance="low", endpoint="/predict", status="500"),
        _series("kiln_requests_total", f"0+100x{n}", instance="high", endpoint="/predict", status="200"),
        _series("kiln_requests_total", f"0+50x{n}", instance="high", endpoint="/ready", status="503"),
        # "low": half the requests take 0.5-1 s, p99 = 0.99 s > 0.5 s; "high": all under 0.1 s
        *(_series("kiln_request_duration_seconds_bucket", f"0+{c}x{n}", instance="low", endpoint="/predict", le=le)
          for le, c in (("0.1", 100), ("0.5", 100), ("1.0", 200), ("+Inf", 200))),
        *(_series("kiln_request_duration_seconds_bucket", f"0+{c}x{n}", instance="high", endpoint="/predict", le=le)
          for le, c in (("0.1", 100), ("0.5", 100), ("1.0", 100), ("+Inf", 100))),
    ]
    late = [
        ("KilnAccuracyBelowGate", [expect("KilnAccuracyBelowGate", "low", "80%")]),
        ("KilnInputDrift", [expect("KilnInputDrift", "low", "0.35", feature="feature_0")]),
        ("KilnPredictionDrift", [expect("KilnPredictionDrift", "low", "0.30")]),
        ("KilnHighErrorRate", [expect("KilnHighErrorRate", "low", "4.762%")]),
        ("KilnHighLatencyP99", [expect("KilnHighLatencyP99", "low", "990ms")]),
    ]
    alerts = [{"eval_time": "20m", "alertname": name, "exp_alerts": exp} for name, exp in late]
    # before each for: (15m, 15m, 5m, 10m) has passed since the breach began, none fires
    early = {"KilnAccuracyBelowGate": "14m", "KilnInputDrift": "14m", "KilnPredictionDrift": "14m",
             "KilnHighErrorRate": "4m", "KilnHighLatencyP99": "9m"}
    alerts += [{"eval_time": at, "alertname": name, "exp_alerts": []} for name, at in early.items()]
    return {"rule_files": [RULES_FILE], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": alerts}]}


def test_promtool_unit_tests_pin_when_each_alert_fires(tmp_path: Path) -> None:
    need_promtool()
    write_assets(tmp_path, thresholds())  # defaults: accuracy 0.9, PSI 0.2, 1% 5xx, 500 ms p99
    written = yaml.safe_load((tmp_path / RULES_FILE).read_text())
    (tmp_path / "test.yml").write_text(yaml.safe_dump(_alert_test(written), sort_keys=False))
    tested = promtool("test", "rules", tmp_path / "test.yml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr

    # the same expectations against rules with another accuracy bound fail: the test can tell
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(rules(thresholds((), {"accuracy": 0.75}))))
    tested = promtool("test", "rules", tmp_path / "test.yml")
    assert tested.returncode != 0 and "KilnAccuracyBelowGate" in tested.stdout + tested.stderr


# --- the dashboard -----------------------------------------------------------------------------


def test_the_dashboard_is_a_grafana_model_that_holds_together(tmp_path: Path) -> None:
    limits = thresholds(GATE)
    write_assets(tmp_path, limits)
    model = json.loads((tmp_path / DASHBOARD_FILE).read_text())
    assert model == json.loads(json.dumps(dashboard(limits)))
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource" and variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = model["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:  # on the 24-column grid, no two panels overlap
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, panel["title"]
        cells |= mine
        for target in panel.get("targets", []):
            assert panel["datasource"] == target["datasource"] == DATASOURCE, panel["title"]
    titles = [p["title"] for p in panels if p["type"] != "row"]
    for wanted in ("Request rate", "5xx share (/predict, /feedback)", "/predict latency", "Live accuracy",
                   "Feedback in the accuracy window", "Recall per true class", "Input drift (PSI per feature)",
                   "Prediction drift (PSI)", "Predicted classes (share)", "Top-1 confidence (drift window)"):
        assert wanted in titles
    latency = next(p for p in panels if p["title"] == "/predict latency")
    assert [t["legendFormat"] for t in latency["targets"]] == ["p50", "p95", "p99"]
    assert all("kiln_request_duration_seconds_bucket" in t["expr"] for t in latency["targets"])
    assert _threshold_steps(model, "/predict latency") == [None, 0.08]
    assert _threshold_steps(model, "Input drift (PSI per feature)") == [None, 0.2]
    assert _threshold_steps(model, "Prediction drift (PSI)") == [None, 0.2]
    for expr in queries(model):  # every variable a query uses is defined (or one of Grafana's own)
        for used in re.findall(r"\$(\w+)", expr):
            assert used in variables or used == "__rate_interval", (used, expr)
        assert re.findall(r"\bkiln_\w+", expr), expr


def _rules(path: Path) -> list[dict[str, Any]]:
    rules_: list[dict[str, Any]] = yaml.safe_load(path.read_text())["groups"][0]["rules"]
    return rules_


def _threshold_steps(model: dict[str, Any], title: str) -> list[float | None]:
    panel = next(p for p in model["panels"] if p["title"] == title)
    return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]
