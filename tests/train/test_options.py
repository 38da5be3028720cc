"""Each training option has the effect only it produces, observed inside a real fit.

A probe callback watches the first optimizer step of a tiny run (then stops it): the logits of the
first training forward, the dtype every Linear layer computed in, each parameter's gradient right
after backward (before clipping) and the gradient the optimizer step actually received. The
expected values come from torch's own functional ops on the same logits and targets, so an option
that was silently ignored (or applied twice, or applied after the step) fails here, where a run
that merely completes would not.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kiln.testing import tiny_config
from kiln.train import Callback, Trainer, TrainState
from kiln.train.optim import build_optimizer

CLASS_WEIGHTS = [1.0, 2.0, 0.5, 1.0, 3.0, 1.0, 0.25, 1.0, 1.5, 1.0]


class FirstStepProbe(Callback):
    """Records what the loop did in its first optimizer step, then asks it to stop."""

    def __init__(self) -> None:
        self.inputs: Tensor | None = None
        self.logits: Tensor | None = None
        self.linear_dtypes: list[torch.dtype] = []
        self.initial: dict[str, Tensor] = {}
        self.backward_grads: dict[str, Tensor] = {}  # after backward, before any clipping
        self.stepped_grads: dict[str, Tensor] = {}  # what optimizer.step() received
        self.logged_grad_norm: float | None = None
        self.batch_loss: Tensor | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def on_fit_start(self, state: TrainState) -> None:
        model, self.optimizer, self._state = state.model, state.optimizer, state
        self.initial = {name: p.detach().clone() for name, p in model.named_parameters()}
        self._names = {id(p): name for name, p in model.named_parameters()}
        model.register_forward_hook(self._model_forward)
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.register_forward_hook(self._linear_forward)
        for name, p in model.named_parameters():
            p.register_post_accumulate_grad_hook(lambda p, name=name: self._backward(name, p))
        state.optimizer.register_step_pre_hook(self._step)

    def _training_forward(self) -> bool:  # validation and test run under no_grad
        return torch.is_grad_enabled() and self.logits is None

    def _linear_forward(self, module: nn.Module, args: Any, output: Tensor) -> None:
        if self._training_forward():
            self.linear_dtypes.append(output.dtype)

    def _model_forward(self, module: nn.Module, args: Any, output: Tensor) -> None:
        if self._training_forward():
            self.inputs, self.logits = args[0].detach().clone(), output.detach().float().clone()

    def _backward(self, name: str, p: Tensor) -> None:
        if name not in self.backward_grads:
            assert p.grad is not None
            self.backward_grads[name] = p.grad.detach().clone()

    def _step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.stepped_grads:
            return
        for group in optimizer.param_groups:
            for p in group["params"]:
                self.stepped_grads[self._names[id(p)]] = p.grad.detach().clone()
        norm = self._state.extras.get("grad_norm")
        self.logged_grad_norm = None if norm is None else float(norm)

    def on_batch_end(self, state: TrainState) -> None:
        if self.batch_loss is None:
            self.batch_loss = state.batch_loss
            state.request_stop("probe: one step is all this test needs")


def probe_fit(output: Path, *overrides: str) -> tuple[FirstStepProbe, Tensor]:
    """Train with ``overrides`` until the first optimizer step; the probe and that batch's targets."""
    probe = FirstStepProbe()
    cfg = tiny_config(output, "checkpoint.enabled=false", "tracking.system_metrics=false", *overrides,
                      backends=("jsonl",))
    trainer = Trainer(cfg, callbacks=[probe], quiet=True)
    trainer.fit()
    c = trainer.components
    assert c is not None and probe.batch_loss is not None and probe.stepped_grads
    c.sampler.set_epoch(0)  # the first batch of the first epoch again, from the run's own loader
    inputs, targets = c.task.split_batch(next(iter(c.train_loader)))
    assert probe.inputs is not None and torch.equal(inputs, probe.inputs)
    return probe, targets


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[FirstStepProbe, Tensor]:
    """The first step with every option at its default (cross-entropy, fp32, no L2, no clipping)."""
    return probe_fit(tmp_path_factory.mktemp("plain"))


def total_norm(grads: dict[str, Tensor]) -> float:
    return math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads.values()))


def test_the_default_loss_is_cross_entropy_in_fp32(plain: tuple[FirstStepProbe, Tensor]) -> None:
    probe, targets = plain
    assert probe.logits is not None and probe.batch_loss is not None
    assert probe.batch_loss.item() == pytest.approx(F.cross_entropy(probe.logits, targets).item(), rel=1e-6)
    assert probe.linear_dtypes == [torch.float32, torch.float32]
    assert probe.logged_grad_norm is None  # no grad_clip: nothing clipped, nothing logged
    for name, grad in probe.backward_grads.items():  # and the optimizer got the gradient unchanged
        assert torch.equal(probe.stepped_grads[name], grad), name


def test_focal_loss_is_the_focal_formula(tmp_path: Path, plain: tuple[FirstStepProbe, Tensor]) -> None:
    probe, targets = probe_fit(tmp_path, "training.loss.name=focal", "training.loss.focal_gamma=1.5")
    assert probe.logits is not None and probe.batch_loss is not None
    log_p_t = F.log_softmax(probe.logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
    expected = (-((1 - log_p_t.exp()) ** 1.5) * log_p_t).mean().item()
    assert probe.batch_loss.item() == pytest.approx(expected, rel=1e-5)
    cross_entropy = F.cross_entropy(probe.logits, targets).item()
    assert abs(expected - cross_entropy) > 0.1 * cross_entropy  # focal is far from plain CE here
    assert torch.equal(probe.logits, plain[0].logits)  # the same model and batch as the plain run


def test_label_smoothing_and_class_weights_reach_the_loss(tmp_path: Path) -> None:
    probe, targets = probe_fit(tmp_path, "training.loss.label_smoothing=0.2",
                               f"training.loss.class_weights={CLASS_WEIGHTS}")
    assert probe.logits is not None and probe.batch_loss is not None
    weight = torch.tensor(CLASS_WEIGHTS)
    expected = F.cross_entropy(probe.logits, targets, weight=weight, label_smoothing=0.2).item()
    assert probe.batch_loss.item() == pytest.approx(expected, rel=1e-6)
    # Either option dropped gives a different loss, far outside the tolerance above.
    for without in (F.cross_entropy(probe.logits, targets, label_smoothing=0.2),
                    F.cross_entropy(probe.logits, targets, weight=weight)):
        assert abs(without.item() - expected) > 1e-3 * expected


def test_l2_adds_two_lambda_w_to_the_weight_gradients(tmp_path: Path, plain: tuple[FirstStepProbe, Tensor]) -> None:
    base = plain[0]
    probe, _ = probe_fit(tmp_path, "training.l2=0.05")
    assert probe.batch_loss is not None and base.batch_loss is not None
    assert torch.equal(probe.batch_loss, base.batch_loss)  # the logged loss is the data loss alone
    weights = [name for name, w in probe.initial.items() if w.ndim > 1]
    assert weights == ["1.weight", "3.weight"]
    for name, w0 in probe.initial.items():
        assert torch.equal(w0, base.initial[name]), name  # same seed, same starting point
        if name in weights:  # d/dw of 0.05 * ||w||^2 is 2 * 0.05 * w
            torch.testing.assert_close(probe.stepped_grads[name] - base.stepped_grads[name], 2 * 0.05 * w0,
                                       rtol=0, atol=1e-6)
        else:  # biases carry no penalty
            torch.testing.assert_close(probe.stepped_grads[name], base.stepped_grads[name], rtol=0, atol=1e-7)


def test_grad_clip_bounds_the_norm_the_optimizer_sees_and_logs_the_pre_clip_norm(
    tmp_path: Path, plain: tuple[FirstStepProbe, Tensor]
) -> None:
    max_norm = 0.01
    probe, _ = probe_fit(tmp_path, f"training.grad_clip={max_norm}")
    pre_clip = total_norm(probe.backward_grads)
    assert pre_clip > 10 * max_norm  # this step's gradient is far larger than the clip
    assert pre_clip == pytest.approx(total_norm(plain[0].stepped_grads), rel=1e-6)  # = unclipped run
    assert probe.logged_grad_norm == pytest.approx(pre_clip, rel=1e-5)
    assert total_norm(probe.stepped_grads) == pytest.approx(max_norm, rel=1e-4)
    scale = max_norm / (pre_clip + 1e-6)  # clip_grad_norm_'s factor: the direction is kept
    for name, grad in probe.backward_grads.items():
        torch.testing.assert_close(probe.stepped_grads[name], grad * scale, rtol=1e-5, atol=1e-9)


def test_bf16_runs_the_forward_in_bfloat16(tmp_path: Path, plain: tuple[FirstStepProbe, Tensor]) -> None:
    probe, targets = probe_fit(tmp_path, "training.precision=bf16")
    assert probe.linear_dtypes == [torch.bfloat16, torch.bfloat16]
    assert probe.logits is not None and probe.batch_loss is not None
    assert probe.batch_loss.dtype == torch.float32  # the loss is taken on float logits
    assert probe.batch_loss.item() == pytest.approx(F.cross_entropy(probe.logits, targets).item(), rel=1e-6)
    assert not torch.equal(probe.logits, plain[0].logits)  # bf16 rounding shows in the logits


def test_adamw_is_built_with_the_configured_weight_decay(tmp_path: Path) -> None:
    # 0.05, not 0.01: torch's AdamW defaults to 0.01, so a dropped setting would look configured
    probe, _ = probe_fit(tmp_path, "training.optimizer=adamw", "training.weight_decay=0.05")
    assert type(probe.optimizer) is torch.optim.AdamW  # AdamW subclasses Adam: the exact type
    assert probe.optimizer.param_groups[0]["weight_decay"] == 0.05

    # Decoupled decay: with a zero gradient, one AdamW step scales each weight by (1 - lr * wd);
    # Adam's coupled decay would instead move it by about lr (the decay becomes the gradient).
    cfg = tiny_config(tmp_path, "training.optimizer=adamw", "training.weight_decay=0.05", "training.lr=0.1")
    layer = nn.Linear(4, 3)
    before = layer.weight.detach().clone()
    optimizer = build_optimizer(layer, cfg.training)
    for p in layer.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    torch.testing.assert_close(layer.weight.detach(), before * (1 - 0.1 * 0.05), rtol=1e-6, atol=0)
