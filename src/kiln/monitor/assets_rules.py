"""Prometheus alert rules for ``kiln serve``, as the dict a ``rule_files`` YAML holds.

Five alerts, each with a ``for:`` (a breach must last before anyone is paged), a ``severity``
label and annotations whose description names the fix:

- ``KilnAccuracyBelowGate`` (critical): ``kiln_model_accuracy`` under the gate's threshold, only
  while ``kiln_model_accuracy_samples`` holds enough feedback labels to mean something;
- ``KilnInputDrift`` and ``KilnPredictionDrift`` (warning): a PSI over the drift bound;
- ``KilnHighErrorRate`` (critical): the share of 5xx answers of ``/predict`` and ``/feedback`` (the
  API; ``/ready`` answers 503 by design while a server starts or stops);
- ``KilnHighLatencyP99`` (warning): ``/predict``'s p99 from ``kiln_request_duration_seconds``.

Ratios and quantiles are taken per ``job`` and ``instance``: one server's trouble is its own alert,
not averaged away by its healthy neighbours.
"""

from __future__ import annotations

from typing import Any

from kiln.monitor.assets import Bound, Thresholds

GROUP = "kiln-serving"
RATE_WINDOW = "5m"
API = "/predict|/feedback"
FOR = {"accuracy": "15m", "drift": "15m", "errors": "5m", "latency": "10m"}


def selector(metric: str, limits: Thresholds, *matchers: str) -> str:
    """``metric{matchers}``, scoped to ``limits.job`` when one is set."""
    scoped = ([f'job="{limits.job}"'] if limits.job else []) + list(matchers)
    return f"{metric}{{{','.join(scoped)}}}" if scoped else metric


def rules(limits: Thresholds) -> dict[str, Any]:
    """The rule file: one group of alerting rules using ``limits``."""
    return {"groups": [{"name": GROUP, "rules": [
        _accuracy(limits), _input_drift(limits), _prediction_drift(limits),
        _errors(limits), _latency(limits),
    ]}]}


def _accuracy(t: Thresholds) -> dict[str, Any]:
    expr = (f"{selector('kiln_model_accuracy', t)} {t.accuracy.alert_op} {t.accuracy.value:g}\n"
            f"and {selector('kiln_model_accuracy_samples', t)} >= {t.min_samples}")
    return _alert(
        "KilnAccuracyBelowGate", expr, FOR["accuracy"], "critical",
        summary="Live accuracy {{ $value | humanizePercentage }} on {{ $labels.instance }} is under "
                f"{t.accuracy.value:g} ({_from(t.accuracy)})",
        description=(
            f"Among the last feedback labels (at least {t.min_samples}, kiln serve "
            "--accuracy-window), the served model is right {{ $value | humanizePercentage }} of "
            f"the time; it was shipped at {t.accuracy.value:g} or better. Find what it gets wrong: "
            "kiln_class_recall per class, `kiln monitor export STATE_DIR` for the predictions with "
            "their labels, and the drift alerts. Then retrain on recent labelled data and promote "
            "the new version (kiln train, kiln gate, kiln registry promote), or point the serving "
            "alias back at the previous version."),
    )


def _input_drift(t: Thresholds) -> dict[str, Any]:
    return _alert(
        "KilnInputDrift", f"{selector('kiln_input_drift_psi', t)} > {t.drift_psi.value:g}",
        FOR["drift"], "warning",
        summary="Input drift on {{ $labels.instance }}: PSI of {{ $labels.feature }} is "
                f"{{{{ $value | printf \"%.2f\" }}}} (bound {t.drift_psi.value:g})",
        description=(
            "Live inputs no longer look like the training data for {{ $labels.feature }} "
            "(population stability index against the model's reference statistics, over "
            "kiln serve's --drift-window). Compare the distributions with `kiln monitor report`; "
            "check the client and the data pipeline first (units, scaling, missing values, a new "
            "source). If the world really changed, retrain on recent data."),
    )


def _prediction_drift(t: Thresholds) -> dict[str, Any]:
    return _alert(
        "KilnPredictionDrift", f"{selector('kiln_prediction_drift_psi', t)} > {t.drift_psi.value:g}",
        FOR["drift"], "warning",
        summary="Prediction drift on {{ $labels.instance }}: predicted-class PSI "
                f"{{{{ $value | printf \"%.2f\" }}}} (bound {t.drift_psi.value:g})",
        description=(
            "The mix of predicted classes moved away from the validation split's. Look at the "
            "input drift and live accuracy: with input drift, fix or retrain as for that alert; "
            "without it and with accuracy holding, the class mix itself changed (season, a new "
            "user group): retrain on recent labelled data so the model's priors match."),
    )


def _errors(t: Thresholds) -> dict[str, Any]:
    def rate(*matchers: str) -> str:
        requests = selector("kiln_requests_total", t, f'endpoint=~"{API}"', *matchers)
        return f"sum by (job, instance) (rate({requests}[{RATE_WINDOW}]))"

    server_errors = rate('status=~"5.."')
    expr = f"{server_errors}\n/\n{rate()}\n{t.error_rate.alert_op} {t.error_rate.value:g}"
    return _alert(
        "KilnHighErrorRate", expr, FOR["errors"], "critical",
        summary="{{ $value | humanizePercentage }} of /predict and /feedback answers on "
                f"{{{{ $labels.instance }}}} are 5xx (bound {t.error_rate.value:g})",
        description=(
            "The server fails requests it should answer. Read kiln serve's log for the errors; "
            "a /feedback 5xx points at the state directory (disk full, permissions), a /predict "
            "one at the model or its backend. If a new model version started it, point the "
            "serving alias back at the previous version (kiln registry promote)."),
    )


def _latency(t: Thresholds) -> dict[str, Any]:
    seconds = t.latency_p99_ms.value / 1000
    buckets = selector("kiln_request_duration_seconds_bucket", t, 'endpoint="/predict"')
    expr = (f"histogram_quantile(0.99, sum by (job, instance, le) (rate({buckets}[{RATE_WINDOW}])))\n"
            f"{t.latency_p99_ms.alert_op} {seconds:g}")
    return _alert(
        "KilnHighLatencyP99", expr, FOR["latency"], "warning",
        summary="/predict p99 on {{ $labels.instance }} is {{ $value | humanizeDuration }} "
                f"(bound {t.latency_p99_ms.value:g} ms, {_from(t.latency_p99_ms)})",
        description=(
            "One request in a hundred waits longer than the bound. Check saturation: "
            "kiln_requests_in_progress and kiln_batch_size. Add --workers (one per core), lower "
            "--batch-wait-ms, or run more replicas; `kiln gate RUN --require latency_p99_ms<N` "
            "measures the model alone, to tell a slower model from a busier server."),
    )


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": for_, "labels": {"severity": severity},
            "annotations": {"summary": summary, "description": description}}


def _from(bound: Bound) -> str:
    return "default" if bound.source == "default" else f"from {bound.source}"
