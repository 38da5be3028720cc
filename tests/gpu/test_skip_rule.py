"""The gpu skip stays an exception: the ``gpu`` marker is used in tests/gpu/ only, and every test
module there (but this one) marks all its tests with it."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
MARK = re.compile(r"mark\.gpu\b")


def test_the_gpu_marker_is_used_in_tests_gpu_only() -> None:
    outside = [p.relative_to(TESTS) for p in TESTS.rglob("*.py")
               if p.parent != HERE and MARK.search(p.read_text(encoding="utf-8"))]
    assert outside == []


def test_every_test_module_in_tests_gpu_is_marked_gpu() -> None:
    modules = [p for p in HERE.glob("test_*.py") if p.name != Path(__file__).name]
    assert modules, "tests/gpu has no GPU test module"
    unmarked = [p.name for p in modules if "pytestmark = pytest.mark.gpu" not in p.read_text(encoding="utf-8")]
    assert unmarked == []
