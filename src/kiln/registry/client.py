"""The MLflow client the registry talks through, and the translation of MLflow's errors into
RegistryErrors that say what exists."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from kiln.errors import MissingExtraError, RegistryError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

P = ParamSpec("P")
R = TypeVar("R")

# MLflow's own alias rules (mlflow.utils.validation), checked before anything is written.
_ALIAS = re.compile(r"^[\w\-]+$")
_RESERVED_ALIAS = re.compile(r"^(latest|[vV]\d+)$", re.IGNORECASE)


def registry_uri(uri: str | None = None, output_dir: Path | None = None) -> str:
    """``uri``, else $MLFLOW_TRACKING_URI, else the embedded store ``<output_dir>/mlflow.db``
    where training tracks by default: ``output_dir`` is the config's ``run.output_dir`` when the
    caller knows it, else that setting's default (``runs``)."""
    from kiln.config.schema import RunConfig
    from kiln.settings import tracking_uri

    return tracking_uri(uri, output_dir if output_dir is not None else RunConfig().output_dir)


def get_client(uri: str | None = None, output_dir: Path | None = None) -> MlflowClient:
    """An ``MlflowClient`` whose tracking and registry URI is :func:`registry_uri`.

    A SQLite store must exist already: the registry only reads stores that runs were tracked into,
    and a mistyped path should be an error, not a new empty database.
    """
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise MissingExtraError("mlflow", "mlflow") from None
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    target = registry_uri(uri, output_dir)
    if target.startswith("sqlite:///"):
        path = Path(target.removeprefix("sqlite:///").split("?", 1)[0])
        if not path.is_file():
            raise RegistryError(
                f"no MLflow store at {path}: nothing has been tracked there yet. Train with the "
                "mlflow tracking backend first, or point at your store with --uri or $MLFLOW_TRACKING_URI"
            )
    return MlflowClient(tracking_uri=target, registry_uri=target)


def translate_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Decorator: MLflow's own errors (a server down, a name it rejects) become RegistryErrors, so
    callers (the CLI, the end of training) handle one error type and users see no traceback."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            from mlflow.exceptions import MlflowException
        except ImportError:
            raise MissingExtraError("mlflow", "mlflow") from None
        try:
            return function(*args, **kwargs)
        except MlflowException as exc:
            raise RegistryError(f"MLflow failed: {exc.message}") from exc

    return wrapper


def check_alias(alias: str) -> str:
    """Raise RegistryError unless MLflow would accept ``alias``."""
    if not _ALIAS.match(alias) or _RESERVED_ALIAS.match(alias):
        raise RegistryError(
            f"alias {alias!r} is not allowed: use letters, digits, '_' and '-' (e.g. production, "
            "staging, champion); 'latest' and 'v<number>' are reserved by MLflow"
        )
    return alias


def check_version(version: str | int) -> str:
    text = str(version).strip()
    if not text.isdigit():
        raise RegistryError(f"version {version!r} is not a version number: pass e.g. 3")
    return str(int(text))


def registered_model(client: MlflowClient, name: str) -> Any:
    """The RegisteredModel ``name``; RegistryError listing the registered names if there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    from kiln.catalog import did_you_mean

    names = sorted(m.name for m in client.search_registered_models())
    raise RegistryError(
        f"no registered model named {name!r} in {client.tracking_uri}.{did_you_mean(name, names)} "
        f"Registered: {', '.join(names) or '(none yet: kiln registry register RUN_DIR --name NAME)'}"
    )


def model_version(client: MlflowClient, name: str, version: str | int) -> ModelVersion:
    """Version ``version`` of ``name``; RegistryError listing the versions that exist."""
    number = check_version(version)
    from mlflow.exceptions import MlflowException

    registered_model(client, name)
    try:
        return client.get_model_version(name, number)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    versions = sorted(int(v.version) for v in client.search_model_versions(name_filter(name)))
    raise RegistryError(
        f"{name!r} has no version {number}. Versions: {', '.join(map(str, versions)) or '(none)'}"
    )


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion:
    """The version of ``name`` holding ``alias``; RegistryError listing the aliases that exist."""
    model = registered_model(client, name)
    aliases: dict[str, Any] = dict(model.aliases or {})
    if alias not in aliases:
        held = ", ".join(f"@{a} -> version {v}" for a, v in sorted(aliases.items()))
        raise RegistryError(
            f"{name!r} has no alias {alias!r}. Aliases: {held or '(none)'}. "
            f"Give one with: kiln registry promote {name} VERSION --alias {alias}"
        )
    return client.get_model_version(name, str(aliases[alias]))


def version_ref(client: MlflowClient, name: str, ref: str | int) -> ModelVersion:
    """A version given as a number (``3``) or as an alias (``@staging``)."""
    text = str(ref)
    if text.startswith("@"):
        return version_by_alias(client, name, text[1:])
    return model_version(client, name, text)


def name_filter(name: str) -> str:
    """An MLflow search filter for the versions of ``name``."""
    return "name='{}'".format(name.replace("'", "\\'"))
