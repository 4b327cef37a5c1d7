"""Serving the app: glibc memory tuning for a long-running multi-user server, the theme and styles, and launch.

``configure_malloc()`` runs first in ``app.main``, before any thread or model; ``release_memory()`` runs after every
answer (``ui.chat``). Both are measured in docs/RELIABILITY.md and ``benchmarks/memory_probe.py``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rag.settings import Settings

if TYPE_CHECKING:
    import gradio as gr

CSS_PATH = Path(__file__).resolve().parent / "style.css"


# ------------------------------------------------------------------------------------------------------- memory
def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or ``None`` where the C library has none (macOS, musl)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _find_malloc_trim()

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MALLOC_THRESHOLD = 128 * 1024  # bytes; glibc's own starting value for both


def configure_malloc(threshold: int = MALLOC_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds at ``threshold`` bytes, so large blocks stay out of the threads' heaps.

    Why: glibc raises both thresholds by itself once a large block has been freed (up to 32 MB and 64 MB). From then
    on, blocks up to that size (llama.cpp's 1.8 MB per-token candidate list, large strings and arrays) are carved
    from the heaps (arenas) of the worker threads that Gradio runs each answer's steps on, instead of getting their
    own mapping. Under 20 users those arenas grew by free but resident memory that ``release_memory`` did not hand
    back, +24 MB over 50 answers, while memory in use stayed flat (``benchmarks/memory_probe.py --gradio``,
    docs/bench/reliability.md). With the thresholds set, glibc's adjustment is off: every block of ``threshold``
    bytes or more is its own mapping, unmapped when freed, and the arenas stayed flat. Call it before the server
    starts its threads. Returns True when glibc took both settings; False elsewhere (macOS, musl).
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1 and mallopt(M_TRIM_THRESHOLD, threshold) == 1


def release_memory() -> bool:
    """Free what the last answer left for Python's cycle collector, then return the C heap's free pages to the
    operating system (one full ``gc.collect()``, then glibc ``malloc_trim(0)``, 0.2 ms median).

    Why the collection: llama-cpp-python's samplers (one per generation; they reference themselves) and other
    garbage in reference cycles hold C memory that Python does not count, so its own full collections came rarely:
    a Gradio server answering 30 questions for 20 users without them kept 14 MB of such blocks that one
    ``gc.collect()`` freed (``benchmarks/memory_probe.py --gradio --no-gc``). Why the trim: an answer streams from
    Gradio's worker threads, each with its own glibc arena, and llama.cpp allocates and frees about 1.8 MB per
    generated token; glibc keeps freed memory in the arenas (with 2 users about 1 MB per answer without the trim).
    Returns True when glibc released memory; False elsewhere or when none was free.
    """
    gc.collect()
    return _MALLOC_TRIM is not None and bool(_MALLOC_TRIM(0))


# ------------------------------------------------------------------------------------------------------- launch
def css() -> str:
    """The app's styles, from ``ui/style.css``."""
    return CSS_PATH.read_text(encoding="utf-8")


def theme() -> gr.themes.Base:
    """Gradio's Soft theme in green, with system fonts only: nothing is fetched from the internet."""
    import gradio as gr

    return gr.themes.Soft(
        primary_hue="green",
        secondary_hue="teal",
        neutral_hue="slate",
        font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Noto Sans", "PingFang SC", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    )


def launch(demo: gr.Blocks, settings: Settings, media_dir: Path) -> None:
    """Serve ``demo`` (blocks until the server stops): queue sizes and concurrency from ``settings``; Gradio may
    serve files from ``media_dir`` (playable copies of cited media) and never from the knowledge base folder."""
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=settings.concurrency).launch(
        server_name=settings.host,
        server_port=settings.port,
        max_file_size=f"{settings.max_upload_mb}mb",
        allowed_paths=[str(media_dir)],
        blocked_paths=[str(settings.kb_dir.resolve())],
        show_error=True,
        theme=theme(),
        css=css(),
        footer_links=["gradio", "settings"],
    )
