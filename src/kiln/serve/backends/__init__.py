"""What ``kiln serve`` runs a model with: the SERVE_BACKENDS catalog and its two small protocols.

A ``ServeBackend`` (a catalog entry) prepares, once in the parent process, the file it will run
(the ONNX backend creates the run's ONNX export when there is none), and loads it in each worker
as a ``Predictor``. A predictor takes a float32 batch already shaped and normalized for the model
and returns probabilities (softmax for classification, sigmoid for binary, the raw value for
regression), so the routes never care which runtime computed them.

Adding a backend is one module (its ``ServeBackend`` class) and one registration below; entries
are ``package.module:Class`` strings, so ``kiln serve --help`` lists them without importing one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from kiln._lazy import lazy_exports
from kiln.catalog import Catalog

if TYPE_CHECKING:  # numpy is imported on first use: `kiln serve --help` lists the backends without it
    from kiln.serve.backends.base import Array, to_probabilities


class Predictor(Protocol):
    """``predict(batch) -> probabilities``; must be safe to call from several threads."""

    name: str

    def predict(self, batch: Array) -> Array: ...


class ServeBackend(Protocol):
    """A SERVE_BACKENDS entry: how one runtime serves a model package."""

    @property
    def name(self) -> str: ...

    def prepare(self, package_dir: Path, export_file: Path | None) -> Path | None:
        """Once, in the parent process, before any worker starts: the export file this backend
        will run (``export_file`` when the user named one; may be created now), or None to run
        the model package itself. Raise ServeError when it cannot serve the package."""
        ...

    def load(self, path: Path, task: str, threads: int | None) -> Predictor:
        """In each worker: a predictor for ``path`` (the prepared export file, or the package
        directory). ``threads``: the runtime's intra-op threads (None: the backend's default)."""
        ...


SERVE_BACKENDS: Catalog[ServeBackend] = Catalog("serve backend")
SERVE_BACKENDS.register("onnx", "kiln.serve.backends.onnx:OnnxBackend", "ONNX Runtime")
SERVE_BACKENDS.register("torch", "kiln.serve.backends.torch:TorchBackend", "the eager PyTorch model")
DEFAULT_BACKEND = "onnx"


__all__ = ["DEFAULT_BACKEND", "SERVE_BACKENDS", "Array", "Predictor", "ServeBackend", "to_probabilities"]
__getattr__, __dir__ = lazy_exports(
    __name__, {"Array": "kiln.serve.backends.base", "to_probabilities": "kiln.serve.backends.base"}, __all__
)
