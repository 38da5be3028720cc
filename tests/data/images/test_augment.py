"""Seeded per-sample augmentation: a pure function of (seed, epoch, index), on real v2 transforms,
that leaves every global random number generator as it found it."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter

from kiln._vision import torchvision
from kiln.config.augment_options import AugmentStep
from kiln.data.images.augment import Augment, build_augment, sample_seed
from kiln.errors import ConfigError

torchvision()

STEPS = TypeAdapter(list[AugmentStep])
# Every step of the schema, each with settings that make it act.
EVERY_STEP = [
    {"name": "random_resized_crop", "scale": [0.3, 1.0]},
    {"name": "random_crop", "padding": 3},
    {"name": "horizontal_flip"},
    {"name": "vertical_flip"},
    {"name": "rotation", "degrees": 20},
    {"name": "affine", "degrees": 10, "translate": [0.1, 0.1], "scale": [0.9, 1.1]},
    {"name": "color_jitter", "brightness": 0.3, "contrast": 0.3},
    {"name": "gaussian_blur", "kernel_size": 3},
    {"name": "trivial_augment"},
    {"name": "rand_augment", "num_ops": 2, "magnitude": 9},
    {"name": "auto_augment", "policy": "cifar10"},
    {"name": "random_erasing", "p": 0.5},
]
COLOUR_ONLY = [{"name": "grayscale", "p": 0.5}, {"name": "color_jitter", "saturation": 0.4, "hue": 0.1}]


def augment(steps: list[dict[str, object]], seed: int = 7, channels: int | None = None) -> Augment:
    built = build_augment(STEPS.validate_python(steps), seed, channels=channels)
    assert built is not None
    return built


def image(channels: int = 3, size: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (channels, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_no_steps_is_no_augmentation() -> None:
    assert build_augment([], seed=0) is None


@pytest.mark.parametrize("channels", [1, 3])
def test_every_step_keeps_dtype_and_shape_and_changes_the_image(channels: int) -> None:
    steps = EVERY_STEP + (COLOUR_ONLY if channels == 3 else [])
    pixels = image(channels)
    for step in steps:
        one = augment([step], channels=channels)
        outputs = [one(pixels, epoch, index) for epoch in range(3) for index in range(4)]
        assert all(o.dtype == torch.uint8 and o.shape == pixels.shape for o in outputs), step
        assert any(not torch.equal(o, pixels) for o in outputs), f"{step} never changed the image"


def test_same_seed_epoch_and_index_give_the_same_image_and_any_change_gives_another() -> None:
    steps = [{"name": "random_resized_crop"}, {"name": "horizontal_flip"}, {"name": "trivial_augment"}]
    pixels = image()
    first = augment(steps)(pixels, 3, 11)
    assert torch.equal(augment(steps)(pixels, 3, 11), first)  # a fresh object: nothing carried over
    assert not torch.equal(augment(steps)(pixels, 4, 11), first)  # another epoch
    assert not torch.equal(augment(steps)(pixels, 3, 12), first)  # another sample, same pixels
    assert not torch.equal(augment(steps, seed=8)(pixels, 3, 11), first)  # another run seed


def test_the_same_sample_differs_from_epoch_to_epoch() -> None:
    crop = augment([{"name": "random_resized_crop", "scale": [0.2, 0.9]}])
    pixels = image()
    for index in range(5):
        seen = [crop(pixels, epoch, index) for epoch in range(4)]
        assert all(not torch.equal(a, b) for i, a in enumerate(seen) for b in seen[i + 1 :]), index


def test_global_random_state_is_left_untouched() -> None:
    steps = EVERY_STEP + COLOUR_ONLY
    heavy = augment(steps)
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(5)
    before = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    for index in range(10):
        heavy(image(), 0, index)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert random.getstate() == before[1] and np.array_equal(np.random.get_state()[1], before[2])
    expected = torch.rand(3, generator=torch.Generator().manual_seed(123))
    assert torch.equal(torch.rand(3), expected)  # the next draws are those a seeded run expects


def test_result_does_not_depend_on_the_global_state_or_on_the_process_copy() -> None:
    steps = [{"name": "rotation", "degrees": 30}, {"name": "color_jitter", "brightness": 0.5}, {"name": "random_erasing"}]
    original = augment(steps)
    pixels = image()
    expected = [original(pixels, 2, i) for i in range(6)]
    copy = pickle.loads(pickle.dumps(original))  # what a DataLoader worker receives
    torch.manual_seed(999)
    torch.rand(1000)  # a worker's global state is anything at all
    assert all(torch.equal(copy(pixels, 2, i), e) for i, e in enumerate(expected))
    assert all(torch.equal(original(pixels, 2, i), e) for i, e in reversed(list(enumerate(expected))))


def test_steps_do_what_their_options_say() -> None:
    pixels = image()
    assert torch.equal(augment([{"name": "horizontal_flip", "p": 1.0}])(pixels, 0, 0), pixels.flip(-1))
    assert torch.equal(augment([{"name": "vertical_flip", "p": 1.0}])(pixels, 0, 0), pixels.flip(-2))
    assert torch.equal(augment([{"name": "horizontal_flip", "p": 0.0}])(pixels, 0, 0), pixels)
    assert torch.equal(augment([{"name": "rotation", "degrees": 0}])(pixels, 0, 0), pixels)
    erased = augment([{"name": "random_erasing", "p": 1.0, "scale": [0.2, 0.2]}])(pixels, 0, 0)
    changed = (erased != pixels).any(0).sum().item()
    assert 0.15 * 24 * 24 <= changed <= 0.25 * 24 * 24  # a fifth of the area, sides rounded


def test_steps_are_applied_in_the_listed_order() -> None:
    pixels = image()
    crop_then_flip = augment([{"name": "random_crop", "padding": 4}, {"name": "horizontal_flip", "p": 1.0}])
    crop = augment([{"name": "random_crop", "padding": 4}])
    assert torch.equal(crop_then_flip(pixels, 1, 2), crop(pixels, 1, 2).flip(-1))


@pytest.mark.parametrize("step", COLOUR_ONLY)
def test_colour_steps_on_one_channel_are_config_errors_that_say_the_fix(step: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=r"data\.augment\[1\] .*1 channel.*data\.image\.channels: 3"):
        augment([{"name": "horizontal_flip"}, step], channels=1)
    augment([step], channels=3)  # fine on colour images


def test_gaussian_blur_kernel_must_be_odd() -> None:
    with pytest.raises(ValueError, match=r"kernel_size must be odd.*got 4; use 5"):
        STEPS.validate_python([{"name": "gaussian_blur", "kernel_size": 4}])


def test_sample_seeds_are_stable_and_distinct() -> None:
    assert sample_seed(0, 0, 0) == sample_seed(0, 0, 0) < 2**63
    seeds = {sample_seed(s, e, i) for s in range(3) for e in range(5) for i in range(50)}
    assert len(seeds) == 3 * 5 * 50
    assert sample_seed(-1, 0, 0) != sample_seed(1, 0, 0)


def test_wrong_input_is_refused() -> None:
    flip = augment([{"name": "horizontal_flip"}])
    with pytest.raises(ValueError, match=r"uint8 image \[C, H, W\]; got torch.float32"):
        flip(image().float(), 0, 0)
