"""Every entry of the TASKS catalog is what ``build_task`` returns for its name, and takes a batch
through the whole protocol: split, loss, meter (with a state_dict round trip), predictions."""

from __future__ import annotations

import pytest
import torch

from kiln.config.schema import LossConfig
from kiln.data.spec import DataSpec
from kiln.errors import ConfigError
from kiln.tasks import TASKS, build_task

# One example per task: (spec, model outputs, targets) of a batch of 4.
_g = torch.Generator().manual_seed(0)
EXAMPLES = {
    "classification": (DataSpec("c", "classification", (3,), 5), torch.randn(4, 5, generator=_g),
                       torch.tensor([0, 4, 2, 1])),
    "binary": (DataSpec("b", "binary", (3,), 2), torch.randn(4, 1, generator=_g), torch.tensor([0, 1, 1, 0])),
    "regression": (DataSpec("r", "regression", (3,), 1), torch.randn(4, 1, generator=_g),
                   torch.randn(4, generator=_g)),
    "language_modeling": (DataSpec("t", "language_modeling", (6,), 7, input_dtype="int64"),
                          torch.randn(4, 6, 7, generator=_g), torch.randint(0, 7, (4, 6), generator=_g)),
}


def test_every_task_has_an_example_here() -> None:
    assert sorted(EXAMPLES) == TASKS.names()


@pytest.mark.parametrize("name", TASKS.names())
def test_every_task_takes_a_batch_through_the_protocol(name: str) -> None:
    spec, outputs, targets = EXAMPLES[name]
    task = build_task(spec, LossConfig())
    assert task.name == name
    inputs, got = task.split_batch((torch.zeros(4, *spec.input_shape), targets))
    assert got is targets and inputs.shape == (4, *spec.input_shape)
    loss = task.loss(outputs, targets)
    assert loss.ndim == 0 and torch.isfinite(loss)
    meter = task.meter()
    meter.update(outputs, targets, loss)
    metrics = meter.compute()
    assert metrics["loss"] == pytest.approx(loss.item(), rel=1e-6)
    again = task.meter()
    again.load_state_dict(meter.state_dict())
    assert again.compute() == metrics
    assert task.predict(outputs).shape[0] == 4
    assert task.to(torch.device("cpu")) is task


def test_an_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown task 'ranking'\. Known: binary, classification, "
                                          r"language_modeling, regression"):
        build_task(DataSpec("x", "ranking", (3,), 2), LossConfig())  # type: ignore[arg-type]
