"""ESG document assistant: the core pipeline (no gradio, no model loading at import time)."""

from rag.errors import RagError
from rag.settings import Settings
from rag.types import (
    Answer,
    Chunk,
    Citation,
    DocMeta,
    Document,
    Event,
    Hit,
    IngestResult,
    Page,
    Retrieval,
    Scope,
    Segment,
    Source,
)

__all__ = [
    "Answer",
    "Chunk",
    "Citation",
    "DocMeta",
    "Document",
    "Event",
    "Hit",
    "IngestResult",
    "Page",
    "RagError",
    "Retrieval",
    "Scope",
    "Segment",
    "Settings",
    "Source",
]
