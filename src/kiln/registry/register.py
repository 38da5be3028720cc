"""Register a finished kiln run's model as a new version of a registered model.

The version points at the MLflow run's ``model`` artifact (``runs:/<run id>/model``) and is tagged
with where it came from (run directory, config hash, weights sha256) and its test metrics. With an
``alias``, the version gets it only when every ``require`` gate passes on the run's summary.json;
a version that fails them is still registered (it is a fact that it was trained), but without the
alias, and the version's ``kiln.alias_refused`` tag says why.

A run's MLflow side may still be finishing when this runs (``kiln train`` returns the prompt
before its model is in MLflow): registering waits for that finisher, takes over from it when it is
too slow, and completes a run whose model never reached MLflow from the run directory, so the
version always points at a complete model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.errors import RegistryError
from kiln.registry.client import check_alias, get_client, translate_errors
from kiln.registry.promote import GateFailed, apply
from kiln.registry.provenance import (
    TAG_CONFIG_HASH,
    TAG_RUN,
    TAG_RUN_DIR,
    TAG_SHA256,
    read_summary,
    weights_sha256,
)
from kiln.runs.gates import (
    GateResult,
    describe_failures,
    evaluate_gates,
    parse_gates,
    recorded_metrics,
)
from kiln.runs.summary import FINISHED

if TYPE_CHECKING:
    from mlflow import MlflowClient

_NEEDED_ARTIFACTS = ("model", "kiln_model")
FINISH_WAIT = 60.0  # seconds a run's MLflow finisher gets to end on its own before a take-over


@dataclass(frozen=True)
class RegisterResult:
    """A new model version, and whether it got the alias asked for."""

    name: str
    version: int
    run_id: str
    source: str
    alias: str | None
    alias_set: bool
    previous_version: int | None  # who held the alias before (when it was set)
    gates: tuple[GateResult, ...]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "registered": True, "name": self.name, "version": self.version, "uri": self.uri,
            "run_id": self.run_id, "source": self.source, "alias": self.alias,
            "alias_set": self.alias_set, "previous_version": self.previous_version,
            "gates": [g.to_dict() for g in self.gates],
        }


@translate_errors
def register_run(
    run_dir: str | Path,
    name: str,
    alias: str | None = None,
    require: Sequence[str] = (),
    uri: str | None = None,
    source: str = "kiln.registry.register_run",
) -> RegisterResult:
    """Register the model of ``run_dir`` as a new version of ``name`` (created if missing).

    ``uri`` defaults to the tracking URI the run was logged to (``logs/mlflow.json``).
    """
    from kiln.tracking import finisher
    from kiln.tracking.mlflow import read_link

    root = Path(run_dir).resolve()
    gates = parse_gates(require)  # a malformed gate fails before anything is written
    if alias is not None:
        check_alias(alias)
    summary = read_summary(root)
    if not summary.finished:
        raise RegistryError(
            f"{root} ended with status {summary.status!r}; only runs that ended "
            f"{' or '.join(FINISHED)} can be registered"
        )
    # The run's MLflow finisher may still be at work (even writing logs/mlflow.json): wait for it,
    # or take over from it past FINISH_WAIT, before reading anything it writes.
    finisher.acquire(root / "logs", FINISH_WAIT, take_over=True).release()
    link = read_link(root / "logs")
    if link is None:
        raise RegistryError(
            f"{root} was not tracked in MLflow (it has no logs/mlflow.json), so there is no MLflow "
            f"run to register. Send it there first: kiln sync {run_dir}"
        )
    client = get_client(uri or str(link["tracking_uri"]))
    run_id = str(link["run_id"])
    _settle(client, run_id, root, own_store=uri is None or uri == link["tracking_uri"])
    _check_run(client, run_id, root, run_dir)
    _ensure_model(client, name)
    tags = {TAG_RUN_DIR: str(root), TAG_RUN: root.name, TAG_CONFIG_HASH: summary.config_hash}
    if (root / "models" / "model.safetensors").is_file():
        tags[TAG_SHA256] = weights_sha256(root)
    tags.update({k: str(v) for k, v in summary.test.items()})
    model_source = f"runs:/{run_id}/model"
    version = client.create_model_version(name, model_source, run_id=run_id, tags=tags)
    number = int(version.version)
    results = evaluate_gates(gates, recorded_metrics(root))  # what kiln gate measured counts too
    if results:
        client.set_model_version_tag(name, str(number), "kiln.gates", json.dumps([r.to_dict() for r in results]))
    if alias is None:
        return RegisterResult(name, number, run_id, model_source, None, False, None, tuple(results))
    try:
        promoted = apply(client, version, alias, results, str(root / "summary.json"), source)
    except GateFailed:
        client.set_model_version_tag(
            name, str(number), "kiln.alias_refused", f"{alias}: {describe_failures(results)}"
        )
        return RegisterResult(name, number, run_id, model_source, alias, False, None, tuple(results))
    return RegisterResult(name, number, run_id, model_source, alias, True, promoted.previous_version, tuple(results))


def _settle(client: MlflowClient, run_id: str, root: Path, own_store: bool) -> None:
    """In the store the run was logged to, send what is missing (``kiln sync``) when the model is
    not there complete (its finisher failed or was stopped, or the server was down)."""
    from mlflow.exceptions import MlflowException

    from kiln.tracking.mlflow import MODEL_TAG
    from kiln.tracking.sync import sync_run

    if not own_store or not (root / "models" / "model.json").is_file():
        return
    try:
        complete = MODEL_TAG in client.get_run(run_id).data.tags
    except MlflowException:
        return  # _check_run says what is wrong
    if not complete:
        sync_run(root, wait=FINISH_WAIT)


def _check_run(client: MlflowClient, run_id: str, root: Path, shown: str | Path) -> None:
    """The MLflow run exists in this store and holds the model artifacts."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        raise RegistryError(
            f"MLflow run {run_id} of {root.name} is not in {client.tracking_uri}; pass the tracking "
            f"URI it was logged to, or send it to this one with: kiln sync {shown} --uri {client.tracking_uri}"
        ) from None
    from kiln.tracking.mlflow import MODEL_TAG

    present = {a.path for a in client.list_artifacts(run_id)}
    if MODEL_TAG not in client.get_run(run_id).data.tags:
        present.discard("model")  # its tag comes last: without it the model is partial
    missing = [a for a in _NEEDED_ARTIFACTS if a not in present]
    if missing:
        raise RegistryError(
            f"MLflow run {run_id} of {root.name} has no {' or '.join(missing)} artifact, so there is "
            "no model to register: train with tracking.log_model=true, or log it with "
            f"kiln sync {shown}"
        )


def _ensure_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(name)
        except MlflowException as again:  # created by another process in between
            if again.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
