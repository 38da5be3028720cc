"""Fine-tuning a pretrained backbone: the head trains alone first, then everything does.

With ``model.freeze: backbone`` the backbone's parameters take no gradients (``requires_grad``
off, set when the model is built and again here) and its batch norms stay in eval mode, so their
running statistics, estimated on the weights' own training images, are not pulled towards the
first batches of a new dataset while the head is still random. The trainer puts the whole model
in train mode at each epoch's start (and evaluation puts it back mid-epoch), so the norms are set
back to eval mode before every batch. At the start of epoch ``training.unfreeze_at_epoch``
(0-based: that many epochs train the head only) the backbone unfreezes and trains as usual.

The optimizer holds the frozen parameters from the start (``kiln.train.optim.parameter_groups``):
they simply have no gradients, so unfreezing changes no parameter group. Whether the backbone is
frozen is this callback's state, saved in every checkpoint and put back on the model when a
resumed run starts: a resume across the unfreeze epoch trains exactly as an uninterrupted run.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn
from typing_extensions import override

from kiln.config.model_options import BackboneOptions
from kiln.config.schema import KilnConfig
from kiln.errors import ConfigError
from kiln.models.backbones import backbone_norms, set_backbone_trainable
from kiln.train.callback import Callback
from kiln.train.state import TrainState

log = logging.getLogger("kiln")


class FineTune(Callback):
    """Keeps a backbone model's backbone frozen until epoch ``unfreeze_at_epoch`` (never, when None).

    >>> FineTune(unfreeze_at_epoch=2).state_dict()
    {'frozen': True}
    """

    def __init__(self, unfreeze_at_epoch: int | None) -> None:
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.frozen = True
        self._norms: list[nn.Module] = []  # the backbone's batch norms, while frozen

    @override
    def on_fit_start(self, state: TrainState) -> None:
        self._apply(state.model)  # a resumed run: the state its checkpoint held

    @override
    def on_epoch_start(self, state: TrainState) -> None:
        if self.frozen and self.unfreeze_at_epoch is not None and state.epoch >= self.unfreeze_at_epoch:
            self.frozen = False
            self._apply(state.model)
            log.info("epoch %d: the backbone is unfrozen and trains from now on", state.epoch + 1)

    @override
    def on_batch_start(self, state: TrainState) -> None:
        for norm in self._norms:
            norm.train(False)

    def _apply(self, model: nn.Module) -> None:
        set_backbone_trainable(model, not self.frozen)
        self._norms = backbone_norms(model) if self.frozen else []

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"frozen": self.frozen}

    @override
    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.frozen = bool(state["frozen"])


def fine_tuning(cfg: KilnConfig, distributed: bool = False) -> list[Callback]:
    """The FineTune callback a config asks for (``model.freeze: backbone``), or none.

    ``distributed``: the run trains in several processes. DDP syncs only the parameters that
    take gradients when it wraps the model, so a backbone unfrozen later would train apart on
    each rank; that combination is refused (a backbone frozen throughout is fine)."""
    model = cfg.model
    if not isinstance(model, BackboneOptions) or model.freeze != "backbone":
        return []
    at = cfg.training.unfreeze_at_epoch
    if distributed and at is not None:
        raise ConfigError(
            "training.unfreeze_at_epoch cannot unfreeze a backbone in a run of several processes "
            "(DDP leaves out the parameters that were frozen when it wrapped the model)",
            field="training.unfreeze_at_epoch",
            hint="train in one process, or fine-tune in two runs: frozen, then model.weights: "
            "<run>/models/model.safetensors with model.freeze: none",
        )
    return [FineTune(at)]
