"""The Trainer: runs the loop and dispatches events; everything else talks to it through callbacks.

>>> from kiln import Trainer, load_config
>>> result = Trainer(load_config("configs/digits_mlp.yaml", ["training.epochs=1"])).fit()  # doctest: +SKIP
>>> result.test_metrics["test_accuracy"]  # doctest: +SKIP

Read it top to bottom: ``fit`` scopes what it changes in the process, ``_fit`` prepares the run
(``kiln.train.run.prepare``) and ends it, ``_loop`` runs the epochs and ``_train_epoch`` the
batches. Callbacks steer the loop only through ``TrainState``'s typed requests; where each event
fires is listed in ``kiln.train.events``.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kiln.config.schema import KilnConfig
from kiln.data.spec import DataBundle
from kiln.errors import TrainingInterrupted as TrainingInterrupted  # re-exported: its old home
from kiln.train import memory
from kiln.train.backends import channels_last, cuda_speed, tf32_effective
from kiln.train.callback import Callback, overrides
from kiln.train.compiling import Compiling
from kiln.train.denormals import flushing_denormals
from kiln.train.evaluate import evaluate
from kiln.train.events import Event
from kiln.train.optim import l2_penalty, weight_matrices
from kiln.train.rng import deterministic_algorithms
from kiln.train.run import Prepared, ResumeFrom, finish, prepare
from kiln.train.run import test as test_split
from kiln.train.signals import EXIT_CODES, GracefulSignals
from kiln.train.state import TrainState

if TYPE_CHECKING:
    from kiln.checkpoint import Checkpoint
    from kiln.runs.summary import RunSummary
    from kiln.train.setup import Components


@dataclass(frozen=True)
class FitResult:
    """What ``Trainer.fit`` returns: where the run is and how it ended."""

    run_dir: Path
    status: str
    metrics: dict[str, float]  # the last epoch's metrics
    test_metrics: dict[str, float]
    summary: RunSummary  # summary.json, as written


class Trainer:
    """Trains one run described by a config.

    ``model`` and ``data`` replace the configured ones (your own objects from Python);
    ``callbacks`` are added after the built-in ones. ``resume_from`` continues the run directory
    ``run_dir`` from a loaded checkpoint (see ``kiln.train.resume``); ``run_dir`` alone starts that
    run over from step 0 in its directory (a run stopped before its first checkpoint).
    """

    def __init__(
        self,
        config: KilnConfig,
        *,
        model: nn.Module | None = None,
        data: DataBundle | None = None,
        callbacks: Sequence[Callback] = (),
        quiet: bool = False,
        handle_signals: bool = True,
        resume_from: Checkpoint | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.quiet = quiet
        self.handle_signals = handle_signals
        self._model = model
        self._data = data
        self._callbacks = list(callbacks)
        if resume_from is not None and run_dir is None:
            raise TypeError("Trainer(resume_from=...) also needs run_dir=, the run directory it continues")
        # run_dir alone: the run starts over from step 0 in that directory (kiln.train.start_over)
        self._resume: ResumeFrom | None = ResumeFrom(run_dir, resume_from) if run_dir is not None else None
        self.prepared: Prepared | None = None  # set by fit(): the run's built parts and its state
        self._hooks: dict[Event, list[Any]] = {}
        self._compiling: Compiling | None = None  # set by fit(): the module the loop trains through

    @property
    def components(self) -> Components | None:
        """The built parts of the run (model, loaders, optimizer, trackers...), once fit() started."""
        return self.prepared.components if self.prepared is not None else None

    @property
    def state(self) -> TrainState | None:
        """The loop's state, once fit() started."""
        return self.prepared.state if self.prepared is not None else None

    def fit(self) -> FitResult:
        """Train, evaluate the test split with the final (best, when restored) weights, save the run.

        What it changes for the whole process is put back when it returns or raises: the
        deterministic-algorithm settings (``run.deterministic``), the denormal mode
        (``run.flush_denormal``), TF32 and cuDNN's autotuner (``run.tf32``, ``kiln.train.backends``)
        and the SIGINT/SIGTERM handlers. Left changed on purpose: the global RNGs, seeded from
        ``run.seed``, and glibc's malloc thresholds (``run.keep_freed_memory``; see
        ``kiln.train.allocator``).
        """
        run = self.config.run
        with (
            deterministic_algorithms(run.deterministic),
            cuda_speed(run.tf32, run.deterministic),
            flushing_denormals(run.flush_denormal) as flushed,
        ):
            return self._fit(flushed)

    def _fit(self, flushed: bool) -> FitResult:
        started = time.time()
        self.prepared = prepare(
            self.config, self._model, self._data, self._resume, callbacks=self._callbacks, quiet=self.quiet
        )
        c, state = self.prepared.components, self.prepared.state
        state.extras["flush_denormal"] = flushed
        self._compiling = Compiling(c.train_model if c.train_model is not None else c.model, self.config.training.compile)
        self._record_speed(c, state)
        self._hooks = {
            event: [getattr(cb, event.hook) for cb in c.callbacks if overrides(cb, event)]
            for event in Event
        }
        try:
            with GracefulSignals(state) if self.handle_signals else contextlib.nullcontext():
                self._fire(Event.FIT_START)
                self._loop(c, state)
                if state.stop_signal is not None:
                    raise self._interrupted(c, state, started)
                state.status = _final_status(state)
                if self.config.checkpoint.save_last and state.status != "failed":
                    state.request_checkpoint("last")  # before fit_end may restore best weights
                    self._checkpoint_if_requested(state)
                self._fire(Event.FIT_END)
        except TrainingInterrupted:
            raise
        except BaseException as exc:
            self._record_speed(c, state)
            state.error = exc
            state.status = "interrupted" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "crashed"
            self._fire(Event.EXCEPTION)
            finish(c, state, started, test_metrics={}, save_model=False)
            raise
        self._record_speed(c, state)
        test_metrics = test_split(c, state)
        summary = finish(c, state, started, test_metrics)
        return FitResult(c.paths.root, state.status, dict(state.metrics), test_metrics, summary)

    def _interrupted(self, c: Components, state: TrainState, started: float) -> TrainingInterrupted:
        """Checkpoint, write the summary and build the error that tells how to resume."""
        assert state.stop_signal is not None
        signum = signal.Signals(state.stop_signal)
        state.status = "interrupted"
        state.request_checkpoint("signal")
        self._checkpoint_if_requested(state)
        self._fire(Event.FIT_END)  # stops the progress bar and samplers; the checkpoint is written
        self._record_speed(c, state)
        finish(c, state, started, test_metrics={}, save_model=False)
        last = state.last_checkpoint
        return TrainingInterrupted(
            f"{signum.name} received: stopped at epoch {state.epoch + 1}, batch {state.batch_in_epoch}"
            f" (step {state.global_step}); checkpoint: {last or '(checkpointing is off: nothing saved)'}\n"
            f"resume with: kiln resume {c.paths.root}",
            EXIT_CODES[signum],
            run_dir=c.paths.root,
            checkpoint=last,
            signal=signum.name,
            global_step=state.global_step,
            epoch=state.epoch + 1,
            batch_in_epoch=state.batch_in_epoch,
        )

    def _fire(self, event: Event) -> None:
        assert self.state is not None
        for hook in self._hooks[event]:
            hook(self.state)

    def _record_speed(self, c: Components, state: TrainState) -> None:
        """What summary.json says of precision and compilation (kept in ``state.extras``)."""
        assert self._compiling is not None
        state.extras["precision"] = {
            **c.amp.summary(), "tf32": tf32_effective(self.config.run.tf32, c.device),
        }
        state.extras["compile"] = self._compiling.summary()

    def _checkpoint_if_requested(self, state: TrainState) -> None:
        """Fire ``checkpoint`` when a request is pending (``state.request_checkpoint``), then clear it."""
        if state.checkpoint_reason is not None:
            self._fire(Event.CHECKPOINT)
            state.checkpoint_reason = None

    def _loop(self, c: Components, state: TrainState) -> None:
        t = self.config.training
        while _more_to_train(t, state) and not state.stop_requested:
            epoch_started = time.perf_counter()
            c.sampler.set_epoch(state.epoch, start=state.batch_in_epoch * (c.train_loader.batch_size or t.batch_size))
            if state.train_meter is None:
                state.train_meter = c.task.meter()
            meter = state.train_meter
            assert self._compiling is not None
            compile_before = self._compiling.seconds
            memory.reset_peak(c.device)
            self._fire(Event.EPOCH_START)
            try:
                self._train_epoch(c, state, meter)
            except torch.OutOfMemoryError as exc:
                raise self._out_of_memory(c, state, exc) from None
            if state.stop_signal is not None:
                return  # leave the epoch unfinished: the checkpoint resumes it mid-way
            compile_seconds = self._compiling.seconds - compile_before
            train_seconds = time.perf_counter() - epoch_started - compile_seconds  # compiling is no training speed
            metrics: dict[str, float] = {"epoch": state.epoch + 1}
            metrics.update({f"train_{k}": v for k, v in meter.compute().items()})
            self._fire(Event.VALIDATION_START)
            if c.val_loader is not None:
                val = evaluate(c.model, c.val_loader, c.task, c.device, c.amp.resolved, t.eval_batches)
                metrics.update({f"val_{k}": v for k, v in val.items()})
            metrics["lr"] = c.optimizer.param_groups[0]["lr"]
            metrics["epoch_time"] = time.perf_counter() - epoch_started
            metrics["samples_per_sec"] = meter.count / train_seconds if train_seconds > 0 else 0.0
            if t.compile:
                metrics["compile_seconds"] = round(compile_seconds, 3)
            if c.amp.scaling:
                metrics["amp_skipped_steps"] = c.amp.skipped_steps  # over the run so far
            peak = memory.peak_mb(c.device)
            if peak is not None:
                metrics["peak_memory_mb"] = peak
            state.metrics = metrics
            self._fire(Event.VALIDATION_END)
            self._fire(Event.EPOCH_END)
            state.history.append(dict(state.metrics))
            if state.batch_in_epoch < state.steps_per_epoch and not state.stop_requested:
                # max_steps ended the run mid-epoch: keep the position (and the epoch's meter), so
                # a resume with more steps continues this epoch instead of skipping its rest
                self._checkpoint_if_requested(state)
                return
            state.epoch += 1
            state.batch_in_epoch = 0
            state.train_meter = None
            self._checkpoint_if_requested(state)

    def _train_epoch(self, c: Components, state: TrainState, meter: Any) -> None:
        """The epoch's remaining batches. Nothing here reads a device value on the host: the loss
        stays on the device (``state.batch_loss``) for the NaN guard and the logging steps."""
        t = self.config.training
        assert self._compiling is not None
        compiling, amp = self._compiling, c.amp
        model = compiling.eager  # the DDP wrapper when distributed; the compiled one wraps it
        optimizer, task, device = c.optimizer, c.task, c.device
        accum = t.grad_accum
        l2_weights = weight_matrices(model) if t.l2 > 0 else []
        batches = state.steps_per_epoch
        nhwc = channels_last(self.config.model)
        model.train()
        for batch in c.train_loader:
            self._fire(Event.BATCH_START)
            inputs, targets = task.split_batch(batch)
            inputs = inputs.to(device, non_blocking=True)  # asynchronous from pinned memory (CUDA)
            if nhwc and inputs.dim() == 4:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            targets = targets.to(device, non_blocking=True)
            outputs, loss = compiling.run(self._forward_backward, c, inputs, targets, l2_weights)
            state.batch_in_epoch += 1
            state.samples_seen += targets.shape[0]
            window_done = state.batch_in_epoch % accum == 0 or state.batch_in_epoch == batches
            state.optimizer_stepped = False
            if window_done:
                if t.grad_clip is not None:  # the pre-clip norm is logged with the step metrics
                    amp.unscale(optimizer)
                    state.extras["grad_norm"] = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                amp.step(optimizer)
                optimizer.zero_grad(set_to_none=True)
                state.global_step += 1
                state.optimizer_stepped = True
            state.batch_loss = loss.detach()
            meter.update(outputs, targets, loss)
            self._fire(Event.BATCH_END)
            if state.stop_requested or not _more_to_train(t, state):
                return
            self._checkpoint_if_requested(state)

    def _forward_backward(
        self, module: nn.Module, c: Components, inputs: torch.Tensor, targets: torch.Tensor, l2_weights: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One micro-batch through ``module`` (compiled or eager): forward under autocast, loss,
        backward of the objective (scaled for fp16, divided over the accumulation window)."""
        t = self.config.training
        with c.amp.autocast():
            outputs = module(inputs)
        outputs = outputs.float()
        loss = c.task.loss(outputs, targets)
        objective = loss + l2_penalty(l2_weights, t.l2) if l2_weights else loss
        c.amp.backward(objective / t.grad_accum if t.grad_accum > 1 else objective)
        return outputs, loss

    def _out_of_memory(self, c: Components, state: TrainState, exc: BaseException) -> memory.DeviceOutOfMemory:
        """Free what the failed batch held, write a checkpoint when the position allows one, and
        build the error naming the batch size and the ways out."""
        t = self.config.training
        where = f"epoch {state.epoch + 1}, batch {state.batch_in_epoch + 1} (step {state.global_step})"
        # The failed batch is not counted; at the start of an accumulation window the gradients
        # hold only its partial backward, which is dropped, and the checkpoint resumes at it.
        # Inside a window the earlier micro-batches' gradients cannot be told from its own.
        at_window_start = state.batch_in_epoch % t.grad_accum == 0
        if at_window_start:
            c.optimizer.zero_grad(set_to_none=True)
        memory.release(c.device)
        checkpoint = None
        if c.checkpoints is not None and at_window_start:
            state.request_checkpoint("out_of_memory")
            self._checkpoint_if_requested(state)
            checkpoint = None if state.last_checkpoint is None else str(state.last_checkpoint)
        batch_size = c.train_loader.batch_size or t.batch_size
        return memory.out_of_memory(exc, batch_size=batch_size, grad_accum=t.grad_accum, where=where, checkpoint=checkpoint)


def _more_to_train(t: Any, state: TrainState) -> bool:
    """Step-based (``training.max_steps``) or epoch-based: is there training left to do?"""
    if t.max_steps is not None:
        return bool(state.global_step < t.max_steps)
    return bool(state.epoch < t.epochs)


def _final_status(state: TrainState) -> str:
    if state.failed:
        return "failed"
    return "stopped_early" if state.stop_requested else "completed"
