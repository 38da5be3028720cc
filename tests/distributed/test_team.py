"""The team setup, for real: an ``mlflow server`` on a PostgreSQL backend store with a shared
artifact root, and two kiln runs logging into it at the same time (as two machines would).

PostgreSQL is the server at KILN_TEST_POSTGRES_URL (by default 127.0.0.1:5432, which .ci/run
starts); a fresh database is created for the test and dropped after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.sweep.study import with_driver
from kiln.tracking.finisher import wait_for_finisher
from tests.conftest import ROOT
from tests.distributed.conftest import env_for, overrides
from tests.postgres import fresh_database
from tests.tracking.conftest import MlflowServer


@pytest.fixture
def team_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (its URL, naming the driver); dropped afterwards."""
    with fresh_database("kiln_team") as url:
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; name the installed driver.
        yield with_driver(url)


class PostgresMlflowServer(MlflowServer):
    """``mlflow server`` with the PostgreSQL backend store and a shared artifact root."""

    def __init__(self, root: Path, store_url: str) -> None:
        super().__init__(root)
        self.store_url = store_url

    def _spawn(self, mlflow: Path, log: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(mlflow), "server", "--backend-store-uri", self.store_url,
             "--artifacts-destination", (self.root / "shared-artifacts").as_uri(),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "2"],
            stdout=subprocess.DEVNULL, stderr=log,  # type: ignore[arg-type]
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        )


def finisher_story(run_dir: Path, server: MlflowServer, outputs: list[str]) -> str:
    """What a failed finish left behind: its outcome, its log, the server's log, the runs' output."""
    def tail(path: Path, size: int = 3000) -> str:
        return path.read_text(encoding="utf-8", errors="replace")[-size:] if path.is_file() else "(none)"

    return (f"outcome: {tail(run_dir / 'logs/mlflow_finish.json')}\n"
            f"worker log: {tail(run_dir / 'logs/mlflow_worker.log')}\n"
            f"server log: {tail(server.root / 'server.log')}\noutputs: {outputs}")


@pytest.mark.slow
def test_two_runs_log_concurrently_into_mlflow_on_postgresql(tmp_path: Path, team_database: str) -> None:
    from mlflow import MlflowClient

    server = PostgresMlflowServer(tmp_path / "server", team_database)
    server.root.mkdir()
    server.start()
    try:
        env = {**env_for(), "MLFLOW_TRACKING_URI": server.uri}  # as each team member sets it
        jobs = [
            subprocess.Popen(
                [sys.executable, "-m", "kiln", "train", *overrides(
                    tmp_path / machine, f"run.name={machine}", "run.experiment=team",
                    "tracking.backends=[jsonl,mlflow]", "tracking.log_model=false",
                ), "--quiet"],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            for machine in ("alice", "bob")
        ]
        outputs = [job.communicate(timeout=300)[0] for job in jobs]
        assert [job.returncode for job in jobs] == [0, 0], outputs
        # Each run's MLflow run is completed by its detached finisher after the prompt (issue 17).
        for machine in ("alice", "bob"):
            for run_dir in (tmp_path / machine).iterdir():
                assert wait_for_finisher(run_dir), f"{run_dir}'s MLflow finisher did not end"

        client = MlflowClient(server.uri)
        experiment = client.get_experiment_by_name("team")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        assert sorted(r.info.run_name.split("_")[0] for r in runs) == ["alice", "bob"]
        for machine in ("alice", "bob"):
            (run_dir,) = [p for p in (tmp_path / machine).iterdir() if (p / "logs/mlflow.json").is_file()]
            link = json.loads((run_dir / "logs/mlflow.json").read_text())
            run = client.get_run(link["run_id"])
            assert run.info.status == "FINISHED", finisher_story(run_dir, server, outputs)
            assert run.data.params["run.name"] == machine
            assert run.data.tags["kiln.run_dir"] == str(run_dir.resolve())
            history = client.get_metric_history(run.info.run_id, "val_loss")
            assert sorted(m.step for m in history) == sorted({m.step for m in history}) and len(history) == 2
            summary = json.loads((run_dir / "summary.json").read_text())
            assert run.data.metrics["test_accuracy"] == pytest.approx(summary["test"]["test_accuracy"])
            artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
            assert {"config.yaml", "summary.json"} <= artifacts, artifacts
        # Both runs' artifacts went to the shared root the server manages.
        stored = {p.name for p in (server.root / "shared-artifacts").rglob("summary.json")}
        assert stored == {"summary.json"} and len(list((server.root / "shared-artifacts").rglob("summary.json"))) == 2
    finally:
        server.stop()
