"""Crash-safe file writes: write a temp file beside the target, fsync it, rename it over the target, fsync the folder.

A reader (or a restart after a crash or power loss) sees the old file or the new one, never half of one. The temp
file is named ``.<target name>.<random>.tmp`` in the target's folder (a rename is atomic only within one file
system); one left behind by a killed process is recognisable by that pattern (``KnowledgeBase`` removes them).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename inside it) to disk; a no-op where folders can't be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(
    path: Path | str, mode: str = "wb", encoding: str | None = None, *, fsync: bool = True
) -> Iterator[IO[Any]]:
    """Open a temp file beside ``path`` for writing (``mode`` ``"wb"`` or ``"w"``); when the block ends normally it
    is flushed, fsynced and renamed over ``path``, and the folder is fsynced. When the block raises, the temp file
    is removed and ``path`` is untouched. For streamed writes (joining model parts); see also ``atomic_write``.

    ``fsync=False`` keeps the rename (never half a file) but skips both fsyncs: for a copy that the commit point
    written after it (the index manifest) does not depend on being on disk yet."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file writes a whole new file: mode must be 'wb' or 'w', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding if mode == "w" else None) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write(path: Path | str, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (``str`` is written as UTF-8) atomically and durably."""
    if isinstance(data, str):
        with atomic_file(path, "w", encoding="utf-8") as fh:
            fh.write(data)
    else:
        with atomic_file(path, "wb") as fh:
            fh.write(data)


def atomic_copy(src: Path | str, dest: Path | str, *, fsync: bool = True) -> None:
    """Copy ``src`` to ``dest`` atomically and (with ``fsync``) durably; streamed, so any size."""
    with open(src, "rb") as inp, atomic_file(dest, "wb", fsync=fsync) as out:
        shutil.copyfileobj(inp, out)
