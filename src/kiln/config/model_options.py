"""The options of each built-in model: the keys ``model:`` takes once ``model.name`` is chosen.

Each class is one member of the config's ``model`` union (``kiln.config.entries``): its fields,
defaults and descriptions are what ``kiln models`` lists, and its builder in ``kiln.models``
receives a validated instance. They live at the config's level because the config validates them
and sits below ``kiln.models``. ``TargetModel`` is the member for a user's own model by import path.

>>> MlpOptions(hidden=[32]).dropout
0.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator
from typing_extensions import Self

from kiln.config.section import Section

Activation = Literal["relu", "gelu", "tanh", "sigmoid", "leaky_relu", "silu"]


class ModelConfig(Section):
    """What every ``model:`` section has: ``name``, the catalog entry (or a label with ``target``)."""

    name: str = Field(description="a catalog model (see `kiln models`)")

    def for_loading(self) -> Self:
        """These options as a saved model is rebuilt from them, before its own weights are loaded
        into it (``kiln.models.package``): the same architecture, nothing fetched to start from."""
        return self


class MlpOptions(ModelConfig):
    """Flatten, dense hidden layers, output layer."""

    name: Literal["mlp"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [128, 64], description="dense hidden layer widths")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout after each dense hidden layer")
    activation: Activation = Field("relu", description="activation after each hidden layer")
    batch_norm: bool = Field(False, description="batch norm after each dense hidden layer")


class CnnOptions(ModelConfig):
    """Conv blocks ('valid' padding) with pooling, then dense layers."""

    name: Literal["cnn"] = "cnn"
    filters: list[int] = Field(default_factory=lambda: [32], description="one conv block per entry")
    kernel_size: int = Field(3, ge=1, description="square kernel size")
    pool: Literal["max", "avg", "none"] = Field("max", description="2x2 pooling after each conv block")
    conv_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout after the conv blocks")
    hidden: list[int] = Field(default_factory=lambda: [128, 64], description="dense hidden layer widths")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout after each dense hidden layer")
    activation: Activation = Field("relu", description="activation after each conv and dense layer")
    batch_norm: bool = Field(False, description="batch norm after each conv / dense layer")
    channels_last: bool = Field(
        False, description="train in channels-last memory layout (NHWC): faster convolutions on CUDA tensor cores, with bf16/fp16"
    )


class TransformerOptions(ModelConfig):
    """Decoder-only transformer over token ids (causal fused attention), for language modeling."""

    name: Literal["transformer"] = "transformer"
    d_model: int = Field(128, ge=1, description="width of token embeddings and residual stream")
    n_heads: int = Field(4, ge=1, description="attention heads (must divide d_model)")
    n_layers: int = Field(4, ge=1, description="decoder blocks")
    d_ff: int | None = Field(None, ge=1, description="MLP hidden width; null: 4 * d_model")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout in attention and MLP blocks")
    block_size: int | None = Field(None, ge=1, description="longest context; null: the data's windows")
    tie_weights: bool = Field(True, description="output layer shares the token embedding matrix")


class BackboneOptions(ModelConfig):
    """What the pretrained-backbone entries (``torchvision``, ``timm``) share: an architecture of
    the library, where its starting weights come from, and what trains.

    ``arch`` is checked against the library's classification builders when the model is built
    (importing the library only then), with a did-you-mean. The classifier head is always sized
    for the data's classes; ``freeze: backbone`` trains the head only (with batch-norm statistics
    frozen too) until ``training.unfreeze_at_epoch``.
    """

    arch: str = Field("resnet18", description="an architecture of the library, e.g. resnet50, efficientnet_b0, convnext_tiny")
    pretrained: bool = Field(
        False, description="start from the library's ImageNet weights (its own download and cache)"
    )
    weights: Path | None = Field(
        None,
        description="start from a local .pth or .safetensors state dict of this arch (offline machines, your own checkpoints)",
    )
    freeze: Literal["none", "backbone"] = Field(
        "none", description="backbone: train the classifier head only (see training.unfreeze_at_epoch)"
    )
    channels_last: bool = Field(
        False, description="train in channels-last memory layout (NHWC): faster convolutions on CUDA tensor cores, with bf16/fp16"
    )
    # False only for a saved model rebuilt before its own weights are loaded (for_loading)
    _fetch_weights: bool = PrivateAttr(True)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.pretrained and self.weights is not None:
            raise ValueError(
                "model.pretrained and model.weights both name starting weights: keep one "
                "(weights: a local file, e.g. the library's weights copied to an offline machine)"
            )
        return self

    @property
    def starts_pretrained(self) -> bool:
        """True when the model starts from trained weights (the library's or a file): their
        architecture and preprocessing then apply."""
        return self.pretrained or self.weights is not None

    @property
    def fetches_weights(self) -> bool:
        """True when building the model loads its starting weights (not when a saved model is rebuilt)."""
        return self.starts_pretrained and self._fetch_weights

    def for_loading(self) -> Self:
        rebuilt = self.model_copy()
        rebuilt._fetch_weights = False
        return rebuilt


class TorchvisionOptions(BackboneOptions):
    """A torchvision classification model (resnet18, mobilenet_v3_small, efficientnet_b0,
    convnext_tiny, vit_b_16...), its head replaced for the data's classes."""

    name: Literal["torchvision"] = "torchvision"
    weights_name: str = Field(
        "DEFAULT", description="which of the arch's weights pretrained loads, e.g. IMAGENET1K_V2; DEFAULT: the best"
    )


class TimmOptions(BackboneOptions):
    """A timm model (``arch`` may carry a weights tag, e.g. resnet18.a1_in1k), its head sized for
    the data's classes."""

    name: Literal["timm"] = "timm"


class TargetModel(ModelConfig):
    """Your own model: an ``nn.Module`` class or factory named by import path.

    Chosen whenever ``target`` is set; ``name`` is then a free label. ``options`` are the keyword
    arguments of ``target`` (or, when ``target`` names a ``kiln.catalog.Entry`` with an options
    model, that model's fields, validated).
    """

    name: str = Field("custom", description="a label for your model")
    target: str = Field(description='your own nn.Module or factory, "package.module:attr"')
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for `target`")
    channels_last: bool = Field(
        False, description="a convolutional model: train in channels-last memory layout (NHWC): faster convolutions on CUDA tensor cores, with bf16/fp16"
    )
