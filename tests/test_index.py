"""Knowledge base persistence: restart, re-ingest, delete, consistency and embedder checks (real faiss)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag.errors import RebuildNeeded
from rag.index import KnowledgeBase
from rag.types import Chunk, DocMeta, Document, Source


def _doc(name: str, texts: list[str], company: str | None = None) -> tuple[Document, list[Chunk]]:
    sha = f"{abs(hash((name, tuple(texts)))):064x}"[:64]
    chunks = [
        Chunk(f"{name}-{i}", sha, t, Source(name, page=i + 1), DocMeta(company=company, year=2023))
        for i, t in enumerate(texts)
    ]
    return Document(name, sha, "pdf", len(chunks), pages=len(texts), meta=DocMeta(company=company, year=2023)), chunks


class Embedded:
    """Embeds with the real embedder and adds to a knowledge base."""

    def __init__(self, embedder):
        self.embedder = embedder

    def add(self, kb: KnowledgeBase, name: str, texts: list[str], company: str | None = None) -> Document:
        doc, chunks = _doc(name, texts, company)
        kb.add(doc, chunks, self.embedder.passages([c.text for c in chunks]))
        return doc


@pytest.fixture
def emb(embedder):
    return Embedded(embedder)


def test_index_survives_restart_and_finds_passage(tmp_path, embedder, emb):
    kb = KnowledgeBase.open(tmp_path, embedder)
    emb.add(kb, "a.pdf", ["Our Scope 1 emissions fell 12% in 2023.", "We planted 4,000 trees near the mine."])
    kb.save()
    again = KnowledgeBase.open(tmp_path, embedder)
    assert [d.name for d in again.documents()] == ["a.pdf"]
    hits = again.search_dense(embedder.query("how much did scope 1 emissions fall"), 1)
    assert hits[0][0].source.page == 1
    assert again.search_bm25("trees", 1)[0][0].source.page == 2


def test_delete_removes_document_from_dense_and_bm25(tmp_path, embedder, emb):
    kb = KnowledgeBase.open(tmp_path, embedder)
    emb.add(kb, "a.pdf", ["Water withdrawal was 3.2 gigalitres."])
    emb.add(kb, "b.pdf", ["Water recycling reached 40 percent."])
    kb.save()
    assert kb.delete("a.pdf")
    kb.save()
    kb = KnowledgeBase.open(tmp_path, embedder)
    q = embedder.query("water")
    assert {c.source.file for c, _ in kb.search_dense(q, 10)} == {"b.pdf"}
    assert {c.source.file for c, _ in kb.search_bm25("water", 10)} == {"b.pdf"}
    assert not kb.delete("a.pdf")


def test_replacing_a_document_keeps_one_copy(tmp_path, embedder, emb):
    kb = KnowledgeBase.open(tmp_path, embedder)
    emb.add(kb, "a.pdf", ["old text about wind power"])
    emb.add(kb, "a.pdf", ["new text about solar power", "and batteries"])
    assert len(kb) == 2
    assert {c.text for c in kb.chunks()} == {"new text about solar power", "and batteries"}


def test_count_mismatch_is_detected(tmp_path, embedder, emb):
    kb = KnowledgeBase.open(tmp_path, embedder)
    emb.add(kb, "a.pdf", ["one", "two"])
    kb.save()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    chunks_file = tmp_path / f"chunks-{manifest['generation']}.jsonl"
    chunks_file.write_text(chunks_file.read_text().splitlines()[0] + "\n")
    with pytest.raises(RebuildNeeded, match="inconsistent"):
        KnowledgeBase.open(tmp_path, embedder)


def test_embedder_change_and_format_version_are_detected(tmp_path, embedder, emb):
    kb = KnowledgeBase.open(tmp_path, embedder)
    emb.add(kb, "a.pdf", ["one"])
    kb.save()

    class Other:
        name, dim = "some-other-model", 384

    with pytest.raises(RebuildNeeded, match="embedder"):
        KnowledgeBase.open(tmp_path, Other())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["format_version"] = 0
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RebuildNeeded, match="format version"):
        KnowledgeBase.open(tmp_path, embedder)


def test_pending_document_is_bm25_searchable_before_its_vectors(tmp_path, embedder, emb):
    kb = KnowledgeBase.open(tmp_path, embedder)
    doc, chunks = _doc("new.pdf", ["Biodiversity offsets cover 1,200 hectares."])
    kb.add_pending(doc, chunks)
    assert kb.search_bm25("biodiversity hectares", 1)[0][0].source.file == "new.pdf"
    assert kb.search_dense(embedder.query("biodiversity"), 1) == []
    kb.save()  # pending documents are not persisted
    assert KnowledgeBase.open(tmp_path, embedder).documents() == []
    kb.add(doc, chunks, embedder.passages([c.text for c in chunks]))
    assert kb.search_dense(embedder.query("biodiversity"), 1)[0][0].source.file == "new.pdf"


def test_hnsw_above_threshold_and_scoped_search(tmp_path, embedder):
    kb = KnowledgeBase(tmp_path, embedder.name, embedder.dim, hnsw_threshold=50)
    rng = np.random.default_rng(0)
    for name in ("x.pdf", "y.pdf"):
        doc, chunks = _doc(name, [f"{name} passage {i}" for i in range(40)])
        vecs = rng.normal(size=(40, embedder.dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        kb.add(doc, chunks, vecs)
    import faiss

    assert isinstance(kb._index, faiss.IndexHNSW)
    q = kb._vectors[5]
    top = kb.search_dense(q, 3, files={"y.pdf"})
    assert top and all(c.source.file == "y.pdf" for c, _ in top)
    top = kb.search_dense(q, 1)
    assert top[0][0].id == "x.pdf-5" and top[0][1] == pytest.approx(1.0, abs=1e-4)
    kb.save()
    assert len(KnowledgeBase.open(tmp_path, embedder)) == 80
