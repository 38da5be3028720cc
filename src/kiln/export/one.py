"""One format of one export: stage its file, reload it, check parity, keep it or mark it failed,
and write down what happened. ``export_run`` calls this for every format alike."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kiln._files import sha256_file
from kiln.errors import ExportError
from kiln.export.format import FAILED_SUFFIX, ExportFormat, ExportJob
from kiln.export.parity import Array, ParityResult, Runner
from kiln.export.record import now_iso
from kiln.export.tolerance import Tolerance

log = logging.getLogger("kiln.export")

Check = Callable[[Runner, Tolerance], ParityResult]  # an export's runner against the eager model


def export_one(fmt: ExportFormat, job: ExportJob, check: Check, tolerance: Tolerance,
               staging: Path) -> dict[str, Any]:
    """Export ``fmt`` and return its record; the file ends as ``models/<file>`` when parity holds,
    as ``<file>.failed`` when it does not or the file cannot be run, and not at all when the
    conversion raised ExportError."""
    final = job.models_dir / fmt.file
    failed = final.with_name(final.name + FAILED_SUFFIX)
    for stale in (final, failed):  # an old file must not outlive the record that replaces it
        stale.unlink(missing_ok=True)
    staged = staging / fmt.file
    record: dict[str, Any] = {
        "format": fmt.name, "file": None, "passed": False, "error": None,
        "precision": fmt.precision, "legacy": fmt.legacy,
        "exported_at": now_iso(), "versions": versions(fmt.packages),
    }
    start = time.perf_counter()
    try:
        fmt.export(job, staged)
    except ExportError as exc:
        record["error"] = str(exc)
        log.debug("export %s failed", fmt.name, exc_info=True)
        return record
    record["export_seconds"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    try:
        parity = check(fmt.load(staged), tolerance)
    except Exception as exc:  # a file that cannot be loaded or run is a failed export, not a crash
        record["error"] = f"the exported file could not be reloaded or run: {type(exc).__name__}: {exc}"
        log.debug("export %s failed to run", fmt.name, exc_info=True)
        os.replace(staged, failed)
        record.update(file=failed.name, size_bytes=failed.stat().st_size)
        return record
    record["parity_seconds"] = round(time.perf_counter() - start, 3)
    record["parity"] = parity.to_dict()
    record["passed"] = parity.passed
    record.update(fmt.describe(staged))
    target = final if parity.passed else failed
    os.replace(staged, target)
    record.update(file=target.name, size_bytes=target.stat().st_size, sha256=sha256_file(target))
    return record


def eager_runner(model: nn.Module) -> Runner:
    """The eager model as a Runner: what every export is compared with."""
    def run(inputs: Array) -> Array:
        with torch.no_grad():
            return np.asarray(model(torch.from_numpy(inputs)).float().numpy(), dtype=np.float32)

    return run


def versions(packages: Sequence[str]) -> dict[str, str | None]:
    """The installed version of each distribution (None: not installed)."""
    found: dict[str, str | None] = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
