"""Scoped hybrid retrieval: company/year scoping against entity confusion, fusion, and modes."""

from __future__ import annotations

import pytest

from rag.index import KnowledgeBase
from rag.retrieve import (
    HybridRetriever,
    fuse,
    fuse_agreement,
    fuse_pages,
    fuse_rrf,
    fuse_scores,
    group_by_page,
    merge_page,
    plan_scope,
)
from rag.settings import Settings
from rag.types import Chunk, DocMeta, Document, Scope, Source


def _add(kb, embedder, name, company, year, texts):
    meta = DocMeta(company=company, year=year)
    chunks = [Chunk(f"{name}:{i}", name, t, Source(name, page=i + 1), meta) for i, t in enumerate(texts)]
    kb.add(Document(name, name, "pdf", len(chunks), pages=len(texts), meta=meta), chunks, embedder.passages(texts))


@pytest.fixture(scope="module")
def two_company_kb(embedder):
    kb = KnowledgeBase(None, embedder.name, embedder.dim)
    _add(
        kb,
        embedder,
        "tencent_2023_esg.pdf",
        "Tencent",
        2023,
        [
            "Shareholding structure: Naspers holds 26% of Tencent's shares; the founders hold 8%.",
            "Tencent's data centres used 3.2 TWh of electricity in 2023.",
        ],
    )
    _add(
        kb,
        embedder,
        "baidu_2022_esg.pdf",
        "Baidu",
        2022,
        [
            "Baidu's largest shareholder is its founder Robin Li, holding 16% of the shares.",
            "Baidu reduced data centre PUE to 1.2 in 2022.",
        ],
    )
    _add(kb, embedder, "siemens_2024.pdf", "Siemens", 2024, ["Siemens cut Scope 1 and 2 emissions by 62% since 2019."])
    return kb


def test_question_naming_a_company_is_answered_from_its_documents_only(two_company_kb, embedder):
    retriever = HybridRetriever([two_company_kb], embedder, Settings.from_env(environ={}))
    result = retriever.retrieve("What is Baidu's shareholding structure?", k=3)
    assert result.scope.company == "Baidu"
    assert result.hits and {h.chunk.source.file for h in result.hits} == {"baidu_2022_esg.pdf"}
    assert "Robin Li" in result.hits[0].chunk.text
    zh = retriever.retrieve("腾讯的股权结构是怎样的？", k=3)
    assert {h.chunk.source.file for h in zh.hits} == {"tencent_2023_esg.pdf"}


def test_company_absent_from_the_knowledge_base_is_reported_missing(embedder):
    kb = KnowledgeBase(None, embedder.name, embedder.dim)
    _add(kb, embedder, "tencent_2023_esg.pdf", "Tencent", 2023, ["Naspers holds 26% of Tencent's shares."])
    retriever = HybridRetriever([kb], embedder, Settings.from_env(environ={}))
    result = retriever.retrieve("What is Baidu's shareholding structure?")
    assert result.hits == () and result.missing == "no document for Baidu"


def test_comparison_keeps_both_companies_and_year_scoping(two_company_kb, embedder):
    docs = two_company_kb.documents()
    plan = plan_scope("Compare Tencent and Baidu data centre electricity", Scope(), docs)
    assert plan.files == {"tencent_2023_esg.pdf", "baidu_2022_esg.pdf"}
    plan = plan_scope("What did the 2019 report say about emissions?", Scope(company="Siemens"), docs)
    assert plan.missing == "no 2019 report from Siemens"
    plan = plan_scope("what does the 2024 report say?", Scope(), docs)
    assert plan.files == {"siemens_2024.pdf"} and plan.scope.year == 2024
    # A target year is not a report year.
    assert plan_scope("Is Siemens on track for its 2030 target?", Scope(), docs).missing is None
    # FY2023 figures live in the report published in 2024 (no 2023 Siemens report here).
    plan = plan_scope("What were Siemens' emissions in FY2023?", Scope(), docs)
    assert plan.missing is None and plan.files == {"siemens_2024.pdf"}
    # A document the user chose is searched whatever year it is labelled with.
    plan = plan_scope("Tencent's water use in FY2019?", Scope(docs=("tencent_2023_esg.pdf",)), docs)
    assert plan.missing is None and plan.files == {"tencent_2023_esg.pdf"}
    assert plan_scope("Tencent's water use in FY2019?", Scope(), docs).missing == "no 2019 report from Tencent"


def test_user_scope_and_modes(two_company_kb, embedder):
    retriever = HybridRetriever([two_company_kb], embedder, Settings.from_env(environ={}))
    scoped = retriever.retrieve("electricity use", Scope(docs=("baidu_2022_esg.pdf",)), k=5)
    assert {h.chunk.source.file for h in scoped.hits} == {"baidu_2022_esg.pdf"}
    for mode in ("dense", "bm25", "hybrid"):
        hits = retriever.retrieve("PUE of data centres", k=2, mode=mode).hits
        assert hits[0].chunk.text.startswith("Baidu reduced data centre PUE"), mode
        assert hits[0].dense is not None  # every hit carries a cosine for the relevance threshold
    assert retriever.retrieve("anything", Scope(docs=("nope.pdf",))).missing == "no document matches the chosen scope"


def test_one_passage_per_page_holds_that_pages_best_chunks() -> None:
    def chunk(cid: str, file: str, page: int | None, last: int | None = None, start: float | None = None) -> Chunk:
        return Chunk(cid, file, f"text {cid}", Source(file, page=page, last_page=last, start_s=start, end_s=start))

    ranked = [
        chunk("a1", "a.pdf", 3),
        chunk("a2", "a.pdf", 3),  # same page as a1: joins its passage
        chunk("a3", "a.pdf", 4, 5),
        chunk("a4", "a.pdf", 5),  # page 5 is in a3's passage
        chunk("b1", "b.pdf", 3),  # same page number, other file: a page of its own
        chunk("v1", "talk.mp4", None, start=10.0),  # media has no page: never merged
        chunk("v2", "talk.mp4", None, start=20.0),
        chunk("a5", "a.pdf", 3),
        chunk("a6", "a.pdf", 3),  # a fourth chunk of page 3: over the per-page cap
        chunk("c1", "c.pdf", 1),
        chunk("a7", "a.pdf", 3),  # below the k-th page's best chunk: plain top-k would not show it either
    ]
    groups = group_by_page(ranked, 6, per_page=3)
    assert [[c.id for c in g] for g in groups] == [["a1", "a2", "a5"], ["a3", "a4"], ["b1"], ["v1"], ["v2"], ["c1"]]
    assert [[c.id for c in g] for g in group_by_page(ranked, 2)] == [["a1", "a2"], ["a3"]]
    merged = merge_page(groups[0])
    assert merged.id == "a1" and merged.text == "text a1\n\ntext a2\n\ntext a5"
    assert (merged.source.page, merged.source.last_page) == (3, None)
    assert (merge_page(groups[1]).source.page, merge_page(groups[1]).source.last_page) == (4, 5)
    assert merge_page(groups[3]) is ranked[5]


def test_real_retrieval_hands_each_page_once(embedder) -> None:
    # Real embedder and BM25; three chunks of page 1 match the question: the reader gets page 1 once, as one passage
    # holding all three, and every other page once.
    name = "tencent_2023_esg.pdf"
    meta = DocMeta(company="Tencent", year=2023)
    texts = [
        (1, "Shareholding structure: Naspers holds 26% of Tencent's shares."),
        (1, "Tencent's founders hold 8% of the shares; the rest of the shareholding is free float."),
        (1, "Tencent's shareholding structure has not changed since 2022."),
        (2, "Tencent's data centres used 3.2 TWh of electricity in 2023."),
        (3, "Tencent's shareholders approved the dividend at the annual general meeting."),
    ]
    chunks = [Chunk(f"{name}:{i}", name, t, Source(name, page=page), meta) for i, (page, t) in enumerate(texts)]
    kb = KnowledgeBase(None, embedder.name, embedder.dim)
    kb.add(
        Document(name, name, "pdf", len(chunks), pages=3, meta=meta), chunks, embedder.passages([t for _, t in texts])
    )
    hits = HybridRetriever([kb], embedder, Settings()).retrieve("Tencent shareholding structure", k=5).hits
    pages = [(h.chunk.source.file, h.chunk.source.page) for h in hits]
    assert sorted(pages) == [(name, 1), (name, 2), (name, 3)], pages
    [page_one] = [h.chunk for h in hits if h.chunk.source.page == 1]
    assert all(t in page_one.text for page, t in texts if page == 1), page_one.text


def _ranked(name: str, scores: list[tuple[str, float]]) -> list[tuple[Chunk, float]]:
    return [(Chunk(cid, name, cid, Source(name, page=i + 1)), s) for i, (cid, s) in enumerate(scores)]


def _rank(ranked, cid: str) -> int:
    return [c.id for c, _ in ranked].index(cid) + 1


def test_fusion_never_ranks_the_answer_below_the_better_list_on_a_constructed_case() -> None:
    # The failure: BM25 puts the answer first by a wide margin (every rare term of the question on that page),
    # dense search has it nowhere and ranks near-ties first, which BM25 also lists a little lower. Each chunk is its
    # own page here, so chunk ranks are page ranks.
    bm25 = _ranked("r.pdf", [("gold", 14.0), ("a", 5.0), ("b", 4.8), ("c", 4.5)] + [(f"x{i}", 4.0) for i in range(6)])
    dense = _ranked("r.pdf", [("a", 0.86), ("b", 0.855), ("c", 0.85)] + [(f"y{i}", 0.84 - i / 100) for i in range(7)])
    best = min(_rank(bm25, "gold"), len(dense) + 1)
    settings = Settings.from_env(environ={})  # the default: score fusion 0.4/0.6, chosen on dev (issue 15)
    assert (settings.fusion, settings.dense_weight, settings.bm25_weight) == ("scores", 0.4, 0.6)
    assert _rank(fuse(dense, bm25, settings), "gold") <= best == 1
    # Reciprocal-rank fusion with equal weights (the previous default) loses it: two near-ties present in both lists
    # outrank a list's confident first place.
    assert _rank(fuse_rrf(((1.0, dense), (1.0, bm25)), 60), "gold") > best
    # The same with the roles swapped and the weights mirrored: a confident dense first is kept.
    mirrored = settings.replace(dense_weight=settings.bm25_weight, bm25_weight=settings.dense_weight)
    swapped_dense = _ranked(
        "r.pdf", [("gold", 0.95), ("a", 0.80), ("b", 0.798), ("c", 0.796)] + [(f"x{i}", 0.79) for i in range(6)]
    )
    swapped_bm25 = _ranked("r.pdf", [("a", 6.0), ("b", 5.9), ("c", 5.8)] + [(f"y{i}", 5.7 - i / 10) for i in range(7)])
    assert _rank(fuse(swapped_dense, swapped_bm25, mirrored), "gold") == 1


def test_fusions_keep_every_candidate_once_and_agree_on_identical_lists() -> None:
    a = _ranked("r.pdf", [(f"c{i}", 10.0 - i) for i in range(8)])
    b = _ranked("r.pdf", [(f"c{i}", 0.9 - i / 100) for i in range(8)])
    for fused in (
        fuse_rrf(((1.0, a), (1.0, b))),
        fuse_scores(((0.4, a), (0.6, b))),
        fuse_pages(((1.0, a), (1.0, b))),
        fuse_agreement(a, b, (1.0, 1.0), 60),
    ):
        assert [c.id for c, _ in fused] == [f"c{i}" for i in range(8)]
    # Disjoint lists: the agreement rule keeps the list whose best is further ahead of its runner-up.
    confident = _ranked("r.pdf", [("g", 20.0), ("h", 2.0), ("i", 1.9), ("j", 1.8)])
    flat = _ranked("s.pdf", [("p", 0.81), ("q", 0.809), ("r", 0.808), ("s", 0.807)])
    assert [c.id for c, _ in fuse_agreement(flat, confident, (1.0, 1.0), 60)] == ["g", "h", "i", "j"]


def test_fusion_setting_is_validated() -> None:
    from rag.errors import ConfigError

    with pytest.raises(ConfigError, match="fusion"):
        Settings.from_env(environ={"ESG_FUSION": "borda"})
    assert Settings.from_env(environ={"ESG_FUSION": "pages"}).fusion == "pages"
