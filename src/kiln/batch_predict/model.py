"""The model a prediction job runs: the server's own loading, with a batch job's defaults.

Resolution (run directory, ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, an export file) and
the backends are ``kiln serve``'s (``kiln.serve.model``), and so is the preprocessing
(``kiln.serve.inputs.Preprocessor``): a file predicted here and the same rows sent to
``POST /predict`` give the same probabilities. Two defaults differ, on purpose:

- the backend is ONNX Runtime only when the run already has a verified ONNX export (or an
  ``.onnx`` file is named, which must be verified too, or ``--allow-unverified``); otherwise the
  eager model. A batch job does not write an export into
  the run as a side effect, as ``kiln serve`` does at start-up;
- the runtime may use every core by default (a server keeps one thread per call and scales by
  requests); ``--threads`` sets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.batch_predict.progress import file_hash

if TYPE_CHECKING:
    from kiln.serve.inputs import Preprocessor
    from kiln.serve.model import ModelSource, ServedModel


@dataclass(frozen=True)
class LoadedModel:
    served: ServedModel
    pre: Preprocessor
    package_hash: str  # sha256 of the files the backend runs: a changed model is noticed on resume

    @property
    def class_names(self) -> list[str]:
        spec = self.served.spec
        return list(spec.class_names) if spec.class_names else [str(i) for i in range(spec.output_size)]


def load_for_prediction(model: str | Path, backend: str | None, batch_size: int,
                        threads: int = 0, allow_unverified: bool = False) -> LoadedModel:
    """Resolve, load and warm up ``model``; ServeError/UsageError say what is wrong with it.

    ``threads``: the runtime's intra-op threads (0: its default, every core). On a busy machine
    a small model is faster with 1 (measured: the digits MLP on 2 busy cores, 37k rows/s with
    torch's two threads against 157k with one), a large one on an idle machine with all.
    An ONNX file whose parity record failed, is missing or no longer matches is refused, as by
    ``kiln serve``, unless ``allow_unverified``.
    """
    from kiln.serve.inputs import Preprocessor
    from kiln.serve.model import load_served_model, warm_up

    source = _prepare(model, backend, allow_unverified)
    served = load_served_model(source, threads=threads)
    warm_up(served)
    files = [source.export_file] if source.export_file is not None else [
        source.package_dir / "model.safetensors", source.package_dir / "model.json"]
    return LoadedModel(served, Preprocessor(served.spec, batch_size), file_hash(files))


def _prepare(model: str | Path, backend: str | None, allow_unverified: bool) -> ModelSource:
    """``kiln serve``'s ``prepare_model`` with the batch job's default backend: onnx for a named
    ``.onnx`` file or a run whose ONNX export is verified; torch otherwise (a run without an
    export, or whose export failed parity: the eager model is the reference).

    The model is resolved once: a ``models:/`` URI is one registry lookup (and at most one
    download), whose package the default backend is then chosen from, and the alias cannot move
    between choosing the backend and loading the model.
    """
    from dataclasses import replace

    from kiln.serve.model import prepare_model
    from kiln.serve.verify import check_export

    named = Path(str(model))
    if backend is None and named.is_file() and named.suffix == ".onnx":
        backend = "onnx"
    if backend is not None:
        return prepare_model(model, backend, allow_unverified=allow_unverified)
    eager = prepare_model(model, "torch", allow_unverified=allow_unverified)  # the torch backend prepares nothing
    onnx = eager.package_dir / "model.onnx"
    if not (onnx.is_file() and check_export(eager.package_dir, onnx).verified):
        return eager
    exported = prepare_model(eager.package_dir, "onnx", allow_unverified=allow_unverified)
    return replace(exported, name=eager.name, version=eager.version, registry=eager.registry)
