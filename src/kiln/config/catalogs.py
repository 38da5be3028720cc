"""The dataset and model catalogs: names, import paths and the options model of each entry.

They live at the config's level, not in ``kiln.data``/``kiln.models``, because the config is built
from them: each entry's options model (``kiln.config.model_options``, ``data_options``) is one
member of the ``model``/``data`` union, chosen by ``name`` (``kiln.config.entries``). Factories are
``package.module:attr`` strings, so holding them here imports nothing of data or models;
``kiln.data.catalog.DATASETS`` and ``kiln.models.catalog.MODELS`` are these very objects, typed
with what their factories build.

Adding an entry is one module (its factory) plus one registration here, with its options model.
Every dataset factory has the signature ``build(options: <its options>, seed: int) -> DataBundle``;
every model factory ``build(options: <its options>, spec: DataSpec) -> nn.Module``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from kiln.catalog import Catalog
from kiln.config import data_options as data
from kiln.config import image_options as images
from kiln.config import model_options as model


def _register(catalog: Catalog[Any], name: str, factory: str, options: type[BaseModel], about: str) -> None:
    catalog.register(name, factory, about, options=options)  # its params: the options' knobs


DATASETS: Catalog[Any] = Catalog("dataset")
_register(DATASETS, "digits", "kiln.data.digits:build", data.DigitsOptions,
          "scikit-learn's bundled 8x8 digits (no download)")
_register(DATASETS, "mnist", "kiln.data.mnist:build_mnist", data.MnistOptions,
          "MNIST IDX files from data.path")
_register(DATASETS, "fashion_mnist", "kiln.data.mnist:build_fashion_mnist", data.FashionMnistOptions,
          "Fashion-MNIST IDX files from data.path")
_register(DATASETS, "csv", "kiln.data.tabular:build", data.CsvOptions,
          "a CSV file with a target column")
_register(DATASETS, "synthetic", "kiln.data.synthetic:build", data.SyntheticOptions,
          "deterministic generated data")
_register(DATASETS, "image_folder", "kiln.data.images.build:build", images.ImageFolderOptions,
          "a folder of your images, one subfolder per class (or a CSV manifest)")
_register(DATASETS, "text", "kiln.data.text:build", data.TextOptions,
          "a UTF-8 text file for character-level language modeling")

MODELS: Catalog[Any] = Catalog("model")
_register(MODELS, "mlp", "kiln.models.mlp:build", model.MlpOptions,
          "flatten, dense hidden layers, output layer")
_register(MODELS, "cnn", "kiln.models.cnn:build", model.CnnOptions,
          "conv blocks ('valid' padding) with pooling, then dense layers")
_register(MODELS, "transformer", "kiln.models.transformer:build", model.TransformerOptions,
          "decoder-only transformer over token ids (causal fused attention), for language modeling")
_register(MODELS, "torchvision", "kiln.models.torchvision_models:build", model.TorchvisionOptions,
          "a torchvision classification model (resnet18, efficientnet_b0...), pretrained or not (extra: vision)")
_register(MODELS, "timm", "kiln.models.timm_models:build", model.TimmOptions,
          "a timm model (resnet50, convnext_tiny, vit_small_patch16_224...), pretrained or not (extra: vision)")

# Trackers: where a run's records go besides logs/events.jsonl. The config validates
# ``tracking.backends`` against these names, so they sit here with the datasets and models; the
# entries are ``package.module:attr`` strings, so naming them imports no tracker. Every entry has
# the signature of ``kiln.tracking.base.TrackerFactory``: ``prepare(setup: TrackerSetup)`` runs on
# the training thread before the first step (check settings, fail early) and returns the
# zero-argument constructor the fan-out thread calls (slow imports and connections go there).
# jsonl is always written, first, whether listed or not: it is the run's source of truth.
TRACKERS: Catalog[Any] = Catalog("tracker")
TRACKERS.register("jsonl", "kiln.tracking.jsonl:prepare", "logs/events.jsonl, always written first")
TRACKERS.register("csv", "kiln.tracking.csv:prepare", "logs/training_log.csv, one row per epoch")
TRACKERS.register("tensorboard", "kiln.tracking.tensorboard:prepare", "logs/tensorboard/ event files")
TRACKERS.register(
    "mlflow", "kiln.tracking.mlflow_process:prepare",
    "an MLflow run at tracking.uri, written by a worker process that finishes after the run",
)
TRACKERS.register(
    "wandb", "kiln.tracking.wandb:prepare", "Weights & Biases, offline in logs/wandb/ or online"
)
