"""The scan of an image dataset before training: every file, its class and given split, and every
problem, so that a bad file stops the run before its first step instead of crashing an epoch.

What the scan finds, and what each finding does (``data.image.on_error``):

- **bad files**, left out under ``skip``, a stop under ``stop`` (the default): unreadable,
  truncated, zero-byte and corrupt images, files whose extension is not an image's, and manifest
  rows that name no file or no label;
- **leaks**, treated as bad files: a file with the same content (sha256 of its bytes) as one in an
  earlier split (train < val < test). ``skip`` drops the later copy, so the held-out split keeps
  no image that training saw. Where splits are carved, any two copies could land in different
  splits, so every copy but the first is one; so is a copy filed under another class;
- **dataset problems**, a stop under both settings, since leaving files out cannot fix them: an
  empty class folder, a single class, a class with no usable training image, a folder beside
  ``train/`` that is not ``val/`` or ``test/``, a manifest without its columns;
- **ignored files**, listed, never a problem: hidden files and folders (``.DS_Store``, ``._x``,
  ``.git``), ``Thumbs.db``, ``desktop.ini`` and ``__MACOSX``, what operating systems leave behind.

Cost: every image is read and fully decoded (``open_image``, the same decode training uses);
nothing cheaper catches a truncated JPEG, whose header reads fine. The bytes read for decoding are
also hashed, for the leak check. That is about one epoch's decoding, spread over a pool of
threads (Pillow and hashlib release the GIL while they work), but paid once per file, not per
run: each file's verdict (its sha256, or why it is bad) is kept on disk (``kiln.data.images.
scan_cache``, under ``$XDG_CACHE_HOME/kiln/scans``) and reused while ``os.stat`` shows the file
unchanged, so a scan of an unchanged folder reads no image, only stats every file. A file
changed, added or written in the last two seconds is read again; deleting that folder makes the
next scan read everything.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kiln.errors import ConfigError, DataError, PathError, exception_line

if TYPE_CHECKING:
    from kiln.config.image_options import ImageFolderOptions

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
OS_FILES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini"})  # compared in lower case
OS_FOLDERS = frozenset({"__macosx", "$recycle.bin", "system volume information"})
SPLITS = ("train", "val", "test")  # in this order: a copy in a later split is the leak
# Split folder names as people spell them (any case): Train/, valid/, validation/, testing/ ...
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "test": "test", "testing": "test"}
MAX_THREADS = 8
CANNOT_READ = "cannot read the file"  # a verdict the scan cache does not keep (it can pass unchanged)
STAT_CHUNK = 512  # files stat'ed per task of the pool: one task per stat would cost more than the stat

log = logging.getLogger("kiln")

Layout = Literal["class_folders", "split_folders", "manifest"]


class ScanError(DataError):
    """The scan found problems that stop training. Exit 2: the data on disk must change (or
    ``data.image.on_error: skip`` be set) before a run can start, as with a config error."""

    exit_code = 2

    def __init__(self, message: str, issues: Sequence[Issue] = (), hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.issues = list(issues)


@dataclass(frozen=True)
class Issue:
    """One finding: the file (or folder, or manifest row) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class ImageFile:
    """A readable image: its class, the split its layout gives it (None: to be carved), and the
    sha256 of its bytes."""

    path: Path
    class_name: str
    split: str | None = None
    sha256: str = ""


@dataclass
class ScanResult:
    """What the scan found. ``files`` are the usable images (bad files and leaked copies left
    out); ``stopping(on_error)`` is what would stop training."""

    layout: Layout
    source: Path
    class_names: tuple[str, ...]
    files: list[ImageFile]
    splits_given: bool
    bad: list[Issue] = field(default_factory=list)
    fatal: list[Issue] = field(default_factory=list)
    ignored: list[Issue] = field(default_factory=list)
    scanned: int = 0  # files checked: read and decoded, or unchanged since a scan cached them
    reused: int = 0  # of those, the files unchanged since a cached scan (none read)

    def stopping(self, on_error: str) -> list[Issue]:
        """The problems that stop a run under ``on_error`` (stop: all; skip: the dataset's)."""
        return [*self.fatal, *(self.bad if on_error == "stop" else [])]

    def check(self, on_error: str) -> None:
        """Raise ScanError listing every problem that stops a run under ``on_error``."""
        issues = self.stopping(on_error)
        if not issues:
            return
        if self.fatal:
            hint = "fix these in the data; data.image.on_error=skip leaves bad files out but cannot fix " \
                   "an empty or single class or a split without images"
        else:
            hint = "fix or remove these files, or set data.image.on_error=skip to train without them " \
                   "(the run lists them in data_report.json)"
        raise ScanError(problem_list(self.source, issues), issues, hint=hint)


def problem_list(source: Path, issues: Sequence[Issue]) -> str:
    """``source: N problems found before training:`` then one ``  - path: reason`` line each."""
    noun = "problem" if len(issues) == 1 else "problems"
    return f"{source}: {len(issues)} {noun} found before training:\n" + "\n".join(f"  - {i}" for i in issues)


def scan(options: ImageFolderOptions) -> ScanResult:
    """List, read and check every file of ``options`` (``data.path`` or ``data.manifest``)."""
    listing = _listing(options)
    channels = options.image.channels or 3
    files, reused = _read_all(listing.source, listing.candidates, channels, listing.bad)
    files = _leaks(files, listing.splits_given, listing.bad)
    classes = sorted({*listing.classes, *(f.class_name for f in files)})
    listing.fatal.extend(_dataset_problems(listing, classes, files))
    return ScanResult(
        layout=listing.layout, source=listing.source, class_names=tuple(classes), files=files,
        splits_given=listing.splits_given, bad=sorted(listing.bad, key=lambda i: i.path), fatal=listing.fatal,
        ignored=listing.ignored, scanned=len(listing.candidates), reused=reused,
    )


def data_root(options: ImageFolderOptions) -> Path:
    """The folder the files of ``options`` are named relative to: ``data.path``, or the folder of
    ``data.manifest`` (its rows' paths are relative to it). ConfigError when neither or both are set."""
    if options.manifest is not None and options.path is not None:
        raise ConfigError(
            "data.path and data.manifest are both set; the manifest's paths are relative to its "
            "own folder", field="data.manifest", hint="set one of them")
    if options.manifest is not None:
        return options.manifest.parent
    if options.path is not None:
        return options.path
    raise ConfigError("dataset image_folder needs your images", field="data.path",
                      hint="set data.path=<folder> (one subfolder per class) or "
                           "data.manifest=<file.csv> (columns path,label)")


def listed_images(options: ImageFolderOptions) -> tuple[Layout, list[Path]]:
    """The layout of ``options`` and the image files it lists now, none of them read: what a build
    from a run's recorded splits compares with the record (the files added since)."""
    listing = _listing(options)
    return listing.layout, [f.path for f in listing.candidates]


def _listing(options: ImageFolderOptions) -> _Listing:
    data_root(options)  # neither or both of data.path and data.manifest: a ConfigError
    if options.manifest is not None:
        return _list_manifest(options.manifest)
    assert options.path is not None
    return _list_folder(options.path)


@dataclass
class _Listing:
    layout: Layout
    source: Path
    splits_given: bool
    candidates: list[ImageFile] = field(default_factory=list)
    classes: set[str] = field(default_factory=set)
    bad: list[Issue] = field(default_factory=list)
    fatal: list[Issue] = field(default_factory=list)
    ignored: list[Issue] = field(default_factory=list)
    empty: set[str] = field(default_factory=set)  # classes with an empty folder (already reported)


def _list_folder(root: Path) -> _Listing:
    if not root.is_dir():
        what = "is a file" if root.exists() else "does not exist"
        raise PathError(f"data.path {root} {what}; image_folder needs a folder of images",
                        field="data.path", hint="ROOT/<class>/<file>, or ROOT/{train,val,test}/<class>/<file>")
    folders, loose = _entries(root)
    if "train" not in {SPLIT_FOLDERS.get(p.name.lower()) for p in folders}:
        listing = _Listing("class_folders", root, splits_given=False)
        _list_classes(root, None, listing)
        return listing
    listing = _Listing("split_folders", root, splits_given=True)
    _ignore_loose(loose, listing)
    seen: dict[str, Path] = {}
    for folder in folders:
        split = SPLIT_FOLDERS.get(folder.name.lower())
        if split is None:
            listing.fatal.append(Issue(str(folder), "a folder beside the train folder that is not a split: "
                                       "allowed: val (or valid, validation), test (rename it, or move it out of data.path)"))
        elif split in seen:
            listing.fatal.append(Issue(str(folder), f"a second {split} folder beside {seen[split].name}/: "
                                       "keep one (or merge them)"))
        else:
            seen[split] = folder
            _list_classes(folder, split, listing)
    return listing


def _list_classes(parent: Path, split: str | None, listing: _Listing) -> None:
    """The class folders of ``parent`` (ROOT, or one split's folder) into ``listing``."""
    folders, loose = _entries(parent)
    if not folders:
        images = [p for p in loose if p.suffix.lower() in IMAGE_SUFFIXES]
        listing.fatal.append(Issue(str(parent), f"no class folders (it holds {len(images)} images directly): "
                                   f"put each class's images in {parent}/<class>/"))
    _ignore_loose(loose, listing)
    for folder in folders:
        before = len(listing.candidates) + len(listing.bad)
        for path in _walk(folder, listing):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                listing.candidates.append(ImageFile(path, folder.name, split))
            else:
                listing.bad.append(Issue(str(path), f"not an image file (extension {path.suffix or 'none'!r}; "
                                         f"images are {', '.join(sorted(IMAGE_SUFFIXES))})"))
        listing.classes.add(folder.name)
        if len(listing.candidates) + len(listing.bad) == before:
            listing.fatal.append(Issue(str(folder), "empty class folder: no files but hidden ones"))
            listing.empty.add(folder.name)


def _entries(folder: Path) -> tuple[list[Path], list[Path]]:
    """(visible subfolders, every other entry) of ``folder``, sorted by name."""
    children = sorted(folder.iterdir(), key=lambda p: p.name)
    folders = [p for p in children if p.is_dir() and not _hidden(p)]
    return folders, [p for p in children if p not in folders]


def _ignore_loose(loose: Iterable[Path], listing: _Listing) -> None:
    for path in loose:
        reason = _hidden_reason(path) or "not inside a class folder"
        listing.ignored.append(Issue(str(path), reason))


def _walk(folder: Path, listing: _Listing) -> list[Path]:
    """Every visible file under ``folder`` (subfolders included, as torchvision's ImageFolder
    reads them), sorted; hidden files and folders go to ``listing.ignored``."""
    found: list[Path] = []
    for top, dirs, files in os.walk(folder, followlinks=True):
        base = Path(top)
        for name in sorted(dirs):
            if _hidden(base / name):
                listing.ignored.append(Issue(str(base / name), _hidden_reason(base / name) or ""))
        dirs[:] = sorted(d for d in dirs if not _hidden(base / d))
        for name in sorted(files):
            path = base / name
            if _hidden(path):
                listing.ignored.append(Issue(str(path), _hidden_reason(path) or ""))
            else:
                found.append(path)
    return sorted(found)


def _hidden(path: Path) -> bool:
    return _hidden_reason(path) is not None


def _hidden_reason(path: Path) -> str | None:
    name = path.name
    if name.startswith("."):
        return "hidden " + ("folder" if path.is_dir() else "file")
    if name.lower() in OS_FILES or name.lower() in OS_FOLDERS:
        return "operating system file" if path.is_file() else "operating system folder"
    return None


def _list_manifest(manifest: Path) -> _Listing:
    if not manifest.is_file():
        what = "is a folder" if manifest.exists() else "does not exist"
        raise PathError(f"data.manifest {manifest} {what}; it must be a CSV file with columns path,label",
                        field="data.manifest")
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as f:  # utf-8-sig: Excel's byte-order mark
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = [({k.strip(): (v or "").strip() for k, v in row.items() if k}, reader.line_num) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ScanError(f"cannot read the manifest {manifest}: {exc}") from None
    missing = [c for c in ("path", "label") if c not in columns]
    if missing:
        raise ScanError(f"the manifest {manifest} has no column {' or '.join(missing)}; its columns: "
                        f"{', '.join(columns) or '(none)'}", hint="the first row must name the columns: path,label[,split]")
    listing = _Listing("manifest", manifest, splits_given="split" in columns)
    base = manifest.parent
    for row, line in rows:
        where = f"{manifest}:{line}"
        path = base / row["path"] if row.get("path") else None
        label, split = row.get("label", ""), (row.get("split") or "").lower() or None
        if path is None or not label:
            listing.bad.append(Issue(where, f"row without a {'path' if path is None else 'label'}"))
            continue
        listing.classes.add(label)
        if listing.splits_given and split not in SPLITS:
            listing.bad.append(Issue(where, f"split {split or '(empty)'!r}; allowed: {', '.join(SPLITS)}"))
        elif not path.is_file():
            listing.bad.append(Issue(str(path), f"file not found (manifest line {line})"))
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            listing.bad.append(Issue(str(path), f"not an image file (extension {path.suffix or 'none'!r})"))
        else:
            listing.candidates.append(ImageFile(path, label, split))
    return listing


def _read_all(source: Path, candidates: list[ImageFile], channels: int,
              bad: list[Issue]) -> tuple[list[ImageFile], int]:
    """The candidates that decode, with their sha256 (the others go to ``bad``), and how many
    verdicts came from the scan cache: every file is stat'ed, and read only when its stat is not
    the cached one."""
    if not candidates:
        return [], 0
    from kiln.data.images.scan_cache import ScanCache, stat_of

    cache = ScanCache.load(source, channels)
    started = time.time_ns()  # before any stat: the settle rule compares file times with it
    threads = min(MAX_THREADS, os.cpu_count() or 1, len(candidates))
    paths = [f.path for f in candidates]
    with ThreadPoolExecutor(threads) as pool:
        chunks = [paths[i:i + STAT_CHUNK] for i in range(0, len(paths), STAT_CHUNK)]
        stats = [s for chunk in pool.map(lambda c: [stat_of(p) for p in c], chunks) for s in chunk]
        names = [cache.name(p) for p in paths]
        results: list[tuple[str, str | None] | None] = [cache.get(n, st) for n, st in zip(names, stats, strict=True)]
        missed = [i for i, verdict in enumerate(results) if verdict is None]
        for i, verdict in zip(missed, pool.map(lambda i: _read(paths[i], channels), missed), strict=True):
            results[i] = verdict
    verdicts = [v for v in results if v is not None]
    reused = len(candidates) - len(missed)
    cache.save([(name, stat, verdict, not (verdict[1] or "").startswith(CANNOT_READ))
                for name, stat, verdict in zip(names, stats, verdicts, strict=True)], started)
    if reused:
        log.info("image_folder: %d of %d files unchanged since an earlier scan (verdicts kept in %s); %d read "
                 "and decoded", reused, len(candidates), cache.file, len(missed))
    good = []
    for image, (digest, problem) in zip(candidates, verdicts, strict=True):
        if problem is None:
            good.append(ImageFile(image.path, image.class_name, image.split, digest))
        else:
            bad.append(Issue(str(image.path), problem))
    return good, reused


def _read(path: Path, channels: int) -> tuple[str, str | None]:
    """(sha256 of the bytes, None) for an image that decodes, else ("", the reason)."""
    from kiln.data.images.decode import open_image

    try:
        data = path.read_bytes()
    except OSError as exc:
        return "", f"{CANNOT_READ}: {exc.strerror or exc}"
    if not data:
        return "", "empty file (0 bytes)"
    try:
        open_image(data, channels)
    except ValueError as exc:
        return "", str(exc)
    except MemoryError:  # this machine's state, not the file's: never kept by the scan cache
        return "", f"{CANNOT_READ}: out of memory while decoding it"
    except Exception as exc:  # a damaged file can trip anything inside a Pillow plugin
        return "", f"unreadable image: {exception_line(exc)}"
    return hashlib.sha256(data).hexdigest(), None


def _leaks(files: list[ImageFile], splits_given: bool, bad: list[Issue]) -> list[ImageFile]:
    """``files`` without the copies that would leak (see the module docstring), which go to ``bad``."""
    order = {name: i for i, name in enumerate(SPLITS)}
    ranked = sorted(files, key=lambda f: (order.get(f.split or "train", 0), str(f.path)))
    first: dict[str, ImageFile] = {}
    leaked: set[int] = set()  # id() of the copies: one path may be listed twice
    for image in ranked:
        seen = first.setdefault(image.sha256, image)
        if seen is image:
            continue
        if seen.path == image.path:
            reason = "listed more than once in the manifest"
        elif seen.class_name != image.class_name:
            reason = f"same content as {seen.path}, which is labelled {seen.class_name!r}"
        elif not splits_given:
            reason = f"same content as {seen.path}: the copies could be carved into different splits (a leak)"
        elif seen.split != image.split:
            reason = f"same content as {seen.path} in {seen.split}: a leak of {seen.split} images into {image.split}"
        else:
            continue  # a copy within one given split: weighted twice, but no leak
        bad.append(Issue(str(image.path), reason))
        leaked.add(id(image))
    return [f for f in files if id(f) not in leaked]


def _dataset_problems(listing: _Listing, classes: list[str], files: list[ImageFile]) -> list[Issue]:
    source = str(listing.source)
    if not classes:
        return [] if listing.fatal else [Issue(source, "no images found")]
    problems = []
    if len(classes) == 1:
        problems.append(Issue(source, f"only one class ({classes[0]!r}); classification needs at least two: "
                                      "put each class's images in its own folder"))
    training = {f.class_name for f in files if f.split in (None, "train")}
    for name in classes:
        if name not in training and name not in listing.empty:
            where = "training images" if listing.splits_given else "images"
            problems.append(Issue(source, f"class {name!r} has no usable {where}"))
    return problems


def report_entries(issues: Iterable[Issue]) -> list[dict[str, Any]]:
    """``issues`` as the report's JSON: ``[{"path": ..., "reason": ...}]``."""
    return [i.to_dict() for i in issues]
