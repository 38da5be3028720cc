"""Output files written chunk by chunk, each chunk committed before the progress record says so.

CSV and JSON lines are appended to ``OUTPUT.partial`` and synced; the committed length is in the
progress record, and a resume truncates the file back to it (a kill may have left part of the next
chunk). Parquet cannot be appended to once closed, so each chunk is a file in ``OUTPUT.parts/``
(written aside and renamed) and the finish streams them into one file, a row group per chunk.
The errors file (JSON lines) is appended like a CSV. Only the finish puts ``OUTPUT`` in place, by
a rename: a half-written output never sits under the name a user or a pipeline reads.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.errors import UsageError

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def output_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"cannot tell the output format of {path} from its suffix",
                         allowed=", ".join(FORMATS))
    return fmt


def errors_path(output: Path) -> Path:
    return output.with_name(output.name + ".errors.jsonl")


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


class AppendFile:
    """A file appended to and synced, truncated back to its committed length on resume."""

    def __init__(self, path: Path, committed: int) -> None:
        self.path = path
        if committed and not path.is_file():
            raise UsageError(f"{path} is missing, but the progress record says {committed} bytes "
                             "were committed; run again with --overwrite to start over")
        self._handle = open(path, "r+b" if path.is_file() else "wb")  # noqa: SIM115
        self._handle.truncate(committed)
        self._handle.seek(committed)

    def append(self, data: bytes) -> None:
        self._handle.write(data)

    def commit(self) -> int:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        return self._handle.tell()

    def close(self) -> None:
        self._handle.close()


class OutputWriter:
    """The predictions file of one job, in ``fmt``, resumed from ``state`` (the progress record's)."""

    def __init__(self, output: Path, fmt: str, state: dict[str, Any]) -> None:
        self.output = output
        self.fmt = fmt
        self.chunks = int(state.get("chunks", 0))
        self.error_count = int(state.get("failed", 0))
        self.finished = bool(state.get("finished"))
        self._file: AppendFile | None = None
        self.parts = output.with_name(output.name + ".parts")
        self._errors: AppendFile | None = None
        if self.finished:  # killed during the finish: finish() completes it, nothing is reopened
            return
        if fmt == "parquet":
            self.parts.mkdir(exist_ok=True)
            for leftover in self.parts.iterdir():  # written after the last commit
                if not leftover.name.endswith(".parquet") or int(leftover.name.split(".")[0]) >= self.chunks:
                    leftover.unlink()
        else:
            self._file = AppendFile(_partial(output), int(state.get("output_bytes", 0)))
        self._errors = AppendFile(_partial(errors_path(output)), int(state.get("errors_bytes", 0)))

    def write(self, table: pa.Table, errors: list[dict[str, Any]]) -> None:
        """Append one chunk's predictions and errors (not yet committed)."""
        if self.fmt == "csv":
            import pyarrow.csv as pacsv

            buffer = io.BytesIO()
            pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=self.chunks == 0))
            assert self._file is not None
            self._file.append(buffer.getvalue())
        elif self.fmt == "jsonl":
            assert self._file is not None
            self._file.append(_json_lines(table.to_pylist()))
        else:
            import pyarrow.parquet as pq

            final = self.parts / f"{self.chunks:08d}.parquet"
            temporary = final.with_name(final.name + ".tmp")
            pq.write_table(table, temporary)
            _sync(temporary)
            os.replace(temporary, final)
        if errors:
            assert self._errors is not None
            self._errors.append(_json_lines(errors))
            self.error_count += len(errors)
        self.chunks += 1

    def commit(self) -> dict[str, Any]:
        """Sync what was written; the state to record in the progress record."""
        assert self._errors is not None
        state: dict[str, Any] = {"chunks": self.chunks, "failed": self.error_count,
                                 "errors_bytes": self._errors.commit()}
        if self._file is not None:
            state["output_bytes"] = self._file.commit()
        return state

    def finish(self) -> Path | None:
        """Put the output (and the errors file, when there were errors) in place; the errors
        file's path, or None. Each step can be repeated: a finish killed half-way is completed by
        the next run (what is already in place stays)."""
        partial = _partial(self.output)
        if self._file is not None:
            self._file.close()
        if self.fmt != "parquet" and partial.exists():
            os.replace(partial, self.output)
        elif self.fmt == "parquet" and self.parts.is_dir():
            self._assemble_parquet()
        if not self.output.exists():
            raise UsageError(f"{self.output} and its partial output are both missing, but the progress "
                             "record says the job finished; run again with --overwrite to start over")
        if self._errors is not None:
            self._errors.close()
        errors, pending = errors_path(self.output), _partial(errors_path(self.output))
        if self.error_count:
            if pending.exists():
                os.replace(pending, errors)
            return errors
        pending.unlink(missing_ok=True)
        errors.unlink(missing_ok=True)  # a stale one from an earlier job on this output
        return None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._errors is not None:
            self._errors.close()

    def _assemble_parquet(self) -> None:
        import pyarrow.parquet as pq

        parts = sorted(self.parts.glob("*.parquet"))
        temporary = self.output.with_name(self.output.name + ".tmp")
        tables = (pq.read_table(p) for p in parts)
        first = next(tables)
        with pq.ParquetWriter(temporary, first.schema) as writer:
            writer.write_table(first)
            for table in tables:
                writer.write_table(table.cast(first.schema))
        _sync(temporary)
        os.replace(temporary, self.output)
        shutil.rmtree(self.parts)


@contextlib.contextmanager
def exclusive(output: Path) -> Iterator[None]:
    """Hold ``OUTPUT.lock`` for the job: a second ``kiln predict`` on the same output (a retry
    started while the first still runs) stops at once instead of interleaving its chunks."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one job per output is the user's to keep
        yield
        return
    lock = output.with_name(output.name + ".lock")
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UsageError(f"another kiln predict ({holder}) is writing {output}: wait for it to end "
                             "or stop it, then run this again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)


def discard_partial(output: Path) -> None:
    """Remove every file a job on ``output`` may have left (``--overwrite``)."""
    from kiln.batch_predict.progress import progress_path

    for path in (_partial(output), _partial(errors_path(output)), progress_path(output)):
        path.unlink(missing_ok=True)
    shutil.rmtree(output.with_name(output.name + ".parts"), ignore_errors=True)


def _json_lines(rows: list[dict[str, Any]]) -> bytes:
    import orjson

    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def _sync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
