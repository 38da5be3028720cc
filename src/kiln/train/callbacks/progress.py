"""How a run shows its progress: a rich bar over each epoch's batches on a terminal, one plain line
per epoch elsewhere (a CI log, a file), where a redrawn bar would be noise or nothing at all."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from typing_extensions import override

from kiln.train.callback import Callback
from kiln.train.state import TrainState


class ProgressBar(Callback):
    """One bar per epoch; refreshed by rich's own thread, so a batch only pays a counter update."""

    def __init__(self, console: Console | None = None, loss_every: int = 20) -> None:
        self.console = console or Console()
        self.loss_every = loss_every
        self.progress: Progress | None = None
        self.task: Any = None

    @override
    def on_fit_start(self, state: TrainState) -> None:
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
            # rich's default 10 Hz redraw thread takes the GIL from the training loop; twice a
            # second is enough for a person watching
            refresh_per_second=2,
        )
        self.progress.start()

    @override
    def on_epoch_start(self, state: TrainState) -> None:
        assert self.progress is not None
        epochs = state.config.training.epochs
        self.task = self.progress.add_task(
            "train", total=state.steps_per_epoch, completed=state.batch_in_epoch,
            epoch=f"{state.epoch + 1}/{epochs}", info="",
        )

    @override
    def on_batch_end(self, state: TrainState) -> None:
        assert self.progress is not None
        if state.batch_in_epoch % self.loss_every == 0 and state.batch_loss is not None:
            info = f"loss {float(state.batch_loss.item()):.4f}"
            self.progress.update(self.task, completed=state.batch_in_epoch, info=info)
        else:
            self.progress.update(self.task, completed=state.batch_in_epoch)

    @override
    def on_epoch_end(self, state: TrainState) -> None:
        assert self.progress is not None
        shown = {k: v for k, v in state.metrics.items() if k.startswith(("train_", "val_"))}
        info = "  ".join(f"{k} {v:.4f}" for k, v in shown.items())
        self.progress.update(self.task, completed=state.steps_per_epoch, info=info)

    @override
    def on_fit_end(self, state: TrainState) -> None:
        self._stop()

    @override
    def on_exception(self, state: TrainState) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class EpochLines(Callback):
    """One line per finished epoch on stdout, flushed: ``epoch 3/20  train_loss 0.1234 ...  1.2 s``.

    For logs that are not a terminal (CI, ``> train.log``, ``kubectl logs``): a long run shows
    that it is alive and how it goes, with no carriage returns or colour codes.
    """

    @override
    def on_epoch_end(self, state: TrainState) -> None:
        shown = {k: v for k, v in state.metrics.items() if k.startswith(("train_", "val_"))}
        seconds = state.metrics.get("epoch_time")
        line = f"epoch {state.epoch + 1}/{state.config.training.epochs}  " + "  ".join(
            f"{k} {v:.4f}" for k, v in shown.items())
        print(line + (f"  {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""), flush=True)

