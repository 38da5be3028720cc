"""The model catalog and the contract of its factories.

A model factory takes the entry's validated options model and the data's DataSpec and returns a
fresh ``nn.Module`` (``ModelFactory``). The entries are registered in ``kiln.config.catalogs``,
each with its options model (the config is built from them, and sits below this package);
``MODELS`` is that catalog, typed with what its factories build. ``kiln.testing.ModelContract``
checks a factory against what the rest of kiln relies on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

from kiln.catalog import Catalog
from kiln.config import catalogs

if TYPE_CHECKING:
    from torch import nn

    from kiln.data.spec import DataSpec

O_contra = TypeVar("O_contra", contravariant=True)


class ModelFactory(Protocol[O_contra]):
    """``build(options, spec) -> nn.Module``: input and output sized from ``spec``."""

    def __call__(self, options: O_contra, spec: DataSpec, /) -> nn.Module: ...


MODELS: Catalog[nn.Module] = catalogs.MODELS
