"""Datasets: a named catalog of builders, each giving train/val/test splits and a DataSpec.

Importing this package does not import torch (the catalog entries are import paths);
the dataset modules, which do, are imported only when a dataset is built.
"""

from kiln.data.build import build_data, check_bundle
from kiln.data.catalog import DATASETS, DatasetFactory
from kiln.data.spec import DataBundle, DataSpec

__all__ = ["DATASETS", "DataBundle", "DataSpec", "DatasetFactory", "build_data", "check_bundle"]
