"""The event list, the callback hooks and the loop docstring agree one to one, and the docstring
lists every place in kiln's source where each event fires (issue 16, item 5)."""

from __future__ import annotations

import ast
import inspect
import re
from collections import Counter
from pathlib import Path

import kiln
from kiln.train import events
from kiln.train.callback import Callback
from kiln.train.events import Event

SRC = Path(kiln.__file__).parent
TRAINER = SRC / "train" / "trainer.py"
# The Trainer's own dispatch helpers: a call of one is a place where its event fires.
FIRE, CHECKPOINT_IF_REQUESTED = "_fire", "_checkpoint_if_requested"
HOOKS = {event.hook for event in Event}

Sites = Counter[tuple[str, str]]  # (event, Trainer method) -> how many dispatches there


def test_every_event_has_exactly_one_hook_and_back() -> None:
    hooks = {name for name, _ in inspect.getmembers(Callback, inspect.isfunction) if name.startswith("on_")}
    assert hooks == {event.hook for event in Event}
    assert len(Event) == 10


def test_loop_docstring_marks_every_event() -> None:
    doc = events.__doc__ or ""
    for event in Event:
        assert f"-> {event.value}" in doc, event


def documented_sites(doc: str) -> Sites:
    """Every ``-> event ... [method]`` line of the docstring's pseudo-code (after its ``::``), counted."""
    sites: Sites = Counter()
    for line in doc.partition("::\n")[2].splitlines():
        arrows = re.findall(r"-> (\w+)", line)
        if not arrows:
            continue
        method = re.search(r"\[(\w+)\]\s*$", line)
        assert len(arrows) == 1 and method is not None, f"one '-> event' and its '[method]' per line: {line!r}"
        sites[(arrows[0], method.group(1))] += 1
    return sites


def _self_call(node: ast.AST) -> ast.Call | None:
    """``node`` when it is a call ``self.<name>(...)``."""
    if (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name) and node.func.value.id == "self"
    ):
        return node
    return None


def _event_named(node: ast.expr) -> str:
    """The value of ``Event.NAME``; anything else could not be checked, so it fails."""
    assert isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Event", (
        f"fire events by name (self._fire(Event.X)), not {ast.unparse(node)}: this test reads them"
    )
    return Event[node.attr].value


def fired_sites(source: str) -> Sites:
    """Every dispatch in the Trainer's methods: ``self._fire(Event.X)`` fires X there, and
    ``self._checkpoint_if_requested(...)`` fires checkpoint there."""
    tree = ast.parse(source)
    (trainer,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer"]
    methods = {m.name: m for m in trainer.body if isinstance(m, ast.FunctionDef)}
    # the helper fires checkpoint and nothing else, so a call of it counts as checkpoint
    helper_fires = [
        _event_named(call.args[0]) for node in ast.walk(methods[CHECKPOINT_IF_REQUESTED])
        if (call := _self_call(node)) is not None and isinstance(call.func, ast.Attribute) and call.func.attr == FIRE
    ]
    assert helper_fires == [Event.CHECKPOINT.value]
    sites: Sites = Counter()
    for name, method in methods.items():
        if name in (FIRE, CHECKPOINT_IF_REQUESTED):
            continue
        for node in ast.walk(method):
            call = _self_call(node)
            if call is None or not isinstance(call.func, ast.Attribute):
                continue
            if call.func.attr == FIRE:
                sites[(_event_named(call.args[0]), name)] += 1
            elif call.func.attr == CHECKPOINT_IF_REQUESTED:
                sites[(Event.CHECKPOINT.value, name)] += 1
            assert call.func.attr not in HOOKS, f"Trainer.{name} calls a hook directly: use self._fire"
    return sites


def test_docstring_lists_every_place_each_event_fires() -> None:
    documented, fired = documented_sites(events.__doc__ or ""), fired_sites(TRAINER.read_text())
    assert {event for event, _ in documented} == {event.value for event in Event}
    assert fired - documented == Counter(), "fires in the code but not listed in kiln/train/events.py"
    assert documented - fired == Counter(), "listed in kiln/train/events.py but no longer fires there"


def test_events_fire_only_in_the_trainer() -> None:
    """No other module dispatches: no call of a dispatch helper or of a hook by name."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == TRAINER:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            dispatch = {FIRE, CHECKPOINT_IF_REQUESTED} | HOOKS
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in dispatch:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {ast.unparse(node.func)}")
    assert offenders == []


def test_the_checks_catch_a_missing_and_an_unlisted_site() -> None:
    """The comparison itself: a dispatch removed from the code, or one added, is found."""
    source = TRAINER.read_text()
    doc = events.__doc__ or ""
    without_epoch_start = source.replace("self._fire(Event.EPOCH_START)", "pass", 1)
    assert documented_sites(doc) - fired_sites(without_epoch_start) == Counter({("epoch_start", "_loop"): 1})
    extra = source.replace("self._fire(Event.BATCH_START)", "self._fire(Event.BATCH_START); self._fire(Event.FIT_END)", 1)
    assert fired_sites(extra) - documented_sites(doc) == Counter({("fit_end", "_train_epoch"): 1})
