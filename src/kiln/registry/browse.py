"""Reading and annotating the registry: registered models, their versions, descriptions and tags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from kiln.errors import RegistryError
from kiln.registry.client import (
    get_client,
    model_version,
    name_filter,
    registered_model,
    translate_errors,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

_HIDDEN_PREFIXES = ("kiln.audit.", "kiln.promotion.", "kiln.gates")  # shown by `kiln registry audit`


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    aliases: tuple[str, ...]
    run_id: str | None
    source: str
    created: str  # UTC, ISO 8601
    description: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    aliases: dict[str, int]
    tags: dict[str, str]
    updated: str  # UTC, ISO 8601
    versions: tuple[VersionInfo, ...] = ()

    @property
    def latest_version(self) -> int | None:
        return max((v.version for v in self.versions), default=None)


@translate_errors
def list_models(uri: str | None = None) -> list[ModelInfo]:
    """Every registered model, by name, with its versions."""
    client = get_client(uri)
    return [_model_info(client, m) for m in _all(client.search_registered_models)]


@translate_errors
def show_model(name: str, uri: str | None = None) -> ModelInfo:
    """One registered model with all its versions (newest first)."""
    client = get_client(uri)
    return _model_info(client, registered_model(client, name))


@translate_errors
def describe(name: str, text: str, version: str | int | None = None, uri: str | None = None) -> None:
    """Set the description of the registered model, or of one of its versions."""
    client = get_client(uri)
    if version is None:
        registered_model(client, name)
        client.update_registered_model(name, description=text)
    else:
        number = model_version(client, name, version).version
        client.update_model_version(name, str(number), description=text)


@translate_errors
def set_tags(name: str, tags: Mapping[str, str], version: str | int | None = None, uri: str | None = None) -> None:
    """Set tags on the registered model, or on one of its versions; ``kiln.*`` keys are kiln's own."""
    reserved = sorted(k for k in tags if k.startswith("kiln."))
    if reserved:
        raise RegistryError(
            f"tag keys {', '.join(reserved)} are reserved: 'kiln.*' tags record provenance and the "
            "audit trail, which must not be edited by hand. Choose another key, e.g. 'team'"
        )
    client = get_client(uri)
    if version is None:
        registered_model(client, name)
        for key, value in tags.items():
            client.set_registered_model_tag(name, key, value)
    else:
        number = model_version(client, name, version).version
        for key, value in tags.items():
            client.set_model_version_tag(name, str(number), key, value)


def visible_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags worth showing in a listing (the audit trail has its own command)."""
    return {k: v for k, v in tags.items() if not k.startswith(_HIDDEN_PREFIXES)}


def _model_info(client: MlflowClient, model: Any) -> ModelInfo:
    aliases = {str(a): int(v) for a, v in (model.aliases or {}).items()}
    by_version: dict[int, list[str]] = {}
    for alias, number in aliases.items():
        by_version.setdefault(number, []).append(alias)
    versions = [
        VersionInfo(
            v.name, int(v.version), tuple(sorted(by_version.get(int(v.version), []))), v.run_id,
            v.source, _time(v.creation_timestamp), v.description or "", dict(v.tags or {}),
        )
        for v in _all(client.search_model_versions, name_filter(model.name))
    ]
    versions.sort(key=lambda v: v.version, reverse=True)
    return ModelInfo(
        model.name, model.description or "", aliases, dict(model.tags or {}),
        _time(model.last_updated_timestamp), tuple(versions),
    )


def _all(search: Any, *args: Any) -> list[Any]:
    """Every page of an MLflow search."""
    items: list[Any] = []
    token = None
    while True:
        page = search(*args, page_token=token)
        items.extend(page)
        token = page.token
        if not token:
            return items


def _time(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")
