"""The ``model`` and ``data`` sections as discriminated unions on ``name``, built from the catalogs.

Each catalog entry brings its options model (``kiln.config.catalogs``); the section is the union of
those models plus one for the user's own code by import path. ``name`` picks the member, ``target``
(when set) picks the import-path member, and a missing ``name`` means the default entry. So
``model.filters`` on an ``mlp`` is an error, and registering an entry adds its member: there is no
list of members to keep in step.

A later layer that names another entry *switches* the section: an override ``model.name=cnn`` on a
config written for an mlp, or a file that ``extends`` another and names another dataset. The keys
of the earlier layer that the new entry does not take are then dropped (and logged), the rest
stay: ``-c configs/mnist_cnn_enhanced.yaml model.name=mlp`` keeps ``hidden`` and ``dropout``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, Discriminator, Tag, TypeAdapter

from kiln.catalog import Catalog
from kiln.config.catalogs import DATASETS, MODELS
from kiln.config.data_options import DataConfig, DigitsOptions, TargetData
from kiln.config.model_options import MlpOptions, ModelConfig, TargetModel

if TYPE_CHECKING:
    from pydantic import GetJsonSchemaHandler

log = logging.getLogger("kiln")

CUSTOM = "custom"  # the tag of the import-path member (a catalog name may not take it)

# The flat layout kiln wrote before these sections were unions: every knob of every entry, in the
# model.json and config.yaml of the runs made then. A section with exactly these keys is read with
# the keys of its chosen entry only (the others were never read by its builder).
LEGACY_KEYS = {
    "model": frozenset({
        "name", "target", "options", "hidden", "dropout", "activation", "filters", "kernel_size",
        "pool", "conv_dropout", "batch_norm", "d_model", "n_heads", "n_layers", "d_ff",
        "block_size", "tie_weights",
    }),
    "data": frozenset({
        "name", "target", "options", "path", "download", "val_fraction", "test_fraction", "subset",
        "normalize", "num_workers", "target_column", "task", "val_path", "test_path", "synthetic",
        "text",
    }),
}


class EntrySection:
    """One union section, ``model`` or ``data``: its catalog, its default entry and the member for
    the user's own code. Put in a field's annotation (``wrap`` validates, the object itself gives
    the JSON schema), it takes the section as the union of the catalog's entries as they are when
    a config is validated: an entry registered later is a member at once.

    >>> from pydantic import BaseModel, WrapValidator
    >>> class Config(BaseModel):
    ...     model: Annotated[ModelConfig, WrapValidator(MODEL.wrap), MODEL] = MlpOptions()
    >>> Config.model_validate({"model": {"name": "cnn", "filters": [8]}}).model.filters
    [8]
    """

    def __init__(
        self, section: str, catalog: Catalog[Any], base: type[BaseModel], custom: type[BaseModel],
        default: type[BaseModel],
    ) -> None:
        self.section = section  # the key in the config: "model" or "data"
        self.catalog = catalog
        self.base = base  # what every member subclasses (ModelConfig, DataConfig)
        self.custom = custom  # the member chosen when `target` is set
        self.default = default  # the member of a section without a name
        self.default_name = str(default.model_fields["name"].default)
        self._adapters: dict[tuple[tuple[str, Any], ...], TypeAdapter[Any]] = {}

    @property
    def kind(self) -> str:
        return self.catalog.kind  # "model" or "dataset": how messages name an entry

    def members(self) -> dict[str, type[BaseModel]]:
        """Tag -> options model: every catalog entry, then ``custom``."""
        found: dict[str, type[BaseModel]] = {}
        for entry in self.catalog:
            if entry.name == CUSTOM:
                raise TypeError(f"{CUSTOM!r} names your own {self.kind} (with target); register under another name")
            if entry.options is None or "name" not in getattr(entry.options, "model_fields", {}):
                raise TypeError(
                    f"{self.kind} {entry.name!r} needs an options model with a `name` field: "
                    f"register it with options=<a subclass of kiln.config.{self.base.__name__}>"
                )
            found[entry.name] = entry.options
        return {**found, CUSTOM: self.custom}

    def tag(self, value: Any) -> str | None:
        """The member for a raw mapping or a validated section: ``custom`` when ``target`` is set,
        else its name (the default entry's when it has none)."""
        if isinstance(value, Mapping):
            if value.get("target") is not None:
                return CUSTOM
            name = value.get("name", self.default_name)
            return name if isinstance(name, str) else None
        if getattr(value, "target", None) is not None:
            return CUSTOM
        name = getattr(value, "name", None)
        return name if isinstance(name, str) else None

    def keys(self, tag: str) -> list[str]:
        """The keys the member ``tag`` takes, in declaration order."""
        return list(self.members()[tag].model_fields)

    def adapter(self) -> TypeAdapter[Any]:
        """The tagged union of the catalog's current entries (rebuilt when the catalog changes)."""
        members = self.members()
        key = tuple(members.items())
        if key not in self._adapters:
            # a union built at run time: the type checker sees the bases (ModelConfig, DataConfig)
            tagged = tuple(Annotated[m, Tag(t)] for t, m in members.items())
            union: Any = Union[tagged]  # noqa: UP007
            self._adapters[key] = TypeAdapter(
                Annotated[union, Discriminator(self.tag), BeforeValidator(self._check)]
            )
        return self._adapters[key]

    def validate(self, value: Any) -> Any:
        """The section ``value`` validated as the member its ``name``/``target`` picks."""
        return self.adapter().validate_python(value)

    def wrap(self, value: Any, handler: Any) -> Any:
        """``validate`` as a WrapValidator: the union replaces the base model's own validation."""
        del handler
        return self.validate(value)

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        """``kiln config schema`` shows the union of the current entries, not the base model."""
        return handler(self.adapter().core_schema)

    def _check(self, value: Any) -> Any:
        """Runs before the union: ``target: null`` means no target; an unknown name or a section
        that is no mapping gets a message naming what is allowed."""
        if isinstance(value, BaseModel):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(
                f"the {self.section} section must be a mapping, e.g. {{name: {self.default_name}}}"
            )
        tag = self.tag(value)
        if set(value) == LEGACY_KEYS[self.section] and tag in (members := self.members()):
            value = {k: v for k, v in value.items() if k in members[tag].model_fields}
        if "target" in value and value["target"] is None:
            value = {k: v for k, v in value.items() if k != "target"}
        if tag is None:
            raise ValueError(f"{self.section}.name must be a {self.kind} name, e.g. {self.default_name}")
        if tag != CUSTOM and tag not in self.catalog:
            raise ValueError(
                self.catalog.unknown_message(tag) + "; or set `target: package.module:attr` to use your own"
            )
        return value

    def switched(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
        """``before``'s keys that the entry ``after`` names still takes, when ``after`` names
        another entry than ``before`` does; ``before`` unchanged otherwise (then nothing switched)."""
        old, new = self.tag(before), self.tag(after)
        members = self.members()
        if old == new or new not in members:
            return dict(before)
        taken = set(members[new].model_fields)
        dropped = [key for key in before if key not in taken and key != "target"]
        if dropped:
            log.info(
                "%s switches from %s to %s: dropped %s", self.section, old, new,
                ", ".join(f"{self.section}.{key}" for key in dropped),
            )
        return {key: value for key, value in before.items() if key in taken}


MODEL = EntrySection("model", MODELS, ModelConfig, TargetModel, MlpOptions)
DATA = EntrySection("data", DATASETS, DataConfig, TargetData, DigitsOptions)
SECTIONS: dict[str, EntrySection] = {MODEL.section: MODEL, DATA.section: DATA}


def parse_model_config(raw: Mapping[str, Any]) -> ModelConfig:
    """Validate a ``model`` section on its own (e.g. the one stored in a model package)."""
    model: ModelConfig = MODEL.validate(dict(raw))
    return model


def parse_data_config(raw: Mapping[str, Any]) -> DataConfig:
    """Validate a ``data`` section on its own."""
    data: DataConfig = DATA.validate(dict(raw))
    return data
