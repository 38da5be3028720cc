"""What the pretrained-backbone models (``torchvision``, ``timm``) share: the head, freezing the
rest, and the starting weights (a local file, or the library's download and cache).

The built model is the library's own module, so its state dict has the library's keys: a file the
library wrote, a kiln model of the same arch (``<run>/models/model.safetensors``) and a plain
``torch.save(model.state_dict())`` all load alike. The names of its classifier head are kept on it
(``HEAD_ATTR``); everything else is the backbone, which ``model.freeze`` freezes, which
``training.backbone_lr_scale`` slows (``backbone_split``), and whose batch norms
``kiln.train.callbacks.fine_tune`` keeps in eval mode while it is frozen.

A ``model.weights`` file is read without unpickling anything (safetensors, or ``torch.load`` with
``weights_only``) and must hold every backbone tensor of the arch (``load_starting_weights``).
Its head is loaded when it fits the data's classes (a kiln model trained on the same classes goes
on with its head); otherwise, as from the library's ImageNet weights, the head starts fresh.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from kiln.data.spec import DataSpec
from kiln.errors import ConfigError, ModelError, PathError, exception_line

HEAD_ATTR = "kiln_head"  # on a built backbone model: the dotted names of its classifier head modules
USE_A_FILE = (
    "or copy the file to this machine and set model.weights: PATH (and model.pretrained: false)"
)


def mark_head(model: nn.Module, names: Sequence[str]) -> None:
    """Record which modules of ``model`` are its classifier head (each must exist)."""
    for name in names:
        model.get_submodule(name)
    setattr(model, HEAD_ATTR, tuple(names))


def head_names(model: nn.Module) -> tuple[str, ...] | None:
    """The head's module names of a backbone model kiln built; None for any other model."""
    names = getattr(model, HEAD_ATTR, None)
    return tuple(names) if isinstance(names, tuple) else None


def in_head(key: str, heads: Iterable[str]) -> bool:
    """True when the parameter or buffer ``key`` belongs to one of the ``heads`` modules."""
    return any(key == h or key.startswith(h + ".") for h in heads)


def backbone_split(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]] | None:
    """``(backbone, head)`` parameters, frozen ones included (an optimizer holds them all, so
    unfreezing needs no new optimizer and its state stays the same across a resume); None for a
    model without a marked head."""
    heads = head_names(model)
    if heads is None:
        return None
    backbone: list[nn.Parameter] = []
    head: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        (head if in_head(name, heads) else backbone).append(param)
    return backbone, head


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze (``requires_grad`` False) or unfreeze every backbone parameter; the head trains."""
    split = backbone_split(model)
    if split is None:
        raise ModelError(f"{type(model).__name__} has no backbone/head split: model.freeze needs a torchvision or timm model")
    for param in split[0]:
        param.requires_grad_(trainable)


def backbone_norms(model: nn.Module) -> list[nn.Module]:
    """The backbone's batch norms (the layers whose running statistics move in train mode)."""
    heads = head_names(model) or ()
    return [
        module for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not in_head(name, heads)
    ]


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule ``name`` (dotted) is."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def resized_head(old: nn.Module, outputs: int) -> nn.Module:
    """A fresh layer like the classifier ``old`` (Linear, or SqueezeNet's 1x1 Conv2d) with ``outputs``."""
    if isinstance(old, nn.Linear):
        return nn.Linear(old.in_features, outputs, bias=old.bias is not None)
    if isinstance(old, nn.Conv2d):
        return nn.Conv2d(
            old.in_channels, outputs, old.kernel_size, old.stride, old.padding,  # type: ignore[arg-type]
            bias=old.bias is not None,
        )
    raise ModelError(f"cannot resize a classifier head of type {type(old).__name__}")


def image_channels(spec: DataSpec, library: str) -> int:
    """The image channels of ``spec`` (1 or 3); ModelError for data that is not images."""
    if len(spec.input_shape) != 3 or spec.input_shape[0] not in (1, 3):
        raise ModelError(
            f"model {library!r} needs images of 1 or 3 channels (channels, height, width), but "
            f"dataset {spec.name!r} has input shape {list(spec.input_shape)}; use model.name=mlp instead"
        )
    return int(spec.input_shape[0])


def check_input(model: nn.Module, spec: DataSpec, what: str) -> None:
    """Run one zero image through ``model`` in eval mode: an input it cannot take (too small for
    its downsampling, another size than a ViT's) is reported now, not in the first batch."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *spec.input_shape))
    except (RuntimeError, AssertionError, ValueError, IndexError) as exc:
        raise ModelError(
            f"{what} cannot take {list(spec.input_shape)} images: {exception_line(exc)}",
            hint="set data.image.size to a size the arch takes (pretrained: the weights' own, e.g. 224)",
        ) from None
    finally:
        model.train(was_training)


def read_state_dict(path: Path, field: str = "model.weights", hint: str | None = None) -> dict[str, Tensor]:
    """The tensors of a ``.safetensors`` or ``.pth``/``.pt``/``.bin`` file (a state dict, or a
    checkpoint holding one under ``state_dict`` or ``model``), read without unpickling objects.
    ``field`` and ``hint`` are what an error about the file names (the config key that led to it)."""
    save_hint = hint or "save the file with torch.save(model.state_dict(), PATH) or safetensors.torch.save_file"
    if not path.is_file():
        raise PathError(
            f"{field} {path} does not exist" + (" (it is a directory)" if path.is_dir() else ""),
            field=field, hint=hint or "give the path of a .pth or .safetensors state dict file",
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: Any = load_file(str(path))
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader's failure means: not a weights file we can read
        raise ConfigError(
            f"{field} {path} cannot be read as weights (kiln reads tensors only, never pickled "
            f"objects): {exception_line(exc)}",
            field=field, hint=save_hint,
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not loaded or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ConfigError(
            f"{field} {path} holds {type(loaded).__name__}, not a state dict (names to tensors)",
            field=field, hint=save_hint,
        )
    return {str(k): v for k, v in loaded.items()}


def load_starting_weights(model: nn.Module, state: Mapping[str, Tensor], path: Path, what: str) -> None:
    """Load the state dict of a ``model.weights`` file into ``model`` (``what`` names the arch).

    Every backbone tensor must be there with its shape; a 3-channel first convolution fits a
    1-channel model by summing its filters over the channels (as timm adapts it). The head's
    tensors load when their shapes fit, else the head stays as built (fresh)."""
    heads = head_names(model) or ()
    own = model.state_dict()
    loaded: dict[str, Tensor] = {}
    missing = [k for k in own if k not in state and not in_head(k, heads)]
    unexpected = [k for k in state if k not in own]
    misfits: list[str] = []
    head_fits = all(k in state and state[k].shape == own[k].shape for k in own if in_head(k, heads))
    for key, value in state.items():
        if key not in own or (in_head(key, heads) and not head_fits):
            continue
        target = own[key]
        if _rgb_filters_for_gray(value, target):
            value = value.sum(dim=1, keepdim=True)
        if value.shape != target.shape:
            misfits.append(f"{key} {list(value.shape)} (the model's: {list(target.shape)})")
            continue
        loaded[key] = value
    if missing or unexpected or misfits:
        problems = [
            f"{label}: {', '.join(keys[:5])}{f' and {len(keys) - 5} more' if len(keys) > 5 else ''}"
            for label, keys in (("missing", missing), ("not in the model", unexpected), ("of another shape", misfits))
            if keys
        ]
        raise ConfigError(
            f"model.weights {path} does not fit {what}: " + "; ".join(problems),
            field="model.weights",
            hint="give a state dict of this very arch (the library's file for it, or a kiln model of it: <run>/models/model.safetensors)",
        )
    model.load_state_dict({**own, **loaded})


def _rgb_filters_for_gray(value: Tensor, target: Tensor) -> bool:
    """True for convolution filters over 3 channels where the model's take 1 (an RGB stem)."""
    return (
        value.ndim == 4 and target.ndim == 4 and value.shape[1] == 3 and target.shape[1] == 1
        and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]
    )


def cached_url_file(url: str, library: str, what: str) -> Path:
    """The file at ``url`` in torch.hub's cache (``$TORCH_HOME/hub/checkpoints``, where torchvision
    keeps its weights), downloaded there first when missing, its hash checked as torch.hub does.
    A failed download (no network) is a ConfigError naming the file, the folder and the way out."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / os.path.basename(urlparse(url).path)
    if path.is_file():
        return path
    match = torch.hub.HASH_REGEX.search(path.name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), match.group(1) if match else None, progress=True)
    except (OSError, HTTPException, RuntimeError, ValueError) as exc:
        raise weights_unavailable(
            library, what, f"{library} wanted the file {path.name} from {url}", f"{folder} (set TORCH_HOME to look elsewhere)", exc,
        ) from None
    return path


def weights_unavailable(library: str, what: str, wanted: str, where: str, exc: BaseException) -> ConfigError:
    """The error of ``model.pretrained`` when the weights are neither cached nor downloadable."""
    return ConfigError(
        f"{what} are not on this machine and could not be downloaded ({exception_line(exc)}). "
        f"{wanted}; it looks for it in {where}",
        field="model.pretrained",
        hint=f"put the file there on a machine with network access ({library} downloads it by itself), {USE_A_FILE}",
    )
