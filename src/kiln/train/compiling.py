"""``training.compile``: the loop's forward and backward through ``torch.compile``, timed apart,
falling back to eager when compiling fails.

Only the module the loop *trains through* is compiled. The model itself stays the eager
``nn.Module``: checkpoints, the model package, exports and served models are built from it, so
their keys are an eager run's (a compiled module's ``state_dict`` prefixes every key with
``_orig_mod.``, which no eager loader accepts). Validation and the test split run eagerly too.

Compiling is lazy: torch traces and compiles on the first call, and again for each new input shape
(the epoch's last, smaller batch) or mode. The steps during which a compilation happened are
timed as compile time (``compile_seconds``) and left out of ``samples_per_sec``. A model torch
cannot compile (an operation it cannot trace, no working C++ compiler for the CPU backend...)
trains eagerly from that step on, and the run says so in its log and summary.json. Results of a
compiled run are close to an eager run's but not bit-identical (fused kernels round differently),
so bit-exact repeats and resumes are promised for eager runs only.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

log = logging.getLogger("kiln")
T = TypeVar("T")


class Compiling:
    """Runs a training step through the compiled module (or the eager one when ``mode`` is False
    or compiling failed), adding the time of the steps that compiled to ``seconds``."""

    def __init__(self, eager: nn.Module, mode: str | bool) -> None:
        self.eager = eager
        self.mode = mode
        self.module: nn.Module = eager
        self.seconds = 0.0  # compile time so far, over the whole fit
        self.error: str | None = None  # why compiling failed, when it did
        if mode:
            with warnings.catch_warnings():  # inductor's imports touch a TorchScript API torch deprecates
                warnings.filterwarnings("ignore", message=".*torch.jit.script_method", category=DeprecationWarning)
                self.module = torch.compile(eager, mode=None if mode == "default" else str(mode))  # type: ignore[assignment]

    @property
    def compiled(self) -> bool:
        """Whether the loop trains through a compiled module now."""
        return self.module is not self.eager

    def run(self, step: Callable[..., T], *args: Any) -> T:
        """``step(module, *args)``, with the compiled module when there is one. A failure to compile
        switches to the eager module for the rest of the run and retries the step eagerly (an
        error of the model itself then surfaces from the eager call, as it would without compile)."""
        if not self.compiled:
            return step(self.eager, *args)
        graphs = _graphs_compiled()
        started = time.perf_counter()
        compiler_errors = _compiler_errors()
        try:
            result = step(self.module, *args)
        except torch.OutOfMemoryError:
            raise
        except compiler_errors as exc:  # compiling failed, not the model
            # compiling happens before the graph runs, so no gradient of this step was added yet
            self.seconds += time.perf_counter() - started
            self._fall_back(exc)
            return step(self.eager, *args)
        if _graphs_compiled() != graphs:
            self.seconds += time.perf_counter() - started
        return result

    def _fall_back(self, exc: Exception) -> None:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        self.error = f"{type(exc).__name__}: {first_line}"
        self.module = self.eager
        log.warning(
            "training.compile=%s failed, training eagerly instead (%s). Set training.compile=false "
            "to skip the attempt", self.mode, self.error,
        )

    def summary(self) -> dict[str, Any]:
        """What summary.json records: the mode asked for, whether the run ended compiled, the
        compile time and, after a fallback, why."""
        return {"mode": self.mode or "false", "compiled": self.compiled, "seconds": round(self.seconds, 3),
                "error": self.error}


def _compiler_errors() -> tuple[type[Exception], ...]:
    """Errors of the compiler itself (dynamo's, inductor's and its C++ toolchain's); a model's
    own error is none of these and is raised as it is."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import CppCompileError, InductorError

    return (TorchDynamoException, InductorError, CppCompileError)


def _graphs_compiled() -> int:
    """Graphs torch.compile produced in this process so far (dynamo's own counter, read without
    touching the device; it grows exactly when a call compiled something)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])
