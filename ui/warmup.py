"""Loading the models at start-up, in the background, with a status the page and a waiting question can show.

On a cold start the bundled 1.1 GB language model is assembled from its parts, verified and loaded: about 50 s on
2 cores. Without this the first question waited that long behind "Searching the documents…".
"""

from __future__ import annotations

import logging
import threading

from rag.assistant import Assistant
from rag.errors import RagError
from ui.i18n import t

log = logging.getLogger(__name__)


def _size(n_bytes: int | None) -> str:
    if not n_bytes:
        return ""
    if n_bytes >= 1e9:
        return f"{n_bytes / 1e9:.1f} GB"
    return f"{n_bytes / 1e6:.0f} MB"


class Warmup:
    """Runs ``Assistant.warm_up`` once in a daemon thread; ``ready`` is set when it has finished (or failed: the
    first question then meets the same error as a message)."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.ready = threading.Event()
        self.stage: str | None = None  # embedder, router or llm while running
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Warmup:
        self._thread = threading.Thread(target=self._run, name="warm-up", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        def on_step(stage: str) -> None:
            self.stage = stage
            log.info("warm-up: %s", stage)

        try:
            self.assistant.warm_up(on_step)
        except RagError as exc:
            self.error = str(exc)
            log.error("warm-up failed: %s", exc)
        except Exception as exc:  # the thread's boundary: log it; the first question reports it again
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("warm-up failed")
        finally:
            self.stage = None
            self.ready.set()

    def status(self, lang: str) -> str:
        """One line for the page: what is being prepared, that the models are ready, or why preparing failed."""
        if self.ready.is_set():
            return t(lang, "warm_failed").format(error=self.error) if self.error else t(lang, "warm_ready")
        if self.stage == "llm":
            size = _size(self.assistant.llm_size_bytes())
            return t(lang, "warm_llm_size" if size else "warm_llm").format(size=size)
        return t(lang, "warm_search")
