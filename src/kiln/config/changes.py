"""What changing a setting does to a run already begun: declared once, on the schema's fields.

Two readers ask it. ``kiln resume`` (and ``kiln.resume``) refuses a changed setting that would make
the resumed run differ from the one that was started; a sweep accepts, between the machines (and
reruns) of one study, only settings that cannot change its trials. A field says which kind it is
with a marker in its annotation (``epochs: Annotated[int, LENGTH] = 10``); a marker on a section
covers every setting under it; an unmarked setting is ``RESULTS``, the safe default:

============  =========================================  ===========  ==========================
kind          meaning                                    on resume    between a study's machines
============  =========================================  ===========  ==========================
RESULTS       what the run computes (lr, model, data)    refused      must agree
LENGTH        how long it trains (epochs, max_steps)     allowed      must agree
LOGISTICS     how it runs, not what it computes          allowed      may differ
MACHINE       where this machine keeps or finds things   refused      may differ
============  =========================================  ===========  ==========================

The kind shows in ``kiln config schema`` as ``x-on-change``.

>>> resume_safe("training.epochs"), resume_safe("training.lr"), machine_local("run.device")
(True, False, True)
"""

from __future__ import annotations

import enum
import functools
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from pydantic import GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import CoreSchema


class Change(str, enum.Enum):
    """The kinds of setting, by what a change to one does (see the module docstring)."""

    RESULTS = "results"
    LENGTH = "length"
    LOGISTICS = "logistics"
    MACHINE = "machine"


@dataclass(frozen=True)
class OnChange:
    """The marker a field carries in its annotation: ``Annotated[int, LENGTH]``."""

    kind: Change

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["x-on-change"] = self.kind.value
        return json_schema


LENGTH = OnChange(Change.LENGTH)
LOGISTICS = OnChange(Change.LOGISTICS)
MACHINE = OnChange(Change.MACHINE)

# The `data:` section is a union of the catalog entries' option models (kiln.config.data_options),
# kept by their own module; until those fields carry markers themselves, the few of their settings
# that are not RESULTS are named here. A marker on a field, when there is one, wins.
UNMARKED: dict[str, Change] = {
    "data.num_workers": Change.LOGISTICS,  # loader processes: the same batches in the same order
    "data.persistent_workers": Change.LOGISTICS,
    "data.prefetch_factor": Change.LOGISTICS,
    "data.pin_memory": Change.LOGISTICS,
    "data.image.cache": Change.LOGISTICS,  # decoded images kept: the same tensors either way
    "data.manifest": Change.MACHINE,
    "model.weights": Change.MACHINE,  # where this machine holds the starting weights (a resume loads its checkpoint)
    "data.path": Change.MACHINE,  # where this machine holds the files
    "data.val_path": Change.MACHINE,
    "data.test_path": Change.MACHINE,
}


def resume_safe(key: str) -> bool:
    """Whether ``key`` (a dotted setting, e.g. ``training.epochs``) may change on resume."""
    return change_of(key) in (Change.LENGTH, Change.LOGISTICS)


def machine_local(key: str) -> bool:
    """Whether ``key`` may differ between the machines and reruns of one sweep's study."""
    return change_of(key) in (Change.LOGISTICS, Change.MACHINE)


@functools.cache
def change_of(key: str) -> Change:
    """The kind of the setting ``key``: the marker on its field or on a section above it, else
    ``UNMARKED``'s entry, else RESULTS (also for a key the schema does not know)."""
    from kiln.config.schema import KilnConfig

    models: list[type[BaseModel]] = [KilnConfig]
    for name in key.split("."):
        fields = [m.model_fields[name] for m in models if name in m.model_fields]
        marks = [meta.kind for field in fields for meta in field.metadata if isinstance(meta, OnChange)]
        if marks:
            return marks[0]
        models = [m for field in fields for m in _models_in(field.annotation)]
        if not models:
            break
    return next((kind for prefix, kind in UNMARKED.items() if key == prefix or key.startswith(prefix + ".")),
                Change.RESULTS)


def differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` for every setting that differs between two dumped
    configs (``model_dump(mode="json")``), in key order; a key missing on one side is None there."""
    found: list[tuple[str, Any, Any]] = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found += differences(a, b, f"{prefix}{name}.")
        elif a != b:
            found.append((f"{prefix}{name}", a, b))
    return found


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The config models an annotation can hold: itself, or the members of a union or Optional."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)
