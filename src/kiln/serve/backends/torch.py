"""The ``torch`` serve backend: the eager ``nn.Module`` of the model package, the reference every
export is checked against (so no export record vouches for it)."""

from __future__ import annotations

from pathlib import Path

from kiln.serve.backends import Predictor
from kiln.serve.backends.base import Array, to_probabilities


class TorchBackend:
    name = "torch"

    def prepare(self, package_dir: Path, export_file: Path | None) -> None:
        return None  # the package itself (an export file the user named is not what this runs)

    def load(self, path: Path, task: str, threads: int | None) -> Predictor:
        from kiln.models.package import load_package

        return TorchPredictor(load_package(path).model, task, threads)


class TorchPredictor:
    """The eager model under ``torch.inference_mode``.

    Measured on 2 busy cores (bench/serve.py), torch's default two intra-op threads made one
    small-CNN request take ~70 ms inside the server against ~0.4 ms with one thread: its worker
    threads contend with the event loop and the neighbours for the same cores.
    """

    name = "torch"

    def __init__(self, model: object, task: str, threads: int | None = None) -> None:
        if threads:  # process-wide, so changed only when asked (the CLI asks for 1)
            import torch

            torch.set_num_threads(threads)
        self._model = model
        self._task = task

    def predict(self, batch: Array) -> Array:
        import torch

        with torch.inference_mode():
            outputs = self._model(torch.from_numpy(batch))  # type: ignore[operator]
        return to_probabilities(outputs.float().numpy(), self._task)
