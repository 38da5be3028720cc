"""kiln itself in the serving image: a wheel of the kiln installed here, built into the context.

The image installs it with ``pip install --no-deps``: kiln's declared dependencies still include
torch and MLflow (an extra can only add requirements, never remove them), so the serving
requirements come from ``requirements.txt`` alone. A wheel of this very kiln keeps the image
honest for a development checkout too, where no released version holds the code being packaged.

Where kiln was installed from a source directory (``pip install -e .`` or ``pip install .``), the
wheel is built from a copy of that source (so nothing is written into the checkout); where it came
from a package index, the image installs the same release from the index instead (``wheel`` None).
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from kiln.errors import KilnError

DIST = "kiln-ml"
# what setuptools needs to build the wheel: the project file, the readme it names, the package
_SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "setup.py", "MANIFEST.in")


@dataclass(frozen=True)
class KilnInstall:
    """How the image gets kiln: a wheel file in the context, or a pinned release from the index."""

    version: str
    wheel: str | None  # path relative to the context (wheels/kiln_ml-...whl); None: from the index

    @property
    def pip_target(self) -> str:
        return self.wheel or f"{DIST}=={self.version}"


def source_dir() -> Path | None:
    """The source directory kiln was installed from (editable or not), or None (an index install)."""
    try:
        text = importlib.metadata.distribution(DIST).read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    info = json.loads(text)
    url = urlparse(str(info.get("url", "")))
    if "dir_info" not in info or url.scheme != "file":
        return None
    path = Path(unquote(url.path))
    return path if (path / "pyproject.toml").is_file() else None


def kiln_install(context: Path) -> KilnInstall:
    """Put kiln into ``context`` as a wheel when it was installed from source; else pin its release."""
    version = importlib.metadata.version(DIST)
    source = source_dir()
    if source is None:
        return KilnInstall(version, None)
    wheels = context / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    return KilnInstall(version, f"wheels/{build_wheel(source, wheels).name}")


def build_wheel(source: Path, into: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of ``source`` (the checkout stays untouched: setuptools
    writes build/ and *.egg-info where it builds). Without build isolation: the setuptools
    installed here builds it, so no package index is needed."""
    with tempfile.TemporaryDirectory(prefix="kiln-wheel-") as tmp:
        copy = Path(tmp) / "src"
        copy.mkdir()
        for name in _SOURCE_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, copy / name)
        shutil.copytree(source / "src", copy / "src",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                   "--quiet", "--wheel-dir", str(into), str(copy)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise KilnError(
            f"building a wheel of kiln from {source} failed: {(result.stderr or result.stdout).strip()[-800:]}",
            hint="pip install setuptools (the build backend kiln's pyproject.toml names), then run "
                 "kiln package again",
        )
    found = sorted(into.glob("kiln_ml-*.whl"))
    if not found:
        raise KilnError(f"pip wheel left no kiln_ml wheel in {into}")
    return found[-1]
