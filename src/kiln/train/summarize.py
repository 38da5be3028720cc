"""The run's outcome as a typed :class:`~kiln.runs.summary.RunSummary`, built when the fit ends.

Everything in it comes from the loop's state and the built parts; ``train.run.finish`` writes it
as summary.json. Its meaning, key by key, is documented on RunSummary, where every reader looks.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, cast

from kiln.runs.summary import (
    Batch,
    BestEpoch,
    Compile,
    Durations,
    Precision,
    RunSummary,
    Status,
    Trackers,
)

if TYPE_CHECKING:
    from kiln.train.setup import Components
    from kiln.train.state import TrainState


def build_summary(c: Components, state: TrainState, started: float, test_metrics: dict[str, float]) -> RunSummary:
    """The summary of the run as it stands: ``started`` is ``time.time()`` when the fit began."""
    cfg = c.config
    history = state.history
    best = best_epoch(history, *_monitor(c))
    durations = sorted(h["epoch_time"] for h in history if "epoch_time" in h)
    extras = state.extras
    return RunSummary(
        run=c.paths.root.name,
        run_dir=str(c.paths.root),
        status=cast(Status, state.status),  # TrainState keeps a str; RunSummary validates it
        stop_reason=state.stop_reason,
        stopped_early=state.status == "stopped_early",
        epochs_trained=len(history),
        max_epochs=cfg.training.epochs,
        global_step=state.global_step,
        max_steps=cfg.training.max_steps,
        best_epoch=best.epoch if best is not None else None,
        best=best,
        restored_best_epoch=extras.get("restored_best_epoch"),
        final=history[-1] if history else {},
        test=test_metrics,
        parameters=extras["parameters"],
        batch=Batch.model_validate(extras["batch"]),
        config_hash=c.config_hash,
        last_checkpoint=None if state.last_checkpoint is None else str(state.last_checkpoint),
        durations=Durations(
            total_s=round(time.time() - started, 3),
            epoch_median_s=round(durations[len(durations) // 2], 4) if durations else None,
        ),
        started_at=extras["started_at"],
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        trackers=Trackers(used=c.tracker.names, failed=c.tracker.failures),
        glibc_malloc=extras.get("glibc_malloc"),
        flush_denormal=extras.get("flush_denormal"),
        precision=Precision.model_validate(extras["precision"]) if "precision" in extras else None,
        compile=Compile.model_validate(extras["compile"]) if "compile" in extras else None,
        error=None if state.error is None else f"{type(state.error).__name__}: {state.error}",
    )


def best_epoch(history: list[dict[str, Any]], monitor: str, mode: Literal["min", "max"]) -> BestEpoch | None:
    """The epoch with the best ``monitor`` value (NaN never best); None when it was never measured."""
    if not history or monitor not in history[0]:
        return None
    values = [(h[monitor], i) for i, h in enumerate(history) if not math.isnan(h[monitor])]
    if not values:
        return None
    value, index = min(values) if mode == "min" else max(values)
    return BestEpoch(monitor=monitor, mode=mode, value=value, epoch=index + 1, metrics=history[index])


def _monitor(c: Components) -> tuple[str, Literal["min", "max"]]:
    es = c.config.training.early_stopping
    return (es.monitor, es.mode) if es is not None else ("val_loss", "min")
