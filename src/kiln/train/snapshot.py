"""What a checkpoint must hold for an exact resume, and putting it back.

Model and optimizer go to their own files; everything else of the loop is the "trainer state":
counters and history, every RNG, each stateful callback, the partial epoch's metric sums, gradients
accumulated inside an unfinished accumulation window, fp16's loss scaler and its count of skipped
steps, and where events.jsonl ended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kiln.errors import CheckpointError
from kiln.train.callback import Callback
from kiln.train.ranks.resume import restore_rank_state
from kiln.train.ranks.rng import capture_all

if TYPE_CHECKING:
    from kiln.checkpoint import Checkpoint
    from kiln.train.setup import Components
    from kiln.train.state import TrainState


def callback_keys(callbacks: list[Callback]) -> dict[str, Callback]:
    """Stable keys for callbacks: the class name, with ``#2``... for repeats."""
    keyed: dict[str, Callback] = {}
    for callback in callbacks:
        key = type(callback).__name__
        n = 2
        while key in keyed:
            key = f"{type(callback).__name__}#{n}"
            n += 1
        keyed[key] = callback
    return keyed


def capture(c: Components, state: TrainState) -> dict[str, Any]:
    """The trainer state at this moment (tensors and plain data only)."""
    grads = {
        name: p.grad for name, p in c.model.named_parameters() if p.grad is not None
    }
    return {
        "counters": state.counters(),
        "rng": capture_all(),  # every rank's, when distributed
        "callbacks": {key: cb.state_dict() for key, cb in callback_keys(c.callbacks).items()},
        "meter": state.train_meter.state_dict() if state.train_meter is not None and state.batch_in_epoch else None,
        "grads": grads,
        "amp": c.amp.state_dict(),
    }


def restore(c: Components, state: TrainState, checkpoint: Checkpoint) -> None:
    """Load a checkpoint into freshly built components; call last, just before the loop runs."""
    try:
        c.model.load_state_dict(checkpoint.model)
        c.optimizer.load_state_dict(checkpoint.optimizer)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{checkpoint.path.name} does not fit this model/optimizer ({exc}); was the config changed?"
        ) from None
    trainer = checkpoint.trainer
    state.load_counters(trainer["counters"])
    keyed = callback_keys(c.callbacks)
    for key, saved in trainer["callbacks"].items():
        if key in keyed and saved:
            keyed[key].load_state_dict(saved)
    if trainer["meter"] is not None:
        meter = c.task.meter()
        meter.load_state_dict(trainer["meter"])
        state.train_meter = meter
    if "amp" in trainer:  # checkpoints of kiln before fp16 have no scaler: fp32 or bf16 runs
        c.amp.load_state_dict(trainer["amp"])
    params = dict(c.model.named_parameters())
    for name, grad in trainer["grads"].items():
        params[name].grad = grad.to(params[name].device)
    restore_rank_state(c, state, trainer)  # this rank's RNG; remaps the position if the world size changed
