"""``model.name: torchvision``: a torchvision classification model, its head sized for the data.

Every model is built one way, whether it starts pretrained, from a file, from scratch or is a saved
model being rebuilt: torchvision's builder with ``weights=None``, with the arguments that builder
itself sets for the weights named (their class count, and ``_as_trained``), so a saved model comes
back with the very architecture it was trained with and nothing is fetched to rebuild it. Then:

1. ``pretrained``: the weights file is taken from torch.hub's cache (``$TORCH_HOME/hub/checkpoints``,
   where torchvision keeps it), downloaded there first when missing as torchvision does, and read
   with ``weights_only`` (kiln unpickles no objects). With no network and no cached file, a
   ConfigError names the file, the folder and ``model.weights`` as the way out (exit 2).
2. The head, the last layer with the weights' class count as outputs (``fc``, ``classifier[-1]``,
   ``heads.head``...), is replaced by a fresh one with the data's.
3. One input channel: the first convolution's RGB filters are summed into one (as timm does).
4. ``weights``: a local state dict (``kiln.models.backbones.load_starting_weights``).
5. ``freeze: backbone`` freezes everything but the head.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor, nn

from kiln._vision import torchvision
from kiln.config.model_options import TorchvisionOptions
from kiln.config.vision_defaults import check_torchvision_arch, torchvision_weights
from kiln.data.spec import DataSpec
from kiln.errors import ModelError, exception_line
from kiln.models.backbones import (
    cached_url_file,
    check_input,
    image_channels,
    load_starting_weights,
    mark_head,
    read_state_dict,
    replace_module,
    resized_head,
    set_backbone_trainable,
)

# Auxiliary classifiers, off in kiln's models (one output): their keys in a weights file are dropped.
_AUXILIARY = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}
# torchvision's DenseNet files still have the layer names of its first release (densenet.py)
_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def build(options: TorchvisionOptions, spec: DataSpec) -> nn.Module:
    """The torchvision model of ``options`` for the data of ``spec``."""
    channels = image_channels(spec, "torchvision")
    arch, what = options.arch, f"torchvision's {options.arch}"
    weights = torchvision_weights(arch, options.weights_name) if options.starts_pretrained else None
    if weights is None:
        check_torchvision_arch(arch)
    classes = len(weights.meta["categories"]) if weights is not None else 1000
    try:
        model: nn.Module = torchvision().models.get_model(
            arch, weights=None, num_classes=classes, **_as_trained(arch, weights, spec)
        )
    except (AssertionError, ValueError, TypeError) as exc:
        raise ModelError(f"{what} cannot be built for {list(spec.input_shape)} images: {exception_line(exc)}") from None
    if options.fetches_weights and options.pretrained:
        model.load_state_dict(_pretrained_state(arch, weights))
    head = _classifier(model, classes, what)
    replace_module(model, head, resized_head(model.get_submodule(head), spec.output_size))
    mark_head(model, [head])
    if channels != 3:
        _sum_stem_channels(model, channels, what)
    if options.fetches_weights and options.weights is not None:
        load_starting_weights(model, read_state_dict(options.weights), options.weights, what)
    if options.freeze == "backbone":
        set_backbone_trainable(model, False)
    check_input(model, spec, what)
    return model


def _as_trained(arch: str, weights: Any, spec: DataSpec) -> dict[str, Any]:
    """The builder arguments torchvision sets for ``weights`` (its builders' ``_ovewrite_named_param``
    calls), or, from scratch, what sizes the model for the data."""
    if arch in _AUXILIARY:  # googlenet, inception_v3: init_weights given, or torchvision warns
        extra: dict[str, Any] = {"aux_logits": False, "init_weights": weights is None}
        return extra | ({"transform_input": True} if weights is not None else {})
    size = int(spec.input_shape[-1])
    if arch.startswith("vit_"):  # a fixed input size: the weights' (e.g. 384 for SWAG), else the data's
        return {"image_size": int(weights.meta["min_size"][0]) if weights is not None else size}
    if arch.startswith("maxvit"):
        return {"input_size": tuple(weights.meta["min_size"]) if weights is not None else (size, size)}
    return {}


def _pretrained_state(arch: str, weights: Any) -> dict[str, Tensor]:
    """The state dict of ``weights``, from torch.hub's cache (downloaded first when missing)."""
    path = cached_url_file(weights.url, "torchvision", f"torchvision's {weights} weights")
    state = read_state_dict(
        path, field="model.pretrained", hint=f"the cached file is damaged: delete {path} so it is downloaded again"
    )
    if arch.startswith("densenet"):
        state = {_new_densenet_key(k): v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith(_AUXILIARY.get(arch, ()))}


def _new_densenet_key(key: str) -> str:
    match = _OLD_DENSENET_KEY.match(key)
    return f"{match.group(1)}{match.group(2)}" if match else key


def _classifier(model: nn.Module, classes: int, what: str) -> str:
    """The name of the head: the last Linear (or 1x1 Conv2d) layer with ``classes`` outputs."""
    found: list[str] = [
        name for name, module in model.named_modules()
        if (isinstance(module, nn.Linear) and module.out_features == classes)
        or (isinstance(module, nn.Conv2d) and module.out_channels == classes)
    ]
    if not found:
        raise ModelError(f"{what} has no classifier layer with {classes} outputs to replace: is it a classification model?")
    return found[-1]


def _sum_stem_channels(model: nn.Module, channels: int, what: str) -> None:
    """Make the first RGB convolution take ``channels`` inputs, its filters summed over RGB."""
    stem = next(
        ((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3), None
    )
    if stem is None:
        raise ModelError(f"{what} has no RGB convolution to adapt to {channels} channel(s): set data.image.channels: 3")
    name, old = stem
    new = nn.Conv2d(
        channels, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,  # type: ignore[arg-type]
        old.groups, bias=old.bias is not None, padding_mode=old.padding_mode,
    )
    with torch.no_grad():
        new.weight.copy_(old.weight.sum(dim=1, keepdim=True))  # channels is 1 here
        if old.bias is not None and new.bias is not None:
            new.bias.copy_(old.bias)
    replace_module(model, name, new)
