"""The model catalog. Entries are import paths so listing and validating names imports nothing heavy.

Every factory has the signature ``build(cfg: ModelConfig, spec: DataSpec) -> nn.Module``. The
entries are registered in ``kiln.config.catalogs`` (the config validates ``model.name`` against
them, and sits below this package); ``MODELS`` is that catalog, typed with what its factories build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln.catalog import Catalog
from kiln.config import catalogs

if TYPE_CHECKING:
    from torch import nn

MODELS: Catalog[nn.Module] = catalogs.MODELS
