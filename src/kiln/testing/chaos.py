"""Kill training at random moments with SIGKILL and resume it until it finishes.

Used by the kill test and by ``bench/kill_resume.py``: the final weights must equal those of a
run that was never killed.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KillReport:
    run_dir: Path
    kills: int
    launches: int


def kiln_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kiln", *args]


def _committed_checkpoints(run_dir: Path) -> list[Path]:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.is_dir() and not p.name.endswith(".tmp")]


def _finished(output_dir: Path) -> bool:
    from kiln.runs.summary import RunSummary

    for summary in output_dir.glob("*/summary.json"):
        return RunSummary.read(summary).finished
    return False


def _newest_step(run_dir: Path | None) -> int:
    """Global step of the newest committed checkpoint (names are ``epochNNNN-stepNNNNNNNN...``)."""
    if run_dir is None:
        return 0
    steps = [int(p.name.split("-step")[1][:8]) for p in _committed_checkpoints(run_dir) if "-step" in p.name]
    return max(steps, default=0)


def _kill_when(
    process: subprocess.Popen[bytes], output_dir: Path, rng: random.Random,
    delay: tuple[float, float], steps: tuple[int, int] | None, startup_share: float,
) -> bool:
    """Wait for this launch's kill moment and SIGKILL the process there; False if it exited first.

    Time mode (``steps`` is None): a delay drawn from ``delay`` after launch. Step mode: once the
    newest committed checkpoint is ``steps`` further on, plus a few milliseconds of jitter so the
    kill lands anywhere (mid-batch, mid-save); a share ``startup_share`` of launches are instead
    killed during start-up, before the first batch. Step mode does not depend on how fast the
    machine is, so every kill lands before the run can finish.
    """
    if steps is None or rng.random() < startup_share:
        deadline = time.monotonic() + (rng.uniform(*delay) if steps is None else rng.uniform(0.2, 1.5))
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
    else:
        runs = sorted(output_dir.glob("*/config.yaml")) if output_dir.is_dir() else []
        run_dir = runs[0].parent if runs else None
        target = _newest_step(run_dir) + rng.randint(*steps)
        jitter = rng.uniform(0.0, 0.02)
        while process.poll() is None:
            if run_dir is None:
                runs = sorted(output_dir.glob("*/config.yaml")) if output_dir.is_dir() else []
                run_dir = runs[0].parent if runs else None
            if _newest_step(run_dir) >= target:
                time.sleep(jitter)
                break
            time.sleep(0.002)
    if process.poll() is not None:
        return False
    process.kill()
    process.communicate()  # reap it and close its pipe
    return True


def train_with_kills(
    overrides: Sequence[str],
    output_dir: Path,
    kills: int,
    rng: random.Random,
    delay: tuple[float, float] = (1.0, 5.0),
    steps: tuple[int, int] | None = None,
    startup_share: float = 0.25,
    cwd: Path | None = None,
    timeout: float = 600,
) -> KillReport:
    """Start ``kiln train``, SIGKILL it, ``kiln resume`` it, and so on: ``kills`` times, then let
    it finish. Each kill comes after a random delay, or with ``steps`` after a random number of
    steps (see ``_kill_when``). A run killed before its first checkpoint is started afresh."""
    done = launches = 0
    while True:
        runs = sorted(output_dir.glob("*/config.yaml")) if output_dir.is_dir() else []
        run_dir = runs[0].parent if runs else None
        if run_dir is not None and not _committed_checkpoints(run_dir):
            shutil.rmtree(run_dir)  # killed before anything was saved: nothing to resume
            run_dir = None
        if run_dir is None:
            command = kiln_command("train", *overrides, f"run.output_dir={output_dir}", "--quiet")
        else:
            command = kiln_command("resume", str(run_dir), "--quiet")
        launches += 1
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if done < kills and _kill_when(process, output_dir, rng, delay, steps, startup_share):
            done += 1
            continue
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        if process.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} exited with {process.returncode}:\n{stderr.decode()[-2000:]}"
            )
        if done >= kills or _finished(output_dir):
            # done, or it finished before all kills were spent: relaunching a finished run would
            # only print "already finished" forever
            final = sorted(output_dir.glob("*/summary.json"))
            return KillReport(final[0].parent, done, launches)
