"""kiln's layers (DESIGN.md section 2): the import-linter contract in pyproject.toml holds, and
``kiln.distributed`` really is process-group primitives that load nothing else of kiln."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What `import kiln` itself loads: the facade, its lazy-name helper and the version.
FACADE = {"kiln", "kiln._lazy", "kiln._version"}

LOADED = """
import importlib, json, pkgutil, sys
import kiln
facade = sorted(m for m in sys.modules if m == "kiln" or m.startswith("kiln."))
import kiln.distributed as d
for info in pkgutil.iter_modules(d.__path__):
    importlib.import_module(f"kiln.distributed.{info.name}")
for name in d.__all__:  # the lazy public names load their modules too
    getattr(d, name)
loaded = sorted(m for m in sys.modules if m == "kiln" or m.startswith("kiln."))
print(json.dumps({"facade": facade, "loaded": loaded}))
"""


def test_the_import_linter_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint_imports)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout, done.stdout


def test_kiln_distributed_loads_nothing_else_of_kiln() -> None:
    done = subprocess.run([sys.executable, "-c", LOADED], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["facade"]) <= FACADE, result["facade"]
    others = [m for m in result["loaded"]
              if m not in result["facade"] and m != "kiln.distributed" and not m.startswith("kiln.distributed.")]
    assert others == [], f"importing kiln.distributed loaded other kiln modules: {others}"
    assert "kiln.distributed.group" in result["loaded"]  # the walk really imported the package


def test_python_dash_m_kiln_imports_torch_only_for_verbs_that_need_it() -> None:
    """``python -m kiln`` (how the tests, torchrun and users run it) loaded torch before parsing its
    arguments, for kiln.distributed.worker: 2.5 s more than the ``kiln`` script for ``models``."""
    probe = ("import runpy, sys\nsys.argv = ['kiln', 'models']\ntry:\n    runpy.run_module('kiln', run_name='__main__')\n"
             "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
             "print('torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert "mlp" in done.stdout, done.stderr
    assert done.stderr.strip() == "False", done.stderr
