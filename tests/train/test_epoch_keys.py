"""The training side of seeded augmentation: the sampler's (epoch, index) keys, the loader's
throughput knobs, and data.augment on mnist-format IDX files, trained for real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tests.idx_data import write_idx_dataset
from torch.utils.data import TensorDataset

import kiln
from kiln.config.data_options import DataConfig, FashionMnistOptions, MnistOptions
from kiln.data.loader import loader_knobs, make_loader
from kiln.data.mnist import FILES, INPUT_SCALE, build_fashion_mnist, build_mnist, read_idx
from kiln.data.split import make_bundle
from kiln.testing import tiny_config
from kiln.train import Trainer
from kiln.train.run import prepare
from kiln.train.sampler import EpochSampler

# On a machine with fewer cores than workers (a one-core runner), PyTorch warns; results do not
# depend on it.
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


# --- the sampler ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("rank", "world_size"), [(0, 1), (1, 3)])
def test_keyed_sampler_yields_the_same_order_as_epoch_index_pairs(rank: int, world_size: int) -> None:
    plain = EpochSampler(23, seed=5, rank=rank, world_size=world_size)
    keyed = EpochSampler(23, seed=5, rank=rank, world_size=world_size, keyed=True)
    for epoch, start in [(0, 0), (3, 0), (3, 4)]:
        plain.set_epoch(epoch, start)
        keyed.set_epoch(epoch, start)
        indices = list(plain)
        assert list(keyed) == [(epoch, i) for i in indices]
        assert len(keyed) == len(plain) == len(indices)
    keyed.set_epoch(3, 4)
    assert next(iter(keyed)) == (3, plain.permutation()[4])  # a resume continues mid-epoch, keys and all


# --- the loader knobs ----------------------------------------------------------------------------


def test_loader_knobs_reach_the_dataloader_and_auto_pins_only_on_cuda() -> None:
    cfg = DataConfig(name="x", num_workers=2, persistent_workers=False, prefetch_factor=3)
    knobs = loader_knobs(cfg, torch.device("cpu"))
    assert knobs == {"persistent_workers": False, "prefetch_factor": 3, "pin_memory": False}
    assert loader_knobs(cfg.model_copy(update={"pin_memory": True}), torch.device("cpu"))["pin_memory"] is True
    assert loader_knobs(cfg, torch.device("cuda"))["pin_memory"] is torch.cuda.is_available()
    data = TensorDataset(torch.arange(10.0))
    loader = make_loader(data, 4, 2, **knobs)
    assert (loader.persistent_workers, loader.prefetch_factor, loader.pin_memory) == (False, 3, False)
    # without workers there is nothing to keep alive or load ahead: the knobs do not apply
    idle = make_loader(data, 4, 0, persistent_workers=True, prefetch_factor=3)
    assert (idle.persistent_workers, idle.prefetch_factor) == (False, None)
    assert [b[0].tolist() for b in make_loader(data, 4, 2, persistent_workers=True, prefetch_factor=1)] == [
        [0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0], [8.0, 9.0],
    ]


# --- mnist-format data with data.augment ---------------------------------------------------------


@pytest.mark.parametrize(("options", "build"), [(MnistOptions, build_mnist), (FashionMnistOptions, build_fashion_mnist)])
def test_idx_without_augment_is_bit_identical_to_before(tmp_path: Path, options: Any, build: Any) -> None:
    """What mnist built before data.augment existed: 0..1 floats, then the split's normalization."""
    write_idx_dataset(tmp_path)
    cfg = options(path=tmp_path, val_fraction=0.25, augment=[])
    bundle = build(cfg, seed=3)
    x = torch.from_numpy(read_idx(tmp_path / f"{FILES[0]}.gz")).unsqueeze(1).float() * INPUT_SCALE
    y = torch.from_numpy(read_idx(tmp_path / f"{FILES[1]}.gz")).long()
    x_test = torch.from_numpy(read_idx(tmp_path / f"{FILES[2]}.gz")).unsqueeze(1).float() * INPUT_SCALE
    y_test = torch.from_numpy(read_idx(tmp_path / f"{FILES[3]}.gz")).long()
    before = make_bundle(x, y, cfg, 3, bundle.spec, test=(x_test, y_test))
    assert isinstance(bundle.train, TensorDataset) and not getattr(bundle.train, "epoch_keys", False)
    for name in ("train", "val", "test"):
        for a, b in zip(getattr(bundle, name).tensors, getattr(before, name).tensors, strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b), name
    assert (bundle.spec.mean, bundle.spec.std) == (before.spec.mean, before.spec.std)
    flipped = build(options(path=tmp_path, val_fraction=0.25, augment=[{"name": "horizontal_flip", "p": 1.0}]), seed=3)
    assert not torch.equal(flipped.train[(0, 0)][0], bundle.train[0][0])
    assert torch.equal(flipped.train[(0, 0)][0], bundle.train[0][0].flip(-1))


def test_idx_augment_acts_on_the_pixels_then_scales_and_normalizes_as_before(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path)
    plain = build_mnist(MnistOptions(path=tmp_path), seed=3)
    assert isinstance(plain.train, TensorDataset)
    inputs, targets = plain.train.tensors
    never = build_mnist(MnistOptions(path=tmp_path, augment=[{"name": "horizontal_flip", "p": 0.0}]), seed=3)
    always = build_mnist(MnistOptions(path=tmp_path, augment=[{"name": "horizontal_flip", "p": 1.0}]), seed=3)
    sometimes = build_mnist(MnistOptions(path=tmp_path, augment=[{"name": "horizontal_flip"}]), seed=3)
    assert getattr(never.train, "epoch_keys", False) and len(never.train) == len(inputs)  # type: ignore[arg-type]
    assert (never.val, never.test) != (None, None) and never.spec == plain.spec
    flipped = 0
    for i in range(len(inputs)):
        x, y = never.train[(2, i)]
        assert torch.equal(x, inputs[i]) and int(y) == int(targets[i])  # the same arithmetic, bit for bit
        assert torch.equal(always.train[(2, i)][0], inputs[i].flip(-1))  # a flip of the 0..255 pixels
        flipped += not torch.equal(sometimes.train[(0, i)][0], inputs[i])
    assert 0 < flipped < len(inputs)
    assert torch.equal(sometimes.train[5][0], sometimes.train[(0, 5)][0])  # an index alone is epoch 0
    always.train.augment = None  # type: ignore[attr-defined]  # as evaluating the training split would
    assert not getattr(always.train, "epoch_keys", True)
    assert all(torch.equal(always.train[i][0], inputs[i]) for i in range(len(inputs)))
    changes = [not torch.equal(sometimes.train[(e, 5)][0], sometimes.train[(e + 1, 5)][0]) for e in range(12)]
    assert any(changes)  # the same sample, flipped in some epochs and not in others


def test_idx_augment_refuses_colour_steps_on_grayscale(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path)
    with pytest.raises(kiln.errors.ConfigError, match=r"data\.augment\[0\] \(color_jitter\).*1 channel"):
        build_mnist(MnistOptions(path=tmp_path, augment=[{"name": "color_jitter", "saturation": 0.3}]), seed=0)


def _train(tmp_path: Path, data: Path, name: str, *overrides: str) -> dict[str, torch.Tensor]:
    cfg = tiny_config(
        tmp_path / name, "data.name=mnist", f"data.path={data}", "model.hidden=[32]", "model.dropout=0.2",
        "training.batch_size=8", "checkpoint.enabled=false", *overrides, backends=("jsonl",),
    )
    result = Trainer(cfg, quiet=True).fit()
    return kiln.load_model(result.run_dir).state_dict()


AUGMENT = 'data.augment=[{name: random_crop, padding: 2}, {name: horizontal_flip}, {name: rotation, degrees: 10}]'


def test_same_seed_trains_identically_with_0_and_2_workers(tmp_path: Path) -> None:
    data = write_idx_dataset(tmp_path / "idx")
    none = _train(tmp_path, data, "w0", AUGMENT, "data.num_workers=0")
    two = _train(tmp_path, data, "w2", AUGMENT, "data.num_workers=2", "data.prefetch_factor=1")
    plain = _train(tmp_path, data, "plain", "data.num_workers=0")
    assert all(torch.equal(none[k], two[k]) for k in none)
    assert not all(torch.equal(none[k], plain[k]) for k in none)  # the augmentation did train


def test_a_run_keys_its_sampler_for_epoch_keyed_data_and_uses_the_loader_knobs(tmp_path: Path) -> None:
    data = write_idx_dataset(tmp_path / "idx")
    overrides = ("data.name=mnist", f"data.path={data}", "data.num_workers=1", "data.persistent_workers=false",
                 "data.prefetch_factor=4", "checkpoint.enabled=false")
    for augment, keyed in [(AUGMENT, True), ("data.augment=[]", False)]:
        c = prepare(tiny_config(tmp_path / "runs", *overrides, augment, backends=("jsonl",)), None, None, None).components
        try:
            assert c.sampler.keyed is keyed
            assert all(isinstance(key, tuple) is keyed for key in c.sampler)
            loader = c.train_loader
            assert (loader.num_workers, loader.persistent_workers, loader.prefetch_factor) == (1, False, 4)
        finally:
            c.tracker.close("completed", timeout=10)
