"""Mixed precision: the dtype the forward pass autocasts to, and fp16's loss scaler.

``training.precision`` is ``fp32``, ``bf16``, ``fp16`` or ``auto``; :func:`resolve_precision` turns
``auto`` into what the device does well (bf16 on a CUDA card that has it, else fp16 on CUDA, fp32
on a CPU or MPS, where half precision is emulated or partial and rarely faster). fp16's narrow
range underflows small gradients to zero, so its backward pass runs on a scaled loss
(``torch.amp.GradScaler``); a step whose scaled gradients overflow is skipped and the scale halved.
Those skips are counted (``amp_skipped_steps``) and the scaler's state goes into every checkpoint,
so a resumed fp16 run scales exactly as the uninterrupted one would have.

>>> amp = Amp("fp16", torch.device("cpu"))
>>> amp.resolved, amp.scaling
('fp16', True)
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import torch
from torch import Tensor

Resolved = Literal["fp32", "bf16", "fp16"]
DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(requested: str, device: torch.device) -> Resolved:
    """``requested`` (``training.precision``) as trained on ``device``: ``auto`` is bf16 on a
    CUDA card that supports it, fp16 on an older one, fp32 on anything else."""
    if requested == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"training.precision must be fp32, bf16, fp16 or auto, got {requested!r}")
    return requested  # type: ignore[return-value]


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast to bf16 or fp16 as ``precision`` asks (``auto`` resolved for ``device``);
    fp32: a no-op context."""
    resolved = resolve_precision(precision, device)
    if resolved == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[resolved])


class Amp:
    """The run's precision as the loop uses it: autocast, the scaled backward pass and the
    optimizer step (through the scaler for fp16), and the count of steps the scaler skipped."""

    def __init__(self, requested: str, device: torch.device) -> None:
        self.requested = requested
        self.device = device
        self.resolved: Resolved = resolve_precision(requested, device)
        self.scaling = self.resolved == "fp16"
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.scaling)
        self.skipped_steps = 0
        self._scale = self.scaler.get_scale() if self.scaling else 1.0  # no sync: not yet on the device

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.device, self.resolved)

    def backward(self, objective: Tensor) -> None:
        """Backpropagate ``objective``, scaled for fp16."""
        (self.scaler.scale(objective) if self.scaling else objective).backward()  # type: ignore[no-untyped-call]

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring the gradients back to their true size (before clipping reads their norm)."""
        if self.scaling:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer step; for fp16 through the scaler, which skips it when the gradients
        overflowed. The scaler reads its overflow flag on the host every step (GradScaler's own
        sync, for any optimizer but the fused ones); the skip is counted from the scale it then
        lowered, one more scalar read of fp16 runs only."""
        if not self.scaling:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()
        scale = self.scaler.get_scale()
        if scale < self._scale:  # the scale is only ever lowered on a skipped step
            self.skipped_steps += 1
        self._scale = scale

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers (a checkpoint's trainer.pt loads with weights_only=True)."""
        return {"scaler": self.scaler.state_dict(), "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
            self._scale = self.scaler.get_scale()
        self.skipped_steps = int(state["skipped_steps"])

    def summary(self) -> dict[str, Any]:
        """What summary.json records: the precision asked for, what it resolved to, the skips."""
        return {
            "requested": self.requested,
            "resolved": self.resolved,
            "amp_skipped_steps": self.skipped_steps if self.scaling else None,
        }
