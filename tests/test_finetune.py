"""Fine-tuning (issue 15 item 4): triples in the seed's format, the query adapter's round trip, a corrupt adapter
refused while search goes on, and real training moving held-back queries' gold pages up."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from rag.adapter import Adapter, AdapterError, adapter_paths, delete_adapter, load_adapter, save_adapter
from rag.finetune import (
    TRIPLES,
    Triple,
    build_triples,
    finetune,
    pseudo_query,
    train_adapter,
    training_arrays,
    write_triples,
)
from rag.index import KnowledgeBase
from rag.retrieve import HybridRetriever
from rag.settings import Settings
from rag.text import split_sentences
from rag.types import Scope


@pytest.fixture()
def kb_copy(assistant, kb_settings, tmp_path):
    """A private copy of the session knowledge base (two real English reports, one Chinese document)."""
    dest = tmp_path / "kb"
    shutil.copytree(kb_settings.kb_dir, dest)
    return dest


def _open(directory, embedder) -> KnowledgeBase:
    return KnowledgeBase.open(directory, embedder)


def test_adapter_round_trips_and_deleting_it_restores_the_plain_embedder(tmp_path):
    rng = np.random.default_rng(1)
    adapter = Adapter(
        "e5", rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((8, 4)).astype(np.float32)
    )
    save_adapter(adapter, tmp_path)
    loaded = load_adapter(tmp_path, "e5", 8)
    assert loaded is not None
    q = rng.standard_normal((3, 8)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    np.testing.assert_allclose(loaded.apply(q), adapter.apply(q), rtol=1e-6)
    assert not np.allclose(loaded.apply(q), q)  # it does change the vectors
    np.testing.assert_allclose(np.linalg.norm(loaded.apply(q), axis=1), 1.0, rtol=1e-5)
    assert loaded.apply(q[0]).shape == (8,)
    # The identity start changes nothing.
    np.testing.assert_allclose(Adapter.identity("e5", 8, 4).apply(q), q, rtol=1e-6)
    assert delete_adapter(tmp_path) and load_adapter(tmp_path, "e5", 8) is None


def test_adapter_for_another_embedder_or_with_a_bad_checksum_is_refused(tmp_path):
    save_adapter(Adapter.identity("e5", 8, 2), tmp_path)
    with pytest.raises(AdapterError, match="trained for 'e5'"):
        load_adapter(tmp_path, "other", 8)
    arrays, header = adapter_paths(tmp_path)
    arrays.write_bytes(arrays.read_bytes()[:-7] + b"garbage")
    with pytest.raises(AdapterError, match="checksum"):
        load_adapter(tmp_path, "e5", 8)
    header.write_text("{not json", encoding="utf-8")
    with pytest.raises(AdapterError, match="unreadable"):
        load_adapter(tmp_path, "e5", 8)


def test_corrupt_adapter_is_refused_and_search_keeps_working(kb_copy, embedder, caplog):
    kb = _open(kb_copy, embedder)
    retriever = HybridRetriever([kb], embedder, Settings())
    question = "What share of Costco's emissions are Scope 3?"
    plain = [h.chunk.id for h in retriever.retrieve(question, Scope(), k=5).hits]
    # A real adapter is picked up by the running retriever and reorders dense search...
    rng = np.random.default_rng(0)
    strong = Adapter(
        embedder.name,
        rng.standard_normal((8, embedder.dim)).astype(np.float32),
        rng.standard_normal((embedder.dim, 8)).astype(np.float32),
    )
    save_adapter(strong, kb_copy)
    adapted = retriever.candidates(question, Scope(), 20, "dense")
    assert adapted.adapted
    # ...then a corrupted one is refused with a warning, and search answers as with no adapter at all.
    arrays, _ = adapter_paths(kb_copy)
    arrays.write_bytes(b"\x00" * 64)
    with caplog.at_level(logging.WARNING, logger="rag.adapter"):
        hits = retriever.retrieve(question, Scope(), k=5).hits
    assert "checksum" in caplog.text and "searching without it" in caplog.text
    assert [h.chunk.id for h in hits] == plain
    assert not retriever.candidates(question, Scope(), 20, "dense").adapted
    # Deleting it leaves the plain embedder.
    delete_adapter(kb_copy)
    assert [h.chunk.id for h in retriever.retrieve(question, Scope(), k=5).hits] == plain


def test_triples_are_written_in_the_seed_format_with_hard_negatives_from_other_reports(kb_copy, embedder, tmp_path):
    kb = _open(kb_copy, embedder)
    triples = build_triples(kb, embedder, max_chunks=6)
    assert len(triples) == 6 and all(t.origin == "pseudo" and t.neg for t in triples)
    by_id = {c.id: c for c in kb.chunks()}
    for t in triples:
        pos = by_id[t.pos]
        files = {by_id[i].source.file for i in t.neg}
        assert pos.source.file in files and files - {pos.source.file}, "negatives from its report and from others"
        assert all((by_id[i].source.file, by_id[i].source.page) != (pos.source.file, pos.source.page) for i in t.neg)
        assert t.query and t.query != pos.key
    path = tmp_path / "triples.jsonl"
    write_triples(triples, kb, path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 6
    for row, t in zip(rows, triples, strict=True):
        assert set(row) == {"query", "pos", "neg"}
        assert row["query"] == t.query and row["pos"] == [by_id[t.pos].text]
        assert (
            isinstance(row["neg"], list)
            and len(row["neg"]) == len(t.neg)
            and all(isinstance(n, str) for n in row["neg"])
        )


def test_pseudo_query_is_a_sentence_of_the_chunk_not_its_key_line(kb_copy, embedder):
    chunk = next(c for c in _open(kb_copy, embedder).chunks() if len(c.text) > 400)
    q = pseudo_query(chunk)
    assert q and q != chunk.key and len(q) < len(chunk.text)


def _page_rank(kb: KnowledgeBase, qvec: np.ndarray, pos) -> int:
    ranked = kb.search_dense(qvec, len(kb), {pos.source.file})
    pages: list[int] = []
    for chunk, _ in ranked:
        if chunk.source.page not in pages:
            pages.append(chunk.source.page)
    return pages.index(pos.source.page) + 1


def test_fine_tuning_moves_held_back_queries_gold_pages_up(kb_copy, embedder):
    # Real embedder, real triples from two real reports and a Chinese document, real training (few epochs). Each
    # sampled chunk is trained with one of its sentences as the query; another of its sentences, never trained on,
    # is the held-back query. After training, the held-back queries' gold pages must rank higher on the whole.
    kb = _open(kb_copy, embedder)
    triples = build_triples(kb, embedder, max_chunks=40, seed=3)
    by_id = {c.id: c for c in kb.chunks()}
    q, p, n = training_arrays(triples, kb, embedder)
    result = train_adapter(q, p, n, embedder.name, rank=16, epochs=15, val_share=0.0)
    assert result.train_loss < result.val_loss_before
    before, after = [], []
    for t in triples:
        chunk = by_id[t.pos]
        others = [s for s in split_sentences(chunk.text) if 30 <= len(s) <= 300 and s not in t.query]
        if not others:
            continue
        qvec = embedder.query(max(others, key=len))
        before.append(_page_rank(kb, qvec, chunk))
        after.append(_page_rank(kb, result.adapter.apply(qvec), chunk))
        if len(before) == 12:
            break
    assert len(before) >= 8
    mrr_before = np.mean([1 / r for r in before])
    mrr_after = np.mean([1 / r for r in after])
    assert mrr_after > mrr_before, (before, after)


def test_finetune_command_saves_an_adapter_search_then_uses(kb_copy, embedder):
    settings = Settings.from_env(environ={}, kb_dir=kb_copy)
    info = finetune(settings, max_chunks=20, epochs=2, embedder=embedder)
    assert info["triples"] == 20 and info["train_s"] >= 0
    assert (kb_copy / TRIPLES).exists()
    adapter = load_adapter(kb_copy, embedder.name, embedder.dim)
    assert adapter is not None and adapter.info["triples"] == 20
    retriever = HybridRetriever([_open(kb_copy, embedder)], embedder, settings)
    assert retriever.candidates("Costco emissions", Scope(), 5, "dense").adapted
    off = HybridRetriever([_open(kb_copy, embedder)], embedder, settings.replace(adapter=False))
    assert not off.candidates("Costco emissions", Scope(), 5, "dense").adapted


def test_triple_without_negatives_is_not_trainable(kb_copy, embedder):
    kb = _open(kb_copy, embedder)
    chunk = kb.chunks()[0]
    with pytest.raises(Exception, match="no training triples"):
        training_arrays([Triple("q", chunk.id, [])], kb, embedder)
