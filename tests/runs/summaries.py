"""summary.json texts for tests: the first version's, and today's with chosen values."""

from __future__ import annotations

import json

# summary.json exactly as kiln's first version wrote it (commit 31914de): no max_steps, batch,
# glibc_malloc or flush_denormal yet, and an empty object for "no best epoch". One key no kiln
# wrote stands for whatever a later version may add.
FIRST_VERSION = """{
  "run": "tiny_20261123_101500",
  "run_dir": "runs/tiny_20261123_101500",
  "status": "completed",
  "stop_reason": null,
  "stopped_early": false,
  "epochs_trained": 2,
  "max_epochs": 2,
  "global_step": 46,
  "best_epoch": null,
  "best": {},
  "restored_best_epoch": null,
  "final": {"epoch": 2, "train_loss": 0.41, "train_accuracy": 0.88, "lr": 0.01, "epoch_time": 0.2},
  "test": {"test_loss": 0.5, "test_accuracy": 0.86},
  "parameters": 1210,
  "config_hash": "3f2a9c",
  "last_checkpoint": "runs/tiny_20261123_101500/checkpoints/epoch0001-step00000046-batch00000",
  "durations": {"total_s": 1.25, "epoch_median_s": 0.2},
  "started_at": "2026-11-23T10:15:00+00:00",
  "finished_at": "2026-11-23T10:15:01+00:00",
  "trackers": {"used": ["jsonl"], "failed": {}},
  "error": null,
  "written_by_a_future_kiln": {"anything": 1}
}
"""


def summary_dict(**changes: object) -> dict[str, object]:
    """A complete summary.json of today's kiln, as a dict, with ``changes``."""
    data = json.loads(FIRST_VERSION)
    del data["written_by_a_future_kiln"]
    data.update(max_steps=None, batch=None, glibc_malloc="kept: ...", flush_denormal=True, registry=None)
    data.update(changes)
    return data
