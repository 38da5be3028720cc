"""The contract every model factory keeps, as functions and as a test class to subclass.

A model factory is ``build(options, spec) -> nn.Module`` (``kiln.models.catalog.ModelFactory``).
kiln's tests run this contract against every entry of the MODELS catalog; run it against your own
the same way. Subclass ``ModelContract`` (pytest collects the subclass and its inherited tests)
and give it three fixtures, ``build``, ``options`` and ``spec`` (the data it is built for):

>>> class TestMyModel(ModelContract):  # doctest: +SKIP
...     @pytest.fixture
...     def build(self) -> ModelFactory[MyOptions]:
...         return my_build
...     @pytest.fixture
...     def options(self) -> MyOptions:
...         return MyOptions(width=8)
...     @pytest.fixture
...     def spec(self) -> DataSpec:
...         return DataSpec("toy", "classification", (1, 8, 8), 10)

or call ``check_model(my_build, MyOptions(width=8), spec)`` in a test of your own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from kiln.data.spec import DataSpec
    from kiln.models.catalog import ModelFactory


def check_model(build: ModelFactory[Any], options: Any, spec: DataSpec, seed: int = 0) -> None:
    """Every check below; raises AssertionError (or the factory's error) on a breach."""
    check_output_shape(build, options, spec, seed)
    check_deterministic_in_eval(build, options, spec, seed)
    check_trains_one_step(build, options, spec, seed)
    check_state_dict_round_trips(build, options, spec, seed)


def built(build: ModelFactory[Any], options: Any, spec: DataSpec, seed: int) -> nn.Module:
    """A model from the factory, its initialization seeded."""
    torch.manual_seed(seed)
    model = build(options, spec)
    assert isinstance(model, nn.Module), f"the factory returned {type(model).__name__}, not an nn.Module"
    return model


def inputs(spec: DataSpec, batch: int, seed: int = 0) -> Tensor:
    """A batch the spec describes: token ids for int64 inputs, standard normal values otherwise."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, *spec.input_shape)
    if spec.input_dtype == "int64":
        return torch.randint(0, spec.num_classes, shape, generator=generator)
    return torch.randn(shape, generator=generator, dtype=getattr(torch, spec.input_dtype))


def output_shape(spec: DataSpec, batch: int) -> tuple[int, ...]:
    """What the task needs from the model: logits per position for language modeling, else
    ``spec.output_size`` values per sample."""
    if spec.task == "language_modeling":
        return (batch, *spec.input_shape, spec.num_classes)
    return (batch, spec.output_size)


def check_output_shape(build: ModelFactory[Any], options: Any, spec: DataSpec, seed: int = 0) -> None:
    """A batch of 1 and of 7 give outputs of the shape the task reads (eval mode: batch norm
    takes a single sample there)."""
    model = built(build, options, spec, seed).eval()
    for batch in (1, 7):
        with torch.no_grad():
            out = model(inputs(spec, batch, seed))
        assert isinstance(out, Tensor), f"the model returned {type(out).__name__}, not a Tensor"
        assert tuple(out.shape) == output_shape(spec, batch), (
            f"a batch of {batch} gave outputs {list(out.shape)}; the {spec.task} task needs "
            f"{list(output_shape(spec, batch))}"
        )


def check_deterministic_in_eval(build: ModelFactory[Any], options: Any, spec: DataSpec, seed: int = 0) -> None:
    """In eval mode the same input gives the same output (no dropout, no batch statistics):
    evaluation, export parity and serving all rely on it."""
    model = built(build, options, spec, seed).eval()
    x = inputs(spec, 7, seed)
    with torch.no_grad():
        assert torch.equal(model(x), model(x)), "two eval-mode calls on one input differ"


def check_trains_one_step(build: ModelFactory[Any], options: Any, spec: DataSpec, seed: int = 0) -> None:
    """One optimizer step in train mode: a finite loss, finite gradients reaching the parameters,
    and parameters that move."""
    model = built(build, options, spec, seed).train()
    params = [p for p in model.parameters() if p.requires_grad]
    assert params, "the model has no trainable parameters"
    before = [p.detach().clone() for p in params]
    loss = task_loss(model(inputs(spec, 7, seed)), spec, seed)
    assert torch.isfinite(loss), f"the loss of one batch is {loss.item()}"
    loss.backward()  # type: ignore[no-untyped-call]
    grads = [p.grad for p in params if p.grad is not None]
    assert grads, "no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads), "a gradient holds NaN or inf"
    torch.optim.SGD(params, lr=0.1).step()
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, params, strict=True)), (
        "an optimizer step changed no parameter"
    )


def check_state_dict_round_trips(build: ModelFactory[Any], options: Any, spec: DataSpec, seed: int = 0) -> None:
    """Weights copied into a model built afresh (as a model package or checkpoint is loaded)
    reproduce its outputs exactly."""
    model = built(build, options, spec, seed).eval()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    other = built(build, options, spec, seed + 1).eval()
    other.load_state_dict(state)  # strict: every key, no extra ones
    x = inputs(spec, 7, seed)
    with torch.no_grad():
        assert torch.equal(model(x), other(x)), "the loaded weights give other outputs"


class ModelContract:
    """The model contract as tests: subclass it as ``Test...`` and define the fixtures ``build``
    (the factory), ``options`` (its options) and ``spec`` (the data it is built for).

    ``seed`` is a class attribute a subclass may change.
    """

    seed = 0

    def test_output_shape(self, build: ModelFactory[Any], options: Any, spec: DataSpec) -> None:
        check_output_shape(build, options, spec, self.seed)

    def test_deterministic_in_eval(self, build: ModelFactory[Any], options: Any, spec: DataSpec) -> None:
        check_deterministic_in_eval(build, options, spec, self.seed)

    def test_trains_one_step(self, build: ModelFactory[Any], options: Any, spec: DataSpec) -> None:
        check_trains_one_step(build, options, spec, self.seed)

    def test_state_dict_round_trips(self, build: ModelFactory[Any], options: Any, spec: DataSpec) -> None:
        check_state_dict_round_trips(build, options, spec, self.seed)


def task_loss(out: Tensor, spec: DataSpec, seed: int = 0) -> Tensor:
    """The loss of ``out`` against random targets of the spec's task."""
    generator = torch.Generator().manual_seed(seed + 1)
    if spec.task == "regression":
        return F.mse_loss(out, torch.randn(out.shape, generator=generator))
    if spec.task == "binary":
        return F.binary_cross_entropy_with_logits(out, torch.randint(0, 2, out.shape, generator=generator).float())
    logits = out.reshape(-1, spec.num_classes)
    targets = torch.randint(0, spec.num_classes, (logits.shape[0],), generator=generator)
    return F.cross_entropy(logits, targets)
