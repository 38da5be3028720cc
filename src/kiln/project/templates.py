"""The project templates of ``kiln init``: a config, a sample-data script and a sanity bound each.

Each template's config is a YAML file beside this module (package data), formatted with the
project's name. ``get_data`` is the body of ``scripts/get_data.py`` for templates whose data is a
file (the digits are bundled with scikit-learn): it writes sample data where the config reads it,
so the project trains the moment it is created; users replace it with their own download.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    get_data: str | None  # scripts/get_data.py, or None when the data ships with a library
    sanity: str  # the criterion tests/test_model.py checks on a one-epoch model (well below the gate)

    def config_text(self, project: str) -> str:
        text = resources.files("kiln.project").joinpath("templates").joinpath(f"{self.name}.yaml").read_text("utf-8")
        return text.format(name=project)


_CSV_DATA = '''"""Write the sample table to data/train.csv: scikit-learn's breast-cancer data (569 rows).
Replace this with the download of your own data; kiln.yaml reads data/train.csv."""

from pathlib import Path

from sklearn.datasets import load_breast_cancer

target = Path("data/train.csv")
target.parent.mkdir(parents=True, exist_ok=True)
frame = load_breast_cancer(as_frame=True).frame
frame["target"] = frame["target"].map({0: "malignant", 1: "benign"})
frame.to_csv(target, index=False)
print(f"wrote {len(frame)} rows to {target}")
'''

_IMAGES_DATA = '''"""Write sample images to data/images/<class>/: photos of digits made from scikit-learn's
digits (PNG and JPEG). Replace this with the download of your own images; kiln.yaml reads
data/images."""

from kiln.testing.images import write_digits_folder

folder = write_digits_folder("data/images", classes=4, per_class=60, size=32, formats=("png", "jpg"))
print(f"wrote sample images to {folder}")
'''

_TEXT_DATA = '''"""Write a sample corpus to data/input.txt: the documentation of Python's standard library
modules (English prose, a few hundred KB). Replace this with your own text; kiln.yaml reads
data/input.txt."""

import importlib
import inspect
import sys
from pathlib import Path

parts = []
for module in sorted(m for m in sys.stdlib_module_names if not m.startswith("_")):
    if module in {"antigravity", "this", "idlelib", "turtledemo", "tkinter", "turtle"}:
        continue  # these open windows or print when imported
    try:
        doc = inspect.getdoc(importlib.import_module(module))
    except Exception:
        continue
    if doc:
        parts.append(doc)
    if sum(map(len, parts)) > 300_000:
        break
target = Path("data/input.txt")
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text("\\n\\n".join(parts), encoding="utf-8")
print(f"wrote {target.stat().st_size:,} bytes to {target}")
'''

TEMPLATES = {
    t.name: t
    for t in (
        Template("digits", "scikit-learn's 8x8 digits and an MLP (no data to fetch)", None, "test_accuracy>=0.5"),
        Template("csv", "a CSV table (sample: breast cancer) and an MLP", _CSV_DATA, "test_accuracy>=0.5"),
        Template("images", "a folder of images per class (sample: digit photos) and a small CNN", _IMAGES_DATA,
                 "test_accuracy>=0.2"),
        Template("text", "a text file and a character-level transformer", _TEXT_DATA, "test_loss<6"),
    )
}
