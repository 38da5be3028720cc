"""Parity arithmetic to the last digit: differences, excess over the tolerance, agreement, record."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.export.parity import (
    BatchParity,
    ParityResult,
    check_parity,
    compare,
    predicted,
    run_batched,
)
from kiln.export.tolerance import Tolerance

E = np.array([[1.0, -2.0], [0.5, 4.0]], dtype=np.float32)
X = np.array([[1.5, -2.0], [0.5, 3.0]], dtype=np.float32)  # differences 0.5 and 1.0


def test_compare_exact_differences() -> None:
    b = compare(E, X, Tolerance(rtol=0.1, atol=0.2), "classification", 7)
    assert b.batch_size == 7
    assert b.max_abs_diff == 1.0
    assert b.max_rel_diff == 0.5  # 0.5 / |1.0|; 1.0 / |4.0| is 0.25
    # allowed = 0.2 + 0.1 * |eager|: 0.3 for the first, 0.6 for the last; excess max(0.2, 0.4)
    assert b.excess == pytest.approx(0.4)
    assert b.agreement == 1.0  # both rows keep their argmax


def test_compare_agreement_counts_rows() -> None:
    eager = np.array([[2.0, 1.0], [0.0, 1.0], [5.0, 0.0], [0.0, 3.0]], dtype=np.float32)
    other = np.array([[2.0, 1.0], [1.0, 0.0], [5.0, 0.0], [0.0, 3.0]], dtype=np.float32)
    assert compare(eager, other, Tolerance(), "classification", 1).agreement == 0.75
    assert compare(eager, other, Tolerance(), "regression", 1).agreement is None


def test_compare_without_elementwise_tolerance_has_no_excess() -> None:
    b = compare(E, X, Tolerance(min_agreement=0.5), "classification", 1)
    assert b.excess == 0.0 and b.max_abs_diff == 1.0


def test_compare_atol_or_rtol_alone() -> None:
    assert compare(E, X, Tolerance(atol=0.25), "regression", 1).excess == pytest.approx(0.75)
    assert compare(E, X, Tolerance(rtol=0.5), "regression", 1).excess == pytest.approx(0.0)
    assert compare(E, X, Tolerance(rtol=0.1), "regression", 1).excess == pytest.approx(0.6)


def test_compare_relative_difference_at_zero_uses_the_smallest_float() -> None:
    zero = np.zeros((1, 2), dtype=np.float32)
    one = np.array([[0.0, 1e-30]], dtype=np.float32)
    b = compare(zero, one, Tolerance(atol=0.0), "regression", 1)
    assert b.max_rel_diff == pytest.approx(float(np.float32(1e-30)) / float(np.finfo(np.float32).tiny))
    assert b.excess == pytest.approx(float(np.float32(1e-30)))


def test_compare_empty_outputs() -> None:
    empty = np.zeros((0, 2), dtype=np.float32)
    b = compare(empty, empty, Tolerance(rtol=0.1), "regression", 1)
    assert (b.max_abs_diff, b.max_rel_diff, b.excess) == (0.0, 0.0, 0.0)


def test_compare_refuses_other_shapes() -> None:
    with pytest.raises(ValueError) as err:
        compare(E, X[:1], Tolerance(), "regression", 1)
    assert str(err.value) == "exported outputs have shape (1, 2), eager ones (2, 2)"


def test_predicted_per_task() -> None:
    out = np.array([[0.1, 0.9, 0.0], [3.0, 1.0, 2.0]], dtype=np.float32)
    for task in ("classification", "language_modeling"):
        got = predicted(out, task)
        assert got is not None and got.dtype == np.int64 and got.tolist() == [1, 0]
    binary = predicted(np.array([[0.5], [0.0], [-1.0]], dtype=np.float32), "binary")
    assert binary is not None and binary.dtype == np.int64 and binary.tolist() == [1, 0, 0]
    flat = predicted(np.array([0.5, -0.5], dtype=np.float32), "binary")
    assert flat is not None and flat.tolist() == [1, 0]
    assert predicted(out, "regression") is None
    lm = predicted(np.zeros((2, 3, 5), dtype=np.float32), "language_modeling")
    assert lm is not None and lm.shape == (2, 3)


def test_run_batched_chunks_and_casts() -> None:
    seen: list[tuple[int, bool]] = []

    def runner(x: np.ndarray) -> np.ndarray:
        seen.append((len(x), x.flags["C_CONTIGUOUS"]))
        return x.astype(np.float64) * 2

    inputs = np.arange(20, dtype=np.float32).reshape(10, 2)[:, ::1]
    out = run_batched(runner, np.asfortranarray(inputs), 4)
    assert seen == [(4, True), (4, True), (2, True)]
    assert out.dtype == np.float32 and out.tolist() == (inputs * 2).tolist()


def _batch(size: int, abs_: float, rel: float, excess: float, agreement: float | None) -> BatchParity:
    return BatchParity(size, abs_, rel, excess, agreement)


def test_result_aggregates_the_worst_batch() -> None:
    r = ParityResult(Tolerance(rtol=1e-3, atol=1e-5), 40, "test split",
                     (_batch(1, 0.1, 0.3, -1.0, 0.9), _batch(7, 0.2, 0.1, 0.5, None), _batch(32, 0.05, 0.2, 0.25, 0.8)))
    assert (r.max_abs_diff, r.max_rel_diff, r.excess, r.agreement) == (0.2, 0.3, 0.5, 0.8)
    assert r.passed is False
    assert r.misses() == [
        "outputs differ by up to 0.2 (relative 0.1) at batch size 7, exceeding atol + rtol*|eager| "
        "(rtol=0.001, atol=1e-05) by 0.5"
    ]


def test_result_agreement_is_none_for_regression() -> None:
    r = ParityResult(Tolerance(min_agreement=0.99), 5, "s", (_batch(1, 0.0, 0.0, 0.0, None),))
    assert r.agreement is None
    assert r.misses() == ["predicted-class agreement cannot be measured for regression outputs"]


def test_agreement_exactly_at_the_minimum_passes() -> None:
    r = ParityResult(Tolerance(min_agreement=0.75), 4, "s", (_batch(1, 9.0, 9.0, 9.0, 0.75),))
    assert r.passed is True and r.misses() == []
    low = ParityResult(Tolerance(min_agreement=0.99), 4, "s", (_batch(1, 0.0, 0.0, 0.0, 0.9766),))
    assert low.misses() == [
        "predicted classes agree on 97.66% of samples, below the required 99.00% (short by 1.34%)"
    ]


def test_zero_excess_passes() -> None:
    r = ParityResult(Tolerance(atol=0.1), 4, "s", (_batch(1, 0.1, 0.1, 0.0, None),))
    assert r.passed is True


def test_to_dict_exact() -> None:
    r = ParityResult(Tolerance(min_agreement=0.5), 12, "random inputs (no test split)",
                     (_batch(1, 0.5, 0.25, 0.0, 1.0), _batch(4, 0.75, 0.5, 0.0, 0.25)))
    assert r.to_dict() == {
        "passed": False,
        "inputs": "random inputs (no test split)",
        "samples": 12,
        "batch_sizes": [1, 4],
        "max_abs_diff": 0.75,
        "max_rel_diff": 0.5,
        "agreement": 0.25,
        "tolerance": {"rtol": None, "atol": None, "min_agreement": 0.5},
        "per_batch_size": [
            {"batch_size": 1, "max_abs_diff": 0.5, "max_rel_diff": 0.25, "excess": 0.0, "agreement": 1.0},
            {"batch_size": 4, "max_abs_diff": 0.75, "max_rel_diff": 0.5, "excess": 0.0, "agreement": 0.25},
        ],
        "misses": ["predicted classes agree on 25.00% of samples, below the required 50.00% (short by 25.00%)"],
    }


def test_check_parity_runs_both_at_each_batch_size() -> None:
    calls: list[tuple[str, int]] = []

    def eager(x: np.ndarray) -> np.ndarray:
        calls.append(("eager", len(x)))
        return x.astype(np.float32)

    def exported(x: np.ndarray) -> np.ndarray:
        calls.append(("exported", len(x)))
        return (x + 0.5).astype(np.float32)

    inputs = np.zeros((5, 2), dtype=np.float32)
    r = check_parity(eager, exported, inputs, Tolerance(atol=0.1), "regression", "src", batch_sizes=(2, 5))
    assert calls == [("eager", 2), ("eager", 2), ("eager", 1), ("exported", 2), ("exported", 2), ("exported", 1),
                     ("eager", 5), ("exported", 5)]
    assert (r.samples, r.source, [b.batch_size for b in r.batches]) == (5, "src", [2, 5])
    assert r.excess == pytest.approx(0.4) and r.max_abs_diff == 0.5
    default = check_parity(eager, eager, inputs, Tolerance(atol=0.1), "regression", "src")
    assert [b.batch_size for b in default.batches] == [1, 7, 32]
