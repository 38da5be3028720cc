"""``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` to a local kiln run directory and model package.

The version's own run directory is used when it is on this machine and still holds the registered
weights; otherwise the run's ``kiln_model`` artifact (with ``config.yaml`` and ``summary.json``) is
downloaded once into a cache laid out like a run directory, so ``kiln eval`` and ``load_model``
treat both the same way.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.errors import RegistryError
from kiln.registry.client import get_client, model_version, translate_errors, version_by_alias
from kiln.registry.provenance import TAG_SHA256, local_run_dir, weights_sha256

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger("kiln.registry")

SCHEME = "models:/"
FORMS = "models:/NAME@ALIAS (e.g. models:/digits@production) or models:/NAME/VERSION (e.g. models:/digits/3)"
# what `kiln eval` needs besides the package (data_splits.csv: an image_folder run's split lists)
_OPTIONAL_ARTIFACTS = ("config.yaml", "summary.json", "data_splits.csv")


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``models:/`` URI: exactly one of ``alias`` and ``version`` is set."""

    name: str
    alias: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    version: int
    run_id: str
    run_dir: Path  # the original run directory, or its copy in the cache
    local: bool  # True: the original run directory on this machine

    @property
    def package_dir(self) -> Path:
        return self.run_dir / "models"


def is_model_uri(text: str | os.PathLike[str]) -> bool:
    return str(text).startswith(SCHEME)


def parse_model_uri(uri: str) -> ModelRef:
    """Split a ``models:/`` URI; RegistryError showing the accepted forms if it is neither."""
    body = uri[len(SCHEME):] if uri.startswith(SCHEME) else ""
    if "@" in body:
        name, alias = body.rsplit("@", 1)
        if name and alias:
            return ModelRef(name, alias=alias)
    elif "/" in body:
        name, version = body.rsplit("/", 1)
        if name and version.isdigit():
            return ModelRef(name, version=version)
    raise RegistryError(f"{uri!r} is not a model URI kiln understands: use {FORMS}")


def find_version(client: MlflowClient, ref: ModelRef) -> ModelVersion:
    if ref.alias is not None:
        return version_by_alias(client, ref.name, ref.alias)
    assert ref.version is not None
    return model_version(client, ref.name, ref.version)


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "kiln" / "registry"


@translate_errors
def resolve_model_uri(uri: str, tracking_uri: str | None = None, cache_dir: Path | None = None) -> ResolvedModel:
    """The run directory (original or cached copy) holding the model ``uri`` names.

    >>> resolve_model_uri("models:/digits@production").package_dir  # doctest: +SKIP
    PosixPath('runs/digits_mlp_20261123_101500/models')
    """
    ref = parse_model_uri(uri)
    client = get_client(tracking_uri)
    version = find_version(client, ref)
    if not version.run_id:
        raise RegistryError(f"{uri} (version {version.version}) has no MLflow run to load a kiln model from")
    run_dir = local_run_dir(version)
    if run_dir is not None:
        return ResolvedModel(ref.name, int(version.version), version.run_id, run_dir, True)
    cached = _download(client, version, cache_dir or default_cache_dir())
    return ResolvedModel(ref.name, int(version.version), version.run_id, cached, False)


def _download(client: MlflowClient, version: ModelVersion, cache_dir: Path) -> Path:
    """The run's kiln_model (as ``models/``) plus config and summary, in ``cache_dir/<run id>/``."""
    run_id = str(version.run_id)
    target = cache_dir / run_id
    expected = (version.tags or {}).get(TAG_SHA256)
    if _complete(target, expected):
        return target
    present = {a.path for a in client.list_artifacts(run_id)}
    if "kiln_model" not in present:
        raise RegistryError(
            f"version {version.version} of {version.name!r}: its run {run_id} has no 'kiln_model' "
            f"artifact and its run directory {(version.tags or {}).get('kiln.run_dir', '(unknown)')} "
            "is not on this machine, so there is no kiln package to load"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{run_id}.", dir=cache_dir))
    try:
        client.download_artifacts(run_id, "kiln_model", str(staging))
        (staging / "kiln_model").rename(staging / "models")
        for name in _OPTIONAL_ARTIFACTS:
            if name in present:
                client.download_artifacts(run_id, name, str(staging))
        if expected and weights_sha256(staging) != expected:
            raise RegistryError(
                f"the kiln_model artifact of run {run_id} does not match the weights version "
                f"{version.version} of {version.name!r} was registered with (sha256 {expected[:12]}...)"
            )
        if target.exists():  # an incomplete or stale copy
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:  # another process put its copy in place first: theirs is as good
            if not _complete(target, expected):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("downloaded version %s of %s into %s", version.version, version.name, target)
    return target


def _complete(directory: Path, sha256: str | None) -> bool:
    if not (directory / "models" / "model.json").is_file() or not (directory / "models" / "model.safetensors").is_file():
        return False
    return not sha256 or weights_sha256(directory) == sha256
