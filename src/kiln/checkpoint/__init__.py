"""Checkpoints: atomic, verified, retained best-N/last-N, loadable without unpickling code."""

from kiln.checkpoint.manager import Checkpoint, CheckpointInfo, CheckpointManager, checkpoint_name

__all__ = ["Checkpoint", "CheckpointInfo", "CheckpointManager", "checkpoint_name"]
