"""Hybrid retrieval: dense (faiss) + BM25 fused by weighted reciprocal rank, scoped to documents, company or year.

A question that names a company is answered from that company's documents only: the known failure of a
question about Baidu's shareholding answered from Tencent's report comes from letting every report compete.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from rag.adapter import AdapterSlot
from rag.embed import Embedder
from rag.index import KnowledgeBase
from rag.settings import Settings
from rag.text import has_cjk
from rag.types import Chunk, Document, Hit, Retrieval, Scope

log = logging.getLogger(__name__)

# Well-known companies a question may name although no document covers them, so that retrieval can say
# "no document for X" instead of answering from another company's report. Aliases are lower-case.
KNOWN_COMPANIES: dict[str, tuple[str, ...]] = {
    "Baidu": ("baidu", "百度"),
    "Tencent": ("tencent", "腾讯", "騰訊"),
    "Alibaba": ("alibaba", "阿里巴巴"),
    "JD.com": ("jd.com", "京东"),
    "Huawei": ("huawei", "华为", "華為"),
    "Xiaomi": ("xiaomi", "小米"),
    "BYD": ("byd", "比亚迪"),
    "CATL": ("catl", "宁德时代"),
    "Sinopec": ("sinopec", "中国石化", "中石化"),
    "PetroChina": ("petrochina", "中国石油", "中石油"),
    "Apple": ("apple inc", "apple's", "苹果公司"),
    "Microsoft": ("microsoft", "微软"),
    "Amazon": ("amazon", "亚马逊"),
    "Google": ("google", "alphabet", "谷歌"),
    "Meta": ("meta platforms", "facebook"),
    "Tesla": ("tesla", "特斯拉"),
    "Walmart": ("walmart", "沃尔玛"),
    "Shell": ("shell plc", "royal dutch shell", "壳牌"),
    "BP": ("bp plc", "bp's"),
    "ExxonMobil": ("exxon", "exxonmobil", "埃克森"),
    "Nestlé": ("nestle", "nestlé", "雀巢"),
    "Unilever": ("unilever", "联合利华"),
    "Toyota": ("toyota", "丰田"),
    "Volkswagen": ("volkswagen", "大众汽车"),
    "Glencore": ("glencore",),
    "Vale": ("vale s.a", "vale's"),
    "Anglo American": ("anglo american",),
    "Walgreens": ("walgreens",),
    "Target": ("target corporation",),
    "Kroger": ("kroger",),
    "Home Depot": ("home depot",),
    "Samsung Electronics": ("samsung", "三星"),
    "Siemens": ("siemens", "西门子"),
    "Costco": ("costco", "好市多", "开市客"),
    "Rio Tinto": ("rio tinto", "力拓"),
    "BHP": ("bhp", "必和必拓"),
    "Orange": ("orange s.a", "orange group", "orange's"),
    "Suez": ("suez", "苏伊士"),
    "CT REIT": ("ct reit", "ct real estate"),
}

_YEAR_SCOPE = re.compile(
    r"(?:\b(20\d\d)\s+(?:report|esg|sustainability|annual|climate|integrated)|"
    r"(?:report|fiscal year|fy)\s*(20\d\d)\b|(20\d\d)\s*年[^，。？?]{0,12}报告)",
    re.IGNORECASE,
)


def _aliases(company: str) -> set[str]:
    low = company.lower().strip()
    names = {low}
    # "Samsung Electronics" is also asked about as "Samsung"; skip short generic first words.
    first = low.split()[0] if low.split() else low
    if len(first) >= 4 and first not in {"the", "china", "group", "first", "national"}:
        names.add(first)
    for canonical, aliases in KNOWN_COMPANIES.items():
        if canonical.lower() == low or low in aliases or first in aliases:
            names.update(aliases)
            names.add(canonical.lower())
    return {n for n in names if n}


def _mentions(text: str, alias: str) -> bool:
    if has_cjk(alias):  # no word boundaries in CJK text
        return alias in text
    return re.search(rf"(?<![a-z0-9]){re.escape(alias)}(?![a-z0-9])", text) is not None


@dataclass(frozen=True)
class ScopePlan:
    files: frozenset[str] | None  # None: everything
    scope: Scope
    missing: str | None = None


def plan_scope(query: str, scope: Scope, documents: Sequence[Document]) -> ScopePlan:
    """Turn the user's scope plus what the question names into the set of files to search."""
    docs = list(documents)
    if scope.docs:
        docs = [d for d in docs if d.name in set(scope.docs)]
    if scope.company:
        wanted = _aliases(scope.company)
        docs = [d for d in docs if d.meta.company and _aliases(d.meta.company) & wanted]
    if scope.year:
        docs = [d for d in docs if d.meta.year == scope.year]
    if not docs:
        return ScopePlan(frozenset(), scope, "no document matches the chosen scope")
    applied = scope
    text = query.lower()
    # The question may name companies: keep only their documents (several, for a comparison).
    if not scope.company:
        named_docs: list[Document] = []
        named_companies: set[str] = set()
        for doc in docs:
            if doc.meta.company and any(_mentions(text, a) for a in _aliases(doc.meta.company)):
                named_docs.append(doc)
                named_companies.add(doc.meta.company)
        known_in_kb = {a for d in docs if d.meta.company for a in _aliases(d.meta.company)}
        absent = [
            name
            for name, aliases in KNOWN_COMPANIES.items()
            if not (set(aliases) & known_in_kb) and any(_mentions(text, a) for a in aliases)
        ]
        if named_docs:
            docs = named_docs
            if len(named_companies) == 1:
                applied = Scope(scope.docs, next(iter(named_companies)), scope.year)
        elif absent:
            return ScopePlan(frozenset(), Scope(scope.docs, absent[0], scope.year), f"no document for {absent[0]}")
    if not scope.year:
        match = _YEAR_SCOPE.search(query)
        if match:
            year = int(next(g for g in match.groups() if g))
            years = {d.meta.year for d in docs if d.meta.year}
            # Reports are dated by publication as often as by the year they cover: FY2023 figures are in a report
            # titled 2024. An exact match wins; a report of the next year is the fallback.
            covering = [d for d in docs if d.meta.year == year] or [d for d in docs if d.meta.year == year + 1]
            if covering:
                docs = covering
                applied = Scope(applied.docs, applied.company, covering[0].meta.year)
            elif scope.docs:
                pass  # the user chose these documents: search them whatever year they are labelled with
            elif years:
                who = f" from {applied.company}" if applied.company else ""
                return ScopePlan(frozenset(), Scope(applied.docs, applied.company, year), f"no {year} report{who}")
    if len(docs) == len(documents) and scope.unrestricted:
        return ScopePlan(None, applied)
    return ScopePlan(frozenset(d.name for d in docs), applied)


PER_PAGE = 3  # chunks of one page merged into its passage, best first


def group_by_page(ranked: Sequence[Chunk], k: int, per_page: int = PER_PAGE) -> list[list[Chunk]]:
    """The ``k`` best pages, each as its best chunks (up to ``per_page``, best first), from chunks ranked best first.

    A citation names a page, so the reader gets one passage per page: a second chunk of a page already chosen joins
    that page's passage instead of taking a slot from another page, so the reader sees every chunk plain top-k would
    have shown plus more pages. Measured on the ESG QA set (docs/BENCHMARKS.md): hybrid hit@10 0.68 -> 0.82, and a
    question answered by two chunks of one page keeps both. Media chunks have no page: each is its own passage.
    """
    groups: list[list[Chunk]] = []
    keys: list[set[tuple[str, int]]] = []
    for chunk in ranked:
        src = chunk.source
        pages = {(src.file, p) for p in range(src.page, (src.last_page or src.page) + 1)} if src.page else set()
        home = next((i for i, key in enumerate(keys) if pages & key), None)
        if home is None:
            groups.append([chunk])
            keys.append(set(pages))
            if len(groups) == k:
                break  # later chunks rank below every chosen page's best: plain top-k would not have had them
        elif len(groups[home]) < per_page:
            groups[home].append(chunk)
            keys[home] |= pages
    return groups


def merge_page(group: Sequence[Chunk]) -> Chunk:
    """One passage from a page's chunks: the best chunk's identity, their texts, the pages they span."""
    best = group[0]
    if len(group) == 1:
        return best
    first = min(c.source.page or 0 for c in group)
    last = max(c.source.last_page or c.source.page or 0 for c in group)
    source = replace(best.source, page=first, last_page=last if last > first else None)
    # Chunks that start on an earlier page come first (a passage running onto the page precedes the page's own
    # text); within a page, best first.
    ordered = sorted(group, key=lambda c: c.source.page or 0)
    text, starts, page = "", [], first
    for chunk in ordered:
        base = len(text) + (2 if text else 0)  # the "\n\n" join
        text = f"{text}\n\n{chunk.text}" if text else chunk.text
        own = chunk.source.page or first
        starts.extend([base] * max(0, own - page))
        starts.extend(base + s for i, s in enumerate(chunk.page_starts) if own + i + 1 > page)
        page = max(page, chunk.source.last_page or own)
    return replace(best, text=text, source=source, page_starts=tuple(starts))


Ranked = list[tuple[Chunk, float]]  # chunks with their list's score, best first

FUSIONS = ("rrf", "scores", "agreement", "pages")


def _page_of(chunk: Chunk) -> tuple:
    src = chunk.source
    return (src.file, src.page) if src.page else (chunk.id,)


def fuse_rrf(lists: Sequence[tuple[float, Ranked]], rrf_k: int = 60) -> Ranked:
    """Weighted reciprocal-rank fusion: ``sum(w / (rrf_k + rank))`` over the (weight, list) pairs, best first."""
    fused: dict[str, float] = {}
    by_id: dict[str, Chunk] = {}
    for weight, ranked in lists:
        for rank, (chunk, _) in enumerate(ranked):
            by_id[chunk.id] = chunk
            fused[chunk.id] = fused.get(chunk.id, 0.0) + weight / (rrf_k + rank + 1)
    return [(by_id[cid], fused[cid]) for cid in sorted(fused, key=lambda cid: -fused[cid])]


def _normalised(ranked: Ranked, norm: str = "minmax") -> dict[str, float]:
    """Scores on a 0..1 scale within the list, so cosines and BM25 sums can be added: ``minmax`` (best 1, worst 0),
    ``max`` (divided by the best) or ``z`` (standard scores squashed by a logistic)."""
    if not ranked:
        return {}
    scores = np.array([s for _, s in ranked], dtype=np.float64)
    if norm == "max":
        top = scores.max()
        values = scores / top if top > 0 else np.ones_like(scores)
    elif norm == "z":
        sd = scores.std()
        values = 1 / (1 + np.exp(-(scores - scores.mean()) / sd)) if sd > 0 else np.full_like(scores, 0.5)
    else:
        span = scores.max() - scores.min()
        values = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
    return {c.id: float(v) for (c, _), v in zip(ranked, values, strict=True)}


def fuse_scores(lists: Sequence[tuple[float, Ranked]], norm: str = "minmax", fill: bool = False) -> Ranked:
    """Score-normalised weighted fusion: each list's scores normalised (``_normalised``), weighted and summed. A chunk
    absent from a list counts 0 there, or with ``fill`` the list's lowest value (it ranked below the list's last, so
    at most that: a flat list then cannot outvote a confident one).

    Unlike reciprocal ranks it keeps how far a list's best is ahead of its next: a BM25 top hit matching every rare
    term of the question stays first although dense ranks it nowhere.
    """
    by_id = {chunk.id: chunk for _, ranked in lists for chunk, _ in ranked}
    fused = dict.fromkeys(by_id, 0.0)
    for weight, ranked in lists:
        values = _normalised(ranked, norm)
        floor = min(values.values()) if fill and values else 0.0
        for cid in by_id:
            fused[cid] += weight * values.get(cid, floor)
    return [(by_id[cid], fused[cid]) for cid in sorted(fused, key=lambda cid: -fused[cid])]


def _top_pages(ranked: Ranked, k: int) -> list[tuple]:
    pages: list[tuple] = []
    for chunk, _ in ranked:
        page = _page_of(chunk)
        if page not in pages:
            pages.append(page)
            if len(pages) == k:
                break
    return pages


def agreement(dense: Ranked, bm25: Ranked, k: int = 10) -> float:
    """Share of the two lists' top ``k`` pages they have in common (0: disjoint, 1: the same pages)."""
    a, b = set(_top_pages(dense, k)), set(_top_pages(bm25, k))
    return len(a & b) / max(1, min(len(a), len(b)))


def fuse_agreement(dense: Ranked, bm25: Ranked, weights: tuple[float, float], rrf_k: int, low: float = 0.2) -> Ranked:
    """Per-query choice: when the lists' top pages agree, fuse them (RRF); when they barely overlap, one of them is
    off target and fusing dilutes the other, so keep the list whose best is further ahead of its runner-up."""
    if not dense or not bm25 or agreement(dense, bm25) >= low:
        return fuse_rrf(((weights[0], dense), (weights[1], bm25)), rrf_k)

    def margin(ranked: Ranked) -> float:
        norm = sorted(_normalised(ranked[:10]).values(), reverse=True)
        return norm[0] - norm[1] if len(norm) > 1 else 1.0

    return list(dense if margin(dense) >= margin(bm25) else bm25)


def fuse_pages(lists: Sequence[tuple[float, Ranked]], rrf_k: int = 60) -> Ranked:
    """Page-level fusion: each list ranks pages by their best chunk, pages are fused by weighted reciprocal rank,
    and chunks come out page by page (a page's chunks in their best list order), each with its page's score.

    A page with many chunks no longer pushes other pages down one list at a time."""
    page_score: dict[tuple, float] = {}
    chunk_rank: dict[str, float] = {}
    by_id: dict[str, Chunk] = {}
    for weight, ranked in lists:
        seen: list[tuple] = []
        for rank, (chunk, _) in enumerate(ranked):
            by_id[chunk.id] = chunk
            chunk_rank[chunk.id] = min(chunk_rank.get(chunk.id, rank), rank)
            page = _page_of(chunk)
            if page not in seen:
                seen.append(page)
                page_score[page] = page_score.get(page, 0.0) + weight / (rrf_k + len(seen))
    order = sorted(by_id, key=lambda cid: (-page_score[_page_of(by_id[cid])], chunk_rank[cid]))
    return [(by_id[cid], page_score[_page_of(by_id[cid])]) for cid in order]


def fuse(dense: Ranked, bm25: Ranked, settings: Settings) -> Ranked:
    """The dense and BM25 lists fused by ``settings.fusion`` (docs/BENCHMARKS.md, issue 15: chosen on the dev split)."""
    weights = (settings.dense_weight, settings.bm25_weight)
    lists = ((weights[0], dense), (weights[1], bm25))
    if settings.fusion == "scores":
        return fuse_scores(lists)
    if settings.fusion == "agreement":
        return fuse_agreement(dense, bm25, weights, settings.rrf_k)
    if settings.fusion == "pages":
        return fuse_pages(lists, settings.rrf_k)
    return fuse_rrf(lists, settings.rrf_k)


@dataclass(frozen=True)
class Candidates:
    """What fusion starts from: the scope plan, each method's ranked chunks and the query vector used."""

    plan: ScopePlan
    dense: Ranked
    bm25: Ranked
    qvec: np.ndarray | None  # the embedder's query vector (before any adapter)
    adapted: bool = False  # dense scores are cosines of the adapted query vector


class HybridRetriever:
    """Searches one or more knowledge bases (e.g. the shared one plus a visitor's private uploads)."""

    def __init__(self, kbs: Sequence[KnowledgeBase], embedder: Embedder, settings: Settings) -> None:
        self.kbs = list(kbs)
        self.embedder = embedder
        self.settings = settings
        # A fine-tuned query adapter beside a knowledge base's index (rag/adapter.py), picked up when it appears.
        self._adapters = {id(kb): AdapterSlot(kb.directory, kb.embedder_name, kb.dim) for kb in self.kbs}

    def documents(self) -> list[Document]:
        return [d for kb in self.kbs for d in kb.documents()]

    def _query_vector(self, kb: KnowledgeBase, qvec: np.ndarray) -> tuple[np.ndarray, bool]:
        if not self.settings.adapter:
            return qvec, False
        slot = self._adapters.get(id(kb))
        if slot is None:  # a knowledge base added after construction
            slot = self._adapters[id(kb)] = AdapterSlot(kb.directory, kb.embedder_name, kb.dim)
        adapter = slot.get()
        return (adapter.apply(qvec), True) if adapter is not None else (qvec, False)

    def candidates(
        self, query: str, scope: Scope = Scope(), n: int | None = None, mode: str = "hybrid", *, vector=None
    ) -> Candidates:
        """Each method's best ``n`` chunks (default ``retrieve_k``) within the planned scope, before fusion."""
        n = n or self.settings.retrieve_k
        plan = plan_scope(query, scope, self.documents())
        if plan.missing or (plan.files is not None and not plan.files):
            return Candidates(plan, [], [], None)
        files = set(plan.files) if plan.files is not None else None
        qvec = None
        dense: Ranked = []
        bm25: Ranked = []
        adapted = False
        if mode in ("hybrid", "dense"):
            qvec = vector if vector is not None else self.embedder.query(query)
        for kb in self.kbs:
            if mode in ("hybrid", "dense"):
                kvec, used = self._query_vector(kb, qvec)
                adapted |= used
                dense.extend(kb.search_dense(kvec, n, files))
            if mode in ("hybrid", "bm25"):
                bm25.extend(kb.search_bm25(query, n, files))
        dense.sort(key=lambda p: -p[1])
        bm25.sort(key=lambda p: -p[1])
        return Candidates(plan, dense[:n], bm25[:n], qvec, adapted)

    def retrieve(
        self,
        query: str,
        scope: Scope = Scope(),
        k: int | None = None,
        mode: str = "hybrid",
        *,
        vector: np.ndarray | None = None,
    ) -> Retrieval:
        """The ``k`` best passages for ``query`` (``mode``: ``hybrid``, ``dense`` or ``bm25``). ``vector``: the
        query embedding of ``query`` when the caller already has it (the router's, carried on the ``Query``)."""
        k = k or self.settings.top_k
        if mode == "bm25" and vector is None:
            vector = self.embedder.query(query)  # only for the cosines of the hits (the "nothing relevant" gate)
        found = self.candidates(query, scope, max(self.settings.retrieve_k, k), mode, vector=vector)
        plan = found.plan
        if plan.missing or (plan.files is not None and not plan.files):
            return Retrieval(query, (), plan.scope, plan.missing)
        qvec = found.qvec if found.qvec is not None else vector
        # The "nothing relevant" gate is calibrated on the plain embedder's cosines: an adapter only reorders.
        dense_score = {} if found.adapted else {c.id: s for c, s in found.dense}
        bm25_score = {c.id: s for c, s in found.bm25}
        if mode == "dense":
            ranked = found.dense
        elif mode == "bm25":
            ranked = found.bm25
        else:
            ranked = fuse(found.dense, found.bm25, self.settings)
        fused = {c.id: s for c, s in ranked}
        groups = group_by_page([c for c, _ in ranked], k)
        # BM25-only hits still get a cosine, so the "nothing relevant" threshold sees every passage.
        missing_dense = [c.id for g in groups for c in g if c.id not in dense_score]
        if missing_dense and qvec is not None:
            for kb in self.kbs:
                dense_score.update(kb.dense_scores(qvec, missing_dense))

        def best_of(scores: dict[str, float], group: list[Chunk]) -> float | None:
            found = [scores[c.id] for c in group if c.id in scores]
            return max(found) if found else None

        hits = tuple(
            Hit(merge_page(g), fused[g[0].id], best_of(dense_score, g), best_of(bm25_score, g)) for g in groups
        )
        return Retrieval(query, hits, plan.scope, None)
