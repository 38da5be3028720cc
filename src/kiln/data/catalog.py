"""The dataset catalog and the contract of its factories.

A dataset factory takes the entry's validated options model and the run seed and returns a
``DataBundle`` (``DatasetFactory``): the same seed gives the same splits. The entries are
registered in ``kiln.config.catalogs``, each with its options model (the config is built from
them, and sits below this package); ``DATASETS`` is that catalog, typed with what its factories
build. ``kiln.testing.DatasetContract`` checks a factory against what the rest of kiln relies on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

from kiln.catalog import Catalog
from kiln.config import catalogs

if TYPE_CHECKING:
    from kiln.data.spec import DataBundle

O_contra = TypeVar("O_contra", contravariant=True)


class DatasetFactory(Protocol[O_contra]):
    """``build(options, seed) -> DataBundle``: deterministic for ``seed``."""

    def __call__(self, options: O_contra, seed: int, /) -> DataBundle: ...


DATASETS: Catalog[DataBundle] = catalogs.DATASETS
