"""Citation pages: a passage over two pages knows where the second starts, and a citation names the page holding the
cited sentence. Constructed pages for the rules; the real SUEZ report (pypdf) for the offsets."""

from __future__ import annotations

import pytest

from rag.chunk import chunk_pages
from rag.citation import locate_pages, page_parts, sentence_page
from rag.index import chunk_from_json, chunk_to_json
from rag.pdf import load_pdf
from rag.retrieve import merge_page
from rag.types import Chunk, Citation, DocMeta, Hit, Page, Source

P5 = "Water treated. In 2023 the Group treated wastewater for 12 million people across its plants and"
P6 = "networks, for a total of 2.8 billion m3 of wastewater treated. Sludge recovery rose to 41% of volumes."


def spanning_chunk() -> Chunk:
    chunks = chunk_pages([Page(5, P5), Page(6, P6)], file="suez.pdf", doc_id="d", meta=DocMeta(), max_tokens=256)
    assert len(chunks) == 1, [c.text for c in chunks]
    return chunks[0]


def test_a_paragraph_cut_by_a_page_break_records_where_the_next_page_starts():
    chunk = spanning_chunk()
    assert (chunk.source.page, chunk.source.last_page) == (5, 6)
    assert len(chunk.page_starts) == 1
    start = chunk.page_starts[0]
    assert chunk.text[start:].startswith("networks, for a total of 2.8 billion")
    assert chunk.page_at(0) == 5 and chunk.page_at(start - 1) == 5 and chunk.page_at(start) == 6
    assert [p for p, _ in page_parts(chunk)] == [5, 6]


def test_a_one_page_chunk_has_no_page_starts():
    chunks = chunk_pages([Page(3, "Scope 1 emissions fell 12% in 2023.")], file="a.pdf", doc_id="d", meta=DocMeta())
    assert chunks[0].page_starts == () and chunks[0].page_at(5) == 3


def test_page_starts_survive_the_index_format():
    chunk = spanning_chunk()
    assert chunk_from_json(chunk_to_json(chunk)) == chunk
    old = chunk_to_json(chunk)
    del old["page_starts"]  # a knowledge base written before page starts existed still opens
    assert chunk_from_json(old).page_starts == ()


def test_the_cited_sentence_decides_the_page():
    chunk = spanning_chunk()
    assert sentence_page(chunk, ["SUEZ treated 2.8 billion m3 of wastewater in 2023 [1]."]) == 6
    assert sentence_page(chunk, ["It served 12 million people [1]."]) == 5
    assert sentence_page(chunk, ["Nothing in common [1]."]) is None


def test_locate_pages_narrows_each_citation_to_its_sentences_page():
    hit = Hit(spanning_chunk(), 1.0)
    text = "SUEZ treated 2.8 billion m3 of wastewater [1]. Sludge recovery reached 41% [1]."
    (citation,) = locate_pages(text, [Citation(1, hit)])
    assert citation.page == 6
    assert citation.source.label() == "suez.pdf, p. 6"
    assert citation.passage_source.label() == "suez.pdf, pp. 5–6"


def test_an_unlocated_citation_keeps_the_passage_range():
    hit = Hit(spanning_chunk(), 1.0)
    (citation,) = locate_pages("A claim with no shared words [1].", [Citation(1, hit)])
    assert citation.page is None and citation.source.label() == "suez.pdf, pp. 5–6"


def test_merged_page_passages_carry_the_starts_of_their_parts():
    spanning = spanning_chunk()
    page6 = Chunk("c2", "d", "Energy recovery covered 30% of needs.", Source("suez.pdf", page=6))
    merged = merge_page([page6, spanning])  # best first, as retrieval ranks them
    assert (merged.source.page, merged.source.last_page) == (5, 6)
    start = merged.page_starts[0]
    assert merged.text[start:].startswith("networks, for a total")
    assert merged.page_at(merged.text.index("Energy recovery")) == 6
    assert merged.page_at(merged.text.index("12 million")) == 5


@pytest.fixture(scope="module")
def suez_chunks(testdata):
    path = testdata / "esg_pdfs" / "cfb_suez_sd_progress_report_2023.pdf"
    pages = load_pdf(path)
    chunks = chunk_pages(pages, file=path.name, doc_id="suez", meta=DocMeta(), max_tokens=256)
    return {p.number: p.text for p in pages}, chunks


def test_real_report_page_starts_split_the_text_where_pypdf_pages_end(suez_chunks):
    """Every passage of the real SUEZ report that runs over a page break: the text before the recorded start comes
    from the first page and the text after it from the next (the issue's "p. 5 cited for a figure on p. 6")."""
    pages, chunks = suez_chunks
    spanning = [c for c in chunks if c.source.last_page]
    assert spanning, "the SUEZ report has paragraphs cut by page breaks"
    for chunk in spanning:
        assert len(chunk.page_starts) == chunk.source.last_page - chunk.source.page
        for page, part in page_parts(chunk):
            words = part.split()
            # Each part's first and last few words are on its page (chunking rejoins lines, so compare words).
            probe = " ".join(words[:3]) if len(words) >= 3 else part.strip()
            assert probe.split()[0] in pages[page], (chunk.source, page, probe)
