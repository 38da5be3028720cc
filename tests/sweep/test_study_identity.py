"""A study's identity: its machines and reruns may differ only in settings the schema declares
machine-local (kiln.config.changes), also for a study an older kiln stored."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from kiln.config import load_config
from kiln.errors import SweepError
from kiln.sweep import parse_sweep
from kiln.sweep.study import make_storage, open_study
from kiln.testing.tiny import TINY_OVERRIDES

SPEC = parse_sweep({"method": "grid", "parameters": {"training.lr": {"choice": [0.1, 0.2]}}})


def test_machines_may_differ_in_local_settings_only(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}", SPEC)
    base = load_config(None, TINY_OVERRIDES)
    open_study(storage, "s", SPEC, base)
    elsewhere = load_config(None, [*TINY_OVERRIDES, "run.device=cpu", f"run.output_dir={tmp_path}",
                                   "checkpoint.keep_last_n=3", "distributed.timeout=60", "tracking.backends=[jsonl]"])
    open_study(storage, "s", SPEC, elsewhere)
    for change in ("training.epochs=5", "model.dropout=0.1"):
        with pytest.raises(SweepError, match=change.split("=")[0]):
            open_study(storage, "s", SPEC, load_config(None, [*TINY_OVERRIDES, change]))

    # An older kiln stored keys it did not yet know to be local; they do not make the study another.
    study = optuna.load_study(study_name="s", storage=storage)
    identity = study.user_attrs["kiln.identity"]
    identity["config"]["checkpoint.keep_last_n"] = 9
    identity["config"]["training.eval_batch_size"] = 7
    study.set_user_attr("kiln.identity", identity)
    open_study(storage, "s", SPEC, base)
