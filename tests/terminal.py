"""Run ``python -m kiln ARGS`` with its output on a real pseudo-terminal, as a person sees it."""

from __future__ import annotations

import os
import pty
import subprocess
import sys


def on_a_terminal(args: list[str], stdout: bool = True) -> tuple[int, str]:
    """Exit code and what the terminal showed: stderr always, stdout too unless ``stdout`` is
    False (it then goes nowhere). The terminal turns each "\\n" into "\\r\\n" (onlcr); that is undone,
    so a "\\r" left in the text is one the program wrote (a redrawn bar)."""
    leader, follower = pty.openpty()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "COLUMNS": "120", "TERM": "xterm"}
    process = subprocess.Popen([sys.executable, "-m", "kiln", *args],
                               stdout=follower if stdout else subprocess.DEVNULL, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the process closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return process.wait(120), b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
