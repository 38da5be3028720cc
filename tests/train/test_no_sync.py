"""An ordinary training step reads nothing from the device: every scalar read (``.item()``,
``float()``, ``bool()`` of a tensor) reaches torch as ``aten::_local_scalar_dense``, which on a GPU
is the copy to the host that waits for every queued kernel. torch's profiler records each one on a
CPU as it would on a GPU, so counting them between two batch starts shows whether a step syncs."""

from __future__ import annotations

from pathlib import Path

from torch.profiler import ProfilerActivity, profile

from kiln.testing import tiny_config
from kiln.train import Callback, Trainer, TrainState

SCALAR_READS = {"aten::_local_scalar_dense", "aten::item", "aten::is_nonzero"}


class CountReads(Callback):
    """Profiles from one batch start to the next (the whole step: forward, backward, optimizer
    step and every callback's batch end) and counts the scalar reads of each step."""

    def __init__(self) -> None:
        self.prof: profile | None = None
        self.reads: dict[int, int] = {}  # global step at the window's end -> scalar reads in it
        self.step = 0

    def on_batch_start(self, state: TrainState) -> None:
        self._close(state)
        self.step = state.global_step
        self.prof = profile(activities=[ProfilerActivity.CPU])
        self.prof.__enter__()

    def on_validation_start(self, state: TrainState) -> None:
        self._close(state)  # the epoch's last step ends with the NaN guard's check before validation

    def _close(self, state: TrainState) -> None:
        if self.prof is None:
            return
        self.prof.__exit__(None, None, None)
        events = self.prof.key_averages()
        n = sum(e.count for e in events if e.key in SCALAR_READS)
        self.reads[state.global_step] = self.reads.get(state.global_step, 0) + n
        self.prof = None


def test_a_step_that_is_not_logged_reads_nothing_from_the_device(tmp_path: Path) -> None:
    """With SGD: Adam reads its step counter with ``.item()``, from a tensor torch keeps on the
    host even when training on CUDA so that the read waits for nothing; on a CPU that read cannot
    be told from a sync."""
    counter = CountReads()
    cfg = tiny_config(tmp_path, "training.epochs=1", "tracking.log_every_n_steps=4",
                      "training.grad_clip=1.0", "training.grad_accum=2", "checkpoint.every_n_steps=3",
                      "training.optimizer=sgd")
    Trainer(cfg, callbacks=[counter], quiet=True).fit()
    reads = counter.reads
    last = max(reads)  # its window holds the check before validation
    assert last > 10
    logged = {step for step in reads if step % 4 == 0 and step > 0}
    checkpointed = {step for step in reads if step % 3 == 0 and step > 0}  # the guard checks first
    quiet = {step: n for step, n in reads.items() if step not in logged | checkpointed | {last}}
    assert len(quiet) >= 4 and all(n == 0 for n in quiet.values()), quiet
    # the profiler does see the reads where they belong: the logged loss and grad norm, the checks
    assert all(reads[step] > 0 for step in logged | checkpointed | {last}), reads
