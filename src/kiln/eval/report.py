"""``report.html``: one self-contained page per run (images embedded, no scripts, no network).

Made from files the run already holds: summary.json, config.yaml, eval/ (metrics, cost, per-class
report, PNGs) and models/exports.json, so it can be mailed, attached to a ticket or archived and
still open years later. ``build_report(..., evaluate=True)`` runs ``kiln eval`` first when the
split has not been evaluated yet, or was evaluated without plots.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.runs.layout import read_json, read_json_if_present, write_text
from kiln.runs.rundir import RunDir

if TYPE_CHECKING:
    from kiln.runs.summary import RunSummary

REPORT = "report.html"
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#176f2c;font-weight:600}.fail{color:#b00020;font-weight:600}
figure{margin:1rem 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#666;font-size:.9rem}
"""


def build_report(run_dir: str | Path, split: str = "test", evaluate: bool = True) -> Path:
    """Write ``<run>/report.html`` and return its path."""
    from kiln.eval.run_eval import evaluate_run, run_root

    root = run_root(run_dir)
    evaluated = (root / "eval" / f"metrics_{split}.json").is_file()
    if evaluate and not (evaluated and any((root / "eval").glob("*.png"))):  # kiln gate draws none
        evaluate_run(root, split)
    # A model fetched from the registry may come without its summary.json: a report without it.
    summary = RunDir(root).read_summary_if_any()
    eval_dir = root / "eval"
    body = [
        f"<h1>Run report: {_e(root.name)}</h1>",
        _overview(summary, read_json(root / "models" / "model.json")),
        _metrics_section(summary, eval_dir),
        _per_class(read_json_if_present(eval_dir / f"classification_report_{split}.json")),  # regression: none
        _cost(read_json_if_present(eval_dir / "cost.json")),  # measured by `kiln eval`, not `kiln gate`
        _exports(read_json_if_present(root / "models" / "exports.json")),  # before `kiln export`: none
        _figures(sorted(eval_dir.glob("*.png"))),
    ]
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>kiln report: {_e(root.name)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(b for b in body if b) + "\n</body></html>\n"
    )
    path = root / REPORT
    write_text(path, page)
    return path


def _overview(summary: RunSummary | None, meta: Mapping[str, Any]) -> str:
    model = meta.get("model") or {}
    spec = meta.get("data_spec") or {}
    rows: list[tuple[str, Any]] = [
        ("model", model.get("name")), ("parameters", meta.get("parameters")), ("dataset", spec.get("name")),
        ("task", spec.get("task")), ("input shape", spec.get("input_shape")),
    ]
    if summary is not None:
        rows = [
            ("status", summary.status), ("epochs", f"{summary.epochs_trained} of {summary.max_epochs}"),
            ("best epoch", summary.best_epoch), *rows, ("config hash", summary.config_hash[:12]),
            ("started", summary.started_at), ("finished", summary.finished_at),
        ]
    return "<h2>Overview</h2>" + _table(["", ""], ([k, v] for k, v in rows if v not in (None, "")), header=False)


def _metrics_section(summary: RunSummary | None, eval_dir: Path) -> str:
    rows: dict[str, Any] = {**summary.final, **summary.test} if summary is not None else {}
    for path in sorted(eval_dir.glob("metrics_*.json")):
        rows.update(read_json(path))
    if not rows:
        return ""
    return "<h2>Metrics</h2>" + _table(["metric", "value"], ([k, v] for k, v in rows.items()))


def _per_class(report: Mapping[str, Any] | None) -> str:
    if report is None or not report.get("per_class"):
        return ""
    rows = ([r["class"], r["precision"], r["recall"], r["f1"], r["support"]] for r in report["per_class"])
    title = f"<h2>Per class ({_e(report.get('split', ''))} split)</h2>"
    return title + _table(["class", "precision", "recall", "F1", "support"], rows)


def _cost(cost: Mapping[str, Any] | None) -> str:
    if cost is None or not cost.get("metrics"):
        return ""
    metrics = cost["metrics"]
    note = f"<p>{_e(cost.get('latency', ''))}, on {_e(cost.get('device', '?'))} with {_e(cost.get('threads', '?'))} threads.</p>"
    return "<h2>Inference cost</h2>" + note + _table(["metric", "value"], ([k, v] for k, v in metrics.items()))


def _exports(data: Mapping[str, Any] | None) -> str:
    if data is None or not data.get("exports"):
        return ""
    exports = data["exports"]
    rows = []
    for fmt, rec in exports.items():
        parity = rec.get("parity") or {}
        agreement = parity.get("agreement")
        rows.append([fmt, rec.get("file"), rec.get("size_bytes"), parity.get("max_abs_diff"),
                     None if agreement is None else f"{agreement:.2%}", "PASS" if rec.get("passed") else "FAIL"])
    return "<h2>Exports</h2>" + _table(["format", "file", "bytes", "max abs diff", "agreement", "parity"], rows)


def _figures(paths: Iterable[Path]) -> str:
    figures = []
    for path in paths:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        caption = path.stem.replace("_", " ")
        figures.append(f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{_e(caption)}</figcaption></figure>")
    return "<h2>Plots</h2>" + "".join(figures) if figures else ""


def _table(columns: list[str], rows: Iterable[Iterable[Any]], header: bool = True) -> str:
    head = "<tr>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _cell(value: Any) -> str:
    if value in ("PASS", "FAIL"):
        return f'<td class="{str(value).lower()}">{value}</td>'
    if isinstance(value, bool) or value is None:
        return f"<td>{'-' if value is None else value}</td>"
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{_e(value)}</td>"


def _e(value: Any) -> str:
    return html.escape(str(value))


