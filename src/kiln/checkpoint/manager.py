"""CheckpointManager: atomic, verified saves with best-N / last-N retention. It knows nothing of the
training loop: it stores a model state, an optimizer state, a trainer state and a meta record.

Files of one checkpoint directory::

    model.safetensors   weights (safetensors: no code can hide in it)
    optimizer.pt        optimizer state, loadable with torch.load(weights_only=True)
    trainer.pt          loop counters, RNG states, callback and meter states (weights_only too)
    meta.json           position, metrics, config hash, versions, time
    manifest.json       format version and sha256 of every file; written last
"""

from __future__ import annotations

import io
import json
import logging
import math
import pickle
import re
import struct
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from kiln.checkpoint import atomic
from kiln.checkpoint.manifest import MANIFEST, manifest_bytes, verify
from kiln.checkpoint.write_error import disk_bytes, write_error
from kiln.errors import CheckpointError

log = logging.getLogger("kiln.checkpoint")

_NAME = re.compile(r"epoch(\d+)-step(\d+)(?:-batch(\d+))?")
MODEL, OPTIMIZER, TRAINER, META = "model.safetensors", "optimizer.pt", "trainer.pt", "meta.json"


@dataclass(frozen=True)
class CheckpointInfo:
    """A committed checkpoint directory and its meta record (not yet verified)."""

    path: Path
    meta: dict[str, Any]

    @property
    def position(self) -> tuple[int, int, int]:
        """(global step, epoch, batch), read from the name so a damaged meta.json still sorts right."""
        match = _NAME.fullmatch(self.path.name)
        if match is None:
            return (-1, -1, -1)
        epoch, step, batch = match.groups()
        return (int(step), int(epoch), int(batch or 0))

    @property
    def score(self) -> float | None:
        value = self.meta.get("monitor_value")
        return None if value is None or math.isnan(value) else float(value)


@dataclass(frozen=True)
class Checkpoint:
    """A verified, loaded checkpoint."""

    path: Path
    meta: dict[str, Any]
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    trainer: dict[str, Any]


def checkpoint_name(epoch: int, global_step: int, batch_in_epoch: int) -> str:
    """``epoch0003-step00000120`` at an epoch boundary, ``...-batch00040`` within an epoch."""
    name = f"epoch{epoch:04d}-step{global_step:08d}"
    return f"{name}-batch{batch_in_epoch:05d}" if batch_in_epoch else name


class CheckpointManager:
    """Saves and loads the checkpoints of one run directory.

    >>> manager = CheckpointManager(Path("runs/x/checkpoints"), keep_best_n=2, keep_last_n=1, mode="min")  # doctest: +SKIP
    """

    def __init__(
        self, directory: Path, keep_best_n: int, keep_last_n: int, mode: str, async_save: bool = False
    ) -> None:
        self.directory = directory
        self.keep_best_n = keep_best_n
        self.keep_last_n = keep_last_n
        self.mode = mode
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="kiln-ckpt") if async_save else None
        self._pending: Future[Path] | None = None
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in atomic.clean_leftovers(directory):
            log.warning("removed a half-written checkpoint left by a killed process: %s", leftover.name)

    # -- saving ---------------------------------------------------------------------------------

    def save(
        self,
        model_state: dict[str, torch.Tensor],
        optimizer_state: dict[str, Any],
        trainer_state: dict[str, Any],
        meta: dict[str, Any],
    ) -> Path:
        """Commit one checkpoint (in the background when async); returns its final path.

        The states are copied to CPU first, so training may go on changing the live ones.
        A previous asynchronous save is waited for (and its error raised) before a new one starts.
        """
        self.wait()
        final = self.directory / checkpoint_name(meta["epoch"], meta["global_step"], meta["batch_in_epoch"])
        model_cpu = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model_state.items()}
        optimizer_cpu = to_cpu(optimizer_state)
        trainer_cpu = to_cpu(trainer_state)
        if self._executor is None:
            return self._write(final, model_cpu, optimizer_cpu, trainer_cpu, meta)
        self._pending = self._executor.submit(self._write, final, model_cpu, optimizer_cpu, trainer_cpu, meta)
        return final

    def wait(self) -> None:
        """Block until a pending asynchronous save is committed; re-raise its error if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def raise_if_failed(self) -> None:
        """Re-raise the error of an asynchronous save that has already failed, without waiting for
        one still being written: cheap enough to call after every batch, so a full disk stops the
        run at once instead of at the next save."""
        pending = self._pending
        if pending is not None and pending.done():
            self.wait()

    def close(self) -> None:
        self.wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _write(
        self, final: Path, model: dict[str, torch.Tensor], optimizer: dict[str, Any],
        trainer: dict[str, Any], meta: dict[str, Any],
    ) -> Path:
        # Serialized in memory, then written by Python: a full disk is then a plain OSError (torch's
        # own file writer turns it into a RuntimeError), and the room it needs is known exactly.
        contents = _contents(final.name, model, optimizer, trainer, meta)
        tmp = atomic.tmp_path(final)
        try:
            atomic.begin(final)
            for name, data in contents.items():  # the manifest last
                (tmp / name).write_bytes(data)
            with self._lock:
                atomic.commit(tmp, final)
        except OSError as exc:
            atomic.abort(tmp)  # first: the room it took is free again for what follows
            needed = disk_bytes((len(data) for data in contents.values()), self.directory)
            previous = self.committed()
            raise write_error(
                exc, final, needed, previous[-1].path if previous else None, self.keep_last_n, self.keep_best_n
            ) from exc
        except BaseException:
            atomic.abort(tmp)
            raise
        self.prune()
        return final

    # -- listing and retention ------------------------------------------------------------------

    def committed(self) -> list[CheckpointInfo]:
        """Committed checkpoints, oldest first (unverified: ``load`` verifies)."""
        found = []
        if not self.directory.is_dir():
            return []
        for child in self.directory.iterdir():
            if child.is_dir() and not child.name.endswith(atomic.TMP_SUFFIX):
                try:
                    meta = json.loads((child / META).read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    meta = {}  # damaged: still listed, so loading it reports what is wrong
                found.append(CheckpointInfo(child, meta if isinstance(meta, dict) else {}))
        return sorted(found, key=lambda i: (i.position, i.path.name))

    def keep_set(self, infos: list[CheckpointInfo]) -> set[Path]:
        """The newest, the last-N and the best-N (by monitored value); never the best excluded."""
        keep = {info.path for info in infos[-max(1, self.keep_last_n):]}
        sign = 1.0 if self.mode == "min" else -1.0
        scored = [(sign * i.score, i) for i in infos if i.score is not None]
        best_first = [info for _, info in sorted(scored, key=lambda pair: pair[0])]
        keep.update(info.path for info in best_first[: max(1, self.keep_best_n)])
        return keep

    def prune(self) -> list[Path]:
        """Delete committed checkpoints outside the keep set (called only after a commit)."""
        import shutil

        with self._lock:
            infos = self.committed()
            keep = self.keep_set(infos)
            removed = [i.path for i in infos if i.path not in keep]
            for path in removed:
                shutil.rmtree(path, ignore_errors=True)
        return removed

    # -- loading --------------------------------------------------------------------------------

    def load(self, path: Path) -> Checkpoint:
        """Verify and load one checkpoint; raise CheckpointError naming what is wrong."""
        return load_checkpoint(path)

    def load_latest(self) -> Checkpoint | None:
        """The newest checkpoint that verifies; each broken newer one is reported loudly and skipped."""
        infos = self.committed()
        if not infos:
            return None
        problems = []
        for info in reversed(infos):
            try:
                checkpoint = self.load(info.path)
            except CheckpointError as exc:
                problems.append(str(exc))
                log.warning("checkpoint refused: %s; falling back to the previous one", exc)
                continue
            if problems:
                checkpoint.meta["skipped"] = problems
            return checkpoint
        raise CheckpointError(
            "no usable checkpoint in " + str(self.directory) + ":\n" + "\n".join(f"  - {p}" for p in problems)
        )


def _contents(
    name: str, model: dict[str, torch.Tensor], optimizer: dict[str, Any], trainer: dict[str, Any],
    meta: dict[str, Any],
) -> dict[str, bytes]:
    """The bytes of every file of a checkpoint, ``manifest.json`` last."""
    contents = {
        MODEL: safetensors_bytes(model, metadata={"format": "pt"}),
        OPTIMIZER: _torch_bytes(optimizer),
        TRAINER: _torch_bytes(trainer),
        META: json.dumps(meta, indent=2, default=str).encode("utf-8"),
    }
    contents[MANIFEST] = manifest_bytes(contents, {"name": name})
    return contents


def _torch_bytes(value: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def load_checkpoint(path: Path) -> Checkpoint:
    """Verify and load the checkpoint directory ``path`` (reads only: no manager, no clean-up)."""
    verify(path)
    meta = json.loads((path / META).read_text(encoding="utf-8"))
    try:
        model = load_file(str(path / MODEL))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path.name}: {MODEL} is unreadable ({exc})") from None
    return Checkpoint(path, meta, model, safe_torch_load(path / OPTIMIZER), safe_torch_load(path / TRAINER))


def safe_torch_load(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)``: tensors and plain data only, so nothing can execute."""
    try:
        with warnings.catch_warnings():
            # A file not written by torch.save (another pickle protocol) warns before it is refused.
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path.parent.name}: refused to load {path.name}: it holds objects other than tensors "
            f"and plain data (a tampered or malicious file?); nothing in it was run. Detail: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, struct.error) as exc:
        # struct.error: torch's legacy-format reader on a few bytes of garbage
        raise CheckpointError(f"{path.parent.name}: {path.name} is unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path.parent.name}: {path.name} does not hold a mapping")
    return data


def to_cpu(value: Any) -> Any:
    """A deep copy with every tensor cloned to CPU (so later training steps cannot change it)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_cpu(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_cpu(v) for v in value)
    return value
