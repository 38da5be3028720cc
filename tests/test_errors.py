"""KilnError's one layout for message, field, received, allowed and hint; the library errors that
used to be a bare ValueError or KeyError."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from kiln.catalog import Catalog
from kiln.errors import (
    ConfigError,
    KilnError,
    MissingExtraError,
    PathError,
    UsageError,
    exception_line,
)


def test_a_message_alone_reads_as_it_was_written() -> None:
    err = ConfigError("training.lr must be positive")
    assert str(err) == err.message == "training.lr must be positive"
    assert (err.field, err.received, err.allowed, err.hint) == (None, None, None, None)
    assert str(MissingExtraError("onnx", "export")) == (
        "this feature needs the optional package 'onnx', which is not installed. "
        "Install it with: pip install 'kiln-ml[export]'"
    )


def test_details_follow_the_message_one_indented_line_each() -> None:
    err = UsageError("unknown split to evaluate on", field="split", received="tset",
                     allowed=("train", "val", "test"), hint="pick one of the run's splits")
    assert str(err) == (
        "unknown split to evaluate on\n"
        "  field: split\n"
        "  received: 'tset'\n"
        "  allowed: train, val, test\n"
        "  hint: pick one of the run's splits"
    )
    assert err.allowed == ["train", "val", "test"]
    assert exception_line(err) == "UsageError: unknown split to evaluate on"


def test_a_received_value_the_message_quotes_is_not_repeated() -> None:
    err = KilnError("unknown model 'mlpp'", received="mlpp", allowed=[])
    assert str(err) == "unknown model 'mlpp'\n  allowed: (none)"
    assert err.received == "mlpp"


def test_exit_codes_and_pickling_keep_the_details() -> None:
    err = PathError("runs/x is not a run directory: it does not exist", hint="kiln runs lists them")
    assert (err.exit_code, isinstance(err, UsageError), KilnError("x").exit_code) == (2, True, 1)
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), str(copy), copy.hint) == (PathError, str(err), "kiln runs lists them")


def test_registering_a_name_twice_is_a_config_error() -> None:
    catalog: Catalog[int] = Catalog("model")
    catalog.register("one", lambda: 1)
    with pytest.raises(ConfigError, match=r"^model 'one' is already registered\n  hint: register yours"):
        catalog.register("one", lambda: 2)


def test_an_unknown_split_is_a_usage_error_listing_the_splits(trained_run: Path) -> None:
    from kiln.eval.run_eval import evaluate_run

    with pytest.raises(UsageError) as info:
        evaluate_run(trained_run, "tset", plots=False, cost=False)
    assert str(info.value) == (
        "unknown split 'tset' to evaluate on\n  field: split\n  allowed: train, val, test"
    )
    assert info.value.received == "tset"


def test_every_public_error_is_exported_from_kiln_errors_and_crosses_a_process_whole() -> None:
    import kiln.errors
    from kiln.serve.inputs import InputError
    from kiln.sweep.objective import MetricNotFound, TrialInterrupted
    from kiln.train.trainer import TrainingInterrupted

    # the old homes re-export the very same classes
    assert (InputError, MetricNotFound, TrialInterrupted, TrainingInterrupted) == (
        kiln.errors.InputError, kiln.errors.MetricNotFound, kiln.errors.TrialInterrupted,
        kiln.errors.TrainingInterrupted)
    errors = [getattr(kiln.errors, name) for name in kiln.errors.__all__]
    classes = [e for e in errors if isinstance(e, type)]
    assert all(issubclass(c, KilnError) for c in classes)
    assert {c.__name__ for c in classes} >= {
        "TrainingInterrupted", "TrialInterrupted", "MetricNotFound", "InputError", "RunError", "PathError"}
    stopped = kiln.errors.TrainingInterrupted(
        "SIGTERM received: stopped", 143, run_dir=Path("runs/a"), checkpoint=Path("runs/a/checkpoints/c"),
        signal="SIGTERM", global_step=95, epoch=2, batch_in_epoch=7)
    for err in (stopped, kiln.errors.TrialInterrupted(2), kiln.errors.InputError(413, "too big"),
                kiln.errors.MetricNotFound("val_acc", ["val_accuracy"]), MissingExtraError("onnx", "export")):
        copy = pickle.loads(pickle.dumps(err))
        assert (type(copy), str(copy), copy.__dict__) == (type(err), str(err), err.__dict__)
    assert (stopped.exit_code, stopped.signal, stopped.global_step, stopped.epoch) == (143, "SIGTERM", 95, 2)
    assert str(kiln.errors.TrialInterrupted(2)) == "SIGINT received before the trial started"
    assert kiln.errors.TrialInterrupted(2).exit_code == 130
