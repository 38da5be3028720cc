"""Device memory: each epoch's peak (CUDA), and the error that tells how to get out of an
out-of-memory stop.

A CUDA out-of-memory error in the middle of a run is almost always the batch: activations grow
with it. The error kiln raises names the batch size that failed and the two ways out that keep the
effective batch (and so the training maths): half the batch with twice the accumulation, or the
largest batch that fits, found by ``kiln tune batch-size``.
"""

from __future__ import annotations

import torch

from kiln.errors import KilnError


class DeviceOutOfMemory(KilnError):
    """The device ran out of memory while training (exit code 1)."""


def reset_peak(device: torch.device) -> None:
    """Start measuring a new peak (each epoch); only CUDA keeps one."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device: torch.device) -> float | None:
    """The most memory tensors held on ``device`` since :func:`reset_peak`, in MiB; None off CUDA."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def release(device: torch.device) -> None:
    """Hand the allocator's cached blocks back after an out-of-memory error, so what runs next
    (writing a checkpoint, the summary) has room."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def out_of_memory(
    exc: BaseException, *, batch_size: int, grad_accum: int, where: str, checkpoint: str | None
) -> DeviceOutOfMemory:
    """The error to raise for ``exc`` at ``where`` (epoch, batch, step), naming the batch size per
    process and what to change; ``checkpoint`` is the one written just before, if any."""
    first_line = (str(exc).strip().splitlines() or ["out of memory"])[0]
    saved = (
        f"latest checkpoint: {checkpoint}; resume with the smaller batch: kiln resume RUN_DIR "
        "training.batch_size=... training.grad_accum=... --allow-config-change"
        if checkpoint is not None
        else "no checkpoint could be written at this point (the last one written, if any, stands)"
    )
    smaller = max(1, batch_size // 2)
    return DeviceOutOfMemory(
        f"the device ran out of memory at {where} with training.batch_size={batch_size} per process "
        f"(grad_accum {grad_accum}): {first_line}",
        hint=(
            f"keep the effective batch with a smaller one, e.g. training.batch_size={smaller} "
            f"training.grad_accum={grad_accum * 2}, or find the largest batch that fits: "
            f"kiln tune batch-size -c CONFIG; {saved}"
        ),
    )
