"""What ``kiln train`` and ``kiln resume`` print around a fit: where the run lives as it starts,
and the summary table at the end (rank 0 only). Shared by both verbs, so neither imports the other
for it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kiln.cli.common import print_table

if TYPE_CHECKING:
    from kiln.runs.summary import RunSummary
    from kiln.train import Callback, FitResult


def announce() -> Callback:
    """A callback printing where the run lives as soon as it starts."""
    from kiln.distributed import is_rank_zero
    from kiln.train.callback import Callback
    from kiln.train.state import TrainState

    class Announce(Callback):
        def on_fit_start(self, state: TrainState) -> None:
            if is_rank_zero():
                print(f"run directory: {state.run_dir}", flush=True)

    return Announce()


def report(result: FitResult) -> int:
    """Print the summary table; exit code 1 unless the run completed or stopped early.
    Only rank 0 of a distributed run prints."""
    from kiln.distributed import is_rank_zero

    if is_rank_zero():
        print_summary(result.summary)
    if result.status not in ("completed", "stopped_early"):
        print(f"training {result.status}: {result.summary.stop_reason}")
        return 1
    return 0


def print_summary(summary: RunSummary) -> None:
    final = summary.final
    rows: list[list[Any]] = [
        ["status", summary.status],
    ]
    if summary.max_steps:
        rows.append(["steps trained", f"{summary.global_step} / {summary.max_steps}"])
    else:
        rows.append(["epochs trained", f"{summary.epochs_trained} / {summary.max_epochs}"])
        rows.append(["best epoch", summary.best_epoch])
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        if key in final:
            rows.append([f"final {key}", final[key]])
    for key, value in summary.test.items():
        rows.append([key, value])
    batch = summary.batch
    if batch is not None and batch.world_size > 1:
        rows.append(["processes / effective batch", f"{batch.world_size} / {batch.effective_batch}"])
    rows.append(["parameters", f"{summary.parameters:,}"])
    rows.append(["duration", f"{summary.durations.total_s:.1f} s"])
    rows.append(["run directory", summary.run_dir])
    if summary.stop_reason:
        rows.append(["stop reason", summary.stop_reason])
    print_table("summary", ["", ""], rows, header=False)
