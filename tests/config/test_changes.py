"""Which config changes a resume allows and which may differ between a sweep's machines: declared
once, on the schema's fields, read by both."""

from __future__ import annotations

import json

from kiln.config import KilnConfig
from kiln.config.changes import Change, change_of, differences, machine_local, resume_safe
from kiln.tracking.base import flatten

# What kiln resume allowed before the marks (its hand-kept list) and what sweeps treated as local.
RESUMABLE = {
    "training.epochs", "training.max_steps", "training.eval_batch_size", "run.progress", "data.num_workers",
    "checkpoint.keep_best_n", "checkpoint.keep_last_n", "checkpoint.every_n_epochs", "checkpoint.every_n_steps",
    "checkpoint.save_last", "checkpoint.async_save", "distributed.timeout", "distributed.backend",
    # the loader's throughput knobs (issue 18): the same batches whatever they are
    "data.persistent_workers", "data.prefetch_factor", "data.pin_memory",
}
# A sweep's local settings: the old list, plus everything resumable that does not change the
# trials' results (eval batch size, checkpoint upkeep, how collectives are carried).
LOCAL = {
    "run.output_dir", "run.dir", "run.progress", "run.device", "data.path", "data.val_path", "data.test_path",
    "data.num_workers", "checkpoint.async_save", "training.eval_batch_size", "checkpoint.keep_best_n",
    "checkpoint.keep_last_n", "checkpoint.every_n_epochs", "checkpoint.every_n_steps", "checkpoint.save_last",
    "distributed.timeout", "distributed.backend",
    "data.persistent_workers", "data.prefetch_factor", "data.pin_memory",
}


def test_the_marks_give_each_setting_its_kind() -> None:
    keys = flatten(KilnConfig().model_dump(mode="json"))
    keys.update({"data.path": None, "data.val_path": None, "data.test_path": None})  # csv's, not digits'
    tracking = {k for k in keys if k.startswith("tracking.")}
    assert len(tracking) > 5
    assert {k for k in keys if resume_safe(k)} == RESUMABLE | tracking
    assert {k for k in keys if machine_local(k)} == LOCAL | tracking
    # an unmarked setting, or one the schema does not know, is one that changes results
    assert change_of("training.lr") is change_of("model.hidden") is change_of("no.such.key") is Change.RESULTS
    assert change_of("tracking.register.require") is Change.LOGISTICS  # a section's mark covers all under it
    assert (change_of("training.epochs"), change_of("run.device")) == (Change.LENGTH, Change.MACHINE)
    # image_folder's: the decoded-image cache changes nothing computed; the manifest's place is the machine's
    assert (change_of("data.image.cache"), change_of("data.manifest")) == (Change.LOGISTICS, Change.MACHINE)
    assert change_of("data.image.size") is Change.RESULTS


def test_the_kind_shows_in_the_json_schema() -> None:
    schema = json.dumps(KilnConfig.model_json_schema())
    assert schema.count('"x-on-change": "length"') == 2  # epochs, max_steps
    assert '"x-on-change": "machine"' in schema and '"x-on-change": "logistics"' in schema


def test_differences_are_dotted_and_name_a_missing_side_none() -> None:
    old = {"training": {"lr": 0.1, "epochs": 2}, "data": {"options": {}}, "gone": 1}
    new = {"training": {"lr": 0.2, "epochs": 2}, "data": {"options": {"n": 3}}}
    assert differences(old, new) == [("data.options.n", None, 3), ("gone", 1, None), ("training.lr", 0.1, 0.2)]
    assert differences(new, new) == []
