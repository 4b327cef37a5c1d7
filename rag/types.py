"""Dataclasses passed between pipeline stages.

Every stage takes and returns these, never loose dicts. Pages are 1-based; times are seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np


def format_clock(seconds: float) -> str:
    """Format seconds as ``mm:ss`` (or ``h:mm:ss`` past an hour), rounding down."""
    total = max(0, math.floor(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"


@dataclass(frozen=True)
class Source:
    """Where a passage comes from.

    ``file`` is the document's file name as ingested (not a full path). PDFs set ``page`` (1-based) and, when a
    passage runs onto the next page, ``last_page``; media sets ``start_s``/``end_s`` in seconds.
    """

    file: str
    page: int | None = None
    last_page: int | None = None
    start_s: float | None = None
    end_s: float | None = None

    @property
    def is_media(self) -> bool:
        return self.start_s is not None

    def label(self) -> str:
        """Human citation: ``report.pdf, p. 12`` or ``briefing.mp4 ▶ 03:15–03:42``."""
        if self.start_s is not None:
            # Round the end up so the cited range always covers the words spoken.
            end = math.ceil(self.end_s if self.end_s is not None else self.start_s)
            return f"{self.file} ▶ {format_clock(self.start_s)}–{format_clock(end)}"
        if self.page is None:
            return self.file
        if self.last_page and self.last_page != self.page:
            return f"{self.file}, pp. {self.page}–{self.last_page}"
        return f"{self.file}, p. {self.page}"


@dataclass(frozen=True)
class DocMeta:
    """Document-level metadata detected at ingest (where the document states it)."""

    company: str | None = None
    year: int | None = None
    language: str = "en"  # "en" or "zh"


@dataclass(frozen=True)
class Page:
    """Cleaned text of one PDF page (``number`` is 1-based)."""

    number: int
    text: str


@dataclass(frozen=True)
class Segment:
    """A transcribed stretch of speech, times in seconds from the start of the media."""

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Chunk:
    """A retrievable passage.

    ``id`` is a content hash (stable across re-ingests); ``doc_id`` is the sha256 of the source file. ``key`` is the
    short "key information" line embedded by the two-level index; the reader always gets ``text``.
    """

    id: str
    doc_id: str
    text: str
    source: Source
    meta: DocMeta = field(default_factory=DocMeta)
    heading: str = ""
    key: str = ""
    # For a passage running over pages ``source.page``..``source.last_page``: the character offset in ``text`` where
    # each later page starts (``page_starts[i]`` starts page ``source.page + i + 1``), so a citation can name the
    # page that holds the cited sentence.
    page_starts: tuple[int, ...] = ()
    # The header of a table this passage continues (its columns, and a row label waiting for its cells), from the
    # text before it (``rag.table.open_header``): read with the passage's rows, never indexed or cited.
    table_header: str = ""

    def page_at(self, offset: int) -> int | None:
        """The 1-based page holding character ``offset`` of ``text`` (``None`` for media)."""
        if self.source.page is None:
            return None
        page = self.source.page
        for start in self.page_starts:
            if offset < start:
                break
            page += 1
        return page


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and, where the retriever produced them, the per-method scores."""

    chunk: Chunk
    score: float
    dense: float | None = None
    bm25: float | None = None


@dataclass(frozen=True)
class Document:
    """A document in the knowledge base (one ingested file)."""

    name: str
    sha256: str
    kind: str  # "pdf" or "media"
    chunks: int
    pages: int | None = None
    duration_s: float | None = None
    meta: DocMeta = field(default_factory=DocMeta)


@dataclass(frozen=True)
class Scope:
    """What retrieval may look at. Empty fields mean "no restriction"."""

    docs: tuple[str, ...] = ()
    company: str | None = None
    year: int | None = None

    @property
    def unrestricted(self) -> bool:
        return not self.docs and self.company is None and self.year is None


@dataclass(frozen=True)
class Citation:
    """A passage the answer cites as ``[n]``. ``verified``: a sentence citing it states figures or names (and at
    least one) that this passage was checked to contain (rag/ground.py)."""

    n: int
    hit: Hit
    verified: bool = False
    # The page holding the cited sentence when the passage spans pages (``rag.citation.locate_pages``), else None.
    page: int | None = None

    @property
    def source(self) -> Source:
        """Where the cited sentence is: the passage's source, narrowed to ``page`` when it was located."""
        src = self.hit.chunk.source
        if self.page is None or src.page is None:
            return src
        return Source(src.file, page=self.page)

    @property
    def passage_source(self) -> Source:
        """The whole passage's source (``page``..``last_page``)."""
        return self.hit.chunk.source


@dataclass(frozen=True)
class Removed:
    """A sentence of the model's reply that was not shown, and why (e.g. "no passage found states 167.5亿美元")."""

    sentence: str
    reason: str


@dataclass(frozen=True)
class Checked:
    """One sentence of a final answer as checked against its passages (rag/ground.py).

    ``marks`` are the passage numbers it cites; ``figures`` and ``names`` what it states that was checked;
    ``verified`` is true when it states at least one figure or name and every one was found in a cited passage.
    """

    sentence: str
    marks: tuple[int, ...] = ()
    figures: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    verified: bool = False


@dataclass(frozen=True)
class Answer:
    """The result of one question.

    ``route`` is the path taken (``faq``, ``chitchat``, ``rag``, ``out_of_scope``). ``refused`` marks a "the documents
    don't answer this" reply, with ``reason`` saying why. ``checks`` are the answer's sentences as verified against
    the cited passages, ``removed`` the sentences of the model's reply dropped because no passage states them (a
    refusal keeps them too, when nothing verifiable was left).
    """

    text: str
    route: str
    citations: tuple[Citation, ...] = ()
    hits: tuple[Hit, ...] = ()
    refused: bool = False
    reason: str | None = None
    question: str = ""
    standalone_question: str = ""
    checks: tuple[Checked, ...] = ()
    removed: tuple[Removed, ...] = ()
    route_reason: str = ""  # why the router chose ``route`` (e.g. "kb:lexical: shares rare words ... : americans")
    translated_question: str = ""  # the question in the documents' other language, when retrieval translated it


@dataclass(frozen=True)
class Query:
    """One user message as the router, retrieval and the prompt see it, built once per message.

    ``text`` is the message (a leading greeting removed by the router), ``language`` is ``en`` or ``zh`` (detected
    once), ``vector`` is the query embedding of ``text`` (``None`` until the router embedded it, and for messages a
    rule decided without one). Equality compares text and language only.
    """

    text: str
    language: str = "en"
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Retrieval:
    """What retrieval returns for one query.

    ``scope`` is the scope actually applied (it may be narrowed to the company or year the question names).
    ``missing`` says why nothing can match when the question asks for something the knowledge base lacks, e.g.
    "no document for Baidu" or "no document for 2019"; the answer stage uses it to explain a refusal.
    """

    query: str
    hits: tuple[Hit, ...]
    scope: Scope = Scope()
    missing: str | None = None

    @property
    def best_dense(self) -> float | None:
        scores = [h.dense for h in self.hits if h.dense is not None]
        return max(scores) if scores else None


class Retriever(Protocol):
    """What answering needs of retrieval (``rag.retrieve.HybridRetriever``; fakes in tests): the ``k`` best passages
    for ``query`` within ``scope``. ``vector``: the query's embedding when the caller already has it."""

    def retrieve(
        self, query: str, scope: Scope = Scope(), k: int | None = None, *, vector: np.ndarray | None = None
    ) -> Retrieval: ...


@dataclass(frozen=True)
class IngestResult:
    """Outcome of ingesting one file; ``message`` is one line fit for a user."""

    file: str
    ok: bool
    message: str
    document: Document | None = None
    skipped: bool = False  # unchanged file already in the knowledge base: a no-op


@dataclass(frozen=True)
class Event:
    """One step of a streamed reply.

    ``kind`` is ``route`` (``route`` set), ``sources`` (``hits`` set, sent as soon as retrieval finishes),
    ``token`` (``text`` is the next piece of the answer) or ``done`` (``answer`` is the final Answer).
    """

    kind: str
    text: str = ""
    route: str | None = None
    hits: tuple[Hit, ...] = ()
    answer: Answer | None = None
