"""The parity check itself, on synthetic runners: what passes, what fails, and what it reports."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.export.parity import check_parity, compare, predicted, run_batched
from kiln.export.tolerance import FP32, INT8, Tolerance

RNG = np.random.default_rng(0)
INPUTS = RNG.standard_normal((40, 6)).astype(np.float32)
WEIGHTS = RNG.standard_normal((6, 4)).astype(np.float32)


def eager(x: np.ndarray) -> np.ndarray:
    return (x @ WEIGHTS).astype(np.float32)


def test_identical_runner_passes_at_every_batch_size() -> None:
    result = check_parity(eager, eager, INPUTS, FP32, "classification", "test split (40 samples)")
    assert result.passed and result.misses() == []
    assert [b.batch_size for b in result.batches] == [1, 7, 32]
    assert result.max_abs_diff == 0.0 and result.agreement == 1.0
    record = result.to_dict()
    assert record["passed"] is True and record["samples"] == 40
    assert record["tolerance"] == {"rtol": 1e-3, "atol": 1e-5, "min_agreement": None}


def test_runner_off_by_more_than_tolerance_fails_saying_by_how_much() -> None:
    result = check_parity(eager, lambda x: eager(x) + 1e-2, INPUTS, FP32, "classification", "s")
    assert not result.passed
    (miss,) = result.misses()
    assert "exceeding atol + rtol*|eager|" in miss and "rtol=0.001, atol=1e-05" in miss
    assert result.max_abs_diff == pytest.approx(1e-2, rel=1e-3)
    assert result.excess > 0


def test_within_tolerance_passes_and_zero_tolerance_fails() -> None:
    nudged = lambda x: eager(x) * np.float32(1 + 1e-5)  # noqa: E731
    assert check_parity(eager, nudged, INPUTS, FP32, "classification", "s").passed
    assert not check_parity(eager, nudged, INPUTS, Tolerance(rtol=0, atol=0), "classification", "s").passed


def test_agreement_criterion_for_int8() -> None:
    def one_flip(x: np.ndarray) -> np.ndarray:
        out = eager(x)
        if len(x) == 7:  # flip the predicted class of the first sample of every 7-batch
            out[0] = -out[0]
        return out

    result = check_parity(eager, one_flip, INPUTS, INT8, "classification", "s", batch_sizes=(7,))
    flipped = (predicted(eager(INPUTS), "classification") != predicted(
        run_batched(one_flip, INPUTS, 7), "classification")).mean()
    assert result.agreement == pytest.approx(1 - flipped)
    assert not result.passed and "short by" in result.misses()[0]
    assert check_parity(eager, one_flip, INPUTS, Tolerance(min_agreement=0.5), "classification", "s").passed


def test_run_batched_uses_the_given_batch_size() -> None:
    sizes: list[int] = []

    def recording(x: np.ndarray) -> np.ndarray:
        sizes.append(len(x))
        return eager(x)

    np.testing.assert_array_equal(run_batched(recording, INPUTS, 32), eager(INPUTS))
    assert sizes == [32, 8]


def test_binary_and_regression_predictions() -> None:
    logits = np.array([[-1.0], [2.0]], dtype=np.float32)
    assert predicted(logits, "binary").tolist() == [0, 1]
    assert predicted(logits, "regression") is None
    parity = compare(logits, logits, INT8, "regression", 1)
    assert parity.agreement is None
    result = check_parity(lambda x: x, lambda x: x, logits, INT8, "regression", "s", batch_sizes=(1,))
    assert not result.passed and "regression" in result.misses()[0]


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        compare(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32), FP32, "classification", 2)
