"""ESG document assistant: the core pipeline (no gradio, no model loading at import time)."""

from rag.errors import RagError
from rag.settings import Settings
from rag.types import Answer, Chunk, Citation, DocMeta, Document, Hit, Page, Scope, Segment, Source

__all__ = [
    "Answer",
    "Chunk",
    "Citation",
    "DocMeta",
    "Document",
    "Hit",
    "Page",
    "RagError",
    "Scope",
    "Segment",
    "Settings",
    "Source",
]
