"""MLflow tracker: params, metrics, tags, artifacts and the model of one run, through an
``MlflowClient`` with an explicit run id (never the fluent global run).

The run id is kept in ``<run>/logs/mlflow.json``, so a resumed run and ``kiln sync`` append to the
same MLflow run. Metrics already in MLflow (same key and step) are not logged twice, which makes
replaying events.jsonl idempotent.

One process at a time writes a run's MLflow run: the tracker holds the run dir's finisher lock
(``kiln.tracking.finisher``) from its construction until ``close``, waiting for (and past
``lock_wait`` taking over from) a finisher still at work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kiln import settings
from kiln.errors import MissingExtraError, TrackingError
from kiln.tracking import finisher
from kiln.tracking.base import MetricRecord, Scope

log = logging.getLogger("kiln.tracking")

LINK_FILE = "mlflow.json"
_STATUS = {
    "completed": "FINISHED", "stopped_early": "FINISHED", "failed": "FAILED",
    "crashed": "FAILED", "interrupted": "KILLED",
}
_PREFIX: dict[str, str] = {"epoch": "", "test": "", "step": "step/", "system": "system/"}
MODEL_TAG = "kiln.model_uri"  # set after both model artifacts are stored: the model is complete
# MLflow 3's UI opens an experiment in its GenAI view or its model-training view by this tag
# (mlflow/server/js/src/experiment-tracking/constants.ts, enum ExperimentKind:
# GENAI_DEVELOPMENT = "genai_development", CUSTOM_MODEL_DEVELOPMENT = "custom_model_development";
# mlflow/demo/generators/traces.py sets the GenAI value the same way). Untagged, it guesses.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# For the worker process only (never the user's own process): a few quick retries instead of
# MLflow's default 7 with exponential backoff and a 120 s timeout per request. None at all made
# one dropped connection (a server closing an idle keep-alive connection as the worker reused it,
# a 503 from a busy server) fail the whole finisher and leave the MLflow run RUNNING; three, 1 s
# apart and more, ride over that, while a dead server still costs the detached worker seconds
# (its watchdog, tracking.close_timeout, bounds it anyway). What does not get through stays in
# events.jsonl for `kiln sync`. A user's own setting of any of them wins.
WORKER_ENV = {
    settings.MLFLOW_HTTP_REQUEST_MAX_RETRIES: "3",
    settings.MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR: "1",
    settings.MLFLOW_HTTP_REQUEST_TIMEOUT: "10",
}
PROBE_TIMEOUT = 1.5  # seconds a tracking server gets to answer before a run gives up on it


def read_link(logs_dir: Path) -> dict[str, Any] | None:
    """The MLflow run a kiln run logs to, if it has one."""
    path = logs_dir / LINK_FILE
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


class MlflowTracker:
    name = "mlflow"
    # Every call writes through MlflowClient before returning, so the worker process running this
    # tracker may exit without the interpreter's teardown once close() has returned.
    durable_on_close = True

    def __init__(
        self,
        uri: str,
        experiment: str,
        run_name: str,
        logs_dir: Path,
        tags: Mapping[str, str],
        artifact_root: str | None = None,
        lock_wait: float = 60.0,
    ) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise MissingExtraError("mlflow", "mlflow") from None
        self.logs_dir = logs_dir
        self._lock = finisher.acquire(logs_dir, lock_wait, take_over=True)
        self.uri = uri
        try:
            with _store_lock(uri):
                self._open(MlflowClient, uri, experiment, run_name, tags, artifact_root)
        except BaseException as exc:
            self.give_up(f"{type(exc).__name__}: {exc}")  # a detached worker has no one else to tell
            raise

    def _open(
        self, client_type: Any, uri: str, experiment: str, run_name: str, tags: Mapping[str, str],
        artifact_root: str | None,
    ) -> None:
        logs_dir = self.logs_dir
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.client = client_type(uri)
        self._known: set[tuple[str, int]] = set()
        self._params: dict[str, str] = {}
        link = read_link(logs_dir)
        if link is not None and link.get("tracking_uri") == uri:
            self.run_id = str(link["run_id"])
            self._load_existing()
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            experiment_id = self._experiment(experiment, artifact_root)
            run = self.client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
            self.run_id = run.info.run_id
            link = {"tracking_uri": uri, "experiment_id": experiment_id, "run_id": self.run_id,
                    "experiment": experiment}
            (logs_dir / LINK_FILE).write_text(json.dumps(link, indent=2), encoding="utf-8")
        self._set_tags({**source_tags(logs_dir.parent), **tags})
        self._log_dataset()

    def _experiment(self, name: str, artifact_root: str | None) -> str:
        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            return str(existing.experiment_id)
        location = f"{artifact_root}/{name}" if artifact_root else None
        try:
            return str(self.client.create_experiment(
                name, artifact_location=location, tags=dict([EXPERIMENT_KIND])
            ))
        except Exception:  # another process created it in between
            again = self.client.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)

    def _load_existing(self) -> None:
        run = self.client.get_run(self.run_id)
        self._params = dict(run.data.params)
        for key in run.data.metrics:
            for metric in self.client.get_metric_history(self.run_id, key):
                self._known.add((key, int(metric.step)))

    def _log_dataset(self) -> None:
        """The run's data as an MLflow dataset input (the UI's Dataset column), once per run."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = dataset_of(self.logs_dir.parent)
        if dataset is None:
            return
        name, digest, source_type, source = dataset
        from mlflow.exceptions import MlflowException

        run = self.client.get_run(self.run_id)
        if any(d.dataset.digest == digest for d in run.inputs.dataset_inputs):
            return
        inputs = [DatasetInput(Dataset(name, digest, source_type, source), [InputTag("mlflow.data.context", "train")])]
        try:
            self.client.log_inputs(self.run_id, inputs)
        except MlflowException:
            # Two runs of one experiment logging the same data at once race to insert the
            # experiment's dataset row (PostgreSQL: a unique violation on (experiment, name,
            # digest), seen in CI): the loser's second try finds the row and only links it. The
            # Dataset column is not worth a run left RUNNING: a second failure is a warning.
            time.sleep(0.5)
            try:
                self.client.log_inputs(self.run_id, inputs)
            except MlflowException as exc:
                log.warning("mlflow: the run's dataset was not recorded (%s); the run is complete "
                            "without it", str(exc).splitlines()[0][:200])

    def _set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        # MLflow params are immutable: a resumed run with a changed (safe) setting keeps the
        # original value and records the new one as a tag.
        new = {k: _param_value(v) for k, v in params.items()}
        fresh = [Param(k, v) for k, v in new.items() if k not in self._params]
        changed = {f"kiln.changed.{k}": v for k, v in new.items() if k in self._params and self._params[k] != v}
        for start in range(0, len(fresh), 100):
            self.client.log_batch(self.run_id, params=fresh[start : start + 100])
        self._params.update({p.key: p.value for p in fresh})
        if changed:
            self._set_tags(changed)

    def log_metrics(self, metrics: Mapping[str, float], step: int, scope: Scope) -> None:
        self.log_metric_records([(metrics, step, scope)])

    def log_metric_records(self, records: Sequence[MetricRecord]) -> None:
        """Several steps' metrics in one ``log_batch`` (per 1000 values, MLflow's limit), skipping
        values MLflow already holds and non-finite ones."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = []
        for metrics, step, scope in records:
            for key, value in metrics.items():
                name = _PREFIX.get(scope, "") + key
                if (name, step) in self._known or not isinstance(value, (int, float)) or not math.isfinite(value):
                    continue
                batch.append(Metric(name, float(value), now, step))
                self._known.add((name, step))
        for start in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[start : start + 1000])

    def log_event(self, event: str, data: Mapping[str, Any]) -> None:
        if event == "summary":
            self._set_tags({"kiln.status": str(data.get("status"))})

    def log_artifact(self, path: Path) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), path.name)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path))

    def log_model(self, model: Any, package_dir: Path, example: Any) -> None:
        """The model in MLflow's pytorch flavor (signature and input example) plus kiln's package.

        Every path that logs a model (training, ``kiln sync``, ``kiln registry register``) comes
        here. MLflow saves the model with torch.export, which makes a dimension of size 1 in the
        example a constant: an example of one row gave a model that refused every other batch
        size. The example is therefore at least two rows, so the batch dimension stays dynamic.
        """
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        example = batch_example(example)
        with torch.no_grad():
            output = model(torch.from_numpy(example)).numpy()
        signature = infer_signature(example, output)
        # Explicit requirements: inferring them costs about 20 s and guesses.
        requirements = [f"torch=={torch.__version__.split('+')[0]}"]
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            # MLflow warns about its own type-hint inference while serializing; nothing for a
            # kiln user to act on, since kiln passes an explicit signature.
            warnings.simplefilter("ignore")
            target = Path(tmp) / "model"
            mlflow.pytorch.save_model(
                model, str(target), signature=signature, input_example=example,
                pip_requirements=requirements,
            )
            self.client.log_artifacts(self.run_id, str(target), "model")
        self.client.log_artifacts(self.run_id, str(package_dir), "kiln_model")
        self._set_tags({MODEL_TAG: f"runs:/{self.run_id}/model"})  # last: the model is complete

    def has_model(self) -> bool:
        return MODEL_TAG in self.client.get_run(self.run_id).data.tags

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=_STATUS.get(status, "FINISHED"))
        finisher.record_outcome(self.logs_dir, {"ok": True, "run_id": self.run_id})
        self._lock.release()

    def give_up(self, error: str) -> None:
        """Called by the worker when a call failed or time ran out: say so in the run dir."""
        finisher.record_outcome(self.logs_dir, {"ok": False, "error": f"{self.uri}: {error}"})
        self._lock.release()


def preload(uri: str) -> None:
    """What a spare MLflow worker does before the run adopts it (``kiln.tracking.spare``): import
    MLflow and, for a database store, open it (engine, schema check: MLflow keeps the store per
    URI, so the tracker's client reuses it). About 2 s of CPU that would otherwise land inside
    training. A server URI needs no opening: the probe and the run's calls connect."""
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if uri.split(":", 1)[0] in ("http", "https", "databricks"):
        return
    with _store_lock(uri):
        MlflowClient(uri).search_experiments(max_results=1)


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """One process at a time opens a SQLite store (MLflow creates and migrates its tables on first
    use, and two processes doing so at once fail): runs whose finishers overlap, a sweep's trials,
    ``kiln sync`` beside a finisher."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with (database.parent / f".{database.name}.kiln-open.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # held for the seconds a first open takes, at most
        yield


def batch_example(example: Any) -> Any:
    """``example`` (a NumPy batch) with at least two rows, repeating its rows when it has one."""
    import numpy as np

    example = np.asarray(example)
    if example.shape[0] >= 2:
        return example
    return np.concatenate([example] * 2, axis=0) if example.shape[0] == 1 else example


def source_tags(run_dir: Path) -> dict[str, str]:
    """MLflow's own tags for where a run came from (the UI's Source and User columns), from the
    run dir's environment.json."""
    try:
        environment = json.loads((run_dir / "environment.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    tags = {"mlflow.source.type": "LOCAL"}
    command = [str(part) for part in environment.get("command") or []]
    if command:  # `kiln train ...` (or `python -m kiln train ...`), else the user's own script
        kiln = command[0].endswith(("/kiln", "kiln/__main__.py")) or command[0] == "kiln"
        name = " ".join(["kiln", *command[1:]]) if kiln else command[0]
        tags["mlflow.source.name"] = name if len(name) <= 500 else name[:497] + "..."
    if environment.get("user"):
        tags["mlflow.user"] = str(environment["user"])
    git = environment.get("git") or {}
    if git.get("commit"):
        tags["mlflow.source.git.commit"] = str(git["commit"])
    return tags


def dataset_of(run_dir: Path) -> tuple[str, str, str, str] | None:
    """(name, digest, source type, source) of a run's training data: the data config's name, the
    data fingerprint kiln computed, and the file it was read from, else the catalog entry."""
    import yaml

    try:
        environment = json.loads((run_dir / "environment.json").read_text(encoding="utf-8"))
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    digest = environment.get("data_fingerprint")
    data = config.get("data") if isinstance(config, dict) else None
    if not digest or not isinstance(data, dict):
        return None
    name = str(data.get("name") or "data")
    if data.get("path"):
        path = Path(str(data["path"])).expanduser().resolve()
        return name, str(digest), "local", path.as_uri()
    if data.get("target"):
        return name, str(digest), "code", str(data["target"])
    return name, str(digest), "kiln", f"kiln catalog: {name}"


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def check_reachable(uri: str) -> None:
    """Raise TrackingError with a clear message when ``uri`` is malformed (not when it is down)."""
    if "://" not in uri and not uri.startswith(("file:", "databricks")):
        raise TrackingError(
            f"tracking.uri {uri!r} is not a tracking URI: use http://host:5000, "
            "sqlite:///path/mlflow.db or file:///path"
        )


def probe(uri: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Raise TrackingError, in one line naming ``uri``, when an HTTP tracking server does not
    answer within ``timeout`` seconds (refused, unreachable or slow). Any HTTP answer will do, an
    error status included: the server is there. Stores that are files need no probe."""
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"MLflow tracking server {uri} did not answer within {timeout:g} s "
            f"({type(reason).__name__}: {reason})"
        ) from None
