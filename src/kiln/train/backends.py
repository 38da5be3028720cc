"""CUDA's speed switches for the length of a fit: TensorFloat-32 and cuDNN's autotuner.

Both are process-wide flags of torch, so :func:`cuda_speed` puts the previous values back when the
fit ends, as ``kiln.train.rng.deterministic_algorithms`` does for its own. On a CPU they are set
and restored like anywhere else, and change nothing.

- ``run.tf32``: fp32 matmuls and convolutions on an Ampere or later card's TF32 tensor cores
  (a 10-bit mantissa on the products, fp32 accumulation): several times faster, and what
  torch already does for convolutions by default.
- ``cudnn.benchmark``: cuDNN times its convolution algorithms on the first batch of each shape
  and keeps the fastest. The choice can differ between runs, so it is off under
  ``run.deterministic``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from kiln.config.model_options import BackboneOptions, CnnOptions, ModelConfig, TargetModel


@contextlib.contextmanager
def cuda_speed(tf32: bool, deterministic: bool) -> Iterator[None]:
    """Set TF32 (both matmul and cuDNN) to ``tf32`` and ``cudnn.benchmark`` on unless
    ``deterministic``, inside the block."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = not deterministic
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def tf32_effective(tf32: bool, device: torch.device) -> bool:
    """Whether ``run.tf32`` changes anything on ``device``: a CUDA card of compute capability 8
    (Ampere) or later."""
    if not tf32 or device.type != "cuda":
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def channels_last(model: ModelConfig) -> bool:
    """``model.channels_last``: an option of the convolutional entries (cnn, torchvision, timm) and
    of your own model; the others have no convolutions for it to speed up, so no such option.
    The loop then keeps the weights and 4-d input batches in NHWC order; what is saved is
    contiguous as always (checkpoints and the model package copy each tensor contiguous)."""
    return isinstance(model, (CnnOptions, BackboneOptions, TargetModel)) and model.channels_last
