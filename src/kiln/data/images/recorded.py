"""The splits a run was trained with, recorded in its directory, and every later build of that
run's data read from the record instead of carved from the folder again.

Why: a carve is a function of the files in the folder. Left to carve again, ``kiln eval RUN``
would measure a run on whatever the folder holds that day: a different test set once images are
added, removed or edited, and one that can hold images the run trained on (a leak, reported as a
test score). A resume would continue on another training split, so it would no longer be the run
it continues. So a new run writes what it resolved (``write_splits``: ``<run>/data_splits.csv``),
and eval, export's parity samples and a resume, on every rank, build from it (``recorded_files``).

The file is a CSV, header ``path,label,split,sha256``, one row per image, train then val then
test, each split in the order its dataset has it (a resume's sampler permutes indices into that
order, so the order is part of the record). ``path`` is relative to the data root (``data.path``,
or the folder of ``data.manifest``), with ``/`` separators, so the data may move (``kiln eval RUN
data.path=/elsewhere``); a manifest row naming a file by an absolute path keeps it. The columns
are a manifest's, so the file copied into the data root is also a ``data.manifest`` with these
exact splits.

A build from the record:

- reads and hashes every recorded file, with a pool of threads, but decodes none: a file whose
  bytes are those the scan decoded at training decodes again. That is cheaper than the scan it
  replaces, and catches a replaced or edited file, which an existence check would not;
- stops on a recorded file that is missing, unreadable or changed (ScanError, exit 2), naming
  how many and the first few, since no build can give that run's data back without them;
- ignores files the folder holds that the record does not (added since, or left out by the
  scan at training), saying so in one log line with their count;
- takes no part of the carve: the split fractions and the seed made the record and no longer
  matter, and the scan's leak check ran when the record was made.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from kiln._files import write_text
from kiln.data.images.scan import (
    MAX_THREADS,
    SPLITS,
    ImageFile,
    Issue,
    Layout,
    ScanError,
    data_root,
    listed_images,
)
from kiln.data.spec import DataBundle
from kiln.errors import DataError, KilnError

if TYPE_CHECKING:
    from kiln.config.image_options import ImageFolderOptions

log = logging.getLogger("kiln")

COLUMNS = ("path", "label", "split", "sha256")
SHOWN = 5  # problems named in an error; the rest are counted
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RecordedFile:
    """One row of the record: the file (relative to the data root), its class, its split and the
    sha256 of its bytes when the run started."""

    path: str
    label: str
    split: str
    sha256: str


@dataclass
class ImageFolderBundle(DataBundle):
    """A DataBundle that carries the files of its splits, so the run can record them."""

    record: tuple[RecordedFile, ...] = ()

    def content_digest(self) -> str | None:
        """sha256 of what training reads, from what the build already knows, no file read:
        every split's files in dataset order (path relative to the data root, label, split,
        sha256 of the bytes), the class names, the preprocessing, the decoders' versions and the
        augmentation steps.
        The run seed is left out: it changes no file, and a carve it moves is in the rows.

        None when the bundle cannot vouch for that (no record; datasets or augmentation that
        are not the build's own): ``kiln.data.fingerprint`` then samples items instead.
        """
        from kiln.data.images.augment import Augment
        from kiln.data.images.dataset import ImageFolderDataset

        train = self.train
        if not self.record or not isinstance(train, ImageFolderDataset):
            return None
        if train.augment is not None and not isinstance(train.augment, Augment):
            return None
        from kiln.data.images.dataset import pixel_key

        steps = [step.model_dump(mode="json") for step in train.augment.steps] if train.augment else []
        digest = hashlib.sha256()
        # pixel_key: the resize settings and the decoders' versions, which change the pixels too
        head = {"classes": list(self.spec.class_names), "preprocess": train.preprocess.to_dict(), "augment": steps,
                "pixels": pixel_key(train.preprocess)}
        digest.update(json.dumps(head, sort_keys=True).encode() + b"\n")
        for row in self.record:  # one JSON line each: no separator inside a name can shift a field
            digest.update(json.dumps([row.path, row.label, row.split, row.sha256]).encode() + b"\n")
        return digest.hexdigest()


def record_rows(splits: dict[str, list[ImageFile] | None], root: Path) -> tuple[RecordedFile, ...]:
    """The rows of ``splits`` (each split's files in dataset order), paths relative to ``root``."""
    rows = []
    for split in SPLITS:
        for f in splits.get(split) or []:
            try:
                name = PurePath(f.path).relative_to(root).as_posix()
            except ValueError:  # a manifest row outside the manifest's folder: named as it was
                name = str(f.path)
            rows.append(RecordedFile(name, f.class_name, split, f.sha256))
    return tuple(rows)


def write_splits(bundle: DataBundle, path: Path) -> bool:
    """Write ``bundle``'s record to ``path`` (atomically) if it carries one; whether it did."""
    if not isinstance(bundle, ImageFolderBundle) or not bundle.record:
        return False
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows((r.path, r.label, r.split, r.sha256) for r in bundle.record)
    write_text(path, out.getvalue())
    return True


def read_splits(path: Path) -> list[RecordedFile]:
    """The rows of the record ``path``; DataError naming what is wrong when it is not one."""
    fix = "restore it from a copy of the run directory, or train a new run (kiln train)"
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path} is not a record of a run's splits: it has no column "
                                f"{', '.join(missing)} (expected {','.join(COLUMNS)})", hint=fix)
            rows = [(RecordedFile(*(row.get(c) or "" for c in COLUMNS)), reader.line_num) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read the run's recorded splits {path}: {exc}", hint=fix) from None
    problems = [f"line {line}: {why}" for row, line in rows if (why := _row_problem(row))]
    if not any(row.split == "train" for row, _ in rows):
        problems.append("no row of the train split")
    if problems:
        more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise DataError(f"{path} is damaged ({len(problems)} problems):\n"
                        + "\n".join(f"  - {p}" for p in problems[:SHOWN]) + more, hint=fix)
    return [row for row, _ in rows]


def _row_problem(row: RecordedFile) -> str | None:
    if not row.path or not row.label:
        return f"no {'path' if not row.path else 'label'}"
    if row.split not in SPLITS:
        return f"split {row.split!r}; allowed: {', '.join(SPLITS)}"
    if not _SHA256.fullmatch(row.sha256):
        return f"sha256 {row.sha256!r} is not 64 hex digits"
    return None


def recorded_files(options: ImageFolderOptions, record: Path) -> tuple[Layout, list[ImageFile]]:
    """The layout and the files of ``record`` under the data root of ``options``, each checked
    against its recorded sha256. ScanError when any is missing or changed; files the folder
    holds beyond the record are counted in a log line and left out."""
    root = data_root(options)
    rows = read_splits(record)
    paths = [root / row.path for row in rows]  # an absolute recorded path stays itself
    threads = min(MAX_THREADS, os.cpu_count() or 1, len(paths))
    with ThreadPoolExecutor(threads) as pool:
        found = list(pool.map(_sha256, paths))
    issues = [Issue(row.path, why) for row, (digest, problem) in zip(rows, found, strict=True)
              if (why := problem or _changed(row.sha256, digest))]
    if issues:
        raise _changed_error(issues, len(rows), root, record)
    layout = _note_unrecorded(options, root, paths)
    return layout, [ImageFile(p, r.label, r.split, r.sha256) for p, r in zip(paths, rows, strict=True)]


def _sha256(path: Path) -> tuple[str, str | None]:
    """(sha256 of the bytes, None), or ("", why the file cannot be read)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return "", "missing"
    except OSError as exc:
        return "", f"cannot be read: {exc.strerror or exc}"
    return digest.hexdigest(), None


def _changed(recorded: str, now: str) -> str | None:
    if recorded == now:
        return None
    return f"changed since the run started (sha256 {recorded[:12]}... then, {now[:12]}... now)"


def _changed_error(issues: Sequence[Issue], total: int, root: Path, record: Path) -> ScanError:
    shown = "\n".join(f"  - {i}" for i in issues[:SHOWN])
    more = f"\n  ... and {len(issues) - SHOWN} more" if len(issues) > SHOWN else ""
    if len(issues) == total and all(i.reason == "missing" for i in issues):  # other data, or a wrong path
        return ScanError(
            f"none of the {total} image files this run's splits are made of (recorded in {record}) is "
            f"under {root}: is it the folder the run was trained on?\n{shown}{more}",
            issues,
            hint="point data.path (or data.manifest) at the run's own images; a run is evaluated and resumed "
                 "on the splits it recorded, so other images need a new run (kiln train)",
        )
    return ScanError(
        f"{len(issues)} of the {total} image files this run's splits are made of (recorded in "
        f"{record}) are missing or changed under {root}:\n{shown}{more}",
        issues,
        hint=f"restore these files ({record.name} lists every file with its sha256; data.path or "
             "data.manifest may point at a copy elsewhere), or train a new run to use the folder as it "
             "is now (kiln train)",
    )


def _note_unrecorded(options: ImageFolderOptions, root: Path, recorded: list[Path]) -> Layout:
    """Log how many listed images are not in the record; the layout listed ("manifest" or
    "class_folders" when the listing fails: every recorded file is there, so it is only a
    report's word)."""
    try:
        layout, listed = listed_images(options)
    except KilnError as exc:  # e.g. the manifest is gone but the files it named are all there
        log.info("image_folder: the run's recorded splits are used; %s cannot be listed (%s)", root, exc)
        return "manifest" if options.manifest is not None else "class_folders"
    known = {os.path.normpath(p) for p in recorded}
    extra = sum(1 for p in listed if os.path.normpath(p) not in known)
    if extra:
        log.warning("image_folder: %d image file(s) under %s are not in the run's recorded splits (added since "
                 "the run started, or left out by its scan): ignored", extra, root)
    return layout
