"""``model.name: timm``: a timm model, its head sized for the data.

timm builds the head for ``num_classes`` and the stem for ``in_chans`` itself, and its
architecture does not depend on the weights, so a saved model is rebuilt with ``pretrained``
off. ``pretrained`` goes through timm's own loader (which adapts the head and a 1-channel stem)
from the file timm wants in the Hugging Face cache: found there without asking the network, else
downloaded into it as timm does. With no network and no cached file, a ConfigError names the
repository, the file, the cache folder and ``model.weights`` as the way out (exit 2; set
``HF_HUB_OFFLINE=1`` on an offline machine to skip the Hub's retries). ``weights`` loads a local
state dict as for torchvision (``kiln.models.backbones.load_starting_weights``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from kiln._vision import timm
from kiln.config.model_options import TimmOptions
from kiln.config.vision_defaults import check_timm_arch, timm_pretrained_cfg
from kiln.data.spec import DataSpec
from kiln.errors import ConfigError, ModelError, exception_line
from kiln.models.backbones import (
    cached_url_file,
    check_input,
    image_channels,
    load_starting_weights,
    mark_head,
    read_state_dict,
    set_backbone_trainable,
    weights_unavailable,
)

_HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm asks the Hub for, in its order


def build(options: TimmOptions, spec: DataSpec) -> nn.Module:
    """The timm model of ``options`` for the data of ``spec``."""
    channels = image_channels(spec, "timm")
    arch, what = options.arch, f"timm's {options.arch}"
    check_timm_arch(arch)
    kwargs: dict[str, Any] = {"num_classes": spec.output_size, "in_chans": channels}
    if options.fetches_weights and options.pretrained:
        kwargs |= {"pretrained": True, "pretrained_cfg_overlay": {"file": str(_pretrained_file(arch))}}
    try:
        model: nn.Module = timm().create_model(arch, **kwargs)
    except (RuntimeError, ValueError, AssertionError, TypeError) as exc:
        raise ModelError(f"{what} cannot be built for {list(spec.input_shape)} images: {exception_line(exc)}") from None
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier")
    heads = [classifier] if isinstance(classifier, str) else list(classifier or ())
    if not heads:
        raise ModelError(f"{what} does not name its classifier (pretrained_cfg['classifier']), so kiln cannot tell head from backbone")
    mark_head(model, heads)
    if options.fetches_weights and options.weights is not None:
        load_starting_weights(model, read_state_dict(options.weights), options.weights, what)
    if options.freeze == "backbone":
        set_backbone_trainable(model, False)
    check_input(model, spec, what)
    return model


def _pretrained_file(arch: str) -> Path:
    """The local file of ``arch``'s pretrained weights, from the Hugging Face cache (downloaded
    into it first when missing), or torch.hub's for the few weights timm has only by URL."""
    cfg = timm_pretrained_cfg(arch)
    what = f"timm's {arch} weights"
    if not cfg.hf_hub_id:
        if not cfg.url:
            raise ConfigError(f"timm has no downloadable weights for {arch!r}", field="model.pretrained")
        return cached_url_file(cfg.url, "timm", what)
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    repo, _, revision = cfg.hf_hub_id.partition("@")
    files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _HUB_FILES
    for name in files:
        cached = try_to_load_from_cache(repo, name, revision=revision or None)
        if isinstance(cached, str):
            return Path(cached)
    wanted = f"timm wanted {' or '.join(files)} of the Hugging Face Hub repository {repo}"
    where = f"{Path(constants.HF_HUB_CACHE) / ('models--' + repo.replace('/', '--'))} (set HF_HOME to look elsewhere)"
    for name in files:
        try:
            return Path(hf_hub_download(repo, name, revision=revision or None))
        except LocalEntryNotFoundError as exc:  # no network (or HF_HUB_OFFLINE) and not cached
            raise weights_unavailable("timm", what, wanted, where, exc) from None
        except EntryNotFoundError:
            continue  # the repository has no such file: timm tries the next
        except (OSError, ValueError) as exc:  # refused, not found, a failed transfer
            raise weights_unavailable("timm", what, wanted, where, exc) from None
    raise ConfigError(f"{wanted}, and it has none of them", field="model.pretrained")
