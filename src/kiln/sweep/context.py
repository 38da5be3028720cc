"""The sweep directory and everything a worker needs to run trials, saved as ``sweep.json``.

``<run.output_dir>/sweeps/<study>/`` holds ``sweep.json`` (this context), ``base.yaml`` (the base
config after overrides), ``study.db`` (the default storage), ``trials/`` (one kiln run directory
per trial) and the report (``trials.csv``, ``best.yaml``, ``plots/``). Worker processes and
``kiln sweep-report`` read ``sweep.json`` instead of re-parsing the command line.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.config.loader import to_yaml, validate
from kiln.config.overrides import apply_overrides
from kiln.config.schema import KilnConfig
from kiln.errors import SweepError
from kiln.runs.layout import write_text
from kiln.settings import tracking_uri
from kiln.sweep.spec import SweepSpec

CONTEXT_FILE = "sweep.json"


@dataclass(frozen=True)
class SweepContext:
    """Where a sweep lives and what its trials are made of."""

    sweep_dir: Path
    study_name: str
    storage: str  # an Optuna storage URL (may hold a password: sweep.json is private to its owner)
    spec: SweepSpec
    base: dict[str, Any]  # the resolved base config, as JSON-ready data
    tracking_uri: str  # where the trials and the parent run log to MLflow
    parent_run_id: str | None = None  # the sweep's MLflow run; trials are nested under it

    @classmethod
    def create(cls, base: KilnConfig, spec: SweepSpec, study_name: str, storage: str | None) -> SweepContext:
        sweep_dir = (base.run.output_dir / "sweeps" / study_name).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            sweep_dir=sweep_dir, study_name=study_name,
            storage=storage or f"sqlite:///{sweep_dir / 'study.db'}",
            spec=spec, base=base.model_dump(mode="json"),
            tracking_uri=tracking_uri(base.tracking.uri, base.run.output_dir),
        )

    @property
    def trials_dir(self) -> Path:
        return self.sweep_dir / "trials"

    @property
    def experiment(self) -> str:
        run = self.base["run"]
        return str(run["experiment"] or run["name"])

    @property
    def uses_mlflow(self) -> bool:
        return "mlflow" in self.base["tracking"]["backends"]

    def base_config(self) -> KilnConfig:
        return validate(copy.deepcopy(self.base), source=str(self.sweep_dir / "base.yaml"))

    def trial_config(self, number: int, params: Mapping[str, Any]) -> KilnConfig:
        """The config of trial ``number``: the base, the trial's values, and its own run name.

        Trials write under ``trials/``, log to the sweep's MLflow experiment, and never register
        models (``best.yaml`` keeps ``tracking.register`` for the run you train from it).
        """
        pairs = [
            *params.items(),
            ("run.output_dir", str(self.trials_dir)),
            ("run.dir", None),  # each trial its own directory, whatever the base config fixes
            ("run.name", f"{self.base['run']['name']}-t{number:03d}"),
            ("run.experiment", self.experiment),
            ("run.progress", False),
            ("tracking.uri", self.tracking_uri),
            ("tracking.register", None),
        ]
        return validate(apply_overrides(copy.deepcopy(self.base), pairs), source=f"trial {number}")

    def best_config(self, params: Mapping[str, Any]) -> KilnConfig:
        """The base config with ``params``: what ``best.yaml`` holds (its run is tracked in the
        sweep's MLflow experiment, beside the trials)."""
        pairs = [*params.items(), ("run.name", f"{self.base['run']['name']}-best"), ("run.dir", None),
                 ("run.experiment", self.experiment)]
        return validate(apply_overrides(copy.deepcopy(self.base), pairs), source="best.yaml")

    def with_parent(self, run_id: str | None) -> SweepContext:
        return SweepContext(self.sweep_dir, self.study_name, self.storage, self.spec, self.base,
                            self.tracking_uri, run_id)

    def save(self) -> None:
        data = {
            "study_name": self.study_name, "storage": self.storage,
            "spec": self.spec.model_dump(mode="json", by_alias=True),
            "base": self.base, "tracking_uri": self.tracking_uri, "parent_run_id": self.parent_run_id,
        }
        path = self.sweep_dir / CONTEXT_FILE
        write_text(path, json.dumps(data, indent=2) + "\n")
        os.chmod(path, 0o600)
        write_text(self.sweep_dir / "base.yaml", to_yaml(self.base_config()))

    @classmethod
    def load(cls, sweep_dir: str | Path) -> SweepContext:
        sweep_dir = Path(sweep_dir).resolve()
        path = sweep_dir / CONTEXT_FILE
        if not path.is_file():
            raise SweepError(f"{sweep_dir} is not a sweep directory: it has no {CONTEXT_FILE}")
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            sweep_dir=sweep_dir, study_name=data["study_name"], storage=data["storage"],
            spec=SweepSpec.model_validate(data["spec"]), base=data["base"],
            tracking_uri=data["tracking_uri"], parent_run_id=data["parent_run_id"],
        )
