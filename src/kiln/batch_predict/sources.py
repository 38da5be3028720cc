"""Which reader an input needs, told by its suffix (or a folder: images); exit 2 before any work
for a file kiln cannot read or a model it cannot feed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from kiln.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from kiln.batch_predict.chunk import Chunk
    from kiln.batch_predict.model import LoadedModel

TABLES = (".csv", ".parquet", ".pq")
ARRAYS = (".npy", ".npz")
JSON_LINES = (".jsonl", ".ndjson")
DEFAULT_CHUNK = {"images": 256}  # rows per committed chunk; tables and arrays: 10,000
TABLE_CHUNK = 10_000


class Source(Protocol):
    """An input read chunk by chunk. ``key``: how rows are identified in the errors file."""

    @property
    def key(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def total_rows(self) -> int | None:
        """Rows in the input when known without reading it (not for CSV and JSON lines)."""
        ...

    @property
    def total_bytes(self) -> int | None:
        """Bytes of a file read as a stream, for the progress bar's position."""
        ...

    @property
    def read_bytes(self) -> int: ...

    def chunks(self, size: int, skip: int) -> Iterator[Chunk | None]:
        """Chunks of ``size`` input rows in order; the first ``skip`` as None, not read further
        than needed to find where the next one starts."""
        ...


def open_source(path: Path, model: LoadedModel, id_columns: Sequence[str], workers: int) -> Source:
    from kiln.batch_predict.arrays import ArraySource
    from kiln.batch_predict.images import ImageFolderSource
    from kiln.batch_predict.jsonl import JsonLinesSource
    from kiln.batch_predict.tables import TableSource

    if not path.exists():
        raise UsageError(f"--input {path} does not exist")
    suffix = path.suffix.lower()
    if id_columns and (path.is_dir() or suffix not in TABLES):
        raise UsageError("--id-column applies to CSV and Parquet inputs only")
    if path.is_dir():
        return ImageFolderSource(path, model.pre, workers)
    if suffix in TABLES:
        names = model.served.spec.extra.get("feature_names")
        return TableSource(path, model.pre, names, id_columns)
    if suffix in ARRAYS:
        return ArraySource(path, model.pre)
    if suffix in JSON_LINES:
        return JsonLinesSource(path, model.pre)
    raise UsageError(f"cannot tell how to read {path} from its suffix {suffix or '(none)'!r}",
                     allowed="a CSV (.csv) or Parquet (.parquet) table, a NumPy file (.npy, .npz), "
                             "JSON lines (.jsonl, one instance per line), or a folder of images")


def chunk_size(source: Source, given: int | None) -> int:
    if given is not None:
        return given
    return DEFAULT_CHUNK.get(source.kind, TABLE_CHUNK)
