"""Parity tolerances and defaults, free of numpy and torch so ``kiln --help`` can show them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

BATCH_SIZES = (1, 7, 32)
SAMPLES = 256  # held-out inputs compared, at every batch size


@dataclass(frozen=True)
class Tolerance:
    """What an export must meet; ``None`` leaves a criterion out.

    >>> Tolerance(rtol=1e-3, atol=1e-5).describe()
    'rtol=0.001, atol=1e-05'
    """

    rtol: float | None = None
    atol: float | None = None
    min_agreement: float | None = None

    @property
    def elementwise(self) -> bool:
        return self.rtol is not None or self.atol is not None

    def describe(self) -> str:
        parts = [f"{k}={v:g}" for k, v in asdict(self).items() if v is not None]
        return ", ".join(parts) or "none"


FP32 = Tolerance(rtol=1e-3, atol=1e-5)
INT8 = Tolerance(min_agreement=0.99)
# Regression has no classes to agree on: int8 regression outputs are held to a loose relative bound.
INT8_REGRESSION = Tolerance(rtol=5e-2, atol=1e-2)
