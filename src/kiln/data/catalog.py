"""The dataset catalog. Entries are import paths so listing and validating names imports nothing heavy.

Every factory has the signature ``build(cfg: DataConfig, seed: int) -> DataBundle``. The entries
are registered in ``kiln.config.catalogs`` (the config validates ``data.name`` against them, and
sits below this package); ``DATASETS`` is that catalog, typed with what its factories build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln.catalog import Catalog
from kiln.config import catalogs

if TYPE_CHECKING:
    from kiln.data.spec import DataBundle

DATASETS: Catalog[DataBundle] = catalogs.DATASETS
