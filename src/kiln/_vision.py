"""Importing torchvision and timm (the ``vision`` extra), lazily and with a clear error.

torchvision registers fake kernels for two of its compiled operators (``nms``, ``qnms``) at import
time without checking that its compiled extension loaded (torchvision 0.28, ``_meta_registrations``).
Where that extension cannot load beside the installed torch (a CUDA build of torchvision beside a
CPU build of torch, as package indexes pair them for torch 2.13), ``import torchvision`` then fails
with "operator torchvision::nms does not exist", although everything kiln uses (transforms.v2,
the model builders, the weights enums) is plain Python on torch. In that case only, the two
operator schemas are declared first, so the import succeeds; calling those operators still fails,
as it would have. Nothing here is imported by ``import kiln``.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

from kiln.errors import MissingExtraError

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
)
_declared: list[Any] = []  # the Library object must stay alive for its definitions to hold


def torchvision() -> ModuleType:
    """The ``torchvision`` module; MissingExtraError naming the ``vision`` extra if absent."""
    if importlib.util.find_spec("torchvision") is None:
        raise MissingExtraError("torchvision", "vision")
    _declare_missing_operators()
    return importlib.import_module("torchvision")


def timm() -> ModuleType:
    """The ``timm`` module (it imports torchvision); MissingExtraError if absent."""
    if importlib.util.find_spec("timm") is None:
        raise MissingExtraError("timm", "vision")
    torchvision()
    return importlib.import_module("timm")


def _declare_missing_operators() -> None:
    import sys

    if _declared or "torchvision" in sys.modules:
        return
    import torch

    spec = importlib.util.find_spec("torchvision")
    origin = getattr(spec, "submodule_search_locations", None) or []
    for location in origin:
        try:
            torch.ops.load_library(f"{location}/_C.so")  # type: ignore[no-untyped-call]
            return  # the compiled extension loads: torchvision defines its operators itself
        except (OSError, RuntimeError):
            continue
    library = torch.library.Library("torchvision", "DEF")  # type: ignore[no-untyped-call]
    for schema in _SCHEMAS:
        library.define(schema)  # type: ignore[no-untyped-call]
    _declared.append(library)
