"""``kiln init``: write a ready project (config, CI workflow, tests, deploy manifest) into a folder.

It never overwrites a file unless asked (``force``): every file it would write is checked first,
so a refusal leaves the folder exactly as it was.
"""

from __future__ import annotations

import re
from pathlib import Path

from kiln.errors import UsageError
from kiln.project.files import GITIGNORE, KUBERNETES, README, requirements, test_model
from kiln.project.templates import TEMPLATES
from kiln.project.workflow import workflow_text

# What one epoch of each template's test run overrides (text models count steps, not epochs).
_SHORT = {"text": '"training.max_steps=20", "training.eval_every_n_steps=20"'}


def project_name(directory: Path) -> str:
    """A name for the run and the registered model: the folder's, in lowercase letters, digits,
    ``-`` and ``_``."""
    name = re.sub(r"[^a-z0-9_-]+", "-", directory.resolve().name.lower()).strip("-_")
    return name or "model"


def project_files(directory: Path, template: str) -> dict[str, str]:
    """Relative path -> content of every file of a project of ``template`` in ``directory``."""
    if template not in TEMPLATES:
        raise UsageError(f"unknown template {template!r}", allowed=", ".join(TEMPLATES))
    chosen = TEMPLATES[template]
    name = project_name(directory)
    get_data = "$ python scripts/get_data.py               # sample data: replace with yours\n" if chosen.get_data else ""
    files = {
        "kiln.yaml": chosen.config_text(name),
        ".github/workflows/kiln.yml": workflow_text(name, chosen.get_data is not None),
        ".gitignore": GITIGNORE,
        "requirements.txt": requirements(),
        "tests/test_model.py": test_model(chosen.sanity, _SHORT.get(template, '"training.epochs=1"')),
        "README.md": README.format(name=name, description=chosen.description, template=template, get_data=get_data),
        "deploy/kubernetes.yaml": KUBERNETES.format(name=name),
    }
    if chosen.get_data:
        files["scripts/get_data.py"] = chosen.get_data
    return files


def init_project(directory: Path, template: str = "digits", force: bool = False) -> list[Path]:
    """Write the project; the paths written. UsageError naming the files that exist, without
    ``force``, before anything is written."""
    files = project_files(directory, template)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} is a file; kiln init writes a project into a folder")
    existing = [relative for relative in files if (directory / relative).exists()]
    if existing and not force:
        raise UsageError(f"{directory} already has {', '.join(existing)}: kiln init overwrites nothing "
                         "unless --force")
    written = []
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written
