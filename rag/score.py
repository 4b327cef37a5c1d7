"""Per-question evaluation scores: retrieval against the gold pages or evidence, and the judge's reading of the answer.

    scores, notes = score_question(item, answer, retrieval, judge, k=5)

Metrics (all 0..1, higher is better; ``None`` where a metric does not apply):

- retrieval against the gold pages (or the gold evidence text when an item has no pages): ``hit@k`` (k = top_k),
  ``mrr`` and ``ndcg@10`` over the top 10 passages of the configured retrieval mode;
- ``context_precision``: rank-weighted share of the passages handed to the LLM that are relevant (gold page or
  evidence; the judge when an item has no gold);
- ``faithfulness``: supported statements / statements, each checked against the passages the answer cites;
- ``answer_relevance``: mean cosine (real embedder) between the question and questions the judge writes for the answer;
- ``correctness`` against the gold answer; ``refusal`` (declined an ``answerable: false`` item) and ``answered``
  (did not decline an answerable one). Declined means what the app showed: ``Answer.refused`` or an out-of-scope
  route, never a second reading of the text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.judge import Judge
from rag.qa import QAItem
from rag.text import count_han, normalize
from rag.types import Answer, Hit, Retrieval

NDCG_K = 10
METRICS = (
    "hit",
    "mrr",
    "ndcg",
    "context_precision",
    "faithfulness",
    "answer_relevance",
    "correctness",
    "refusal",
    "answered",
)


@dataclass(frozen=True)
class Scores:
    """Per-question scores, 0..1 (higher is better); ``None`` where the metric does not apply."""

    hit: float | None = None  # a gold passage in the top k
    mrr: float | None = None  # 1 / rank of the first gold passage in the top 10
    ndcg: float | None = None  # nDCG@10 over gold pages (each counted once)
    context_precision: float | None = None
    faithfulness: float | None = None
    answer_relevance: float | None = None
    correctness: float | None = None
    refusal: float | None = None  # unanswerable item: 1 if the app declined
    answered: float | None = None  # answerable item: 1 if the app did not decline

    def get(self, metric: str) -> float | None:
        """The score of one of ``METRICS``."""
        value: float | None = getattr(self, metric)
        return value

    def values(self) -> list[float]:
        return [v for v in (self.get(m) for m in METRICS) if v is not None]

    def mean(self) -> float | None:
        vals = self.values()
        return sum(vals) / len(vals) if vals else None


def metric_label(metric: str, k: int) -> str:
    """How a metric is named in reports (``k``: the hit@k cut-off)."""
    return {
        "hit": f"hit@{k}",
        "mrr": "MRR@10",
        "ndcg": "nDCG@10",
        "context_precision": "context precision",
        "faithfulness": "faithfulness",
        "answer_relevance": "answer relevance",
        "correctness": "correctness",
        "refusal": "refusal (unanswerable)",
        "answered": "answered (answerable)",
    }[metric]


# --- retrieval against gold -------------------------------------------------------------------------------------------


def _pages(hit: Hit) -> set[int]:
    src = hit.chunk.source
    if src.page is None:
        return set()
    return set(range(src.page, (src.last_page or src.page) + 1))


def _shingles(text: str, n: int = 3) -> set[str]:
    text = normalize(text).lower()
    if count_han(text) > len(text) / 4:
        chars = re.sub(r"\W", "", text)
        return {chars[i : i + n] for i in range(max(1, len(chars) - n + 1))}
    words = re.findall(r"\w+", text)
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def evidence_overlap(evidence: str, passage: str) -> float:
    """Containment of word (CJK: character) 3-grams: the larger of evidence-in-passage and passage-in-evidence."""
    a, b = _shingles(evidence), _shingles(passage)
    if not a or not b:
        return 0.0
    common = len(a & b)
    return max(common / len(a), common / len(b))


def gold_units(hit: Hit, item: QAItem, min_overlap: float = 0.5) -> set[int]:
    """Indexes of the item's gold units (pages, or else evidence extracts) that ``hit`` covers."""
    if item.doc and hit.chunk.source.file != item.doc:
        return set()
    if item.pages:
        return {i for i, p in enumerate(item.pages) if p in _pages(hit)}
    return {i for i, e in enumerate(item.evidence) if evidence_overlap(e, hit.chunk.text) >= min_overlap}


def retrieval_scores(hits: Sequence[Hit], item: QAItem, k: int) -> tuple[float | None, float | None, float | None]:
    """(hit@k, MRR@10, nDCG@10) of ranked ``hits`` against the item's gold; ``None`` without gold."""
    if not item.has_gold_context:
        return None, None, None
    n_units = len(item.pages) if item.pages else len(item.evidence)
    found: set[int] = set()
    dcg, first = 0.0, None
    for rank, hit in enumerate(hits[:NDCG_K], 1):
        units = gold_units(hit, item)
        if units and first is None:
            first = rank
        new = units - found
        if new:
            found |= new
            dcg += 1 / math.log2(rank + 1)
    ideal = sum(1 / math.log2(r + 1) for r in range(1, min(n_units, NDCG_K) + 1))
    hit_k = 1.0 if first is not None and first <= k else 0.0
    return hit_k, (1 / first if first else 0.0), dcg / ideal


def context_precision(relevant: Sequence[bool]) -> float:
    """RAGAS context precision: mean of precision@i over the ranks i holding a relevant passage (0 if none)."""
    total, hits = 0.0, 0
    for i, rel in enumerate(relevant, 1):
        if rel:
            hits += 1
            total += hits / i
    return total / hits if hits else 0.0


# --- one question -----------------------------------------------------------------------------------------------------


def declined(answer: Answer) -> bool:
    """Whether the app showed ``answer`` as a refusal: its own ``refused`` flag, or the out-of-scope route."""
    return answer.refused or answer.route == "out_of_scope"


def score_question(
    item: QAItem, answer: Answer, retrieval: Retrieval, judge: Judge, k: int
) -> tuple[Scores, list[str]]:
    """All metrics of one answered question, and short notes explaining low scores."""
    notes: list[str] = []
    hit_k, mrr, ndcg = retrieval_scores(retrieval.hits, item, k)
    refused = declined(answer)

    # Context precision over the passages the LLM saw, in retrieval rank order (the prompt reorders them).
    ranked = sorted(answer.hits, key=lambda h: -h.score)
    cp = None
    if ranked:
        if item.has_gold_context:
            cp = context_precision([bool(gold_units(h, item)) for h in ranked])
        elif item.answerable and (judge.llm is not None or judge.embedder is not None):
            verdicts = [judge.passage_relevant(item.question, h.chunk.text) for h in ranked]
            cp = context_precision([bool(v) for v in verdicts])

    faith = rel = None
    if not refused:
        cited = [c.hit.chunk.text for c in answer.citations] or [h.chunk.text for h in answer.hits]
        if not answer.citations:
            notes.append("no citations")
        f = judge.faithfulness(answer.text, cited)
        faith = f.score
        for v in f.verdicts:
            if not v.supported:
                why = f"not in cited text: {', '.join(v.missing)}" if v.missing else f"unsupported ({v.method})"
                notes.append(f"{why} — “{normalize(v.statement)[:80]}”")
        rel = judge.answer_relevance(item.question, answer.text, refused=False).score

    correctness = None
    if item.answerable and item.answer:
        correctness = judge.correctness(item.question, answer.text, item.answer, refused=refused)
    refusal = answered = None
    if item.answerable:
        answered = 0.0 if refused else 1.0
        if refused:
            notes.append(f"declined: {answer.reason or 'refusal'}")
    else:
        refusal = 1.0 if refused else 0.0
        if not refused:
            notes.append("answered an unanswerable question")
    if answer.route not in ("rag", "out_of_scope"):
        notes.append(f"routed to {answer.route}")
    return Scores(hit_k, mrr, ndcg, cp, faith, rel, correctness, refusal, answered), notes


__all__ = [
    "METRICS",
    "NDCG_K",
    "Scores",
    "context_precision",
    "declined",
    "evidence_overlap",
    "gold_units",
    "metric_label",
    "retrieval_scores",
    "score_question",
]
