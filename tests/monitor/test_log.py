"""The prediction log in this process, on real SQLite files: the writer commits what /predict
hands it, summaries undo the normalization, retention prunes by age and size, feedback is
checked, joined and counted once, and export round-trips through CSV and Parquet."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from kiln.errors import InputError, PathError, UsageError
from kiln.monitor import feedback
from kiln.monitor.export import export_log
from kiln.monitor.store import Retention, connect, create, prune, used_bytes
from kiln.monitor.summary import InputSummary
from kiln.monitor.writer import LoggedModel, PredictionLog

CLASSES = ["cat", "dog", "owl"]
TABULAR = InputSummary((4,), np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.0, 2.0, 2.0]), image=False,
                       max_features=3)


def _log(tmp_path: Path, *, log_inputs: bool = False, summary: InputSummary = TABULAR) -> PredictionLog:
    path = create(tmp_path / "state")
    return PredictionLog(path, LoggedModel("m", "7", CLASSES, summary), Retention(), log_inputs=log_inputs)


def _rows(path: Path, query: str = "SELECT request_id, item, class, class_name, probability, summary, input "
                                   "FROM predictions ORDER BY request_id, item") -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(query).fetchall()


def test_writer_commits_every_row_with_its_summary(tmp_path: Path) -> None:
    plog = _log(tmp_path, log_inputs=True)
    plog.start()
    batch = np.array([[0.0, 0.5, 1.0, 1.5], [-0.5, 0.0, 0.0, 0.0]], dtype=np.float32)  # normalized
    probabilities = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], dtype=np.float32)
    plog.record("a", batch, probabilities)
    plog.record("b", batch[:1], probabilities[1:])
    assert plog.flush()
    rows = _rows(plog.path)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [("a", 0, 1, "dog"), ("a", 1, 0, "cat"), ("b", 0, 0, "cat")]
    assert rows[0][4] == pytest.approx(0.7)
    # x * std + mean, the first max_features values only
    assert json.loads(rows[0][5]) == {"feature": [1.0, 3.0, 5.0]}
    assert json.loads(rows[1][5]) == {"feature": [0.0, 2.0, 3.0]}
    assert json.loads(rows[0][6]) == [1.0, 3.0, 5.0, 7.0]  # --log-inputs: the whole instance
    plog.stop()


def test_batches_summarized_together_keep_each_row_its_own_summary_and_class(tmp_path: Path) -> None:
    plog = _log(tmp_path)
    rng = np.random.default_rng(0)
    batches = {"a": rng.normal(size=(2, 4)), "b": rng.normal(size=(1, 4)), "c": rng.normal(size=(3, 4))}
    outputs = {k: rng.dirichlet(np.ones(3), size=len(v)).astype(np.float32) for k, v in batches.items()}
    for key, batch in batches.items():
        plog.record(key, batch.astype(np.float32), outputs[key])
    plog.start()  # all queued: one commit, summarized in one pass
    assert plog.flush()
    rows = _rows(plog.path)
    assert [(r[0], r[1]) for r in rows] == [("a", 0), ("a", 1), ("b", 0), ("c", 0), ("c", 1), ("c", 2)]
    for request_id, item, predicted, _, probability, summary, _ in rows:
        x = batches[request_id][item].astype(np.float32)
        expected = (x[:3] * 2.0 + np.array([1.0, 2.0, 3.0])).astype(np.float32)
        assert json.loads(summary)["feature"] == pytest.approx(expected.tolist(), rel=1e-6)
        assert predicted == int(outputs[request_id][item].argmax())
        assert probability == pytest.approx(float(outputs[request_id][item].max()))
    plog.stop()


def test_outputs_that_do_not_match_their_batch_are_not_given_to_other_rows(tmp_path: Path) -> None:
    """A batch with fewer output rows than inputs is dropped alone, even when another batch's
    extra output row makes the totals agree: stacking them would hand outputs to the wrong rows."""
    plog = _log(tmp_path)
    plog.record("two_outputs", np.zeros((1, 4), dtype=np.float32),
                np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]], dtype=np.float32))
    plog.record("short", np.zeros((2, 4), dtype=np.float32), np.array([[0.1, 0.1, 0.8]], dtype=np.float32))
    plog.start()
    assert plog.flush()
    assert [(r[0], r[2]) for r in _rows(plog.path)] == [("two_outputs", 1)]  # its own first row
    assert plog.dropped == 2
    plog.stop()


def test_an_odd_batch_among_others_is_dropped_alone(tmp_path: Path) -> None:
    """Batches queued together are summarized together; one that cannot be (two features for a
    four-feature model) is dropped and counted, and its neighbours are still committed."""
    plog = _log(tmp_path)
    probabilities = np.array([[0.1, 0.7, 0.2]], dtype=np.float32)
    plog.record("a", np.zeros((1, 4), dtype=np.float32), probabilities)
    plog.record("odd", np.zeros((1, 2), dtype=np.float32), probabilities)
    plog.record("c", np.ones((1, 4), dtype=np.float32), probabilities)
    plog.start()  # all three are queued: the writer takes them in one commit
    assert plog.flush()
    assert [r[0] for r in _rows(plog.path)] == ["a", "c"]
    assert plog.dropped == 1
    plog.stop()


def test_nothing_raw_without_log_inputs_and_stop_commits_the_queue(tmp_path: Path) -> None:
    plog = _log(tmp_path)
    plog.start()
    for i in range(200):
        plog.record(f"r{i:03d}", np.zeros((1, 4), np.float32), np.array([[0.2, 0.3, 0.5]], np.float32))
    plog.stop()  # no flush: stop itself commits what is queued
    rows = _rows(plog.path)
    assert len(rows) == 200 and {r[6] for r in rows} == {None}


def test_image_summary_is_per_channel_mean_and_std_in_dataset_units() -> None:
    summary = InputSummary((2, 2, 2), np.array([0.5, 0.0]).reshape(2, 1, 1),
                           np.array([0.25, 1.0]).reshape(2, 1, 1), image=True)
    batch = np.array([[[[0, 0], [4, 4]], [[1, 3], [1, 3]]]], dtype=np.float32)
    (row,) = summary.rows(batch)
    assert row["channel_mean"] == pytest.approx([1.0, 2.0])  # 0.5 + 0.25 * 2
    assert row["channel_std"] == pytest.approx([0.5, 1.0])


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    path = create(tmp_path / "state")
    dropped: list[int] = []
    plog = PredictionLog(path, LoggedModel("m", "7", CLASSES, TABULAR), Retention(), queue_size=2,
                         on_drop=dropped.append)  # not started: nothing drains the queue
    for i in range(4):
        plog.record(f"r{i}", np.zeros((3, 4), np.float32), np.full((3, 3), 1 / 3, np.float32))
    assert plog.dropped == 6 and dropped == [3, 3]


def test_prune_by_age_then_by_size(tmp_path: Path) -> None:
    path = create(tmp_path / "state")
    connection = connect(path)
    now = time.time()
    row = ("m", "7", 0, "cat", 0.9, None, json.dumps({"feature": [0.0] * 64}), "x" * 2000)
    connection.executemany(
        "INSERT INTO predictions (request_id, item, time, model, version, class, class_name, "
        "probability, value, summary, input) VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(f"old{i}", now - 40 * 86400 + i, *row) for i in range(10)]
        + [(f"new{i:04d}", now - 1000 + i, *row) for i in range(1500)])
    assert prune(connection, Retention(days=30, max_mb=1024), now) == 10
    assert connection.execute("SELECT COUNT(*) FROM predictions WHERE request_id LIKE 'old%'").fetchone()[0] == 0
    assert used_bytes(connection) > 2**20 * 2
    deleted = prune(connection, Retention(days=30, max_mb=2), now)
    assert used_bytes(connection) <= 2 * 2**20 and deleted > 0
    oldest = connection.execute("SELECT MIN(request_id) FROM predictions").fetchone()[0]
    assert oldest == f"new{deleted:04d}"  # the oldest went first
    connection.close()


def _logged(tmp_path: Path) -> Path:
    plog = _log(tmp_path)
    plog.start()
    probabilities = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]], np.float32)
    plog.record("one", np.zeros((1, 4), np.float32), probabilities[:1])  # predicted cat
    plog.record("two", np.zeros((2, 4), np.float32), probabilities)  # cat, dog
    plog.stop()
    return plog.path


def _send(path: Path, body: object) -> dict[str, int]:
    connection = connect(path)
    try:
        return feedback.record(connection, feedback.parse(json.dumps(body).encode(), CLASSES), CLASSES)
    finally:
        connection.close()


def test_feedback_joins_counts_once_and_refuses_a_changed_label(tmp_path: Path) -> None:
    path = _logged(tmp_path)
    assert _send(path, {"request_id": "one", "label": "cat"}) == {"accepted": 1, "duplicates": 0, "correct": 1}
    batch = {"feedback": [{"request_id": "two", "index": 0, "label": 2},
                          {"request_id": "two", "index": 1, "label": "dog"}]}
    assert _send(path, batch) == {"accepted": 2, "duplicates": 0, "correct": 1}
    assert _send(path, batch) == {"accepted": 0, "duplicates": 2, "correct": 0}
    with pytest.raises(InputError, match="already has the label 'cat'") as caught:
        _send(path, {"request_id": "one", "label": "owl"})
    assert caught.value.status == 409
    counts = dict(_rows(path, "SELECT outcome, n FROM feedback_counts"))
    assert counts == {"correct": 2, "wrong": 1}


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"{", 400, "not valid JSON"),
    ({"request_id": "one"}, 422, "each feedback is an object with \"request_id\""),
    ({"request_id": "one", "label": "cow"}, 422, "unknown label 'cow'"),
    ({"request_id": "one", "label": 3}, 422, "label index 3 is out of range"),
    ({"request_id": "one", "label": True}, 422, "must be a class name (string) or index"),
    ({"request_id": 5, "label": "cat"}, 422, "\"request_id\" must be the string"),
    ({"request_id": "one", "label": "cat", "index": -1}, 422, "\"index\" must be an integer >= 0"),
    ({"request_id": "one", "label": "cat", "extra": 1}, 422, "each feedback is an object"),
    ({"feedback": []}, 422, "\"feedback\" is empty"),
    ({"feedback": [{"request_id": "one", "label": "cat"}] * 1001}, 413, "more than 1000"),
    ({"feedback": [{"request_id": "one", "label": "cat"}, {"label": 1}]}, 422, "feedback[1]: "),
    ({"request_id": "nope", "label": "cat"}, 404, "no logged prediction has request id nope"),
    ({"request_id": "two", "label": "cat"}, 422, "predicted 2 instances: name the one"),
    ({"request_id": "two", "label": "cat", "index": 2}, 422, "has no instance 2"),
])
def test_bad_feedback_names_the_problem_and_writes_nothing(tmp_path: Path, body: object, status: int,
                                                           message: str) -> None:
    path = _logged(tmp_path)
    with pytest.raises(InputError) as caught:
        if isinstance(body, bytes):
            feedback.parse(body, CLASSES)
        else:
            _send(path, {"feedback": [{"request_id": "one", "label": "cat"}, body]}
                  if status == 404 else body)  # a good item beside a bad one: nothing is written
    assert (caught.value.status, message in str(caught.value)) == (status, True), str(caught.value)
    assert _rows(path, "SELECT COUNT(*) FROM feedback") == [(0,)]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_round_trips(tmp_path: Path, suffix: str) -> None:
    path = _logged(tmp_path)
    _send(path, {"request_id": "one", "label": "dog"})
    output = tmp_path / f"log{suffix}"
    assert export_log(path.parent, output) == 3
    table = (pq.read_table(output) if suffix == ".parquet" else  # CSV writes a null as nothing
             pcsv.read_csv(output, convert_options=pcsv.ConvertOptions(strings_can_be_null=True)))
    rows = table.to_pylist()
    assert [(r["request_id"], r["item"], r["class_name"], r["label_name"], r["correct"]) for r in rows] == [
        ("one", 0, "cat", "dog", False), ("two", 0, "cat", None, None), ("two", 1, "dog", None, None)]
    assert [r["feature_0"] for r in rows] == [1.0, 1.0, 1.0] and "feature_3" not in rows[0]
    assert rows[0]["model"] == "m" and str(rows[0]["version"]) == "7"
    assert abs(rows[0]["time"].timestamp() - time.time()) < 600
    assert not list(tmp_path.glob(".*partial"))


def test_export_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(PathError, match="does not exist"):
        export_log(tmp_path / "nothing", tmp_path / "out.csv")
    with pytest.raises(PathError, match="no prediction log in"):
        export_log(tmp_path, tmp_path / "out.csv")
    with pytest.raises(UsageError, match="cannot tell the output format"):
        export_log(_logged(tmp_path), tmp_path / "out.xlsx")
