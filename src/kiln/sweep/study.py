"""The Optuna side of a sweep: storage (with heartbeats), sampler, pruner, and the study itself.

Storage is always an :class:`optuna.storages.RDBStorage`, because only it has heartbeats: a trial
whose worker was killed is failed after ``heartbeat.grace_period`` seconds and queued again by
Optuna's :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`.

SQLite and several processes: SQLite allows one writer at a time, and a transaction that reads
first and writes later can be refused at once with "database is locked" when another process
wrote in between (SQLite's deadlock guard skips the busy timeout). kiln opens every SQLite
transaction with ``BEGIN IMMEDIATE`` (the write lock is taken up front, so that case cannot
arise) and waits up to 60 s for the lock. Sweeps write a few rows per trial, so serialising them
costs nothing; for many machines use PostgreSQL, which is what it is for.
"""

from __future__ import annotations

import contextlib
import random
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from kiln.config.changes import machine_local
from kiln.config.schema import KilnConfig
from kiln.errors import MissingExtraError, SweepError
from kiln.sweep.spec import SweepSpec
from kiln.tracking.base import flatten

if TYPE_CHECKING:
    import optuna

SQLITE_LOCK_TIMEOUT = 60.0  # seconds a process waits for SQLite's write lock


def require_optuna() -> None:
    """Raise an error naming the extra to install when Optuna is missing."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise MissingExtraError("optuna", "sweep") from None


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs each study it opens and each failed trial with its traceback; kiln prints one
    line per trial instead. Optuna's own verbosity is put back afterwards."""
    require_optuna()
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def make_storage(url: str, spec: SweepSpec) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats and retries of dead workers' trials."""
    require_optuna()
    import optuna
    from optuna.exceptions import ExperimentalWarning

    url = with_driver(url)
    sqlite = url.startswith("sqlite")
    engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT, "isolation_level": None}} if sqlite else {}
    beat = spec.heartbeat

    def connect() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            # Heartbeats and their retry callback are marked experimental since Optuna 2.8; they
            # are the documented way to recover trials of dead workers, and kiln tests them.
            warnings.filterwarnings("ignore", category=ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=beat.interval,
                grace_period=beat.grace_period,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=beat.max_retries),
            )

    try:
        storage = _retrying_schema_races(connect)
    except ImportError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
        raise MissingExtraError(str(cause.name or f"the database driver for {mask(url)}"), "sweep") from None
    except Exception as exc:  # sqlalchemy's errors: unreachable server, bad URL, wrong password
        raise SweepError(
            f"cannot open the study storage {mask(url)}: {_first_line(exc)}. Use an Optuna storage "
            "URL such as sqlite:////abs/path/study.db or postgresql://user@host:5432/db"
        ) from None
    if sqlite:
        from sqlalchemy import event

        event.listen(storage.engine, "begin", _begin_immediate)
    return storage


SCHEMA_RACE_ATTEMPTS = 5


def _retrying_schema_races(connect: Callable[[], optuna.storages.RDBStorage]) -> optuna.storages.RDBStorage:
    """``connect()``, again after a short random pause when another worker was creating Optuna's
    tables in the same new database at the same moment: PostgreSQL then refuses one of the two
    CREATE TABLEs (a duplicate key in pg_type, or "already exists"); the retry finds them made."""
    for attempt in range(1, SCHEMA_RACE_ATTEMPTS):
        try:
            return connect()
        except Exception as exc:
            if "duplicate key" not in str(exc) and "already exists" not in str(exc):
                raise
            time.sleep(random.uniform(0.1, 0.5) * attempt)
    return connect()  # the last attempt: its error, whatever it is, goes to the caller


def with_driver(url: str) -> str:
    """``url`` with an installed PostgreSQL driver named: SQLAlchemy 2.1 reads a bare
    ``postgresql://`` as psycopg 3, while kiln's ``sweep`` extra installs psycopg2."""
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sampler(spec: SweepSpec, worker: int) -> optuna.samplers.BaseSampler:
    """The sampler for ``spec``; each local worker gets its own seed (a shared grid keeps one)."""
    require_optuna()
    import optuna

    if spec.method == "grid":
        space = {name: param.grid() or [] for name, param in spec.parameters.items()}
        # One seed for every worker and machine: the grid's order must be the same everywhere.
        return optuna.samplers.GridSampler(space, seed=spec.seed or 0)
    seed = None if spec.seed is None else spec.seed + worker
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(spec: SweepSpec, epochs: int) -> optuna.pruners.BasePruner:
    require_optuna()
    import optuna

    p = spec.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p.min_resource, max_resource=epochs, reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()


def open_study(
    storage: optuna.storages.BaseStorage, name: str, spec: SweepSpec, base: KilnConfig, worker: int = 0
) -> optuna.Study:
    """Create the study or load it, refusing one that was started with another search or config."""
    require_optuna()
    import optuna

    study = optuna.create_study(
        storage=storage, study_name=name, direction=spec.direction, load_if_exists=True,
        sampler=make_sampler(spec, worker), pruner=make_pruner(spec, base.training.epochs),
    )
    identity = {"search": spec.search_space(), "config": comparable(base)}
    stored = study.user_attrs.get("kiln.identity")
    if stored is None:
        if study.trials:
            raise SweepError(f"study {name!r} already holds trials that kiln did not start; pick another study_name")
        study.set_user_attr("kiln.identity", identity)
        study.set_user_attr("kiln.base_config", base.model_dump(mode="json"))
    else:
        _check_same(name, stored, identity)
    return study


def fail_stale(study: optuna.Study) -> None:
    """Fail the running trials whose heartbeats stopped (their retries are queued by the storage)."""
    import optuna
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        # fail_stale_trials is experimental; study.optimize calls it the same way before each trial.
        warnings.filterwarnings("ignore", category=ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def comparable(cfg: KilnConfig) -> dict[str, Any]:
    """The config as flat keys, without the settings that may differ between a study's machines
    and reruns (declared on the schema's fields: :func:`kiln.config.changes.machine_local`)."""
    return _shared(flatten(cfg.model_dump(mode="json")))


def _shared(flat: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flat.items() if not machine_local(k)}


def _check_same(name: str, stored: dict[str, Any], mine: dict[str, Any]) -> None:
    changes = []
    for part in ("search", "config"):
        a, b = flatten(stored.get(part, {})), flatten(mine[part])
        if part == "config":  # a study stored by an older kiln may hold keys now known to be local
            a, b = _shared(a), _shared(b)
        changes += [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if changes:
        lines = "\n".join(f"  - {c}" for c in changes[:20])
        raise SweepError(
            f"study {name!r} was started with a different search or config; resuming it would "
            f"mix incomparable trials:\n{lines}\n"
            "Run the same command as before to resume it, or pass --study-name NEW for a new study."
        )


def mask(url: str) -> str:
    """``url`` without its password, for messages and tags."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
