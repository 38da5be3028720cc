"""The verdicts of earlier scans, kept on disk, so a scan of an unchanged folder reads no image.

A verdict is what the scan learns by reading and decoding one file: the sha256 of its bytes, and
the reason it cannot be used (None when it decodes). It is reused while the file's ``os.stat``
matches the one taken before it was read: size, ``st_mtime_ns``, ``st_ctime_ns`` and ``st_ino``.
Any write to a file moves its ctime, which no user call can set back (``os.utime`` moves it
too), and a file replaced by another (a copy, a rename onto it) has a new inode, so a changed file
never matches (on Windows, where ``st_ctime`` is the creation time, the mtime every write moves
stands in). Bad files are kept as well: a truncated JPEG stays bad until it changes. Only a
file that could not be read at all (permissions, an I/O error on a network share) is not kept,
since that can pass without the file changing.

Two rules keep a verdict from outliving its file:

- the stat is taken **before** the file is read, so a write during the read leaves a stat that
  the next scan no longer matches (taken after, it would pair the new stat with the old bytes);
- a file whose ctime or mtime is within ``SETTLE_NS`` (2 s) of the scan's start, or after it, is
  not kept (git's "racily clean" entries): file times tick coarsely (a kernel tick; a second on
  some filesystems, two on FAT), so a second same-size write in the same tick could leave the
  stat as it was. (A file given a future mtime is read at every scan until that time passes.)

Where: ``$XDG_CACHE_HOME/kiln/scans/`` (else ``~/.cache/kiln/scans/``), beside the decoded-image
cache (``kiln.data.images.dataset.default_cache_dir``), one JSON file per scanned source (the
resolved folder, or the manifest) and per decoding: the channels decoded to, Pillow's version
and ``DECODE_RULES`` are in its name and checked in its header, since each can change a verdict.
Files are named in it by their path under the source folder, so the folder may be reached
through another working directory or a symlink. An entry does not hold ``st_dev``: overlay and
network mounts get a new device number at every mount, which would empty the cache of every
container start, while a file elsewhere with the same path, inode, size and both times to the
nanosecond is not a real risk.

Why JSON, not SQLite: a scan needs every entry (one per listed file), so the whole file is read
once and written at most once, and at 100,000 files (16 MB) ``json`` loads it in 0.15 s and
writes it in 0.2 s (one core of a shared 2-core machine), the order of the 100,000 ``os.stat``
calls the scan makes anyway; SQLite would save the rewrite after a change but adds per-row
lookups, journal files beside the cache, and file locking that network filesystems break. The file is rewritten only when something changed (entries of files no longer
listed are dropped then), through a temporary file of the process's own renamed into place:
concurrent scans each leave a whole file (the last rename wins; the other's new entries are read
again next time), and a crash leaves the previous file or none. A file that cannot be read or
parsed is ignored (a debug log line: the scan reads every file); one that cannot be written is one
warning, never a failure. Delete the folder to make the next scan read everything again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, TypeGuard

from kiln._files import write_text
from kiln.data.images.dataset import DECODE_RULES, default_cache_dir
from kiln.errors import ConfigError

log = logging.getLogger("kiln")

SCHEMA = 1  # the layout of the cache file: raise it when it changes
SETTLE_NS = 2_000_000_000  # a file changed this recently is read again next scan (see above)

Stat = tuple[int, int, int, int]  # st_size, st_mtime_ns, st_ctime_ns, st_ino
Verdict = tuple[str, str | None]  # (sha256 of the bytes, None), or ("", why the file is unusable)


def scans_dir() -> Path:
    """``$XDG_CACHE_HOME/kiln/scans``, else ``~/.cache/kiln/scans``."""
    return default_cache_dir().parent / "scans"


def stat_of(path: Path) -> Stat | None:
    """What identifies ``path``'s content without reading it (links followed), or None when it
    cannot be stat'ed (the read that follows says why)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@dataclass
class ScanCache:
    """The cached verdicts of one source, for one decoding.

    >>> cache = ScanCache.load(Path("photos"), channels=3)  # doctest: +SKIP
    >>> cache.get("cat/1.jpg", stat_of(Path("photos/cat/1.jpg")))  # doctest: +SKIP
    ('5f1c...', None)
    """

    file: Path | None  # None: there is no cache folder (nothing is loaded or kept)
    base: Path  # the folder files are named relative to
    header: dict[str, Any]
    entries: dict[str, Any]  # name -> [size, mtime_ns, ctime_ns, ino, sha256, problem], as loaded

    def __post_init__(self) -> None:
        self._prefix = "" if str(self.base) == "." else os.path.join(self.base, "")

    @classmethod
    def load(cls, source: Path, channels: int) -> ScanCache:
        """The cache of ``source`` (a folder, or a manifest whose folder names its files); empty
        when there is none yet, or the file cannot be read or is not one."""
        import PIL

        resolved = source.resolve()
        header = {"schema": SCHEMA, "source": str(resolved), "channels": channels,
                  "pillow": PIL.__version__, "decode_rules": DECODE_RULES}
        name = hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()[:32]
        base = source if source.is_dir() else source.parent
        try:
            file: Path | None = scans_dir() / f"{name}.json"
        except ConfigError as exc:  # no cache folder at all: scan without one, as if it were unwritable
            log.warning("image_folder: %s: every scan reads every file; %s", exc.message, exc.hint)
            file = None
        return cls(file, base, header, _read_entries(file, header) if file is not None else {})

    def name(self, path: Path) -> str:
        """``path`` as the cache names it: relative to the source folder (absolute outside it)."""
        text = str(path)
        # The listing builds paths as base / name: a prefix test is 20 times cheaper than
        # relative_to, which alone would cost half a second per 100,000 files.
        if text.startswith(self._prefix) and (self._prefix or not os.path.isabs(text)):
            rel = text[len(self._prefix):]
            return rel if os.sep == "/" else rel.replace(os.sep, "/")
        try:
            return PurePath(path).relative_to(self.base).as_posix()
        except ValueError:
            return os.path.abspath(path)

    def get(self, name: str, stat: Stat | None) -> Verdict | None:
        """The cached verdict of ``name`` if its stat is still ``stat``, else None (read it)."""
        entry = self.entries.get(name)
        if stat is None or not _valid(entry) or tuple(entry[:4]) != stat:
            return None
        return entry[4], entry[5]

    def save(self, seen: Sequence[tuple[str, Stat | None, Verdict, bool]], started_ns: int) -> None:
        """Keep the verdicts of this scan's files: ``(name, stat before the read, verdict,
        whether it may be kept)`` each; files changed since ``started_ns - SETTLE_NS`` are left
        out, as are files no longer listed. Written only when that changes the file."""
        settled = started_ns - SETTLE_NS
        entries = {name: [*stat, *verdict] for name, stat, verdict, keep in seen
                   if keep and stat is not None and max(stat[1], stat[2]) < settled}
        if entries == self.entries or self.file is None:
            return
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            write_text(self.file, json.dumps({**self.header, "files": entries}, separators=(",", ":")), concurrent=True)
        except OSError as exc:
            log.warning("image_folder: cannot write the scan cache %s (%s): the next scan reads every file "
                        "again; make the folder writable or set XDG_CACHE_HOME", self.file.parent,
                        exc.strerror or exc)
            return
        self.entries = entries


def _read_entries(file: Path, header: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(file.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # ValueError: not JSON, not UTF-8
        log.debug("image_folder: ignoring the scan cache %s (%s): every file is read", file, exc)
        return {}
    if not isinstance(data, dict) or any(data.get(k) != v for k, v in header.items()) \
            or not isinstance(data.get("files"), dict):
        log.debug("image_folder: ignoring the scan cache %s (not one of this decoding): every file is read", file)
        return {}
    files: dict[str, Any] = data["files"]
    return files


def _valid(entry: Any) -> TypeGuard[list[Any]]:
    """Whether ``entry`` has the shape ``save`` writes (anything else is a miss, read again)."""
    return (isinstance(entry, list) and len(entry) == 6 and all(type(v) is int for v in entry[:4])
            and isinstance(entry[4], str) and (entry[5] is None or isinstance(entry[5], str))
            and (entry[5] is None) == bool(entry[4]))
