"""Ground truth that arrives later: ``POST /feedback`` bodies, checked and joined with the log.

A body is ``{"request_id": ID, "label": L}`` or ``{"feedback": [{...}, ...]}``. The label is a
class name (a string) or a class index (an integer). ``index`` names the instance within a
request that sent several (``/predict`` answers them in order); it may be left out when the
request held one. A whole body is checked before anything is written, and written in one
transaction: it is recorded entirely or not at all.

Every problem is an ``InputError`` with its HTTP status and a message naming it: 400 not JSON,
422 a wrong shape, an unknown label or index, 404 request ids the log does not hold, 409 a
label different from the one already recorded for that prediction. The same feedback sent again
is accepted and counted once (``duplicates`` in the answer).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kiln.errors import InputError
from kiln.monitor.store import transaction

MAX_ITEMS = 1000  # per body: a larger backlog is sent in several requests
KEYS = {"request_id", "label", "index"}


@dataclass(frozen=True)
class Feedback:
    request_id: str
    index: int | None
    label: int


def parse(body: bytes, class_names: Sequence[str]) -> list[Feedback]:
    """The feedback items of a request body; InputError naming what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(400, f"the body is not valid JSON ({exc}); send {{\"request_id\": ..., "
                              "\"label\": ...}} or {\"feedback\": [...]}") from None
    except RecursionError:
        raise InputError(400, "the JSON is nested too deeply") from None
    if isinstance(data, dict) and "feedback" in data:
        if set(data) != {"feedback"} or not isinstance(data["feedback"], list):
            raise InputError(422, "a batch is {\"feedback\": [{\"request_id\": ..., \"label\": ...}, ...]} "
                                  "with no other key")
        items = data["feedback"]
        if not items:
            raise InputError(422, "\"feedback\" is empty: send at least one {\"request_id\", \"label\"}")
        if len(items) > MAX_ITEMS:
            raise InputError(413, f"{len(items)} feedback items is more than {MAX_ITEMS} per request; "
                                  "split them")
    else:
        items = [data]
    return [_item(item, i if len(items) > 1 else None, class_names) for i, item in enumerate(items)]


def _item(item: Any, position: int | None, class_names: Sequence[str]) -> Feedback:
    where = "" if position is None else f"feedback[{position}]: "
    if not isinstance(item, dict) or not {"request_id", "label"} <= set(item) or set(item) - KEYS:
        raise InputError(422, f"{where}each feedback is an object with \"request_id\" (from the "
                              "/predict answer) and \"label\" (class name or index), and optionally "
                              f"\"index\" (the instance within the request); got {_show(item)}")
    request_id, label, index = item["request_id"], item["label"], item.get("index")
    if not isinstance(request_id, str) or not request_id:
        raise InputError(422, f"{where}\"request_id\" must be the string /predict answered, got "
                              f"{_show(request_id)}")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
        raise InputError(422, f"{where}\"index\" must be an integer >= 0, got {_show(index)}")
    return Feedback(request_id, index, _label(label, class_names, where))


def _label(label: Any, class_names: Sequence[str], where: str) -> int:
    if isinstance(label, str):
        if label in class_names:
            return list(class_names).index(label)
        shown = ", ".join(class_names[:20]) + (" ..." if len(class_names) > 20 else "")
        raise InputError(422, f"{where}unknown label {label!r}: the model's classes are {shown} "
                              f"(or their index 0..{len(class_names) - 1})")
    if isinstance(label, int) and not isinstance(label, bool):
        if 0 <= label < len(class_names):
            return label
        raise InputError(422, f"{where}label index {label} is out of range: the model has "
                              f"{len(class_names)} classes, 0..{len(class_names) - 1}")
    raise InputError(422, f"{where}\"label\" must be a class name (string) or index (integer), "
                          f"got {_show(label)}")


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def record(connection: sqlite3.Connection, items: Sequence[Feedback], class_names: Sequence[str],
           now: float | None = None) -> dict[str, int]:
    """Join ``items`` with their logged predictions and write them in one transaction;
    ``{"accepted": new rows, "duplicates": repeats of recorded feedback, "correct": of the new}``."""
    now = time.time() if now is None else now
    with transaction(connection):
        joined = [(f, _prediction(connection, f)) for f in items]
        missing = [f.request_id for f, found in joined if found is None]
        if missing:
            shown = ", ".join(sorted(set(missing))[:5]) + (" ..." if len(set(missing)) > 5 else "")
            raise InputError(404, f"no logged prediction has request id {shown}: use the "
                                  "request_id of a /predict answer (predictions reach the log "
                                  "within a second, and leave it after --log-retention-days)")
        accepted = duplicates = correct = 0
        seen: dict[tuple[str, int], int] = {}
        for f, found in joined:
            assert found is not None
            item, model, version, predicted = found
            key = (f.request_id, item)
            earlier = seen.get(key)
            if earlier is None:
                row = connection.execute("SELECT label FROM feedback WHERE request_id = ? AND item = ?",
                                         key).fetchone()
                earlier = None if row is None else int(row[0])
            if earlier is not None:
                if earlier != f.label:
                    raise InputError(409, f"request {f.request_id} item {item} already has the label "
                                          f"{class_names[earlier]!r}; feedback is recorded once, "
                                          f"so {class_names[f.label]!r} was not")
                duplicates += 1
                continue
            seen[key] = f.label
            right = int(f.label == predicted)
            connection.execute(
                "INSERT INTO feedback (request_id, item, time, model, version, label, label_name, "
                "predicted, correct) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (f.request_id, item, now, model, version, f.label, class_names[f.label], predicted, right))
            connection.execute(
                "INSERT INTO feedback_counts (model, version, outcome, n) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (model, version, outcome) DO UPDATE SET n = n + 1",
                (model, version, "correct" if right else "wrong"))
            accepted += 1
            correct += right
    return {"accepted": accepted, "duplicates": duplicates, "correct": correct}


def _prediction(connection: sqlite3.Connection, f: Feedback) -> tuple[int, str, str, int] | None:
    """(item, model, version, predicted class) of the logged prediction ``f`` is about."""
    rows = connection.execute("SELECT item, model, version, class FROM predictions WHERE request_id = ? "
                              "ORDER BY item", (f.request_id,)).fetchall()
    if not rows:
        return None
    if f.index is None:
        if len(rows) > 1:
            raise InputError(422, f"request {f.request_id} predicted {len(rows)} instances: name "
                                  f"the one this label is for with \"index\" (0..{len(rows) - 1})")
        item, model, version, predicted = rows[0]
    else:
        found = [r for r in rows if r[0] == f.index]
        if not found:
            raise InputError(422, f"request {f.request_id} has no instance {f.index}: it predicted "
                                  f"{len(rows)}, index 0..{len(rows) - 1}")
        item, model, version, predicted = found[0]
    if predicted is None:
        raise InputError(422, f"request {f.request_id} was answered by a regression model; "
                              "feedback takes class labels")
    return int(item), str(model), str(version), int(predicted)
