"""Exact losses and predictions of the tasks, computed by hand beside the code's answer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kiln.config.schema import LossConfig
from kiln.data.spec import DataSpec
from kiln.errors import ConfigError
from kiln.tasks import build_task
from kiln.tasks.language_modeling import LanguageModelingMeter, LanguageModelingTask
from kiln.tasks.meters import ClassificationMeter, RegressionMeter
from kiln.tasks.supervised import FocalLoss, SupervisedTask, build_loss

CLS = DataSpec(name="three", task="classification", input_shape=(2,), num_classes=3)
BIN = DataSpec(name="coin", task="binary", input_shape=(2,), num_classes=2)
REG = DataSpec(name="house", task="regression", input_shape=(2,), num_classes=1)
LM = DataSpec(name="chars", task="language_modeling", input_shape=(4,), num_classes=5)

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 0.0]])
LABELS = torch.tensor([0, 1, 2])


def _ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy by hand: logsumexp minus the target logit."""
    return torch.logsumexp(logits, dim=1) - logits[torch.arange(len(labels)), labels]


def test_auto_picks_the_default_loss_per_task() -> None:
    auto = LossConfig()
    assert type(build_loss(CLS, auto)) is nn.CrossEntropyLoss
    assert type(build_loss(BIN, auto)) is nn.BCEWithLogitsLoss
    assert type(build_loss(REG, auto)) is nn.MSELoss
    assert type(build_loss(REG, LossConfig(name="mae"))) is nn.L1Loss
    assert SupervisedTask(CLS, auto).loss_name == "cross_entropy"
    assert SupervisedTask(BIN, auto).loss_name == "bce"
    assert SupervisedTask(REG, LossConfig(name="mae")).loss_name == "mae"


@pytest.mark.parametrize(
    ("spec", "name", "allowed"),
    [(CLS, "mse", "cross_entropy, focal"), (BIN, "cross_entropy", "bce, focal"), (REG, "focal", "mse, mae")],
)
def test_a_loss_that_does_not_fit_the_task_is_refused(spec: DataSpec, name: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_loss(spec, LossConfig(name=name))  # type: ignore[arg-type]
    assert str(err.value) == (
        f"training.loss.name: {name!r} does not fit the {spec.task} task of dataset "
        f"{spec.name!r}; allowed: {allowed} (or auto)"
    )


@pytest.mark.parametrize(("spec", "weights"), [(CLS, [1.0, 2.0]), (CLS, [1.0] * 4), (BIN, [1.0, 2.0])])
def test_class_weights_must_match_a_multiclass_dataset(spec: DataSpec, weights: list[float]) -> None:
    name = "focal" if spec.task == "binary" else "cross_entropy"
    with pytest.raises(ConfigError) as err:
        build_loss(spec, LossConfig(name=name, class_weights=weights))  # type: ignore[arg-type]
    assert str(err.value) == (
        f"training.loss.class_weights: got {len(weights)} weights, but dataset {spec.name!r} "
        f"has {spec.num_classes} classes (multi-class only)"
    )


def test_cross_entropy_with_weights_and_label_smoothing() -> None:
    cfg = LossConfig(name="cross_entropy", class_weights=[1.0, 2.0, 0.5], label_smoothing=0.2)
    loss = build_loss(CLS, cfg)
    assert isinstance(loss, nn.CrossEntropyLoss)
    assert loss.weight is not None and loss.weight.dtype == torch.float32
    assert loss.weight.tolist() == [1.0, 2.0, 0.5]
    assert loss.label_smoothing == 0.2
    plain = SupervisedTask(CLS, LossConfig()).loss(LOGITS, LABELS)
    assert plain.item() == pytest.approx(_ce(LOGITS, LABELS).mean().item(), rel=1e-6)


def test_focal_loss_matches_the_formula() -> None:
    gamma = 2.0
    task = SupervisedTask(CLS, LossConfig(name="focal", focal_gamma=gamma))
    ce = _ce(LOGITS, LABELS)
    want = ((1 - torch.exp(-ce)) ** gamma * ce).mean()
    assert task.loss(LOGITS, LABELS).item() == pytest.approx(want.item(), rel=1e-6)
    # gamma 0 is plain cross-entropy
    assert FocalLoss(0.0)(LOGITS, LABELS).item() == pytest.approx(ce.mean().item(), rel=1e-6)


def test_focal_loss_uses_the_class_weights() -> None:
    loss = build_loss(CLS, LossConfig(name="focal", class_weights=[1.0, 3.0, 0.5], focal_gamma=1.5))
    assert isinstance(loss, FocalLoss)
    assert (loss.gamma, loss.binary, loss.weight.tolist()) == (1.5, False, [1.0, 3.0, 0.5])
    ce = _ce(LOGITS, LABELS)
    alpha = torch.tensor([1.0, 3.0, 0.5])[LABELS]
    # p_t is the true class's probability, whatever its weight; the weights make a weighted mean
    want = (alpha * (1 - torch.exp(-ce)) ** 1.5 * ce).sum() / alpha.sum()
    assert loss(LOGITS, LABELS).item() == pytest.approx(want.item(), rel=1e-6)
    # with gamma 0 it is exactly the weighted cross-entropy torch computes
    plain = FocalLoss(0.0, weight=torch.tensor([1.0, 3.0, 0.5]))(LOGITS, LABELS)
    weighted_ce = F.cross_entropy(LOGITS, LABELS, weight=torch.tensor([1.0, 3.0, 0.5]))
    assert plain.item() == pytest.approx(weighted_ce.item(), rel=1e-6)


def test_binary_focal_loss() -> None:
    task = SupervisedTask(BIN, LossConfig(name="focal", focal_gamma=2.0))
    assert isinstance(task.criterion, FocalLoss) and task.criterion.binary is True
    logits = torch.tensor([[1.5], [-0.5], [0.2]])
    targets = torch.tensor([1, 1, 0])
    p = torch.sigmoid(logits.reshape(-1))
    t = targets.float()
    ce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
    want = ((1 - torch.exp(-ce)) ** 2.0 * ce).mean()
    assert task.loss(logits, targets).item() == pytest.approx(want.item(), rel=1e-5)


def test_bce_reshapes_one_logit_per_sample() -> None:
    task = SupervisedTask(BIN, LossConfig())
    logits = torch.tensor([[1.5], [-0.5], [0.2]])
    targets = torch.tensor([1, 1, 0])
    want = F.binary_cross_entropy_with_logits(logits.reshape(-1), targets.float())
    assert task.loss(logits, targets).item() == pytest.approx(want.item(), rel=1e-6)


def test_regression_losses_compare_row_by_row() -> None:
    outputs = torch.tensor([[1.0], [2.0], [4.0]])
    targets = torch.tensor([1.5, 2.0, 1.0], dtype=torch.float64)  # flat and float64: reshaped and cast
    mse = SupervisedTask(REG, LossConfig()).loss(outputs, targets)
    mae = SupervisedTask(REG, LossConfig(name="mae")).loss(outputs, targets)
    assert mse.dtype == torch.float32
    assert mse.item() == pytest.approx((0.25 + 0 + 9) / 3)
    assert mae.item() == pytest.approx((0.5 + 0 + 3) / 3)


def test_predict_and_meters_per_task() -> None:
    assert SupervisedTask(CLS, LossConfig()).predict(LOGITS).tolist() == [0, 2, 0]
    binary = SupervisedTask(BIN, LossConfig())
    pred = binary.predict(torch.tensor([[0.3], [0.0], [-2.0]]))
    assert pred.dtype == torch.long and pred.tolist() == [1, 0, 0]
    raw = torch.tensor([[0.5], [1.5]])
    assert SupervisedTask(REG, LossConfig()).predict(raw) is raw
    assert type(SupervisedTask(REG, LossConfig()).meter()) is RegressionMeter
    cm = SupervisedTask(CLS, LossConfig()).meter()
    bm = binary.meter()
    assert type(cm) is ClassificationMeter and cm.binary is False
    assert type(bm) is ClassificationMeter and bm.binary is True


def test_split_batch_and_names() -> None:
    x, y, extra = torch.ones(2, 2), torch.zeros(2), torch.full((2,), 7.0)
    task = SupervisedTask(CLS, LossConfig())
    got = task.split_batch((x, y, extra))
    assert got[0] is x and got[1] is y
    assert task.name == "classification" and task.spec is CLS
    assert task.to(torch.device("cpu")) is task
    lm = LanguageModelingTask(LM, LossConfig())
    got = lm.split_batch((x, y, extra))
    assert got[0] is x and got[1] is y
    assert lm.name == "language_modeling" and lm.spec is LM
    assert lm.to(torch.device("cpu")) is lm


def test_to_moves_the_class_weights() -> None:
    task = SupervisedTask(CLS, LossConfig(class_weights=[1.0, 2.0, 3.0]))
    assert task.to(torch.device("meta")) is task  # the meta device: a real move, without a GPU
    assert task.criterion.weight.device.type == "meta"


def test_build_task_picks_the_task_class() -> None:
    lm = build_task(LM, LossConfig(label_smoothing=0.25))
    assert type(lm) is LanguageModelingTask and lm.spec is LM and lm.label_smoothing == 0.25
    sup = build_task(CLS, LossConfig(name="focal"))
    assert type(sup) is SupervisedTask and sup.spec is CLS and isinstance(sup.criterion, FocalLoss)


@pytest.mark.parametrize(
    "cfg",
    [LossConfig(name="focal"), LossConfig(class_weights=[1.0] * 5), LossConfig(name="mse")],
)
def test_language_modeling_refuses_other_losses_and_weights(cfg: LossConfig) -> None:
    with pytest.raises(ConfigError) as err:
        LanguageModelingTask(LM, cfg)
    assert str(err.value) == (
        "language modeling trains with training.loss.name cross_entropy (or auto) and no "
        f"class_weights; got name={cfg.name!r}, class_weights={cfg.class_weights}"
    )


def test_language_modeling_accepts_auto_and_cross_entropy() -> None:
    assert LanguageModelingTask(LM, LossConfig(name="cross_entropy")).label_smoothing == 0.0


def test_language_modeling_loss_is_token_level_with_smoothing() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    ids = torch.tensor([[0, 4, 2], [1, 1, 3]])
    task = LanguageModelingTask(LM, LossConfig(label_smoothing=0.1))
    assert task.label_smoothing == 0.1
    flat, t = logits.reshape(6, 5), ids.reshape(6)
    logp = torch.log_softmax(flat, dim=1)
    want = (0.9 * -logp[torch.arange(6), t] + 0.1 * -logp.mean(dim=1)).mean()
    assert task.loss(logits, ids).item() == pytest.approx(want.item(), rel=1e-5)
    assert task.predict(logits).tolist() == logits.argmax(dim=-1).tolist()
    assert type(task.meter()) is LanguageModelingMeter


def test_language_modeling_meter_weights_by_tokens() -> None:
    m = LanguageModelingMeter()
    assert m.names == ("loss", "correct", "tokens")
    nan = m.compute()
    assert list(nan) == ["loss", "perplexity", "accuracy"] and all(math.isnan(v) for v in nan.values())
    logits = torch.zeros(1, 2, 3)
    logits[0, 0, 1] = 1.0  # predicts 1, then 0
    m.update(logits, torch.tensor([[1, 2]]), torch.tensor(2.0))
    m.update(torch.zeros(2, 3, 3), torch.zeros(2, 3, dtype=torch.long), torch.tensor(0.5))
    assert m.count == 3  # windows
    got = m.compute()
    loss = (2.0 * 2 + 0.5 * 6) / 8
    assert got == {"loss": pytest.approx(loss), "perplexity": pytest.approx(math.exp(loss)), "accuracy": 7 / 8}


def test_language_modeling_accuracy_is_per_position() -> None:
    m = LanguageModelingMeter()
    logits = torch.zeros(2, 2, 3)
    logits[0, 0, 2] = logits[0, 1, 1] = logits[1, 0, 0] = logits[1, 1, 2] = 1.0  # predicts [[2, 1], [0, 2]]
    m.update(logits, torch.tensor([[2, 1], [0, 0]]), torch.tensor(1.0))
    assert m.compute()["accuracy"] == 0.75
    assert m.sums["tokens"].item() == 4 and m.sums["tokens"].device.type == "cpu"


def test_language_modeling_perplexity_is_capped() -> None:
    m = LanguageModelingMeter()
    m.update(torch.zeros(1, 1, 3), torch.tensor([[0]]), torch.tensor(800.0))
    got = m.compute()
    assert got["loss"] == 800.0 and got["perplexity"] == math.exp(700.0)


def test_regression_with_several_outputs() -> None:
    spec = DataSpec(name="two", task="regression", input_shape=(2,), num_classes=1)
    outputs = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    targets = torch.tensor([[1.0, 0.0], [3.0, 1.0]])
    assert SupervisedTask(spec, LossConfig()).loss(outputs, targets).item() == pytest.approx((4 + 16) / 4)
