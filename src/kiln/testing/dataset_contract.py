"""The contract every dataset factory keeps, as functions and as a test class to subclass.

A dataset factory is ``build(options, seed) -> DataBundle`` (``kiln.data.catalog.DatasetFactory``).
kiln's tests run this contract against every entry of the DATASETS catalog; run it against your
own the same way. Subclass ``DatasetContract`` (pytest collects the subclass and its inherited
tests) and give it two fixtures, ``build`` and ``options``:

>>> class TestMyDataset(DatasetContract):  # doctest: +SKIP
...     @pytest.fixture
...     def build(self) -> DatasetFactory[MyOptions]:
...         return my_build
...     @pytest.fixture
...     def options(self, tmp_path: Path) -> MyOptions:
...         return MyOptions(rows=64)

or call ``check_dataset(my_build, MyOptions(rows=64))`` in a test of your own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from kiln.data.build import check_bundle, sample_problems
from kiln.data.loader import make_loader

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from kiln.data.catalog import DatasetFactory
    from kiln.data.spec import DataBundle, DataSpec

SAMPLES = 256  # samples of each split compared and checked (evenly spaced); train is read whole
BATCH = 7  # an odd batch size, so a last partial batch is likely too


def check_dataset(build: DatasetFactory[Any], options: Any, seed: int = 0, shared: float = 0.0) -> None:
    """Every check below, on one bundle; raises AssertionError (or the factory's error) on a breach."""
    check_deterministic(build, options, seed)
    bundle = built(build, options, seed)
    check_splits(bundle, shared)
    check_spec(bundle)
    check_loaders(bundle)


def built(build: DatasetFactory[Any], options: Any, seed: int) -> DataBundle:
    """The factory's bundle, through the checks every run applies to it (``check_bundle``)."""
    return check_bundle(build(options, seed), f"the dataset factory {_name(build)}")


def check_deterministic(build: DatasetFactory[Any], options: Any, seed: int = 0) -> None:
    """The same options and seed give the same splits, sample for sample: a run is repeatable,
    and a resumed run sees the data it started with."""
    first, second = built(build, options, seed), built(build, options, seed)
    assert first.spec == second.spec, f"two builds with seed {seed} gave different specs"
    for name, a, b in _pairs(first, second):
        assert (a is None) == (b is None), f"{name} is None in one build and not the other"
        if a is None or b is None:
            continue
        assert len(a) == len(b), f"{name} has {len(a)} samples in one build, {len(b)} in the other"  # type: ignore[arg-type]
        for i in _spread(len(a)):  # type: ignore[arg-type]
            assert _same(a[i], b[i]), f"{name}[{i}] differs between two builds with seed {seed}"


def check_splits(bundle: DataBundle, shared: float = 0.0) -> None:
    """Train is non-empty; validation and test are None or non-empty, and (up to ``shared``, the
    share of their samples that may also be training samples) disjoint from train."""
    assert len(bundle.train) > 0, "the training split is empty"  # type: ignore[arg-type]
    seen = {_key(bundle.train[i]) for i in range(len(bundle.train))}  # type: ignore[arg-type]
    for name in ("val", "test"):
        split = getattr(bundle, name)
        if split is None:
            continue
        assert len(split) > 0, f"the {name} split is empty; give None for a split there is not"
        picked = _spread(len(split))
        both = sum(_key(split[i]) in seen for i in picked)
        assert both <= shared * len(picked), (
            f"{both} of {len(picked)} {name} samples checked are training samples too: the splits "
            "overlap (raise `shared` only where the data holds true duplicates)"
        )


def check_spec(bundle: DataBundle) -> None:
    """Every split's samples are what the DataSpec says: input shape and dtype, and targets that
    fit its task (class indices in range, float values, or token ids shaped like the input)."""
    spec = bundle.spec
    dtype = getattr(torch, spec.input_dtype)
    for name, split in (("train", bundle.train), ("val", bundle.val), ("test", bundle.test)):
        if split is None:
            continue
        for i in _spread(len(split)):  # type: ignore[arg-type]
            sample = split[i]
            problems = sample_problems(sample, spec, f"{name}[{i}]")
            assert not problems, "; ".join(problems)
            assert sample[0].dtype == dtype, (
                f"{name}[{i}] input is {sample[0].dtype}; spec.input_dtype says {spec.input_dtype}"
            )


def check_loaders(bundle: DataBundle) -> None:
    """kiln's DataLoader batches every split into what the spec promises the model and the task."""
    for name, split in (("train", bundle.train), ("val", bundle.val), ("test", bundle.test)):
        if split is None:
            continue
        x, y = next(iter(make_loader(split, BATCH, workers=0)))
        size = min(BATCH, len(split))  # type: ignore[arg-type]
        assert tuple(x.shape) == (size, *bundle.spec.input_shape), (
            f"a {name} batch of {size} has inputs {list(x.shape)}; "
            f"expected {[size, *bundle.spec.input_shape]}"
        )
        assert tuple(y.shape) in _target_shapes(bundle.spec, size, tuple(x.shape)), (
            f"a {name} batch of {size} has targets {list(y.shape)} for a {bundle.spec.task} task"
        )


class DatasetContract:
    """The dataset contract as tests: subclass it as ``Test...`` and define the fixtures ``build``
    (the factory) and ``options`` (its options, e.g. pointing at files under ``tmp_path``).

    ``seed`` and ``shared`` (see ``check_splits``) are class attributes a subclass may change.
    """

    seed = 0
    shared = 0.0

    def test_builds_deterministically(self, build: DatasetFactory[Any], options: Any) -> None:
        check_deterministic(build, options, self.seed)

    def test_splits_are_non_empty_and_disjoint(self, build: DatasetFactory[Any], options: Any) -> None:
        check_splits(built(build, options, self.seed), self.shared)

    def test_spec_matches_the_samples(self, build: DatasetFactory[Any], options: Any) -> None:
        check_spec(built(build, options, self.seed))

    def test_loaders_yield_what_the_spec_says(self, build: DatasetFactory[Any], options: Any) -> None:
        check_loaders(built(build, options, self.seed))


def _target_shapes(spec: DataSpec, size: int, inputs: tuple[int, ...]) -> set[tuple[int, ...]]:
    if spec.task == "language_modeling":
        return {inputs}  # a token id per input position
    if spec.task == "regression":
        return {(size,), (size, 1)}
    return {(size,)}  # one class index per sample


def _pairs(a: DataBundle, b: DataBundle) -> list[tuple[str, Dataset[Any] | None, Dataset[Any] | None]]:
    return [(name, getattr(a, name), getattr(b, name)) for name in ("train", "val", "test")]


def _spread(n: int) -> list[int]:
    """Up to SAMPLES indices spread evenly over ``range(n)``, first and last included."""
    if n <= SAMPLES:
        return list(range(n))
    return sorted({round(i * (n - 1) / (SAMPLES - 1)) for i in range(SAMPLES)})


def _same(a: Any, b: Any) -> bool:
    return all(torch.equal(torch.as_tensor(p), torch.as_tensor(q)) for p, q in zip(a, b, strict=True))


def _key(sample: Any) -> tuple[bytes, ...]:
    return tuple(torch.as_tensor(part).numpy().tobytes() for part in sample)


def _name(build: object) -> str:
    return f"{getattr(build, '__module__', '?')}:{getattr(build, '__qualname__', repr(build))}"
