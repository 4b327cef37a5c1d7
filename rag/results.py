"""Evaluation results and where they are kept: ``QuestionResult`` per question, ``EvalReport`` per run, and the
resumable cache of finished work (``EvalCache``: the pipeline's answer and retrieval, then the scores).

The cache stores an answer's passages as chunk references, not copies: the passages are the knowledge base's own
(``rag.index`` reads and writes them), and the pipeline fingerprint in each key pins the chunks a run saw.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.qa import QAItem
from rag.score import METRICS, Scores
from rag.types import Answer, Chunk, Citation, Hit, Retrieval, Scope

if TYPE_CHECKING:
    from rag.evaluate import EvalConfig

log = logging.getLogger(__name__)

# --- results ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionResult:
    """One question's outcome under one configuration."""

    item: QAItem
    answer: str
    route: str
    refused: bool
    scores: Scores
    citations: tuple[str, ...] = ()  # labels of the cited passages, e.g. "report.pdf, p. 3"
    retrieved: tuple[str, ...] = ()  # labels of the top retrieved passages, best first
    notes: tuple[str, ...] = ()  # e.g. "unsupported: 15%" or "judge questions: …"
    seconds: float = 0.0  # pipeline time (answer), seconds
    cached: bool = False
    error: str | None = None


Overall = dict[str, tuple[float | None, int]]  # metric -> (mean, number of questions it applies to)


@dataclass(frozen=True)
class EvalReport:
    """All questions of one run under one configuration."""

    config: EvalConfig
    config_name: str
    k: int
    judge: str
    settings: dict[str, object]
    results: tuple[QuestionResult, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (item id, reason)
    qa_source: str = ""
    started: str = ""
    seconds: float = 0.0  # wall time of the run

    @property
    def computed(self) -> int:
        return sum(not r.cached and r.error is None for r in self.results)

    @property
    def reused(self) -> int:
        return sum(r.cached for r in self.results)

    @property
    def failed(self) -> int:
        return sum(r.error is not None for r in self.results)

    def overall(self, results: Sequence[QuestionResult] | None = None) -> Overall:
        """metric -> (mean, number of questions it applies to)."""
        results = self.results if results is None else results
        out: Overall = {}
        for m in METRICS:
            vals = [v for r in results if r.error is None and (v := r.scores.get(m)) is not None]
            out[m] = (sum(vals) / len(vals) if vals else None, len(vals))
        return out

    def by_document(self) -> dict[str, Overall]:
        groups: dict[str, list[QuestionResult]] = defaultdict(list)
        for r in self.results:
            groups[r.item.doc or "(all documents)"].append(r)
        return {doc: self.overall(rs) for doc, rs in sorted(groups.items())}

    def worst_first(self) -> list[QuestionResult]:
        def key(r: QuestionResult) -> tuple[int, float]:
            if r.error is not None:
                return (0, 0.0)
            mean = r.scores.mean()
            return (1, mean if mean is not None else 1.0)

        return sorted(self.results, key=key)


# --- the cache --------------------------------------------------------------------------------------------------------

ChunkKey = tuple[str, str]  # (chunk id, file): ids are content hashes, so a re-ingested copy is told apart by file


def chunk_key(chunk: Chunk) -> ChunkKey:
    return (chunk.id, chunk.source.file)


def _hit_ref(hit: Hit) -> dict[str, Any]:
    return {"id": hit.chunk.id, "file": hit.chunk.source.file, "score": hit.score, "dense": hit.dense, "bm25": hit.bm25}


def _hit_from_ref(ref: dict[str, Any], chunks: dict[ChunkKey, Chunk]) -> Hit:
    return Hit(chunks[(ref["id"], ref["file"])], ref["score"], ref.get("dense"), ref.get("bm25"))


@dataclass(frozen=True)
class PipelineRecord:
    """What the pipeline returned for one question: the answer, the ranked retrieval scored against gold, and the
    time the answer took (seconds)."""

    answer: Answer
    retrieval: Retrieval
    seconds: float

    def to_json(self) -> dict[str, Any]:
        answer, retrieval, scope = self.answer, self.retrieval, self.retrieval.scope
        hits = list(answer.hits)
        cites = []
        for c in answer.citations:
            idx = next((i for i, h in enumerate(hits) if h is c.hit), None)
            if idx is None:
                hits.append(c.hit)
                idx = len(hits) - 1
            cites.append({"n": c.n, "hit": idx})
        return {
            "answer": {
                "text": answer.text,
                "route": answer.route,
                "refused": answer.refused,
                "reason": answer.reason,
                "question": answer.question,
                "standalone_question": answer.standalone_question,
                "n_hits": len(answer.hits),
                "hits": [_hit_ref(h) for h in hits],
                "citations": cites,
            },
            "retrieval": {
                "query": retrieval.query,
                "hits": [_hit_ref(h) for h in retrieval.hits],
                "scope": {"docs": list(scope.docs), "company": scope.company, "year": scope.year},
                "missing": retrieval.missing,
            },
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], chunks: dict[ChunkKey, Chunk]) -> PipelineRecord:
        """Rebuild a record, its passages looked up in ``chunks``; ``KeyError`` when one is no longer there."""
        a, r = obj["answer"], obj["retrieval"]
        hits = [_hit_from_ref(h, chunks) for h in a["hits"]]
        answer = Answer(
            text=a["text"],
            route=a["route"],
            citations=tuple(Citation(c["n"], hits[c["hit"]]) for c in a["citations"]),
            hits=tuple(hits[: a["n_hits"]]),
            refused=a["refused"],
            reason=a.get("reason"),
            question=a.get("question", ""),
            standalone_question=a.get("standalone_question", ""),
        )
        s = r.get("scope") or {}
        retrieval = Retrieval(
            r["query"],
            tuple(_hit_from_ref(h, chunks) for h in r["hits"]),
            Scope(tuple(s.get("docs") or ()), s.get("company"), s.get("year")),
            r.get("missing"),
        )
        return cls(answer, retrieval, float(obj["seconds"]))


def _result_to_json(r: QuestionResult) -> dict[str, Any]:
    return {
        "answer": r.answer,
        "route": r.route,
        "refused": r.refused,
        "scores": asdict(r.scores),
        "citations": list(r.citations),
        "retrieved": list(r.retrieved),
        "notes": list(r.notes),
        "seconds": r.seconds,
    }


def _result_from_json(item: QAItem, obj: dict[str, Any]) -> QuestionResult:
    return QuestionResult(
        item=item,
        answer=obj["answer"],
        route=obj["route"],
        refused=obj["refused"],
        scores=Scores(**obj["scores"]),
        citations=tuple(obj["citations"]),
        retrieved=tuple(obj["retrieved"]),
        notes=tuple(obj["notes"]),
        seconds=obj.get("seconds", 0.0),
        cached=True,
    )


class EvalCache:
    """Append-only JSONL of finished work: ``pipeline`` records (answer + retrieval) and ``scores`` records.

    Each line is written and flushed as soon as a question finishes, so an interrupted run loses at most the
    question in progress; a torn last line is ignored on reading. ``path`` None keeps records in memory only.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._pipeline: dict[str, dict[str, Any]] = {}
        self._scores: dict[str, dict[str, Any]] = {}
        if path is not None and path.is_file():
            with open(path, encoding="utf-8") as fh:
                for no, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        (self._pipeline if rec["type"] == "pipeline" else self._scores)[rec["key"]] = rec
                    except (json.JSONDecodeError, KeyError, TypeError):
                        log.warning("%s:%d: ignoring an unreadable cache line (an interrupted write?)", path, no)

    def _append(self, rec: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fh.flush()

    def pipeline(self, key: str, chunks: dict[ChunkKey, Chunk]) -> PipelineRecord | None:
        """The stored pipeline record under ``key`` (``None`` when absent or naming a passage not in ``chunks``)."""
        rec = self._pipeline.get(key)
        if rec is None:
            return None
        try:
            return PipelineRecord.from_json(rec, chunks)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            log.warning("ignoring a stored answer that no longer matches the knowledge base (%s)", exc)
            return None

    def add_pipeline(self, key: str, record: PipelineRecord) -> None:
        rec = {"type": "pipeline", "key": key, **record.to_json()}
        self._pipeline[key] = rec
        self._append(rec)

    def result(self, key: str, item: QAItem) -> QuestionResult | None:
        rec = self._scores.get(key)
        if rec is None:
            return None
        try:
            return _result_from_json(item, rec["result"])
        except (KeyError, TypeError) as exc:
            log.warning("ignoring an unreadable stored score (%s)", exc)
            return None

    def add_result(self, key: str, result: QuestionResult) -> None:
        rec = {"type": "scores", "key": key, "result": _result_to_json(result)}
        self._scores[key] = rec
        self._append(rec)


__all__ = ["ChunkKey", "EvalCache", "EvalReport", "Overall", "PipelineRecord", "QuestionResult", "chunk_key"]
