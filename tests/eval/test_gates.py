"""Quality gates: parsing, checking, margins and the messages a user reads."""

from __future__ import annotations

import math

import pytest

from kiln.errors import ConfigError, KilnError
from kiln.runs.gates import (
    COLUMNS,
    Gate,
    all_passed,
    describe_failures,
    evaluate_gates,
    gate_rows,
    metrics_from_summary,
    parse_gate,
    parse_gates,
)
from kiln.runs.summary import RunSummary
from tests.runs.summaries import summary_dict


@pytest.mark.parametrize(
    ("text", "gate"),
    [
        ("test_accuracy>=0.98", Gate("test_accuracy", ">=", 0.98)),
        ("  val_loss <= 0.5 ", Gate("val_loss", "<=", 0.5)),
        ("val_loss<1e-2", Gate("val_loss", "<", 0.01)),
        ("best_val_accuracy > .9", Gate("best_val_accuracy", ">", 0.9)),
        ("epoch==3", Gate("epoch", "==", 3.0)),
        ("system/cpu_percent <= -1", Gate("system/cpu_percent", "<=", -1.0)),
    ],
)
def test_parse(text: str, gate: Gate) -> None:
    assert parse_gate(text) == gate


@pytest.mark.parametrize("text", ["test_accuracy=>0.9", "test_accuracy", ">=0.9", "acc >= high", "acc != 1", "acc >= 0.9 0.8", "acc>=nan"])
def test_bad_syntax_names_the_gate_and_the_syntax(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_gate(text)
    message = str(caught.value)
    assert repr(text) in message and "METRIC OP NUMBER" in message and "'test_accuracy>=0.98'" in message
    assert isinstance(caught.value, KilnError) and caught.value.exit_code == 2


def test_every_bad_gate_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_gates(["a>=1", "b=>2", "c<3", "d>>4"])
    assert "'b=>2'" in str(caught.value) and "'d>>4'" in str(caught.value) and "'a>=1'" not in str(caught.value)


def test_evaluate_with_margins() -> None:
    gates = parse_gates(["acc>=0.9", "acc>0.95", "loss<=0.2", "loss<0.1", "epochs==3"])
    results = evaluate_gates(gates, {"acc": 0.95, "loss": 0.25, "epochs": 3})
    assert [r.passed for r in results] == [True, False, False, False, True]
    assert [r.margin for r in results] == pytest.approx([0.05, 0.0, -0.05, -0.15, 0.0])
    assert not all_passed(results) and all_passed(results[:1])
    assert all_passed([])


def test_equality_tolerates_the_last_bits_and_nan_never_passes() -> None:
    (close,) = evaluate_gates([parse_gate("x==0.3")], {"x": 0.1 + 0.2})
    assert close.passed
    (nan,) = evaluate_gates([parse_gate("x<=1")], {"x": math.nan})
    assert not nan.passed


def test_unknown_metric_fails_listing_the_known_ones() -> None:
    (result,) = evaluate_gates([parse_gate("test_acuracy>=0.9")], {"test_accuracy": 0.99, "val_loss": 0.1})
    assert not result.passed and result.measured is None and result.margin is None
    assert result.note == "metric 'test_acuracy' was not measured. Did you mean 'test_accuracy'? Known: test_accuracy, val_loss"


def test_rows_and_failure_description() -> None:
    results = evaluate_gates(parse_gates(["acc>=0.98", "loss<1", "f1>0.5"]), {"acc": 0.9, "loss": 0.5})
    rows = gate_rows(results)
    assert len(COLUMNS) == len(rows[0])
    assert rows[0][:4] == ["acc", ">= 0.98", 0.9, "FAIL"] and rows[0][4] == pytest.approx(-0.08)
    assert rows[1][3] == "PASS" and rows[2][2] is None and "not measured" in rows[2][4]
    text = describe_failures(results)
    assert text.splitlines()[0] == "acc>=0.98: measured 0.9, short by 0.08"
    assert text.splitlines()[1].startswith("f1>0.5: metric 'f1' was not measured")
    assert len(text.splitlines()) == 2
    assert results[0].to_dict()["gate"] == "acc>=0.98"


def test_metrics_from_summary() -> None:
    summary = RunSummary.model_validate(summary_dict(
        best={"monitor": "val_loss", "mode": "min", "value": 0.2, "epoch": 3, "metrics": {"val_loss": 0.2, "epoch": 3}},
        final={"val_loss": 0.3, "train_accuracy": 0.9, "lr": 0.01, "bad": math.nan},
        test={"test_accuracy": 0.95},
    ))
    assert metrics_from_summary(summary) == {
        "best_val_loss": 0.2, "best_epoch": 3.0, "val_loss": 0.3, "train_accuracy": 0.9, "lr": 0.01,
        "test_accuracy": 0.95,
    }
    assert metrics_from_summary(RunSummary.model_validate(summary_dict(best={}, final={}, test={}))) == {}
