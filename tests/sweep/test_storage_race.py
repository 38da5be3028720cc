"""Workers starting at the same moment on a new PostgreSQL database all open the study storage.

Optuna creates its tables on first use; two workers doing it at once made PostgreSQL refuse one
CREATE TABLE (a duplicate key in pg_type), which failed that worker on a fresh database. Here
four real processes open one brand-new database at the same instant.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator

import pytest

WORKER = textwrap.dedent("""
    import sys, time
    from kiln.sweep.spec import parse_sweep
    from kiln.sweep.study import make_storage

    spec = parse_sweep({"method": "grid", "parameters": {"training.lr": {"choice": [0.1]}}})
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all four start together
    make_storage(sys.argv[1], spec)
    print("opened")
""")


@pytest.fixture
def fresh_database(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the server (dropped afterwards): Optuna has no tables there yet."""
    import psycopg2

    name = f"kiln_race_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(postgres_url.replace("/test", "/postgres"), connect_timeout=5)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.cursor() as cursor, contextlib.suppress(psycopg2.Error):
            cursor.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def test_four_workers_create_the_schema_at_once(fresh_database: str) -> None:
    start = time.time() + 3.0  # after every interpreter has imported kiln and Optuna
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, fresh_database, str(start)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outcomes = [w.communicate(timeout=120) for w in workers]
    for worker, (out, err) in zip(workers, outcomes, strict=True):
        assert worker.returncode == 0 and out.strip() == "opened", err[-2000:]
