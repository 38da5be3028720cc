"""Training one run on several ranks: the glue between kiln's loop and ``kiln.distributed``.

``kiln.distributed`` holds process-group primitives only and imports nothing else of kiln; what a
run needs on top of them lives here, where the config, the trainer's state, checkpoints and
trackers may be used:

- ``group``: join the group as the config says (backend, timeout), with errors a user can act on
- ``scaling``: the batch plan (per-process or global batch, LR scaling)
- ``meters``: metrics reduced over ranks; evaluation loaders reading this rank's shard
- ``rank_zero``: trackers and checkpoint writes that do nothing on ranks other than 0
- ``agreement``: every rank stops after the same step when a signal arrives
- ``rng``, ``resume``: every rank's RNG in a checkpoint; resuming on the same or another world size
- ``resume_choice``: rank 0 chooses the checkpoint a distributed resume starts from
- ``rundir``: one run directory per job, found again after a torchrun restart

Nothing is re-exported: each module is imported where it is used (most only when several
processes train).
"""
