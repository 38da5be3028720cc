"""``require_tool``: a test whose tool is missing skips on a developer's machine and fails under
CI=true, in the test body or in a fixture; other skips are left alone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.postgres import reachable

PROBE = textwrap.dedent('''
    import pytest
    from tests.conftest import require_tool

    @pytest.fixture
    def server():
        require_tool(False, "a frobnicator server: start one")

    def test_body():
        require_tool(False, "frobnicate: apt-get install frobnicate")

    def test_fixture(server):
        pass

    def test_skipped_for_another_reason():
        pytest.skip("this CPU cannot flush denormals")

    def test_present():
        require_tool(True, "a tool that is there")
''')


def run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": str(ROOT)}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("ci", [None, "false"])
def test_a_missing_tool_skips_outside_ci(tmp_path: Path, ci: str | None) -> None:
    result = run_probe(tmp_path, ci)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 3 skipped" in result.stdout
    skipped = sorted(line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("SKIPPED"))
    assert skipped == ["missing tool: a frobnicator server: start one",
                       "missing tool: frobnicate: apt-get install frobnicate",
                       "this CPU cannot flush denormals"]


def test_a_missing_tool_fails_under_ci(tmp_path: Path) -> None:
    result = run_probe(tmp_path, "true")
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed, 1 skipped, 1 error" in result.stdout
    assert "FAILED test_probe.py::test_body" in result.stdout
    assert "ERROR test_probe.py::test_fixture" in result.stdout
    assert "SKIPPED [1] test_probe.py:16: this CPU cannot flush denormals" in result.stdout
    assert "missing tool: a frobnicator server: start one\nCI=true" in result.stdout
    assert ("missing tool: frobnicate: apt-get install frobnicate\nCI=true: no test may skip for a "
            "missing tool; .ci/run installs and starts everything the suite needs") in result.stdout


def test_an_unreachable_postgresql_is_told_apart_from_one_that_answers() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: a connection is refused
        port = sock.getsockname()[1]
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        assert reachable(url) == f"127.0.0.1:{port}: [Errno 111] Connection refused"
        sock.listen()
        assert reachable(url) is None
