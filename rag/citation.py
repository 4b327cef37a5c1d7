"""Citation pages: a citation names the page that holds the sentence it supports.

A passage can run over two pages (a paragraph cut by a page break, or a page's chunks merged into one passage).
Its ``Chunk.page_starts`` say where each later page begins; the sentences of the answer that cite the passage are
matched against each page's part of it (figures first, then words), and the citation takes the best page. A passage
on one page, or a media passage, keeps its source as it is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from rag.text import CITATION, overlap_units, split_statements
from rag.types import Chunk, Citation

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _figures(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def page_parts(chunk: Chunk) -> list[tuple[int, str]]:
    """``(page, text)`` for each page a passage spans, in order (1-based pages)."""
    first = chunk.source.page
    if first is None:
        return []
    bounds = [0, *chunk.page_starts, len(chunk.text)]
    return [(first + i, chunk.text[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1)]


def sentence_page(chunk: Chunk, sentences: Sequence[str]) -> int | None:
    """The page of ``chunk`` that best holds ``sentences``: most shared figures, then most shared words; the first
    page on a tie. ``None`` when the passage spans no page break or nothing is shared."""
    parts = page_parts(chunk)
    if len(parts) < 2 or not sentences:
        return None
    claim = " ".join(sentences)
    figures, words = _figures(claim), overlap_units(claim)
    best, best_score = None, (0, 0)
    for page, text in parts:
        score = (len(figures & _figures(text)), len(words & overlap_units(text)))
        if score > best_score:
            best, best_score = page, score
    return best


def _marks(sentence: str) -> set[int]:
    out: set[int] = set()
    for group in CITATION.findall(sentence):
        out.update(int(n) for n in re.findall(r"\d+", group))
    return out


def locate_pages(text: str, citations: Sequence[Citation]) -> tuple[Citation, ...]:
    """``citations`` with ``page`` set to the page holding the sentences of ``text`` that cite them."""
    statements = split_statements(text)
    out = []
    for citation in citations:
        citing = [s for s in statements if citation.n in _marks(s)]
        page = sentence_page(citation.hit.chunk, citing)
        out.append(replace(citation, page=page) if page is not None else citation)
    return tuple(out)
