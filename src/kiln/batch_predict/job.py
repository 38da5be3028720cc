"""``kiln predict``'s job: an input file read chunk by chunk through the model into an output file,
committed chunk by chunk so that the same command resumes a killed job.

The order of one chunk's commit: its predictions and errors appended and synced, then the
progress record replaced (``kiln.batch_predict.progress``). The finish marks the record finished,
renames the output into place, then removes the record; each step is safe to repeat, so a kill at
any point leaves a job that the same command finishes, with every input row exactly once, in input
order (predicted in the output, or in ``OUTPUT.errors.jsonl`` with the reason).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from kiln.batch_predict.model import LoadedModel, load_for_prediction
from kiln.batch_predict.progress import (
    input_fingerprint,
    progress_path,
    read_progress,
    refuse_mismatch,
    write_progress,
)
from kiln.batch_predict.results import output_table
from kiln.batch_predict.sources import Source, chunk_size, open_source
from kiln.batch_predict.writers import OutputWriter, discard_partial, exclusive, output_format
from kiln.errors import DataError, UsageError

if TYPE_CHECKING:
    from kiln.batch_predict.chunk import Chunk
    from kiln.serve.backends import Array

log = logging.getLogger("kiln")
OnError = Literal["skip", "fail"]


@dataclass(frozen=True)
class PredictOptions:
    """The knobs of a job; those that shape the output are recorded and must match on resume."""

    backend: str | None = None  # None: onnx when the run has a passing ONNX export, else torch
    batch_size: int = 256  # rows per model call
    chunk_size: int | None = None  # rows per committed chunk (None: 10,000; images 256)
    top_k: int = 1
    workers: int = 2  # threads decoding images
    threads: int = 0  # the runtime's intra-op threads (0: its default)
    allow_unverified: bool = False  # run an ONNX file whose parity record failed or is missing
    id_columns: tuple[str, ...] = ()
    on_error: OnError = "skip"
    overwrite: bool = False
    progress: bool = False  # a progress bar on stderr


@dataclass(frozen=True)
class PredictReport:
    output: Path
    errors_file: Path | None
    rows: int
    predicted: int
    failed: int
    resumed_chunks: int  # chunks already committed by an earlier, interrupted run
    seconds: float
    backend: str
    resumed_rows: int = 0  # rows those chunks held (not predicted by this run)

    @property
    def rows_per_second(self) -> float:
        """Rows this run read per second (a resumed job's earlier rows left out)."""
        return (self.rows - self.resumed_rows) / self.seconds if self.seconds > 0 else 0.0


def predict_file(model: str | Path, input_path: Path, output: Path,
                 options: PredictOptions = PredictOptions()) -> PredictReport:
    """Predict every row of ``input_path`` into ``output``; resumes a job killed part-way."""
    _check_paths(input_path, output, options)
    fmt = output_format(output)
    loaded = load_for_prediction(model, options.backend, options.batch_size, options.threads,
                                 options.allow_unverified)
    source = open_source(input_path, loaded, options.id_columns, options.workers)
    size = chunk_size(source, options.chunk_size)
    listing = getattr(source, "paths", None)
    job = {"input": input_fingerprint(input_path, listing), "model": loaded.package_hash,
           "options": {"format": fmt, "chunk_size": size, "top_k": options.top_k,
                       "backend": loaded.served.backend.name, "id_columns": list(options.id_columns)}}
    with exclusive(output):
        state = _resume_state(output, job, options.overwrite)
        return _run(loaded, source, input_path, output, fmt, size, job, state, options)


def _run(loaded: LoadedModel, source: Source, input_path: Path, output: Path, fmt: str, size: int,
         job: dict[str, Any], state: dict[str, Any], options: PredictOptions) -> PredictReport:
    started = time.monotonic()
    writer = OutputWriter(output, fmt, state)
    rows, predicted = int(state.get("rows", 0)), int(state.get("predicted", 0))
    done, resumed_rows = int(state.get("chunks", 0)), rows
    try:
        if not state.get("finished"):
            with _progress_bar(source, options.progress, rows) as bar:
                for chunk in source.chunks(size, skip=done):
                    if chunk is None:
                        continue
                    if chunk.errors and options.on_error == "fail":
                        raise DataError(_first_error(input_path, chunk))
                    table, errors = _predict_chunk(loaded, chunk, options.top_k)
                    writer.write(table, errors)
                    rows, predicted = rows + chunk.rows, predicted + table.num_rows
                    if errors and options.on_error == "fail":  # the model's own non-finite output
                        raise DataError(_first_error(input_path, chunk, errors))
                    write_progress(output, {**job, **writer.commit(), "rows": rows, "predicted": predicted})
                    bar(rows)
            if writer.chunks == 0:  # an input without rows: the output still has its columns
                writer.write(_empty_table(loaded, source, options.top_k), [])
            write_progress(output, {**job, **writer.commit(), "rows": rows, "predicted": predicted,
                                    "finished": True})
        errors_file = writer.finish()
    finally:
        writer.close()
    progress_path(output).unlink(missing_ok=True)
    return PredictReport(output, errors_file, rows, predicted, writer.error_count, done,
                         time.monotonic() - started, loaded.served.backend.name, resumed_rows)


def _empty_table(loaded: LoadedModel, source: Source, top_k: int) -> Any:
    """The output's columns with no rows (identifiers as the source names them)."""
    import pyarrow as pa

    columns: dict[str, Any] = {source.key: pa.array([], pa.int64() if source.key == "row" else pa.string())}
    columns.update({name: pa.array([], pa.string()) for name in getattr(source, "passed", [])})
    spec = loaded.served.spec
    width = 2 if spec.task == "binary" else spec.output_size
    return output_table(pa.table(columns), np.zeros((0, width), dtype=np.float32), spec.task,
                        loaded.class_names, top_k)


def predict_batches(loaded: LoadedModel, chunk: Chunk) -> Array:
    """The chunk's probabilities, ``batch_size`` rows per model call."""
    step = loaded.pre.max_batch
    parts = [loaded.served.backend.predict(chunk.batch[i:i + step]) for i in range(0, len(chunk.batch), step)]
    if not parts:
        return np.zeros((0, loaded.served.spec.output_size if loaded.served.spec.task != "binary" else 2),
                        dtype=np.float32)
    return np.concatenate(parts)


def _predict_chunk(loaded: LoadedModel, chunk: Chunk, top_k: int) -> tuple[Any, list[dict[str, Any]]]:
    """The output table of a chunk and its errors (rows the model answered NaN or inf for join
    the chunk's bad rows: the server answers such a request with a 500)."""
    import pyarrow as pa

    probabilities = predict_batches(loaded, chunk)
    ids, errors = chunk.ids, list(chunk.errors)
    finite = np.isfinite(probabilities).all(axis=tuple(range(1, probabilities.ndim)))  # 0 rows too
    if not finite.all():
        key = "path" if "path" in ids.column_names else "row"
        for i in np.flatnonzero(~finite).tolist():
            errors.append({key: ids.column(key)[i].as_py(), "reason": "the model produced NaN or infinity"})
        errors.sort(key=lambda e: (e.get("row", 0), str(e.get("path", ""))))
        ids, probabilities = ids.filter(pa.array(finite)), probabilities[finite]
    spec = loaded.served.spec
    return output_table(ids, probabilities, spec.task, loaded.class_names, top_k), errors


def _check_paths(input_path: Path, output: Path, options: PredictOptions) -> None:
    for name in ("batch_size", "top_k", "workers"):
        if getattr(options, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(options, name)}")
    if options.threads < 0:
        raise UsageError(f"--threads must not be negative, got {options.threads}")
    if options.chunk_size is not None and options.chunk_size < 1:
        raise UsageError(f"--chunk-size must be positive, got {options.chunk_size}")
    if input_path.resolve() == output.resolve():
        raise UsageError(f"--output {output} is the input itself: name another file")
    if not output.parent.is_dir():
        raise UsageError(f"--output {output}: the folder {output.parent} does not exist")


def _resume_state(output: Path, job: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """The committed state to go on from: {} for a new job."""
    if overwrite:
        discard_partial(output)
        return {}
    record = read_progress(output)
    if record is None:
        if output.exists():
            raise UsageError(f"--output {output} already exists: run with --overwrite to replace it, "
                             "or name another file")
        discard_partial(output)  # debris of a job whose record was never written
        return {}
    refuse_mismatch(output, record, job)
    log.warning("resuming the job on %s: %d chunks (%d rows) were done", output, record.get("chunks", 0),
                record.get("rows", 0))
    return record


def _first_error(input_path: Path, chunk: Chunk, errors: list[dict[str, Any]] | None = None) -> str:
    first = (errors or chunk.errors)[0]
    where = f"row {first['row']}" if "row" in first else str(first.get("path"))
    return (f"{input_path}, {where}: {first['reason']}. Fix it and run again with --overwrite (the "
            "chunks before it were committed for this input), or run with --on-error skip to predict "
            "the other rows and list the bad ones in OUTPUT.errors.jsonl")


class _NoBar:
    def __enter__(self) -> Any:
        return lambda rows: None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress_bar(source: Source, enabled: bool, rows: int) -> Any:
    if not enabled:
        return _NoBar()
    from kiln.batch_predict.bar import ProgressBar

    return ProgressBar(source, rows)
