"""A Grafana dashboard for ``kiln serve``, as the JSON model Grafana imports.

Three rows: traffic (request rate, 5xx share, ``/predict`` latency p50/p95/p99), quality (live
accuracy with its feedback count, recall per class) and drift (input PSI per feature, prediction
PSI, the predicted-class mix, top-1 confidence). The alert thresholds are drawn as lines, so a
panel shows how close a server is to paging someone.

Variables: ``DS_PROMETHEUS`` (a datasource variable, so the file imports as is, from the UI or a
provisioning folder, and the data source is picked from a list), ``model`` and ``instance``. kiln's
metrics carry no model label (a server serves one model); ``kiln_model_info{name}`` says which
model each instance serves, so ``model`` picks a name and ``instance`` the servers serving it,
and every query selects ``instance=~"$instance"``.
"""

from __future__ import annotations

from typing import Any

from kiln.monitor.assets import Thresholds

UID = "kiln-serving"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
INSTANCE = 'instance=~"$instance"'
API = 'endpoint=~"/predict|/feedback"'
RATE = "$__rate_interval"
WIDTH = 24  # Grafana's grid is 24 columns wide


def dashboard(limits: Thresholds, title: str = "kiln serving") -> dict[str, Any]:
    """The dashboard's JSON model, with ``limits`` drawn as threshold lines."""
    layout = _Layout()
    rows = [
        ("Traffic", [_request_rate(), _error_rate(limits), _latency(limits)]),
        ("Quality", [_model_info(), _accuracy(limits), _samples(limits), _recall()]),
        ("Drift", [_input_drift(limits), _prediction_drift(limits), _drift_samples(), _classes(),
                   _confidence()]),
    ]
    panels: list[dict[str, Any]] = []
    for row_title, row in rows:
        panels.append(layout.row(row_title))
        panels.extend(layout.place(panel) for panel in row)
    return {
        "title": title, "uid": UID, "tags": ["kiln", "serving"], "editable": True,
        "schemaVersion": 39, "version": 1, "timezone": "browser", "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"}, "graphTooltip": 1,
        "description": "kiln serve: traffic, live accuracy from POST /feedback, and drift against "
                       "the training data. Written by kiln monitor assets.",
        "annotations": {"list": []}, "links": [],
        "templating": {"list": _variables()},
        "panels": panels,
    }


def queries(model: dict[str, Any]) -> list[str]:
    """Every PromQL expression in a dashboard model: panel targets and variable queries."""
    found = [t["expr"] for p in model["panels"] for t in p.get("targets", [])]
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable["query"]["query"])
    return found


def _variables() -> list[dict[str, Any]]:
    def query(name: str, label: str, expr: str) -> dict[str, Any]:
        return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
                "query": {"query": expr, "refId": f"{name}-values"}, "definition": expr,
                "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*", "sort": 1,
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}

    return [
        {"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": ""},
        query("model", "Model", "label_values(kiln_model_info, name)"),
        query("instance", "Instance", 'label_values(kiln_model_info{name=~"$model"}, instance)'),
    ]


def _target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend or "__auto",
            "refId": ref, "range": True, **extra}


def _lines(steps: list[tuple[str, float | None]]) -> dict[str, Any]:
    """Threshold steps drawn as lines: ``[(colour, from value)]``, the first from -inf (None)."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def _timeseries(title: str, description: str, targets: list[dict[str, Any]], unit: str,
                thresholds: dict[str, Any] | None = None, width: int = 8, **custom: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit, "custom": {"drawStyle": "line", "lineWidth": 1,
                                                         "fillOpacity": 10, "showPoints": "never",
                                                         **custom}}
    if thresholds is not None:
        defaults["thresholds"] = thresholds
        defaults["custom"]["thresholdsStyle"] = {"mode": "line"}
    if unit == "percentunit":
        defaults.update(min=0, max=1)
    return {"type": "timeseries", "title": title, "description": description,
            "datasource": DATASOURCE, "targets": targets, "_width": width,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def _request_rate() -> dict[str, Any]:
    expr = f"sum by (endpoint) (rate(kiln_requests_total{{{INSTANCE}}}[{RATE}]))"
    return _timeseries("Request rate", "Requests answered per second, by endpoint.",
                       [_target(expr, "{{endpoint}}")], "reqps")


def _error_rate(t: Thresholds) -> dict[str, Any]:
    def rate(*matchers: str) -> str:
        return f"sum(rate(kiln_requests_total{{{','.join((INSTANCE, API, *matchers))}}}[{RATE}]))"

    server_errors = rate('status=~"5.."')
    expr = f"({server_errors} or vector(0)) / {rate()}"  # 0, not "no data", before the first 5xx
    return _timeseries("5xx share (/predict, /feedback)",
                       f"Share of API answers that are server errors; KilnHighErrorRate fires over "
                       f"{t.error_rate.value:g} for {_for('errors')}.",
                       [_target(expr, "5xx share")], "percentunit",
                       _lines([("green", None), ("red", t.error_rate.value)]))


def _latency(t: Thresholds) -> dict[str, Any]:
    buckets = f"sum by (le) (rate(kiln_request_duration_seconds_bucket{{{INSTANCE},endpoint=\"/predict\"}}[{RATE}]))"
    targets = [_target(f"histogram_quantile({q}, {buckets})", f"p{round(q * 100)}", ref)
               for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))]
    return _timeseries("/predict latency", f"Percentiles of the time from request to full response; "
                       f"KilnHighLatencyP99 fires when p99 passes {t.latency_p99_ms.value:g} ms for "
                       f"{_for('latency')}.", targets, "s",
                       _lines([("green", None), ("red", t.latency_p99_ms.value / 1000)]))


def _model_info() -> dict[str, Any]:
    expr = f"kiln_model_info{{{INSTANCE}}}"
    return {"type": "table", "title": "Served model", "_width": 24, "_height": 4,
            "description": "What each instance serves: name, version, backend, run and the "
                           "export's parity check.",
            "datasource": DATASOURCE, "targets": [_target(expr, "", format="table", instant=True,
                                                          range=False)],
            "transformations": [{"id": "organize", "options": {
                "excludeByName": {"Time": True, "Value": True, "__name__": True},
                "indexByName": {"instance": 0, "name": 1, "version": 2, "backend": 3, "parity": 4, "run": 5}}}],
            "fieldConfig": {"defaults": {}, "overrides": []}, "options": {"showHeader": True}}


def _accuracy(t: Thresholds) -> dict[str, Any]:
    return _timeseries("Live accuracy", f"Share right among the last --accuracy-window feedback "
                       f"labels; KilnAccuracyBelowGate fires under {t.accuracy.value:g} "
                       f"({t.accuracy.source}) for {_for('accuracy')}, once {t.min_samples} labels "
                       f"are in the window.",
                       [_target(f"kiln_model_accuracy{{{INSTANCE}}}", "{{instance}}")], "percentunit",
                       _lines([("red", None), ("green", t.accuracy.value)]), width=10)


def _samples(t: Thresholds) -> dict[str, Any]:
    return {"type": "stat", "title": "Feedback in the accuracy window", "_width": 4,
            "description": f"kiln_model_accuracy_samples: the accuracy alert waits for "
                           f"{t.min_samples}.",
            "datasource": DATASOURCE,
            "targets": [_target(f"kiln_model_accuracy_samples{{{INSTANCE}}}", "{{instance}}")],
            "fieldConfig": {"defaults": {"unit": "none", "thresholds": _lines(
                [("orange", None), ("green", t.min_samples)])}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "auto"}}


def _recall() -> dict[str, Any]:
    return _timeseries("Recall per true class", "Per class with feedback in the window, the share "
                       "the model predicted right: which classes the accuracy loses.",
                       [_target(f"kiln_class_recall{{{INSTANCE}}}", "{{class}}")], "percentunit",
                       width=10)


def _input_drift(t: Thresholds) -> dict[str, Any]:
    return _timeseries("Input drift (PSI per feature)",
                       f"Population stability index of each input feature (or image channel "
                       f"statistic) against the training data; KilnInputDrift fires over "
                       f"{t.drift_psi.value:g} for {_for('drift')}.",
                       [_target(f"kiln_input_drift_psi{{{INSTANCE}}}", "{{feature}}"),
                        _target(f"kiln_input_drift_psi_max{{{INSTANCE}}}", "max", "B")], "none",
                       _lines([("green", None), ("red", t.drift_psi.value)]), width=10)


def _prediction_drift(t: Thresholds) -> dict[str, Any]:
    return _timeseries("Prediction drift (PSI)",
                       f"PSI of the predicted-class mix against the validation split's; "
                       f"KilnPredictionDrift fires over {t.drift_psi.value:g} for {_for('drift')}.",
                       [_target(f"kiln_prediction_drift_psi{{{INSTANCE}}}", "{{instance}}")], "none",
                       _lines([("green", None), ("red", t.drift_psi.value)]), width=10)


def _drift_samples() -> dict[str, Any]:
    return {"type": "stat", "title": "Predictions in the drift window", "_width": 4,
            "description": "kiln_drift_window_samples: the PSI gauges appear from 100 predictions "
                           "(kiln serve --drift-window bounds the window).",
            "datasource": DATASOURCE,
            "targets": [_target(f"kiln_drift_window_samples{{{INSTANCE}}}", "{{instance}}")],
            "fieldConfig": {"defaults": {"unit": "none"}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "auto"}}


def _classes() -> dict[str, Any]:
    expr = f"sum by (class) (rate(kiln_predictions_total{{{INSTANCE}}}[{RATE}]))"
    return _timeseries("Predicted classes (share)", "The mix of predicted classes, stacked to 100%.",
                       [_target(expr, "{{class}}")], "percentunit", width=12,
                       stacking={"mode": "percent", "group": "A"}, fillOpacity=60)


def _confidence() -> dict[str, Any]:
    expr = f"sum by (le) (kiln_prediction_confidence_bucket{{{INSTANCE}}})"
    return {"type": "bargauge", "title": "Top-1 confidence (drift window)", "_width": 12,
            "description": "How many predictions of the drift window fall under each top-1 "
                           "probability bound (cumulative buckets): mass moving left means the "
                           "model is less sure than it was.",
            "datasource": DATASOURCE,
            "targets": [_target(expr, "{{le}}", format="heatmap", instant=True, range=False)],
            "fieldConfig": {"defaults": {"unit": "none", "min": 0}, "overrides": []},
            "options": {"orientation": "vertical", "displayMode": "gradient",
                        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}}


def _for(alert: str) -> str:
    from kiln.monitor.assets_rules import FOR

    return FOR[alert]


class _Layout:
    """Gives each panel an id and a ``gridPos``, left to right, wrapping at the grid's width."""

    def __init__(self) -> None:
        self.next_id, self.x, self.y, self.height = 1, 0, 0, 0

    def row(self, title: str) -> dict[str, Any]:
        self._wrap()
        panel = {"type": "row", "title": title, "id": self._id(), "collapsed": False, "panels": [],
                 "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": self.y}}
        self.y += 1
        return panel

    def place(self, panel: dict[str, Any]) -> dict[str, Any]:
        width, height = panel.pop("_width", 8), panel.pop("_height", 8)
        if self.x + width > WIDTH:
            self._wrap()
        panel = {"id": self._id(), "gridPos": {"h": height, "w": width, "x": self.x, "y": self.y}, **panel}
        self.x += width
        self.height = max(self.height, height)
        return panel

    def _wrap(self) -> None:
        self.x, self.y, self.height = 0, self.y + self.height, 0

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1
