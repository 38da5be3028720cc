"""Per-area mutation scores from mutmut's results under mutants/ (run after `mutmut run`).

Prints, for each core area, killed / total and the percentage, then every mutant that was not
killed (survived, no test reached it, or not run yet), for docs/testing.md. A timeout counts as
killed: the mutant made a test hang, and a hang fails CI. Exits 1 when a measured area is under
85%; an area no selected test reaches is reported as not measured.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

AREAS = {
    "checkpoint": ("kiln.checkpoint.",),
    "config": ("kiln.config.",),
    "tasks": ("kiln.tasks.",),
    "train/optim.py": ("kiln.train.optim.",),
    "train/callbacks": ("kiln.train.callbacks.",),
    "export/parity.py, tolerance.py": ("kiln.export.parity.", "kiln.export.tolerance."),
    "serve/inputs.py, limits.py": ("kiln.serve.inputs.", "kiln.serve.limits."),
    "tracking/jsonl.py": ("kiln.tracking.jsonl.",),
    "tracking/sync.py": ("kiln.tracking.sync.",),
}
KILLED = {1, 3, 36, 24, -24, 152, 255, 37}  # failed test, pytest internal error, timeouts, type check
TARGET = 85.0


def main() -> int:
    codes: dict[str, int | None] = {}
    for meta in sorted(Path("mutants/src").rglob("*.py.meta")):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    below = False
    left: list[str] = []
    print(f"{'area':34} {'killed':>7} {'total':>6} {'score':>7}  not killed")
    for area, prefixes in AREAS.items():
        mine = {k: v for k, v in codes.items() if k.startswith(prefixes)}
        if not mine:
            print(f"{area:34} {'-':>7} {'-':>6} {'-':>7}  (no mutants)")
            continue
        ran = {k: v for k, v in mine.items() if v is not None}
        if not ran:
            print(f"{area:34} {'-':>7} {len(mine):>6} {'-':>7}  not measured (no mutant run yet)")
            continue
        if all(v in (5, 33) for v in ran.values()):
            print(f"{area:34} {'-':>7} {len(mine):>6} {'-':>7}  not measured: no fast unit test reaches it")
            continue
        killed = sum(v in KILLED for v in ran.values())
        pct = 100.0 * killed / len(ran)
        kinds = Counter(
            "survived" if v == 0 else "no tests" if v in (5, 33) else f"exit {v}"
            for v in ran.values() if v not in KILLED
        )
        note = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        if len(ran) < len(mine):
            note += f"{', ' if note else ''}{len(mine) - len(ran)} not run"
        print(f"{area:34} {killed:>7} {len(ran):>6} {pct:>6.1f}%  {note}")
        below = below or pct < TARGET
        left += sorted(k for k, v in ran.items() if v not in KILLED)
    if left:
        print("\nnot killed (`.venv/bin/mutmut show NAME` prints the diff):")
        print("\n".join(f"  {k}" for k in left))
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
