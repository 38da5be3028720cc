"""``kiln monitor report``: training against live traffic on one self-contained HTML page.

For the newest model version in a prediction log (or ``version``), the last ``window`` logged
predictions are compared with the reference statistics training saved (:mod:`kiln.models.reference`):
each input column (features, or channel statistics and brightness for images), the predicted
classes (regression: the predicted value) and the top-1 confidence, each as bar charts of the
bins' shares with its PSI (:mod:`kiln.monitor.drift`). Images are embedded, there are no
scripts and nothing is fetched, like ``kiln report``'s page. The log is opened read-only.

The reference is the copy ``kiln serve`` wrote into the state directory for that version, or
else the package of the run given.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kiln._files import write_text
from kiln.errors import ModelError, PathError, UsageError
from kiln.models.reference import Reference, read_reference
from kiln.monitor.drift import MIN_SAMPLES, THRESHOLD, Drift, Window, compare, read_window
from kiln.monitor.export import find_log
from kiln.monitor.options import DEFAULT_DRIFT_WINDOW
from kiln.monitor.serving import reference_name
from kiln.monitor.store import connect

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.drift{color:#b00020;font-weight:600}.ok{color:#176f2c}.note{color:#8a5a00}
figure{margin:1rem 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#666;font-size:.9rem}
"""


@dataclass(frozen=True)
class MonitorReport:
    """What a report was written from: the model version, its window and the drift found."""

    path: Path
    model: str
    version: str
    drift: Drift


def build_monitor_report(source: Path, output: Path, *, window: int = DEFAULT_DRIFT_WINDOW,
                         version: str | None = None) -> MonitorReport:
    """Write the report for the log found at ``source`` (a state directory, a served run
    directory or a monitor.db) to ``output``."""
    if window < 1:
        raise UsageError(f"--window must be at least 1, got {window}")
    if not output.parent.is_dir():
        raise PathError(f"{output.parent} is not a directory: create it, or write elsewhere")
    db = find_log(source)
    connection = connect(db, readonly=True)
    try:
        model, version = _pick(connection, db, version)
        reference = _reference(source, db.parent, model, version)
        live = read_window(connection, model, version, window)
        first, last = connection.execute(
            "SELECT MIN(time), MAX(time) FROM (SELECT time FROM predictions WHERE model = ? AND "
            "version = ? ORDER BY time DESC, rowid DESC LIMIT ?)", (model, version, window)).fetchone()
    finally:
        connection.close()
    drift = compare(reference, live)
    overview = [("model", model), ("version", version), ("prediction log", db),
                ("reference", f"{reference.samples} samples of the {reference.split} split"),
                ("live window", f"the last {drift.samples} predictions (at most {window})"),
                ("from", _time(first)), ("to", _time(last))]
    body = [f"<h1>Monitor report: {_e(model)} {_e(version)}</h1>",
            "<h2>Overview</h2>" + _table(None, overview)]
    if drift.samples < MIN_SAMPLES:
        body.append(f'<p class="note">Only {drift.samples} predictions: under {MIN_SAMPLES}, a PSI '
                    "mostly measures sampling noise (/metrics does not publish it).</p>")
    body.append(_summary(reference, drift))
    body.append(_figures(reference, live, drift))
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>kiln monitor: {_e(model)} {_e(version)}</title><style>{STYLE}</style></head>\n"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")
    write_text(output, page)
    return MonitorReport(output, model, version, drift)


def _pick(connection: Any, db: Path, version: str | None) -> tuple[str, str]:
    """The newest (model, version) in the log, or the newest model logged with ``version``."""
    query = "SELECT model, version FROM predictions {} ORDER BY time DESC, rowid DESC LIMIT 1"
    row = (connection.execute(query.format(""), ()) if version is None else
           connection.execute(query.format("WHERE version = ?"), (version,))).fetchone()
    if row is None:
        versions = [v for (v,) in connection.execute("SELECT DISTINCT version FROM predictions")]
        if version is not None and versions:
            raise PathError(f"{db} holds no predictions of version {version!r}; it holds "
                            f"{', '.join(map(repr, versions))}")
        raise PathError(f"{db} holds no predictions yet: send some to kiln serve's /predict first")
    return str(row[0]), str(row[1])


def _reference(source: Path, state_dir: Path, model: str, version: str) -> Reference:
    """The state directory's copy for this version, else the package at ``source``."""
    from kiln.models.package_files import resolve_package_dir

    copy = state_dir / reference_name(model, version)
    reference = read_reference(copy)
    if reference is None:
        try:
            reference = read_reference(resolve_package_dir(source))
        except PathError:
            reference = None
    if reference is None:
        raise ModelError(f"no reference statistics for {model} version {version}: looked for {copy} "
                         f"and the model package at {source}",
                         hint="train the model with this kiln (it saves models/reference.json) and "
                              "serve it again, or pass the run directory")
    return reference


def _summary(reference: Reference, drift: Drift) -> str:
    rows: list[list[Any]] = []
    if drift.prediction is not None:
        what = "predicted classes" if reference.classes else "predicted value"
        rows.append([what, "", drift.prediction])
    if drift.confidence is not None:
        rows.append(["top-1 confidence", "", drift.confidence])
    for column, value in sorted(drift.inputs.items(), key=lambda kv: -kv[1]):
        rows.append([column, reference.names.get(column, ""), value])
    table = _table(["compared", "name", "PSI", f"over {THRESHOLD}"],
                   [[*r, _verdict(r[2])] for r in rows])
    return ("<h2>Drift (population stability index)</h2><p>PSI = &sum; (live - training) &times; ln(live / "
            f"training) over each bin's share; under 0.1 no shift, over {THRESHOLD} a shift worth "
            "an alert. Sorted by PSI, largest first.</p>" + table)


def _verdict(value: float) -> str:
    return "DRIFT" if value > THRESHOLD else "ok"


def _figures(reference: Reference, live: Window, drift: Drift) -> str:
    from kiln.monitor.report_plots import bin_labels, comparison_png

    figures = []
    if reference.classes and len(live.classes):
        counts = [float((live.classes == i).sum()) / len(live.classes) for i in range(len(reference.classes))]
        panels = [("predicted class", list(reference.classes), reference.class_proportions, counts, drift.prediction)]
        if reference.confidence is not None:
            c = reference.confidence
            panels.append(("top-1 confidence", bin_labels(c), c.proportions,
                           c.shares(live.confidence).tolist(), drift.confidence))
        figures.append(("predictions", comparison_png(panels, "Predictions: training (validation) against live")))
    elif reference.prediction is not None and len(live.values):
        p = reference.prediction
        panels = [("predicted value", bin_labels(p), p.proportions, p.shares(live.values).tolist(), drift.prediction)]
        figures.append(("predictions", comparison_png(panels, "Predictions: training (validation) against live")))
    inputs = [(_label(reference, name), bin_labels(b), b.proportions, b.shares(live.columns[name]).tolist(),
               drift.inputs[name]) for name, b in reference.inputs.items() if name in drift.inputs]
    if inputs:
        figures.append(("inputs", comparison_png(inputs, "Inputs: training against live, per bin of "
                                                         "the training data's deciles")))
    parts = []
    for caption, png in figures:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{_e(caption)}</figcaption></figure>")
    return "<h2>Plots</h2>" + "".join(parts) if parts else ""


def _label(reference: Reference, column: str) -> str:
    name = reference.names.get(column)
    return f"{column} ({name})" if name else column


def _table(columns: list[str] | None, rows: Any) -> str:
    head = "" if columns is None else "<tr>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr>"
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _cell(value: Any) -> str:
    if value == "DRIFT":
        return '<td class="drift">DRIFT</td>'
    if value == "ok":
        return '<td class="ok">ok</td>'
    if isinstance(value, float):
        return f'<td class="num">{value:.4f}</td>'
    return f"<td>{_e(value)}</td>"


def _time(value: float | None) -> str:
    return "-" if value is None else datetime.fromtimestamp(value, timezone.utc).isoformat(timespec="seconds")


def _e(value: Any) -> str:
    return html.escape(str(value))
