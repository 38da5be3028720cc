"""Exact values of the parity tolerances: what an export must meet, as shown to users."""

from __future__ import annotations

import pytest

from kiln.export.tolerance import FP32, INT8, INT8_REGRESSION, Tolerance


@pytest.mark.parametrize(
    ("tol", "elementwise"),
    [
        (Tolerance(), False),
        (Tolerance(rtol=1e-3), True),
        (Tolerance(atol=1e-5), True),
        (Tolerance(rtol=1e-3, atol=1e-5), True),
        (Tolerance(min_agreement=0.99), False),
    ],
)
def test_elementwise_means_rtol_or_atol_is_set(tol: Tolerance, elementwise: bool) -> None:
    assert tol.elementwise is elementwise


@pytest.mark.parametrize(
    ("tol", "text"),
    [
        (Tolerance(), "none"),
        (Tolerance(rtol=1e-3, atol=1e-5), "rtol=0.001, atol=1e-05"),
        (Tolerance(atol=0.5), "atol=0.5"),
        (Tolerance(rtol=0.0), "rtol=0"),
        (Tolerance(rtol=0.05, atol=0.01, min_agreement=0.99), "rtol=0.05, atol=0.01, min_agreement=0.99"),
    ],
)
def test_describe_lists_only_the_criteria_given(tol: Tolerance, text: str) -> None:
    assert tol.describe() == text


def test_shipped_tolerances() -> None:
    assert (FP32.rtol, FP32.atol, FP32.min_agreement) == (1e-3, 1e-5, None)
    assert (INT8.rtol, INT8.atol, INT8.min_agreement) == (None, None, 0.99)
    assert (INT8_REGRESSION.rtol, INT8_REGRESSION.atol, INT8_REGRESSION.min_agreement) == (5e-2, 1e-2, None)
