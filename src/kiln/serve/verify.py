"""Whether the export ``kiln serve`` would run was checked against the trained model.

``kiln export`` reloads every export it writes, compares its outputs with the eager model's on
held-out inputs and records the verdict in ``models/exports.json`` (with the file's sha256). An
export is *verified* when that record says it passed and the file is still the one it checked.
Anything else may answer differently from the model that was trained, evaluated and gated:

- ``failed``: its record says parity failed (or the export itself did);
- ``missing``: no record names the file (an ``.onnx`` copied or written by hand, or exports.json
  left behind);
- ``modified``: the file's sha256 differs from the record's (replaced after the export).

The eager torch model has no export: it is the reference the exports are checked against, so it
is verified by definition (``reference``) and never needs ``--allow-unverified``.

Only the standard library and ``kiln.export.record`` (JSON reading) are imported: an ONNX server
checks its export without importing torch.

>>> ExportParity("reference", None, None, "the eager model").verified
True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln._files import sha256_file
from kiln.errors import ServeError

log = logging.getLogger("kiln.serve")

VERIFIED = ("passed", "reference")


@dataclass(frozen=True)
class ExportParity:
    """The parity verdict on the file a server runs (plain data: workers receive it pickled)."""

    verdict: str  # passed | reference | failed | missing | modified
    file: str | None  # the export judged; None: the eager model package itself
    record: str | None  # the exports.json that holds (or lacks) its record
    detail: str  # the verdict in words, for the log, the refusal and /metadata

    @property
    def verified(self) -> bool:
        return self.verdict in VERIFIED

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "verified": self.verified, "file": self.file,
                "record": self.record, "detail": self.detail}


def check_export(package_dir: Path, export_file: Path | None) -> ExportParity:
    """The verdict of ``export_file`` (a file in ``package_dir``; None: the eager package)."""
    from kiln.export.record import EXPORTS, read_exports

    if export_file is None:
        return ExportParity("reference", None, None,
                            "the eager torch model: the reference every export is checked against")
    records_path = package_dir / EXPORTS
    where = str(records_path)
    record = _record_of(read_exports(package_dir).get("exports", {}), package_dir, export_file)
    name = str(export_file)
    if record is None:
        return ExportParity("missing", name, where, f"{records_path} holds no parity record of {export_file.name}")
    if not record.get("passed"):
        return ExportParity("failed", name, where, f"its parity record in {records_path} says it failed: "
                            + _failure(record))
    expected = record.get("sha256")
    if expected and sha256_file(export_file) != expected:
        return ExportParity("modified", name, where,
                            f"{export_file.name} is not the file its record in {records_path} checked "
                            f"(sha256 {str(expected)[:12]}... recorded): it was replaced after kiln export")
    return ExportParity("passed", name, where, "parity passed: " + _numbers(record))


def require_verified(parity: ExportParity, package_dir: Path, allow_unverified: bool) -> None:
    """Refuse an unverified export with ServeError (exit 1) naming the record and the fix, or,
    with ``allow_unverified``, serve it with a warning."""
    if parity.verified:
        return
    # a models/ folder copied out of its run has no run to export from: name the placeholder
    run = package_dir.parent if (package_dir.parent / "config.yaml").is_file() else "RUN_DIR"
    if allow_unverified:
        log.warning("serving an UNVERIFIED export (--allow-unverified): %s: %s", parity.file, parity.detail)
        return
    raise ServeError(
        f"refusing to serve {parity.file}: {parity.detail}. Unverified, it may answer differently "
        f"from the model that was trained and gated. Export it again with parity checked: "
        f"kiln export {run} --format onnx; or serve the eager model with --backend torch; "
        "or pass --allow-unverified to serve this file anyway"
    )


def _record_of(records: dict[str, Any], package_dir: Path, export_file: Path) -> dict[str, Any] | None:
    """The record whose file is ``export_file`` (the same file of the same package)."""
    if export_file.resolve().parent != package_dir.resolve():
        return None
    return next((r for r in records.values() if isinstance(r, dict) and r.get("file") == export_file.name), None)


def _failure(record: dict[str, Any]) -> str:
    if record.get("error"):
        return str(record["error"])
    return _numbers(record) or "no parity numbers recorded"


def _numbers(record: dict[str, Any]) -> str:
    parity = record.get("parity") or {}
    tolerance = ", ".join(f"{k}={v:g}" for k, v in (parity.get("tolerance") or {}).items()
                          if isinstance(v, (int, float)))
    parts = [f"{k.replace('_', ' ')} {parity[k]:.3g}" for k in ("max_abs_diff", "max_rel_diff")
             if isinstance(parity.get(k), (int, float))]
    if isinstance(parity.get("agreement"), (int, float)):
        parts.append(f"class agreement {parity['agreement']:.2%}")
    if tolerance:
        parts.append(f"tolerance {tolerance}")
    return ", ".join(parts)
