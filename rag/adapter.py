"""A fine-tuned query adapter beside the index: a low-rank residual map on the frozen embedder's query vectors.

``q' = normalise(q + B @ (A @ q))`` with ``A`` of shape ``(rank, dim)`` and ``B`` of shape ``(dim, rank)``. Only query
vectors change, so the stored passage vectors (and the index) stay as they are: deleting the adapter files restores
the plain embedder at once. Trained by ``python -m rag finetune`` (rag/finetune.py).

Files in the knowledge base folder, no pickle::

    adapter.npz    arrays A and B (float32), read with allow_pickle=False
    adapter.json   header: format, embedder name, dim, rank, sha256 of adapter.npz, training summary
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.errors import RagError
from rag.fsio import atomic_write

log = logging.getLogger(__name__)

FORMAT = 1
ARRAYS = "adapter.npz"
HEADER = "adapter.json"


class AdapterError(RagError):
    """The adapter beside the index is unreadable, corrupt or made for another embedder."""


@dataclass(frozen=True)
class Adapter:
    """Low-rank residual query adapter for one embedder (``name``, ``dim``)."""

    embedder: str
    a: np.ndarray  # (rank, dim)
    b: np.ndarray  # (dim, rank)
    info: dict = field(default_factory=dict)  # training summary, kept in the header

    @property
    def dim(self) -> int:
        return int(self.a.shape[1])

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Adapted, L2-normalised query vectors: shape ``(dim,)`` or ``(n, dim)`` in, the same shape out."""
        v = np.asarray(vectors, dtype=np.float32)
        flat = v.reshape(-1, self.dim)
        out = flat + (flat @ self.a.T) @ self.b.T
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.reshape(v.shape).astype(np.float32)

    @classmethod
    def identity(cls, embedder: str, dim: int, rank: int, seed: int = 0) -> Adapter:
        """A starting point that changes nothing (``B = 0``) with a small random ``A`` so gradients flow."""
        rng = np.random.default_rng(seed)
        a = (rng.standard_normal((rank, dim)) / np.sqrt(dim)).astype(np.float32)
        return cls(embedder, a, np.zeros((dim, rank), dtype=np.float32))


def adapter_paths(directory: Path) -> tuple[Path, Path]:
    return directory / ARRAYS, directory / HEADER


def save_adapter(adapter: Adapter, directory: Path) -> None:
    """Write the arrays, then the header holding their checksum (the header last: a crash leaves no valid pair)."""
    buf = io.BytesIO()
    np.savez(buf, A=adapter.a.astype(np.float32), B=adapter.b.astype(np.float32))
    data = buf.getvalue()
    header = {
        "format": FORMAT,
        "embedder": adapter.embedder,
        "dim": adapter.dim,
        "rank": adapter.rank,
        "sha256": hashlib.sha256(data).hexdigest(),
        "info": adapter.info,
    }
    arrays, head = adapter_paths(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(arrays, data)
    atomic_write(head, json.dumps(header, ensure_ascii=False, indent=1).encode("utf-8"))
    log.info("saved query adapter (rank %d) in %s", adapter.rank, directory)


def delete_adapter(directory: Path) -> bool:
    """Remove the adapter files; search uses the plain embedder again. Returns whether there was one."""
    existed = False
    for path in adapter_paths(directory):
        if path.exists():
            path.unlink()
            existed = True
    return existed


def load_adapter(directory: Path, embedder: str, dim: int) -> Adapter | None:
    """The adapter saved in ``directory`` for this embedder, or ``None`` when there is none.

    Raises ``AdapterError`` naming the problem when the files are unreadable, fail their checksum, hold bad arrays or
    were trained for another embedder."""
    arrays, head = adapter_paths(directory)
    if not head.exists() and not arrays.exists():
        return None
    try:
        header = json.loads(head.read_text(encoding="utf-8"))
        data = arrays.read_bytes()
    except (OSError, ValueError) as exc:
        raise AdapterError(f"query adapter in {directory} is unreadable ({exc}); delete {HEADER} and {ARRAYS}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise AdapterError(f"query adapter header {head} has an unknown format; delete it and retrain")
    if header.get("embedder") != embedder or header.get("dim") != dim:
        raise AdapterError(
            f"query adapter in {directory} was trained for {header.get('embedder')!r} (dim {header.get('dim')}), "
            f"the index uses {embedder!r} (dim {dim}); retrain it (python -m rag finetune)"
        )
    if hashlib.sha256(data).hexdigest() != header.get("sha256"):
        raise AdapterError(f"query adapter {arrays} does not match its checksum (corrupt or replaced); retrain it")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            a, b = np.array(npz["A"], dtype=np.float32), np.array(npz["B"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise AdapterError(f"query adapter {arrays} is unreadable ({exc}); retrain it") from exc
    rank = header.get("rank")
    if a.shape != (rank, dim) or b.shape != (dim, rank) or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise AdapterError(f"query adapter {arrays} holds arrays of the wrong shape or non-finite values; retrain it")
    return Adapter(embedder, a, b, header.get("info") or {})


class AdapterSlot:
    """The adapter of one knowledge base folder, reloaded when its header changes, dropped when it is deleted.

    A corrupt adapter is refused with a warning (once per change) and search goes on with the plain embedder."""

    def __init__(self, directory: Path | None, embedder: str, dim: int) -> None:
        self.directory = directory
        self.embedder, self.dim = embedder, dim
        self._stamp: tuple | None = None
        self._adapter: Adapter | None = None
        self.error: str | None = None

    def get(self) -> Adapter | None:
        if self.directory is None:
            return None
        arrays, head = adapter_paths(self.directory)
        stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) if p.exists() else None for p in (arrays, head))
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._adapter, self.error = load_adapter(self.directory, self.embedder, self.dim), None
            except AdapterError as exc:
                self._adapter, self.error = None, str(exc)
                log.warning("%s; searching without it", exc)
        return self._adapter
