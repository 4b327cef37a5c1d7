"""The ESG Document Assistant's web app: the entry point only.

    python app.py            # settings from ESG_* environment variables (see rag/settings.py)

``main()`` tunes the C heap, reads the settings (on a Hugging Face Space: its host and persistent storage), builds the
assistant, prepares the sample knowledge base on first start, starts loading the models in the background, builds
the interface (the ``ui`` package) and serves it. Importing this module loads no model and starts nothing.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

from rag.assistant import Assistant
from rag.storage import deployment_settings
from rag.types import IngestResult

log = logging.getLogger("app")

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
SAMPLE_SUFFIXES = (".pdf", ".mp4", ".m4a", ".mp3", ".wav", ".webm")


def sample_files(folder: Path = ASSETS) -> list[Path]:
    """The shipped sample documents (fictional), reports before videos (a video takes its company from a report
    already in the knowledge base), each group by name."""
    files = (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES)
    return sorted(files, key=lambda p: (p.suffix.lower() != ".pdf", p.name))


def ensure_sample_kb(assistant: Assistant, folder: Path = ASSETS) -> list[IngestResult] | None:
    """On first start (no knowledge base saved yet) ingest the sample documents; later starts reuse what is there.

    Returns the results, or ``None`` when nothing was done. A knowledge base the user emptied stays empty.
    """
    if assistant.has_knowledge_base():
        return None
    files = sample_files(folder)
    if not files:
        return None
    log.info("first start: building the sample knowledge base from %d files in %s", len(files), folder)
    results = list(assistant.ingest(files))
    for r in results:
        (log.info if r.ok else log.warning)("sample %s: %s", r.file, r.message)
    return results


def main() -> None:
    # The UI is imported here, not at the top: the PDF parser's forkserver children re-import this script as
    # __mp_main__, and importing Gradio costs them seconds of CPU per parsed file.
    from ui import server
    from ui.layout import build_ui
    from ui.warmup import Warmup

    server.configure_malloc()  # first: before any thread, model or large block (see its docstring)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    settings, storage = deployment_settings()  # on a Space: host 0.0.0.0, knowledge base on /data when attached
    assistant = Assistant(settings)
    ensure_sample_kb(assistant)
    warmup = Warmup(assistant).start()  # the models load while the server starts; the page shows the status
    media_dir = Path(tempfile.mkdtemp(prefix="esg-media-"))  # playable copies of cited media, served by Gradio
    atexit.register(shutil.rmtree, media_dir, True)
    server.launch(build_ui(assistant, media_dir, storage, warmup), settings, media_dir)


if __name__ == "__main__":
    main()
