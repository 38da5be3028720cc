"""Parity: does an exported model compute what the eager model computes, within a tolerance?

Every export is run next to the eager model on the same held-out inputs, at several batch sizes
(1 catches graphs specialised to the example batch, an odd size catches padding bugs, 32 is a
typical serving batch). fp32 exports must match elementwise as ``numpy.allclose`` defines it,
``|exported - eager| <= atol + rtol * |eager|``; int8 exports cannot, so by default they must agree
on the predicted class for at least ``min_agreement`` of the samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kiln.export.tolerance import BATCH_SIZES, Tolerance

# inputs are float32, or int64 token ids for language models; outputs are float32
Array = npt.NDArray[Any]
Runner = Callable[[Array], Array]  # a batch of inputs in, the model's outputs out


@dataclass(frozen=True)
class BatchParity:
    """The comparison at one batch size over all samples."""

    batch_size: int
    max_abs_diff: float
    max_rel_diff: float
    excess: float  # largest amount by which an element exceeded atol + rtol*|eager| (<= 0: none did)
    agreement: float | None  # share of samples with the same predicted class (None: regression)


@dataclass(frozen=True)
class ParityResult:
    tolerance: Tolerance
    samples: int
    source: str  # where the inputs came from ("test split", or random inputs and why)
    batches: tuple[BatchParity, ...]

    @property
    def max_abs_diff(self) -> float:
        return max(b.max_abs_diff for b in self.batches)

    @property
    def max_rel_diff(self) -> float:
        return max(b.max_rel_diff for b in self.batches)

    @property
    def agreement(self) -> float | None:
        values = [b.agreement for b in self.batches if b.agreement is not None]
        return min(values) if values else None

    @property
    def excess(self) -> float:
        return max(b.excess for b in self.batches)

    @property
    def passed(self) -> bool:
        return not self.misses()

    def misses(self) -> list[str]:
        """One line per criterion missed, saying by how much (empty when the export passed)."""
        tol, lines = self.tolerance, []
        if tol.elementwise and self.excess > 0:
            worst = max(self.batches, key=lambda b: b.excess)
            lines.append(
                f"outputs differ by up to {worst.max_abs_diff:.3g} (relative {worst.max_rel_diff:.3g}) "
                f"at batch size {worst.batch_size}, exceeding atol + rtol*|eager| "
                f"({tol.describe()}) by {worst.excess:.3g}"
            )
        if tol.min_agreement is not None:
            agreement = self.agreement
            if agreement is None:
                lines.append("predicted-class agreement cannot be measured for regression outputs")
            elif agreement < tol.min_agreement:
                lines.append(
                    f"predicted classes agree on {agreement:.2%} of samples, below the required "
                    f"{tol.min_agreement:.2%} (short by {tol.min_agreement - agreement:.2%})"
                )
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "inputs": self.source,
            "samples": self.samples,
            "batch_sizes": [b.batch_size for b in self.batches],
            "max_abs_diff": self.max_abs_diff,
            "max_rel_diff": self.max_rel_diff,
            "agreement": self.agreement,
            "tolerance": asdict(self.tolerance),
            "per_batch_size": [asdict(b) for b in self.batches],
            "misses": self.misses(),
        }


def predicted(outputs: Array, task: str) -> npt.NDArray[np.int64] | None:
    """Predicted classes from raw outputs, as the task defines them (None for regression)."""
    if task in ("classification", "language_modeling"):  # LM: the next token at every position
        classes: npt.NDArray[np.int64] = outputs.argmax(axis=-1).astype(np.int64)
        return classes
    if task == "binary":
        positive: npt.NDArray[np.int64] = (outputs.reshape(len(outputs), -1)[:, 0] > 0).astype(np.int64)
        return positive
    return None


def run_batched(runner: Runner, inputs: Array, batch_size: int) -> Array:
    """``runner`` over ``inputs`` in chunks of ``batch_size`` (the last one may be smaller)."""
    chunks = [runner(np.ascontiguousarray(inputs[i:i + batch_size]))
              for i in range(0, len(inputs), batch_size)]
    return np.concatenate(chunks).astype(np.float32, copy=False)


def compare(eager: Array, exported: Array, tolerance: Tolerance, task: str, batch_size: int) -> BatchParity:
    """Differences between two output arrays of the same samples."""
    if eager.shape != exported.shape:
        raise ValueError(f"exported outputs have shape {exported.shape}, eager ones {eager.shape}")
    eager64, exported64 = eager.astype(np.float64), exported.astype(np.float64)
    diff = np.abs(exported64 - eager64)
    scale = np.abs(eager64)
    allowed = (tolerance.atol or 0.0) + (tolerance.rtol or 0.0) * scale
    ours, theirs = predicted(eager, task), predicted(exported, task)
    return BatchParity(
        batch_size=batch_size,
        max_abs_diff=float(diff.max(initial=0.0)),
        max_rel_diff=float((diff / np.maximum(scale, np.finfo(np.float32).tiny)).max(initial=0.0)),
        excess=float((diff - allowed).max(initial=0.0)) if tolerance.elementwise else 0.0,
        agreement=None if ours is None or theirs is None else float((ours == theirs).mean()),
    )


def check_parity(
    eager: Runner,
    exported: Runner,
    inputs: Array,
    tolerance: Tolerance,
    task: str,
    source: str,
    batch_sizes: Sequence[int] = BATCH_SIZES,
) -> ParityResult:
    """Run both models over every input at each batch size and compare their outputs.

    The eager model runs at the same batch size as the export, so batching noise in the eager
    kernels is not blamed on the export.
    """
    batches = tuple(
        compare(run_batched(eager, inputs, size), run_batched(exported, inputs, size),
                tolerance, task, size)
        for size in batch_sizes
    )
    return ParityResult(tolerance, len(inputs), source, batches)
