"""Built-in evaluation: run the real app pipeline over a QA set and score it RAGAS-style.

    rows = load_qa(Path("qa.jsonl"))
    report = run_eval(settings_or_assistant, rows, out_dir, progress=callback)
    markdown_path, png_paths = write_report(report, out_dir)

    # The app's Evaluation tab: the knowledge base a visitor sees (shared + their private uploads), the app's models:
    report = run_eval(app_assistant, load_qa(SAMPLE_QA_PATH), cache_dir, progress, session=visitor_session)

Metrics per question (all 0..1, higher is better; ``None`` where a metric does not apply):

- retrieval against the gold pages (or the gold evidence text when a row has no pages): ``hit@k`` (k = top_k),
  ``mrr`` and ``ndcg@10`` over the top 10 passages of the configured retrieval mode;
- ``context_precision``: rank-weighted share of the passages handed to the LLM that are relevant (gold page or
  evidence; the judge LLM when a row has no gold);
- ``faithfulness``: supported statements / statements, each checked against the passages the answer cites;
- ``answer_relevance``: mean cosine (real embedder) between the question and questions the judge writes for the answer;
- ``correctness`` against the gold answer; ``refusal`` (declined an ``answerable: false`` row) and ``answered``
  (did not decline an answerable one).

Resumable: every finished question appends one line to ``out_dir/eval_cache.jsonl``, keyed by the question and a
fingerprint of everything that changes its answer (settings, documents, pipeline code) and, separately, of the judge.
A rerun reuses what is unchanged: a judge change re-scores stored answers without asking the pipeline again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import ConfigError, RagError
from rag.judge import Judge
from rag.settings import Settings
from rag.text import count_han, detect_language, is_refusal, normalize, only_states_absence
from rag.types import Answer, Citation, Hit, Retrieval, Scope

if TYPE_CHECKING:
    from rag.assistant import Session

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
EVAL_VERSION = 1  # bump when scoring changes in a way the judge fingerprint can't see
CACHE_FILE = "eval_cache.jsonl"
# The bundled QA set over the sample documents; it ships with the app (the Evaluation tab offers it), so it lives
# in assets/ beside them rather than in tests/.
SAMPLE_DOCS_DIR = Path(__file__).resolve().parent.parent / "assets"
SAMPLE_QA_PATH = SAMPLE_DOCS_DIR / "sample_qa.jsonl"
NDCG_K = 10
MODES = ("hybrid", "dense", "bm25")
_RAG_DIR = Path(__file__).resolve().parent
# The modules a question passes through: editing one invalidates stored answers.
PIPELINE_MODULES = (
    "assistant.py",
    "answer.py",
    "prompt.py",
    "retrieve.py",
    "route.py",
    "faq.py",
    "llm.py",
    "embed.py",
    "index.py",
    "bm25.py",
    "types.py",
)


# --- QA rows -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QARow:
    """One evaluation question. ``pages`` are 1-based pages of ``doc``; ``evidence`` are gold passages."""

    id: str
    question: str
    answer: str | None = None  # the gold answer
    doc: str | None = None
    pages: tuple[int, ...] = ()
    evidence: tuple[str, ...] = ()
    answerable: bool = True
    lang: str = "en"
    doc_dir: str | None = None  # sub-folder of --docs holding ``doc`` (the shared QA sets name one)

    @property
    def scope(self) -> Scope:
        return Scope((self.doc,)) if self.doc else Scope()

    @property
    def has_gold_context(self) -> bool:
        return bool(self.pages or self.evidence)


def _ints(value: object) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value if v is not None]
    return [int(value)]  # type: ignore[arg-type]


def _evidence(value: object) -> list[str]:
    if not value:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        # Climate Finance Bench joins several extracts with "\n---\n".
        out += [part.strip() for part in re.split(r"\n-{3,}\n", str(item)) if part.strip()]
    return out


def parse_qa_rows(objects: Iterable[dict], source: str = "QA file") -> list[QARow]:
    """Normalise QA rows of the shared formats into ``QARow``s.

    Accepts ``question`` plus optional ``answer``, ``doc``, ``page``/``pages``/``evidence_pages_verified``,
    ``evidence`` (string, ``\\n---\\n``-joined string or list), ``answerable``, ``lang``, ``doc_dir``, ``id``/``qid``.
    Rows asking the same question about the same document (ClimRetrieve has one row per evidence passage) are
    merged: their pages and evidence are pooled. A row without ``answerable`` is unanswerable when its gold answer
    is a "not available" statement.
    """
    merged: dict[tuple[str | None, str], dict] = {}
    order: list[tuple[str | None, str]] = []
    for no, obj in enumerate(objects, 1):
        if not isinstance(obj, dict):
            raise ConfigError(f"{source}: row {no} is not a JSON object")
        question = obj.get("question")
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(f"{source}: row {no} has no 'question'")
        doc = obj.get("doc") or None
        try:
            pages = _ints(obj.get("pages")) + _ints(obj.get("page")) + _ints(obj.get("evidence_pages_verified"))
        except (TypeError, ValueError):
            raise ConfigError(
                f"{source}: row {no} has a page that is not a whole number: {obj.get('page')!r}"
            ) from None
        if any(p < 1 for p in pages):
            raise ConfigError(f"{source}: row {no} has a page below 1 (pages are 1-based): {pages}")
        key = (doc, " ".join(question.split()))
        if key not in merged:
            order.append(key)
            gold = obj.get("answer")
            answerable = obj.get("answerable")
            if answerable is None:
                answerable = not (isinstance(gold, str) and only_states_absence(gold))
            merged[key] = {
                "id": str(obj.get("qid") or obj.get("id") or f"row{no}"),
                "question": question.strip(),
                "answer": gold if isinstance(gold, str) and gold.strip() else None,
                "doc": doc,
                "pages": [],
                "evidence": [],
                "answerable": bool(answerable),
                "lang": obj.get("lang") or detect_language(question),
                "doc_dir": obj.get("doc_dir"),
            }
        row = merged[key]
        for page in pages:
            if page not in row["pages"]:
                row["pages"].append(page)
        for extract in _evidence(obj.get("evidence")):
            if extract not in row["evidence"]:
                row["evidence"].append(extract)
        if obj.get("answerable") is True:
            row["answerable"] = True
    rows = []
    seen_ids: set[str] = set()
    for key in order:
        r = merged[key]
        rid = r["id"]
        while rid in seen_ids:  # ids must be unique in the report
            rid += "'"
        seen_ids.add(rid)
        rows.append(QARow(**{**r, "id": rid, "pages": tuple(sorted(r["pages"])), "evidence": tuple(r["evidence"])}))
    return rows


def parse_qa_text(text: str, source: str = "QA file") -> list[QARow]:
    """Parse JSONL text (one JSON object per line, blank lines ignored); a bad line raises ``ConfigError`` naming
    ``source`` and the 1-based line number."""
    objects = []
    for no, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 may sit inside a string
        if not line.strip():
            continue
        try:
            objects.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}:{no}: not valid JSON ({exc.msg})") from None
    if not objects:
        raise ConfigError(f"QA file {source} has no rows")
    return parse_qa_rows(objects, source)


def load_qa(path: Path, source: str | None = None) -> list[QARow]:
    """Read a JSONL QA file (see ``parse_qa_rows``); a bad line raises ``ConfigError`` naming it. ``source`` is the
    name used in messages (default: the path; the app passes the uploaded file's own name)."""
    path = Path(path)
    source = source or str(path)
    if not path.is_file():
        raise ConfigError(f"QA file not found: {source}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM from Windows editors
    except UnicodeDecodeError:
        raise ConfigError(f"QA file {source} is not UTF-8 text (expected JSON lines)") from None
    return parse_qa_text(text, source)


# --- configuration and fingerprints ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalConfig:
    """One pipeline configuration: retrieval ``mode`` and ``llm`` (None = the settings' model)."""

    mode: str = "hybrid"
    llm: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"retrieval mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    def name(self, settings: Settings) -> str:
        llm = self.llm or (settings.llm_model or settings.llm_base_url if settings.llm_base_url else settings.llm)
        return f"{self.mode} · {Path(str(llm)).name}"


def settings_for(base: Settings, config: EvalConfig) -> Settings:
    """``base`` with the config's model and retrieval mode (a mode is a fusion weight set to zero)."""
    changes: dict[str, object] = {}
    if config.llm:
        changes["llm"] = config.llm
    if config.mode == "dense":
        changes.update(dense_weight=base.dense_weight or 1.0, bm25_weight=0.0)
    elif config.mode == "bm25":
        changes.update(dense_weight=0.0, bm25_weight=base.bm25_weight or 1.0)
    return base.replace(**changes) if changes else base


_PIPELINE_FIELDS = (
    "embedder chunk_tokens two_level retrieve_k top_k dense_weight bm25_weight rrf_k bm25_k1 bm25_b min_dense_score "
    "llm llm_ctx max_answer_tokens max_prompt_tokens llm_base_url llm_model"
).split()


def _sha(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:20]


def code_fingerprint(directory: Path = _RAG_DIR, modules: Sequence[str] = PIPELINE_MODULES) -> str:
    """Hash of the source of the modules a question passes through (an edit to the prompt changes every answer).

    Ingestion code is not included: its effect reaches answers only through the chunks, which are hashed instead.
    """
    h = hashlib.sha256()
    for name in sorted(modules):
        path = Path(directory) / name
        h.update(name.encode())
        h.update(path.read_bytes() if path.is_file() else b"")
    return h.hexdigest()[:20]


def pipeline_fingerprint(
    settings: Settings, documents: Sequence[object], chunk_ids: Sequence[str] = (), faq: Path | None = None
) -> str:
    """What an answer depends on besides the question: settings, the documents and their chunks, the FAQ, the code."""
    names = {f.name for f in fields(Settings)}
    values = {name: getattr(settings, name) for name in _PIPELINE_FIELDS if name in names}
    docs = sorted((getattr(d, "name", ""), getattr(d, "sha256", "")) for d in documents)
    chunks = hashlib.sha256("\n".join(sorted(chunk_ids)).encode()).hexdigest()[:20]
    faq_hash = hashlib.sha256(faq.read_bytes()).hexdigest()[:16] if faq and faq.is_file() else ""
    return _sha({"settings": values, "docs": docs, "chunks": chunks, "faq": faq_hash, "code": code_fingerprint()})


def judge_fingerprint(judge: Judge) -> str:
    source = (_RAG_DIR / "judge.py").read_bytes() + (_RAG_DIR / "evaluate.py").read_bytes()
    embedder = getattr(judge.embedder, "name", "none")
    return _sha(
        {"judge": judge.name, "embedder": embedder, "v": EVAL_VERSION, "code": hashlib.sha256(source).hexdigest()}
    )


def row_key(row: QARow) -> dict:
    return {"question": row.question, "doc": row.doc}


# --- scores ----------------------------------------------------------------------------------------------------------

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
    refusal: float | None = None  # unanswerable row: 1 if the app declined
    answered: float | None = None  # answerable row: 1 if the app did not decline

    def values(self) -> list[float]:
        return [v for v in (getattr(self, m) for m in METRICS) if v is not None]

    def mean(self) -> float | None:
        vals = self.values()
        return sum(vals) / len(vals) if vals else None


def metric_label(metric: str, k: int) -> str:
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


def gold_units(hit: Hit, row: QARow, min_overlap: float = 0.5) -> set[int]:
    """Indexes of the row's gold units (pages, or else evidence extracts) that ``hit`` covers."""
    if row.doc and hit.chunk.source.file != row.doc:
        return set()
    if row.pages:
        return {i for i, p in enumerate(row.pages) if p in _pages(hit)}
    return {i for i, e in enumerate(row.evidence) if evidence_overlap(e, hit.chunk.text) >= min_overlap}


def retrieval_scores(hits: Sequence[Hit], row: QARow, k: int) -> tuple[float | None, float | None, float | None]:
    """(hit@k, MRR@10, nDCG@10) of ranked ``hits`` against the row's gold; ``None`` without gold."""
    if not row.has_gold_context:
        return None, None, None
    n_units = len(row.pages) if row.pages else len(row.evidence)
    found: set[int] = set()
    dcg, first = 0.0, None
    for rank, hit in enumerate(hits[:NDCG_K], 1):
        units = gold_units(hit, row)
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


# --- results ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionResult:
    """One question's outcome under one configuration."""

    row: QARow
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


@dataclass(frozen=True)
class EvalReport:
    """All questions of one run under one configuration."""

    config: EvalConfig
    config_name: str
    k: int
    judge: str
    settings: dict[str, object]
    results: tuple[QuestionResult, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (row id, reason)
    qa_source: str = ""
    started: str = ""
    seconds: float = 0.0

    @property
    def computed(self) -> int:
        return sum(not r.cached and r.error is None for r in self.results)

    @property
    def reused(self) -> int:
        return sum(r.cached for r in self.results)

    def overall(self, results: Sequence[QuestionResult] | None = None) -> dict[str, tuple[float | None, int]]:
        """metric -> (mean, number of questions it applies to)."""
        results = self.results if results is None else results
        out: dict[str, tuple[float | None, int]] = {}
        for m in METRICS:
            vals = [getattr(r.scores, m) for r in results if r.error is None and getattr(r.scores, m) is not None]
            out[m] = (sum(vals) / len(vals) if vals else None, len(vals))
        return out

    def by_document(self) -> dict[str, dict[str, tuple[float | None, int]]]:
        groups: dict[str, list[QuestionResult]] = defaultdict(list)
        for r in self.results:
            groups[r.row.doc or "(all documents)"].append(r)
        return {doc: self.overall(rs) for doc, rs in sorted(groups.items())}

    def worst_first(self) -> list[QuestionResult]:
        def key(r: QuestionResult) -> tuple[int, float]:
            if r.error is not None:
                return (0, 0.0)
            mean = r.scores.mean()
            return (1, mean if mean is not None else 1.0)

        return sorted(self.results, key=key)


# --- (de)serialisation for the cache -------------------------------------------------------------------------------


def _hit_to_json(hit: Hit) -> dict:
    from rag.index import chunk_to_json

    return {"chunk": chunk_to_json(hit.chunk), "score": hit.score, "dense": hit.dense, "bm25": hit.bm25}


def _hit_from_json(obj: dict) -> Hit:
    from rag.index import chunk_from_json

    return Hit(chunk_from_json(obj["chunk"]), obj["score"], obj.get("dense"), obj.get("bm25"))


def answer_to_json(answer: Answer) -> dict:
    hits = list(answer.hits)
    cites = []
    for c in answer.citations:
        idx = next((i for i, h in enumerate(hits) if h is c.hit), None)
        if idx is None:
            hits.append(c.hit)
            idx = len(hits) - 1
        cites.append({"n": c.n, "hit": idx})
    return {
        "text": answer.text,
        "route": answer.route,
        "refused": answer.refused,
        "reason": answer.reason,
        "question": answer.question,
        "standalone_question": answer.standalone_question,
        "n_hits": len(answer.hits),
        "hits": [_hit_to_json(h) for h in hits],
        "citations": cites,
    }


def answer_from_json(obj: dict) -> Answer:
    hits = [_hit_from_json(h) for h in obj["hits"]]
    return Answer(
        text=obj["text"],
        route=obj["route"],
        citations=tuple(Citation(c["n"], hits[c["hit"]]) for c in obj["citations"]),
        hits=tuple(hits[: obj["n_hits"]]),
        refused=obj["refused"],
        reason=obj.get("reason"),
        question=obj.get("question", ""),
        standalone_question=obj.get("standalone_question", ""),
    )


def retrieval_to_json(r: Retrieval) -> dict:
    return {
        "query": r.query,
        "hits": [_hit_to_json(h) for h in r.hits],
        "scope": asdict(r.scope),
        "missing": r.missing,
    }


def retrieval_from_json(obj: dict) -> Retrieval:
    s = obj.get("scope") or {}
    scope = Scope(tuple(s.get("docs") or ()), s.get("company"), s.get("year"))
    return Retrieval(obj["query"], tuple(_hit_from_json(h) for h in obj["hits"]), scope, obj.get("missing"))


def _result_to_json(r: QuestionResult) -> dict:
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


def _result_from_json(row: QARow, obj: dict) -> QuestionResult:
    return QuestionResult(
        row=row,
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
    question in progress; a torn last line is ignored on reading.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pipeline: dict[str, dict] = {}
        self.scores: dict[str, dict] = {}
        if path.is_file():
            with open(path, encoding="utf-8") as fh:
                for no, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        (self.pipeline if rec["type"] == "pipeline" else self.scores)[rec["key"]] = rec
                    except (json.JSONDecodeError, KeyError, TypeError):
                        log.warning("%s:%d: ignoring an unreadable cache line (an interrupted write?)", path, no)

    def add(self, kind: str, key: str, data: dict) -> None:
        rec = {"type": kind, "key": key, **data}
        (self.pipeline if kind == "pipeline" else self.scores)[key] = rec
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fh.flush()


# --- scoring one question -------------------------------------------------------------------------------------------


def score_question(row: QARow, answer: Answer, retrieval: Retrieval, judge: Judge, k: int) -> tuple[Scores, list[str]]:
    """All metrics of one answered question, and short notes explaining low scores."""
    notes: list[str] = []
    hit_k, mrr, ndcg = retrieval_scores(retrieval.hits, row, k)
    declined = answer.refused or answer.route == "out_of_scope" or is_refusal(answer.text)

    # Context precision over the passages the LLM saw, in retrieval rank order (the prompt reorders them).
    ranked = sorted(answer.hits, key=lambda h: -h.score)
    cp = None
    if ranked:
        if row.has_gold_context:
            cp = context_precision([bool(gold_units(h, row)) for h in ranked])
        elif row.answerable and (judge.llm is not None or judge.embedder is not None):
            verdicts = [judge.passage_relevant(row.question, h.chunk.text) for h in ranked]
            cp = context_precision([bool(v) for v in verdicts])

    faith = rel = None
    if not declined:
        cited = [c.hit.chunk.text for c in answer.citations] or [h.chunk.text for h in answer.hits]
        if not answer.citations:
            notes.append("no citations")
        f = judge.faithfulness(answer.text, cited)
        faith = f.score
        for v in f.verdicts:
            if not v.supported:
                why = f"not in cited text: {', '.join(v.missing)}" if v.missing else f"unsupported ({v.method})"
                notes.append(f"{why} — “{normalize(v.statement)[:80]}”")
        r = judge.answer_relevance(row.question, answer.text)
        rel = r.score

    correctness = None
    if row.answerable and row.answer:
        correctness = judge.correctness(row.question, answer.text, row.answer)
    refusal = answered = None
    if row.answerable:
        answered = 0.0 if declined else 1.0
        if declined:
            notes.append(f"declined: {answer.reason or 'refusal'}")
    else:
        refusal = 1.0 if declined else 0.0
        if not declined:
            notes.append("answered an unanswerable question")
    if answer.route not in ("rag", "out_of_scope"):
        notes.append(f"routed to {answer.route}")
    return Scores(hit_k, mrr, ndcg, cp, faith, rel, correctness, refusal, answered), notes


# --- running ---------------------------------------------------------------------------------------------------------


def _noop(fraction: float, message: str) -> None:
    pass


def _llm_key(settings: Settings) -> str:
    return f"{settings.llm_base_url}|{settings.llm_model}" if settings.llm_base_url else settings.llm


def _assistant_for(target: object, config: EvalConfig, shared: dict[str, object], kb_dir: Path | None = None):
    """An Assistant running ``config`` (on ``kb_dir`` when given): ``target`` itself when it already does, else one
    sharing its embedder and any model already built (``shared`` maps model keys to LLM objects across configs)."""
    from rag.assistant import Assistant

    if isinstance(target, Settings):
        base_settings, base = target, None
    else:
        base_settings, base = target.settings, target  # type: ignore[attr-defined]
        shared.setdefault("__embedder__", base.embedder)  # type: ignore[attr-defined]
        shared.setdefault(_llm_key(base_settings), base.llm)  # type: ignore[attr-defined]
    settings = settings_for(base_settings, config)
    if kb_dir is not None:
        settings = settings.replace(kb_dir=Path(kb_dir))
    if base is not None and settings == base_settings:
        return base
    assistant = Assistant(
        settings,
        embedder=shared.get("__embedder__"),  # type: ignore[arg-type]
        llm=shared.get(_llm_key(settings)),
    )
    shared.setdefault("__embedder__", assistant.embedder)
    shared.setdefault(_llm_key(settings), assistant.llm)  # built lazily: nothing loads until first use
    return assistant


def _judge_for(spec: object, assistant: object, shared: dict[str, object]) -> Judge:
    """``"same"``: the pipeline's model; ``"none"``: deterministic checks only; ``"small"``/``"large"``/path: that
    model (shared with a pipeline already using it); or an LLM object."""
    key = f"__judge__{spec if isinstance(spec, str) or spec is None else id(spec)}"
    if key in shared:
        return shared[key]  # type: ignore[return-value]
    settings: Settings = assistant.settings  # type: ignore[attr-defined]
    if spec is None or spec == "none":
        llm = None
    elif spec == "same":
        llm = assistant.llm  # type: ignore[attr-defined]
    elif isinstance(spec, str):
        from rag.llm import make_llm

        judge_settings = settings.replace(llm=spec, llm_base_url="")
        llm = shared.get(_llm_key(judge_settings)) or make_llm(judge_settings)
        shared.setdefault(_llm_key(judge_settings), llm)
    else:
        llm = spec
    judge = Judge(llm, assistant.embedder)  # type: ignore[attr-defined]
    shared[key] = judge
    return judge


def run_eval(
    target: object,
    qa_rows: Sequence[QARow],
    out_dir: Path,
    progress: Progress | None = None,
    *,
    config: EvalConfig | None = None,
    judge_llm: object = "same",
    qa_source: str = "",
    kb_dir: Path | None = None,
    session: Session | None = None,
    _shared: dict[str, object] | None = None,
) -> EvalReport:
    """Run the app pipeline (``target``: an ``Assistant`` or ``Settings``) over ``qa_rows`` and score every answer.

    ``judge_llm``: ``"same"`` (the pipeline's model, the default), ``"none"`` (deterministic checks only),
    ``"small"``/``"large"``/a ``.gguf`` path, or an LLM object. Finished questions are cached in
    ``out_dir/eval_cache.jsonl``; rows whose document is not in the knowledge base are skipped with a reason.
    ``progress(fraction, message)`` is called before each question and when the run ends. ``kb_dir`` evaluates
    another knowledge base (e.g. one made by ``prepare_kb``) with ``target``'s models; ``session`` adds a visitor's
    private documents, as the app's chat sees them. Raises ``ConfigError`` when the knowledge base is empty or holds
    none of the documents the rows name.
    """
    config = config or EvalConfig()
    progress = progress or _noop
    shared = _shared if _shared is not None else {}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    assistant = _assistant_for(target, config, shared, kb_dir)
    settings = assistant.settings
    judge = _judge_for(judge_llm, assistant, shared)

    documents = assistant.documents(session)
    known = {d.name for d in documents}
    from rag.faq import faq_path

    kbs = [assistant.kb] + ([session.kb] if session is not None and session.kb is not None else [])
    chunk_ids = [c.id for kb in kbs for c in kb.chunks()]
    pfp = pipeline_fingerprint(settings, documents, chunk_ids, faq_path(settings))
    jfp = judge_fingerprint(judge)
    cache = EvalCache(out_dir / CACHE_FILE)
    k = settings.top_k
    results: list[QuestionResult] = []
    skipped: list[tuple[str, str]] = []
    rows = list(qa_rows)
    if not documents:
        raise ConfigError(f"the knowledge base in {settings.kb_dir} has no documents: ingest some or pass --docs")
    named = sorted({r.doc for r in rows if r.doc})
    if rows and all(r.doc and r.doc not in known for r in rows):
        shown = ", ".join(named[:3]) + (f" (+{len(named) - 3} more)" if len(named) > 3 else "")
        raise ConfigError(f"none of the documents the questions name are in the knowledge base: {shown}")
    name = config.name(settings)
    for i, row in enumerate(rows):
        progress(i / max(1, len(rows)), f"{name}: {i + 1}/{len(rows)} {row.question[:60]}")
        if row.doc and row.doc not in known:
            skipped.append((row.id, f"document {row.doc} is not in the knowledge base"))
            continue
        pkey = _sha({"row": row_key(row), "pipeline": pfp, "mode": config.mode})
        skey = _sha({"p": pkey, "judge": jfp, "row": asdict(row)})
        if skey in cache.scores:
            results.append(_result_from_json(row, cache.scores[skey]["result"]))
            continue
        try:
            if pkey in cache.pipeline:
                rec = cache.pipeline[pkey]
                answer, retrieval, seconds = (
                    answer_from_json(rec["answer"]),
                    retrieval_from_json(rec["retrieval"]),
                    rec["seconds"],
                )
            else:
                t0 = time.perf_counter()
                answer = assistant.answer(row.question, scope=row.scope, session=session)
                seconds = time.perf_counter() - t0
                retrieval = assistant.search(row.question, row.scope, k=NDCG_K, mode=config.mode, session=session)
                cache.add(
                    "pipeline",
                    pkey,
                    {"answer": answer_to_json(answer), "retrieval": retrieval_to_json(retrieval), "seconds": seconds},
                )
            progress((i + 0.5) / max(1, len(rows)), f"{name}: {i + 1}/{len(rows)} judging")
            scores, notes = score_question(row, answer, retrieval, judge, k)
        except RagError as exc:
            log.warning("question %s failed: %s", row.id, exc)
            results.append(QuestionResult(row, "", "error", False, Scores(), error=str(exc)))
            continue
        result = QuestionResult(
            row=row,
            answer=answer.text,
            route=answer.route,
            refused=answer.refused,
            scores=scores,
            citations=tuple(c.source.label() for c in answer.citations),
            retrieved=tuple(h.chunk.source.label() for h in retrieval.hits[:k]),
            notes=tuple(notes),
            seconds=seconds,
        )
        cache.add("scores", skey, {"result": _result_to_json(result)})
        results.append(result)
    progress(1.0, f"{name}: done")
    return EvalReport(
        config=config,
        config_name=name,
        k=k,
        judge=judge.name,
        settings={f: getattr(settings, f) for f in _PIPELINE_FIELDS},
        results=tuple(results),
        skipped=tuple(skipped),
        qa_source=qa_source,
        started=dt.datetime.now().isoformat(timespec="seconds"),
        seconds=time.perf_counter() - started,
    )


def run_compare(
    target: object,
    qa_rows: Sequence[QARow],
    out_dir: Path,
    configs: Sequence[EvalConfig],
    progress: Progress | None = None,
    *,
    judge_llm: object = "same",
    qa_source: str = "",
    kb_dir: Path | None = None,
) -> list[EvalReport]:
    """``run_eval`` for each configuration with one shared judge (so scores are comparable) and shared models."""
    if not configs:
        raise ConfigError("nothing to compare: give at least one configuration")
    progress = progress or _noop
    shared: dict[str, object] = {}
    base = target if isinstance(target, Settings) else target.settings  # type: ignore[attr-defined]
    if judge_llm == "same":
        # One judge for every configuration (the base settings' model), so their scores are comparable.
        judge_llm = (base.llm_base_url and "same") or base.llm
    reports = []
    for n, config in enumerate(configs):

        def step(fraction: float, message: str, n: int = n) -> None:
            progress((n + fraction) / len(configs), message)

        reports.append(
            run_eval(
                target,
                qa_rows,
                out_dir,
                step,
                config=config,
                judge_llm=judge_llm,
                qa_source=qa_source,
                kb_dir=kb_dir,
                _shared=shared,
            )
        )
    return reports


# --- reports ---------------------------------------------------------------------------------------------------------


def _fmt(value: float | None, n: int | None = None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if n is None else f"{value:.2f} (n={n})"


def _cell(text: str, limit: int) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def overall_table(report: EvalReport) -> str:
    lines = ["| metric | score | questions |", "|---|---|---|"]
    for m, (mean, n) in report.overall().items():
        lines.append(f"| {metric_label(m, report.k)} | {_fmt(mean)} | {n} |")
    return "\n".join(lines)


def comparison_table(reports: Sequence[EvalReport]) -> str:
    """Metrics side by side, one column per configuration (Markdown; also fine on a terminal)."""
    if not reports:
        return ""
    k = reports[0].k
    head = "| metric | " + " | ".join(r.config_name for r in reports) + " |"
    lines = [head, "|---|" + "---|" * len(reports)]
    overalls = [r.overall() for r in reports]
    for m in METRICS:
        lines.append(f"| {metric_label(m, k)} | " + " | ".join(_fmt(o[m][0]) for o in overalls) + " |")
    secs = [sum(x.seconds for x in r.results) / max(1, len(r.results)) for r in reports]
    lines.append("| seconds per answer | " + " | ".join(f"{s:.1f}" for s in secs) + " |")
    return "\n".join(lines)


def report_markdown(report: EvalReport, charts: Sequence[Path] = ()) -> str:
    k = report.k
    s = report.settings
    out = [
        "# Evaluation report",
        "",
        f"- QA set: {report.qa_source or '(given rows)'} — {len(report.results)} questions evaluated"
        + (f", {len(report.skipped)} skipped" if report.skipped else ""),
        f"- Configuration: {report.config_name} (LLM {s.get('llm')}, top_k {s.get('top_k')}, "
        f"embedder {s.get('embedder')}, chunk_tokens {s.get('chunk_tokens')})",
        f"- Judge: {report.judge}; numbers, units and years are checked against the cited text deterministically",
        f"- Run: {report.started}, {report.seconds:.0f} s; {report.computed} questions computed, "
        f"{report.reused} reused from the cache",
        "",
        "## Overall",
        "",
        overall_table(report),
        "",
    ]
    errors = [r for r in report.results if r.error]
    if errors:
        out += [f"{len(errors)} questions failed (see the table below).", ""]
    out += [f"![overall]({charts[0].name})", ""] if charts else []
    out += ["## Per document", ""]
    cols = [m for m in METRICS]
    out.append("| document | n | " + " | ".join(metric_label(m, k) for m in cols) + " |")
    out.append("|---|---|" + "---|" * len(cols))
    for doc, overall in report.by_document().items():
        n = sum(1 for r in report.results if (r.row.doc or "(all documents)") == doc)
        out.append(f"| {_cell(doc, 60)} | {n} | " + " | ".join(_fmt(overall[m][0]) for m in cols) + " |")
    out.append("")
    if len(charts) > 1:
        out += [f"![per document]({charts[1].name})", ""]
    out += ["## Per question (worst first)", ""]
    short = ["hit", "mrr", "ndcg", "context_precision", "faithfulness", "answer_relevance", "correctness"]
    out.append(
        "| id | question | doc | mean | "
        + " | ".join(metric_label(m, k) for m in short)
        + " | refusal ok | answer | notes |"
    )
    out.append("|---|---|---|---|" + "---|" * len(short) + "---|---|---|")
    for r in report.worst_first():
        sc = r.scores
        ref = sc.refusal if sc.refusal is not None else sc.answered
        notes = "; ".join(r.notes) if not r.error else f"ERROR: {r.error}"
        out.append(
            f"| {r.row.id} | {_cell(r.row.question, 90)} | {_cell(r.row.doc or '–', 40)} | {_fmt(sc.mean())} | "
            + " | ".join(_fmt(getattr(sc, m)) for m in short)
            + f" | {_fmt(ref)} | {_cell(r.answer, 160)} | {_cell(notes, 200)} |"
        )
    if report.skipped:
        out += ["", "## Skipped", ""] + [f"- {rid}: {why}" for rid, why in report.skipped]
    out.append("")
    return "\n".join(out)


def _charts(reports: Sequence[EvalReport], out_dir: Path, stem: str) -> list[Path]:
    """PNG charts (matplotlib's Agg canvas directly: no global backend switch, safe inside the app)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = reports[0].k
    paths: list[Path] = []
    metrics = [m for m in METRICS if any(r.overall()[m][0] is not None for r in reports)]
    labels = [metric_label(m, k) for m in metrics]

    # Overall: grouped horizontal bars, one group per metric, one bar per configuration.
    fig = Figure(figsize=(8, 0.5 + 0.45 * len(metrics) * max(1, len(reports))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    height = 0.8 / len(reports)
    for j, rep in enumerate(reports):
        ov = rep.overall()
        # A metric that doesn't apply (no such rows) gets no bar rather than a misleading zero.
        vals = [ov[m][0] if ov[m][0] is not None else math.nan for m in metrics]
        ys = [i + j * height for i in range(len(metrics))]
        bars = ax.barh(ys, vals, height=height, label=rep.config_name)
        for bar, v in zip(bars, vals, strict=True):
            if not math.isnan(v):
                ax.text(v + 0.01, bar.get_y() + bar.get_height() / 2, f"{v:.2f}", va="center", fontsize=8)
    ax.set_yticks([i + height * (len(reports) - 1) / 2 for i in range(len(metrics))], labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("score (0–1, higher is better)")
    ax.set_title("Evaluation: overall" if len(reports) == 1 else "Evaluation: configurations compared")
    if len(reports) > 1:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    p = out_dir / f"{stem}_overall.png"
    fig.savefig(p, dpi=110)
    paths.append(p)

    # Per document (first report): one group per document.
    rep = reports[0]
    docs = rep.by_document()
    if docs:
        fig = Figure(figsize=(max(8, 1.3 * len(metrics) * max(1, len(docs)) / 2), 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        width = 0.8 / len(docs)
        for j, (doc, ov) in enumerate(docs.items()):
            xs = [i + j * width for i in range(len(metrics))]
            vals = [ov[m][0] if ov[m][0] is not None else math.nan for m in metrics]
            ax.bar(xs, vals, width=width, label=doc[:60])
        ax.set_xticks([i + width * (len(docs) - 1) / 2 for i in range(len(metrics))], labels, rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("score")
        ax.set_title(f"Per document ({rep.config_name})")
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = out_dir / f"{stem}_by_document.png"
        fig.savefig(p, dpi=110)
        paths.append(p)

    # Distribution of per-question mean scores (worst questions on the left).
    fig = Figure(figsize=(8, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for rep in reports:
        means = sorted(m for m in (r.scores.mean() for r in rep.results if r.error is None) if m is not None)
        ax.plot(range(1, len(means) + 1), means, marker="o", markersize=3, label=rep.config_name)
    ax.set_xlabel("question (sorted by mean score)")
    ax.set_ylabel("mean score")
    ax.set_ylim(0, 1.05)
    ax.set_title("Per-question mean score")
    if len(reports) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    p = out_dir / f"{stem}_questions.png"
    fig.savefig(p, dpi=110)
    paths.append(p)
    return paths


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "eval"


def write_report(report: EvalReport, out_dir: Path) -> tuple[Path, list[Path]]:
    """Write ``report.md`` (or ``report_<config>.md`` for a non-default config) and its PNG charts to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "report" if report.config == EvalConfig() else f"report_{_slug(report.config_name)}"
    charts = _charts([report], out_dir, stem)
    md = out_dir / f"{stem}.md"
    md.write_text(report_markdown(report, charts), encoding="utf-8")
    return md, charts


def write_comparison(reports: Sequence[EvalReport], out_dir: Path) -> tuple[Path, list[Path]]:
    """``compare.md`` (side-by-side table, then each configuration's full report) and charts."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = _charts(reports, out_dir, "compare")
    parts = [
        "# Evaluation: configurations compared",
        "",
        f"QA set: {reports[0].qa_source or '(given rows)'}; judge: {reports[0].judge}.",
        "",
        comparison_table(reports),
        "",
        f"![compared]({charts[0].name})",
        "",
    ]
    for rep in reports:
        md, _ = write_report(rep, out_dir)
        parts.append(f"- [{rep.config_name}]({md.name})")
    path = out_dir / "compare.md"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path, charts


# --- knowledge base for an evaluation -------------------------------------------------------------------------------

DOC_SUFFIXES = {".pdf", ".mp3", ".mp4", ".wav", ".m4a", ".flac", ".ogg", ".webm", ".mkv", ".mov"}


def find_documents(docs_dir: Path, rows: Sequence[QARow]) -> tuple[list[Path], list[str]]:
    """The files to ingest for ``rows``: each named ``doc`` (looked up in ``docs_dir``, its ``doc_dir`` sub-folder,
    then anywhere below), or every document in ``docs_dir`` when no row names one. Returns (paths, missing names)."""
    docs_dir = Path(docs_dir)
    if not docs_dir.is_dir():
        raise ConfigError(f"--docs folder not found: {docs_dir}")
    wanted = {(r.doc, r.doc_dir) for r in rows if r.doc}
    if not wanted:
        files = sorted(p for p in docs_dir.iterdir() if p.is_file() and p.suffix.lower() in DOC_SUFFIXES)
        if not files:
            raise ConfigError(f"no PDF or media files in {docs_dir}")
        return files, []
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name, sub in sorted(wanted, key=lambda w: w[0] or ""):
        if name in found:
            continue
        candidates = [docs_dir / name] + ([docs_dir / sub / name] if sub else [])
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            path = next(iter(sorted(docs_dir.rglob(name))), None)
        if path is None:
            if name not in missing:
                missing.append(name)
        else:
            found[name] = path
    return list(found.values()), missing


def prepare_kb(
    settings: Settings,
    docs_dir: Path,
    rows: Sequence[QARow],
    out_dir: Path,
    progress: Progress | None = None,
    embedder: object | None = None,
) -> Settings:
    """Ingest the documents ``rows`` need into a scratch knowledge base under ``out_dir`` (re-used across runs while
    chunking settings stay the same; unchanged files are not re-embedded) and return settings pointing at it.

    Pass the app's ``embedder`` to avoid loading a second copy."""
    from rag.assistant import Assistant

    paths, missing = find_documents(docs_dir, rows)
    for name in missing:
        log.warning("document %s named by the QA file is not in %s; its questions will be skipped", name, docs_dir)
    if not paths:
        raise ConfigError(f"none of the documents named in the QA file are in {docs_dir}")
    tag = _sha({"embedder": settings.embedder, "chunk": settings.chunk_tokens, "two_level": settings.two_level})[:10]
    kb_settings = settings.replace(kb_dir=Path(out_dir) / f"kb-{tag}")
    assistant = Assistant(kb_settings, embedder=embedder)  # type: ignore[arg-type]
    failed = [r for r in assistant.ingest(paths, progress=progress) if not r.ok]
    for r in failed:
        log.warning("could not ingest %s: %s", r.file, r.message)
    if len(failed) == len(paths):
        raise ConfigError(f"no document could be ingested from {docs_dir}: {failed[0].message}")
    return kb_settings


__all__ = [
    "EvalCache",
    "EvalConfig",
    "EvalReport",
    "QARow",
    "QuestionResult",
    "Scores",
    "comparison_table",
    "context_precision",
    "find_documents",
    "load_qa",
    "parse_qa_rows",
    "parse_qa_text",
    "prepare_kb",
    "retrieval_scores",
    "run_compare",
    "run_eval",
    "score_question",
    "write_comparison",
    "write_report",
]


# --- command line -----------------------------------------------------------------------------------------------------


def eval_command(
    settings: Settings,
    qa: Path,
    *,
    docs: Path | None = None,
    llms: Sequence[str] = (),
    judge: str = "same",
    out: Path = Path("eval_out"),
    mode: str = "hybrid",
    compare: bool = False,
    limit: int | None = None,
    progress: Progress | None = None,
) -> tuple[str, int]:
    """``python -m rag eval``: returns the text to print and the exit code (1 when a question failed).

    ``compare`` runs every retrieval mode for every model in ``llms`` (default: the configured one); several
    ``llms`` without ``compare`` compare the models in ``mode``.
    """
    rows = load_qa(qa)
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {limit}")
        rows = rows[:limit]
    out = Path(out)
    if docs is not None:
        settings = prepare_kb(settings, docs, rows, out, progress)
    models: list[str | None] = list(llms) or [None]
    modes = list(MODES) if compare else [mode]
    configs = [EvalConfig(m, llm) for llm in models for m in modes]
    if len(configs) == 1:
        report = run_eval(settings, rows, out, progress, config=configs[0], judge_llm=judge, qa_source=str(qa))
        md, charts = write_report(report, out)
        reports = [report]
        text = overall_table(report)
    else:
        reports = run_compare(settings, rows, out, configs, progress, judge_llm=judge, qa_source=str(qa))
        md, charts = write_comparison(reports, out)
        text = comparison_table(reports)
    failed = sum(1 for r in reports for q in r.results if q.error)
    skipped = len(reports[0].skipped)
    lines = [
        f"{len(reports[0].results)} questions, judge {reports[0].judge}"
        + (f", {skipped} skipped (document not in the knowledge base)" if skipped else "")
        + (f", {failed} failed" if failed else ""),
        "",
        text,
        "",
        f"report: {md}",
        *(f"chart:  {p}" for p in charts),
    ]
    return "\n".join(lines), 1 if failed else 0
