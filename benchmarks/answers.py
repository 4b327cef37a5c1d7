"""Answer benchmark: the full RAG chain (retrieval + prompt + bundled LLM) on the English ESG QA set.

    python benchmarks/answers.py [--models small,large] [--limit N] [--kb DIR] [--judge large|none] [--md PATH]
    python benchmarks/answers.py --set dev|test [--compare] [--models large] [--limit N] [--json PATH] [--md PATH]

With ``--set``: the verified question set (benchmarks/data/questions_*.jsonl, issue 14), unscoped (the question names
the company or document) over a knowledge base of every shared English report and Chinese document, reported per
language pair (en-en, zh-en, zh-zh, en-zh), overall and for the table questions (``kind: table``, issue 18) with 95%
bootstrap intervals: uncited-answer rate, unsupported-figure rate, citation accuracy, refusal accuracy, answer rate,
numeric exact match (figures compared after normalisation), TTFT, total time, the grounding check's own time and the
query translation's. ``--compare`` asks each question before (grounding and translation off: the pipeline as it was)
and after, back to back, in one run.

Without ``--set``, the English ESG QA set:

Per model: answer correctness against the gold answer (rule + LLM judge, see ``judge_item``), refusal accuracy on
``answerable: false`` items, answer rate on answerable items, citation accuracy (cited pages vs gold pages), time to
sources, time to first token (TTFT), generation tokens/s, prompt tokens, peak memory; TTFT with and without the
llama.cpp prefix cache of the fixed system message. Also calibrates ``min_dense_score`` from the best dense cosine
of answerable vs unanswerable items (and off-topic questions), which needs no LLM.

Questions are scoped to their document (the QA set asks about "the company"), as a user picks a report in the app.
Items sharing (doc, question) are merged; their gold pages are unioned. Each model runs in its own process so peak
memory is per model. The knowledge base is built once with the real ingest pipeline into ``--kb`` and reused.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    fmt_ci,
    load_jsonl,
    machine,
    peak_rss_mb,
    percentile,
    source_pages,
    testdata,
    today,
    verified_pages,
)
from rag.answer import RagChain
from rag.llm import LLM, ChatMessage, make_llm
from rag.prompt import refusal_text, silent_reason
from rag.settings import Settings
from rag.types import Hit, Scope

log = logging.getLogger("bench.answers")
KB_DEFAULT = Settings().model_cache / "bench-kb-esg"
ROOT = Path(__file__).resolve().parent.parent

# Questions no ESG report answers: the dense threshold should refuse them without calling the LLM.
OFF_TOPIC = [
    "What is the boiling point of water at sea level?",
    "Who won the 2018 FIFA World Cup?",
    "Give me a recipe for chocolate chip cookies.",
    "How do I reverse a linked list in Python?",
    "What is the capital of Australia?",
    "Recommend a good science fiction novel.",
    "长城有多长？",
    "今天天气怎么样？",
]


@dataclass
class Item:
    id: str
    doc: str
    question: str
    gold: str
    pages: list[int]
    answerable: bool
    # pages plus every page verified as holding one of the gold evidence extracts (common.verified_pages)
    verified: list[int] = field(default_factory=list)


@dataclass
class Record:
    id: str
    answer: str = ""
    refused: bool = False
    reason: str | None = None
    cited_pages: list[list[int]] = field(default_factory=list)
    passages: list[str] = field(default_factory=list)
    sources_s: float = 0.0
    ttft_s: float | None = None
    total_s: float = 0.0
    prompt_tokens: int = 0
    answer_tokens: int = 0
    llm_called: bool = False
    gate_p: float | None = None  # the answerability gate's P(yes), when it ran
    shown_pages: list[list[int]] = field(default_factory=list)  # pages of every passage in the prompt, in order


def load_items(path: Path) -> list[Item]:
    """(doc, question) groups; answerable if any row is; gold pages unioned."""
    groups: dict[tuple[str, str], Item] = {}
    for row in load_jsonl(path):
        key = (row["doc"], row["question"])
        item = groups.get(key)
        if item is None:
            item = groups[key] = Item(
                row.get("qid") or row["id"], row["doc"], row["question"], row["answer"], [], False
            )
        if row.get("page") is not None:
            item.pages = sorted(set(item.pages) | {int(row["page"])})
        item.answerable = item.answerable or bool(row.get("answerable", True))
    verified = verified_pages(path.parent)
    for (doc, question), item in groups.items():
        item.verified = sorted(set(item.pages) | (verified.get((doc, question), set()) if item.pages else set()))
    return list(groups.values())


def subset(items: list[Item], limit: int | None) -> list[Item]:
    """A balanced subset: ``limit // 2`` unanswerable items and the rest answerable, each taken round-robin over the
    documents (in file order), so every report and both kinds of question are represented."""
    if not limit or limit >= len(items):
        return items

    def round_robin(pool: list[Item], n: int) -> list[Item]:
        by_doc: dict[str, list[Item]] = {}
        for i in pool:
            by_doc.setdefault(i.doc, []).append(i)
        picked: list[Item] = []
        while len(picked) < n and any(by_doc.values()):
            for doc in sorted(by_doc):
                if by_doc[doc] and len(picked) < n:
                    picked.append(by_doc[doc].pop(0))
        return picked

    unanswerable = round_robin([i for i in items if not i.answerable], limit // 2)
    return round_robin([i for i in items if i.answerable], limit - len(unanswerable)) + unanswerable


def pages_of(hit: Hit) -> list[int]:
    return source_pages(hit.chunk.source)


# --- knowledge base ------------------------------------------------------------------------------------------------


def open_assistant(kb_dir: Path, pdfs: Sequence[Path], settings: Settings):
    """The Assistant over ``kb_dir``, ingesting whichever of ``pdfs`` it lacks (unchanged files are no-ops)."""
    from rag.assistant import Assistant

    assistant = Assistant(settings.replace(kb_dir=kb_dir))
    have = {d.name for d in assistant.documents()}
    todo = [p for p in pdfs if p.name not in have]
    if todo:
        start = time.perf_counter()
        for result in assistant.ingest(todo):
            if not result.ok:
                raise SystemExit(f"ingest failed: {result.message}")
        print(f"ingested {len(todo)} PDFs in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return assistant


# --- measuring proxy -----------------------------------------------------------------------------------------------


class MeasuredLLM:
    """Wraps an LLM: records prompt tokens, answer tokens and the time of the first piece of each call."""

    def __init__(self, llm: LLM) -> None:
        self.llm = llm
        self.name = llm.name
        self.n_ctx = llm.n_ctx
        self.calls: list[dict] = []
        self.gate_p: float | None = None

    def count_tokens(self, text: str) -> int:
        return self.llm.count_tokens(text)

    def yes_probability(self, messages: Sequence[ChatMessage]) -> float | None:
        self.gate_p = self.llm.yes_probability(messages)  # type: ignore[attr-defined]
        return self.gate_p

    def stream(self, messages: Sequence[ChatMessage], max_tokens: int, stop: Sequence[str] = ()) -> Iterator[str]:
        prompt_tokens = (
            len(self.llm.prompt_tokens(messages)) if hasattr(self.llm, "prompt_tokens") else 0  # type: ignore[attr-defined]
        )
        call = {"prompt_tokens": prompt_tokens, "start": time.perf_counter(), "first": None, "text": ""}
        self.calls.append(call)
        for piece in self.llm.stream(messages, max_tokens, stop):
            if call["first"] is None:
                call["first"] = time.perf_counter()
            call["text"] += piece
            yield piece
        call["end"] = time.perf_counter()


def first_token(chain: RagChain, question: str, scope: Scope, history=()) -> Record:
    """Time to sources and to the first token, then stop the stream (closing it frees the model)."""
    start = time.perf_counter()
    rec = Record(id="")
    events = chain.stream(question, history, scope)
    for event in events:
        if event.kind == "sources":
            rec.sources_s = time.perf_counter() - start
        elif event.kind == "token":
            rec.ttft_s = time.perf_counter() - start
            break
    events.close()
    return rec


def ask_timed(chain: RagChain, llm: MeasuredLLM, question: str, scope: Scope, history=()) -> Record:
    start = time.perf_counter()
    llm.calls.clear()
    llm.gate_p = None
    rec = Record(id="")
    answer = None
    for event in chain.stream(question, history, scope):
        now = time.perf_counter() - start
        if event.kind == "sources":
            rec.sources_s = now
        elif event.kind == "token" and rec.ttft_s is None:
            rec.ttft_s = now
        elif event.kind == "done":
            answer = event.answer
    rec.total_s = time.perf_counter() - start
    assert answer is not None
    answer_call = llm.calls[-1] if llm.calls else None
    rec.llm_called = answer_call is not None
    if answer_call is not None:
        rec.prompt_tokens = answer_call["prompt_tokens"]
        rec.answer_tokens = llm.count_tokens(answer_call["text"])
        rec.ttft_s = answer_call["first"] - start if answer_call["first"] else None
    rec.answer, rec.refused, rec.reason, rec.gate_p = answer.text, answer.refused, answer.reason, llm.gate_p
    rec.cited_pages = [pages_of(c.hit) for c in answer.citations]
    rec.shown_pages = [pages_of(h) for h in answer.hits]
    rec.passages = [c.hit.chunk.text for c in answer.citations] or [h.chunk.text for h in answer.hits]
    return rec


# --- worker: one model, one process -------------------------------------------------------------------------------


def run_worker(args) -> None:
    items = [Item(**d) for d in json.loads(args.items.read_text())]
    settings = Settings.from_env(llm=args.worker, threads=args.threads)
    pdfs = sorted((testdata() / "esg_pdfs").glob("*.pdf"))
    assistant = open_assistant(args.kb, pdfs, settings)
    llm = MeasuredLLM(make_llm(settings))
    t = time.perf_counter()
    llm.llm.load()  # type: ignore[attr-defined]
    load_s = time.perf_counter() - t
    retriever = assistant.retriever()
    chain = RagChain(retriever, llm, settings, gate=args.gate)
    first_token(chain, "What is this report about?", Scope(docs=(items[0].doc,)))  # warm up, cache the system message
    records = []
    for n, item in enumerate(items, 1):
        rec = ask_timed(chain, llm, item.question, Scope(docs=(item.doc,)))
        rec.id = item.id
        records.append(rec)
        print(
            f"[{args.worker} {n}/{len(items)}] {'REFUSED' if rec.refused else 'answer '} ttft={rec.ttft_s or 0:.1f}s "
            f"total={rec.total_s:.1f}s | {item.question[:60]} -> {rec.answer[:100]!r}",
            file=sys.stderr,
            flush=True,
        )
    # Prefix cache, measured in pairs back to back (so machine load affects both alike): "warm" after another
    # question has left only the fixed system message in the KV cache (as in normal use), "cold" after the cache was
    # emptied, so the system message is read again. Stop at the first token.
    cold, warm = [], []
    probes = [(i, r) for i, r in zip(items, records, strict=True) if i.answerable and r.llm_called][: args.cache_probe]
    for n, (item, _) in enumerate(probes):
        other = probes[(n + 1) % len(probes)][0]
        llm.llm.reset_cache()  # type: ignore[attr-defined]
        first_token(chain, other.question + " ", Scope(docs=(other.doc,)))
        w = first_token(chain, item.question, Scope(docs=(item.doc,)))
        llm.llm.reset_cache()  # type: ignore[attr-defined]
        c = first_token(chain, item.question, Scope(docs=(item.doc,)))
        if c.ttft_s and w.ttft_s:
            cold.append(c.ttft_s)
            warm.append(w.ttft_s)
    # Follow-ups: rewriting costs an LLM call before retrieval.
    follow = []
    for item, rec in [(i, r) for i, r in zip(items, records, strict=True) if i.answerable and not r.refused][:2]:
        f = first_token(
            chain, "And what are its targets for 2030?", Scope(docs=(item.doc,)), [(item.question, rec.answer)]
        )
        follow.append({"question": item.question, "sources_s": f.sources_s, "ttft_s": f.ttft_s})
    out = {
        "model": args.worker,
        "llm": llm.name,
        "load_s": round(load_s, 2),
        "records": [asdict(r) for r in records],
        "cache": {"cold_ttft": cold, "warm_ttft": warm},
        "follow_ups": follow,
        "peak_rss_mb": round(peak_rss_mb()),
    }
    args.out.write_text(json.dumps(out, ensure_ascii=False, indent=1))


# --- calibration (no LLM) ------------------------------------------------------------------------------------------


def calibrate(items: list[Item], retriever) -> dict:
    """Best dense cosine per item (scoped to its document) and per off-topic question (unscoped). Items that
    retrieval already refuses (``missing``: e.g. a year with no report) never reach the threshold and are left out."""
    ans, unans, missing = [], [], 0
    for item in items:
        r = retriever.retrieve(item.question, Scope(docs=(item.doc,)))
        if r.missing or r.best_dense is None:
            missing += 1
            continue
        (ans if item.answerable else unans).append(r.best_dense)
    off = [retriever.retrieve(q, Scope()).best_dense or 0.0 for q in OFF_TOPIC]
    candidates = sorted({round(x, 3) for x in ans + unans + off} | {0.8})
    table = []
    for t in candidates:
        table.append(
            {
                "threshold": t,
                "answerable_kept": sum(x >= t for x in ans) / len(ans),
                "unanswerable_refused": sum(x < t for x in unans) / len(unans) if unans else None,
                "off_topic_refused": sum(x < t for x in off) / len(off),
            }
        )
    # Highest threshold that keeps every answerable item (minus a small margin for unseen questions).
    keep_all = round(min(ans) - 0.01, 3)
    return {
        "answerable": sorted(ans),
        "unanswerable": sorted(unans),
        "off_topic": sorted(off),
        "recommended": keep_all,
        "refused_by_retrieval": missing,
        "table": table,
    }


# --- judging -------------------------------------------------------------------------------------------------------


def judge_item(item: Item, rec: Record, judge) -> tuple[float, str]:
    """Correctness in [0, 1] and how it was decided.

    Unanswerable items: 1 when the chain refused. Answerable items: the project's judge (``rag.judge.Judge``,
    validated on hand labels, docs/bench/evaluation.md): a yes/no gold answered the other way scores 0, a refusal
    scores 1 only when the gold answer is itself "no / not disclosed", the share of the gold's numbers found in the
    answer caps the judge LLM's grade (correct 1 / partial 0.5 / wrong 0).
    """
    if not item.answerable:
        return (1.0 if rec.refused else 0.0), "refusal"
    return judge.correctness(item.question, rec.answer, item.gold, use_llm=judge.llm is not None), judge.name


def score(items: list[Item], rows: list[dict], judge) -> tuple[dict, list[dict]]:
    by_id = {r["id"]: Record(**r) for r in rows}
    details = []
    for item in items:
        rec = by_id[item.id]
        correct, how = judge_item(item, rec, judge)
        row = {"id": item.id, "answerable": item.answerable, "refused": rec.refused, "correct": correct, "how": how}
        row["cited"] = bool(rec.cited_pages)
        cited = [p for pages in rec.cited_pages for p in pages]
        # Citation metrics against the QA file's pages and against every verified evidence page ("_verified").
        for suffix, gold in (("", item.pages), ("_verified", item.verified or item.pages)):
            row["citation_hit" + suffix] = any(p in gold for p in cited) if cited and gold else None
            row["citation_precision" + suffix] = (
                sum(any(p in gold for p in pages) for pages in rec.cited_pages) / len(rec.cited_pages)
                if rec.cited_pages and gold
                else None
            )
            # Was a gold page among the passages the model read? Bounds what citing can reach.
            row["gold_shown" + suffix] = any(p in gold for pages in rec.shown_pages for p in pages) if gold else None
        details.append(row)
    ans = [d for d in details if d["answerable"]]
    unans = [d for d in details if not d["answerable"]]
    answered = [d for d in ans if not d["refused"]]

    def mean_of(key: str) -> float | None:
        vals = [d[key] for d in answered if d[key] is not None]
        return round(sum(vals) / len(vals), 3) if vals else None

    llm_rows = [r for r in rows if r["llm_called"]]
    gen = [
        (r["answer_tokens"] - 1) / (r["total_s"] - r["ttft_s"])
        for r in llm_rows
        if r["ttft_s"] and r["answer_tokens"] > 1 and r["total_s"] > r["ttft_s"]
    ]
    m = {
        "items": len(details),
        "answerable": len(ans),
        "unanswerable": len(unans),
        "correctness": round(sum(d["correct"] for d in details) / len(details), 3),
        "correctness_answerable": round(sum(d["correct"] for d in ans) / len(ans), 3) if ans else None,
        "refusal_accuracy": round(sum(d["refused"] for d in unans) / len(unans), 3) if unans else None,
        "answer_rate": round(len(answered) / len(ans), 3) if ans else None,
        "answered_with_citation": round(sum(d["cited"] for d in answered) / len(answered), 3) if answered else None,
        "citation_accuracy": mean_of("citation_hit"),
        "citation_precision": mean_of("citation_precision"),
        "gold_shown": mean_of("gold_shown"),
        "citation_accuracy_verified": mean_of("citation_hit_verified"),
        "citation_precision_verified": mean_of("citation_precision_verified"),
        "gold_shown_verified": mean_of("gold_shown_verified"),
        "sources_p50_s": round(percentile([r["sources_s"] for r in rows], 50), 2),
        "sources_p95_s": round(percentile([r["sources_s"] for r in rows], 95), 2),
        "ttft_p50_s": round(percentile([r["ttft_s"] for r in llm_rows], 50), 2) if llm_rows else None,
        "ttft_p95_s": round(percentile([r["ttft_s"] for r in llm_rows], 95), 2) if llm_rows else None,
        "total_p50_s": round(percentile([r["total_s"] for r in llm_rows], 50), 2) if llm_rows else None,
        "gen_tokens_per_s": round(sum(gen) / len(gen), 1) if gen else None,
        "prompt_tokens_mean": round(sum(r["prompt_tokens"] for r in llm_rows) / len(llm_rows)) if llm_rows else None,
        "refused_by_retrieval": sum(not r["llm_called"] and r.get("gate_p") is None for r in rows),
        "refused_by_gate": sum(not r["llm_called"] and r.get("gate_p") is not None for r in rows),
    }
    return m, details


# --- the verified question set (issue 14) --------------------------------------------------------------------------

DATA = ROOT / "benchmarks" / "data"
LANG_PAIRS = ("en-en", "zh-en", "zh-zh", "en-zh")


@dataclass
class VItem:
    """A question of the verified set (benchmarks/data/questions_*.jsonl; schema in check_questions.py)."""

    id: str
    split: str
    lang_pair: str
    question: str
    doc: str
    pages: list[int]
    figures: list[str]
    kind: str
    answerable: bool
    answer: str = ""


@dataclass
class VRecord:
    id: str
    config: str  # "before" (no grounding, no translation) or "after"
    answer: str = ""
    refused: bool = False
    reason: str | None = None
    cited: list[dict] = field(default_factory=list)  # {file, pages, text} per citation
    removed: list[dict] = field(default_factory=list)
    verified: list[bool] = field(default_factory=list)
    shown: list[dict] = field(default_factory=list)  # {file, pages} of every passage in the prompt
    ttft_s: float | None = None
    total_s: float = 0.0
    verify_s: float = 0.0  # time in rag.ground.check
    translate_s: float = 0.0  # time of the query-translation LLM call


def load_verified(split: str) -> list[VItem]:
    """The verified questions of ``split`` (``dev`` or ``test``) from every benchmarks/data/questions_*.jsonl."""
    items = []
    for path in sorted(DATA.glob("questions_*.jsonl")):
        for row in load_jsonl(path):
            if row["split"] != split:
                continue
            items.append(
                VItem(
                    row["id"],
                    row["split"],
                    row["lang_pair"],
                    row["question"],
                    row.get("doc") or "",
                    [int(p) for p in row.get("pages") or []],
                    list(row.get("figures") or []),
                    row.get("kind", ""),
                    bool(row["answerable"]),
                    row.get("answer", ""),
                )
            )
    return items


def subset_verified(items: list[VItem], limit: int | None) -> list[VItem]:
    """``limit`` items taken round-robin over (lang_pair, answerable) strata in file order, so every language pair
    and both kinds of question are represented."""
    if not limit or limit >= len(items):
        return items
    strata: dict[tuple[str, bool], list[VItem]] = {}
    for item in items:
        strata.setdefault((item.lang_pair, item.answerable), []).append(item)
    picked: list[VItem] = []
    while len(picked) < limit and any(strata.values()):
        for key in sorted(strata, key=lambda k: (LANG_PAIRS.index(k[0]) if k[0] in LANG_PAIRS else 9, not k[1])):
            if strata[key] and len(picked) < limit:
                picked.append(strata[key].pop(0))
    return picked


class _Timed:
    """Wraps a function and adds the seconds spent in it to ``total`` (for rag.ground.check and translations)."""

    def __init__(self, fn) -> None:
        self.fn, self.total = fn, 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.total += time.perf_counter() - start


def ask_verified(chain: RagChain, item: VItem, config: str, timers: dict[str, _Timed]) -> VRecord:
    for t in timers.values():
        t.total = 0.0
    rec = VRecord(item.id, config)
    start = time.perf_counter()
    answer = None
    for event in chain.stream(item.question):
        if event.kind == "token" and rec.ttft_s is None:
            rec.ttft_s = time.perf_counter() - start
        elif event.kind == "done":
            answer = event.answer
    rec.total_s = time.perf_counter() - start
    assert answer is not None
    rec.verify_s, rec.translate_s = timers["check"].total, timers["translate"].total
    rec.answer, rec.refused, rec.reason = answer.text, answer.refused, answer.reason
    rec.cited = [
        {"file": c.hit.chunk.source.file, "pages": pages_of(c.hit), "text": c.hit.chunk.text} for c in answer.citations
    ]
    rec.verified = [c.verified for c in answer.citations]
    rec.removed = [{"sentence": r.sentence, "reason": r.reason} for r in answer.removed]
    rec.shown = [{"file": h.chunk.source.file, "pages": pages_of(h)} for h in answer.hits]
    return rec


def _answer_figures(rec: VRecord, question: str) -> list:
    from rag.figures import extract_figures
    from rag.text import strip_citations

    years = {int(f.value) for f in extract_figures(question) if f.year_like}
    return [f for f in extract_figures(strip_citations(rec.answer)) if not (f.year_like and int(f.value) in years)]


def score_verified(item: VItem, rec: VRecord) -> dict:
    """Per-item outcomes (``None``: the metric does not apply to this item)."""
    from rag.figures import extract_figures, figure_in, figure_matches

    answered = not rec.refused
    row: dict = {"id": item.id, "lang_pair": item.lang_pair, "answerable": item.answerable, "refused": rec.refused}
    row["kind"] = item.kind
    row["uncited"] = float(not rec.cited) if answered else None
    if answered:
        figs = _answer_figures(rec, item.question)
        facts = [f for c in rec.cited for f in extract_figures(c["text"])]
        row["figures"] = len(figs)
        row["unsupported_figures"] = sum(not figure_in(f, facts) for f in figs)
    else:
        row["figures"] = row["unsupported_figures"] = 0
    gold = set(item.pages)
    if item.answerable and answered and gold:
        row["citation_hit"] = float(any(c["file"] == item.doc and gold & set(c["pages"]) for c in rec.cited))
    else:
        row["citation_hit"] = None
    row["gold_shown"] = (
        float(any(s["file"] == item.doc and gold & set(s["pages"]) for s in rec.shown)) if item.answerable else None
    )
    row["refusal_ok"] = float(rec.refused) if not item.answerable else None
    row["answered"] = float(answered) if item.answerable else None
    if item.answerable and item.figures:
        said = _answer_figures(rec, "") if answered else []
        hits = 0
        for gold_text in item.figures:
            wanted = extract_figures(gold_text)
            hits += bool(wanted) and all(
                any(figure_matches(w, s) or figure_matches(s, w) for s in said) for w in wanted
            )
        row["numeric_em"] = float(hits == len(item.figures))
    else:
        row["numeric_em"] = None
    row["ttft_s"] = rec.ttft_s
    row["total_s"] = rec.total_s
    row["verify_s"] = rec.verify_s
    row["translate_s"] = rec.translate_s
    return row


def _median_ci(values: list[float], n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Median and its 95% percentile-bootstrap interval."""
    import random
    import statistics

    if not values:
        return (float("nan"),) * 3
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(n))
    return statistics.median(values), meds[int(0.025 * (n - 1))], meds[int(0.975 * (n - 1))]


def verified_metrics(rows: list[dict]) -> dict[str, str]:
    """Each metric as ``value [low, high] (n=…)`` over ``rows``."""

    def rate(key: str) -> str:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return fmt_ci(vals) if vals else "–"

    # Unsupported-figure rate: over the figures stated in answers (a bootstrap over items, weighted by figures).
    figs = [r for r in rows if r["figures"]]
    if figs:
        total = sum(r["figures"] for r in figs)
        ratio = sum(r["unsupported_figures"] for r in figs) / total
        import random

        rng = random.Random(0)
        boots = []
        for _ in range(2000):
            sample = rng.choices(figs, k=len(figs))
            boots.append(sum(r["unsupported_figures"] for r in sample) / sum(r["figures"] for r in sample))
        boots.sort()
        unsupported = f"{ratio:.3f} [{boots[49]:.3f}, {boots[1949]:.3f}] (n={total} figures)"
    else:
        unsupported = "– (no figures)"

    def timing(key: str) -> str:
        vals = [r[key] for r in rows if r.get(key) is not None]
        if not vals:
            return "–"
        med, low, high = _median_ci(vals)
        return f"{med:.2f} [{low:.2f}, {high:.2f}] (n={len(vals)})"

    verify = [r["verify_s"] for r in rows]
    return {
        "uncited-answer rate (answers with no citation)": rate("uncited"),
        "unsupported-figure rate (answer figures no cited passage states)": unsupported,
        "citation accuracy (answered answerable: a gold page of the gold document cited)": rate("citation_hit"),
        "a gold page among the passages read (answerable)": rate("gold_shown"),
        "refusal accuracy (unanswerable refused)": rate("refusal_ok"),
        "answer rate (answerable answered)": rate("answered"),
        "numeric exact match (answerable with gold figures: all found in the answer)": rate("numeric_em"),
        "TTFT p50 s": timing("ttft_s"),
        "total time p50 s": timing("total_s"),
        "verification ms (mean / max)": f"{1000 * sum(verify) / len(verify):.1f} / {1000 * max(verify):.1f}"
        if verify
        else "–",
        "translation s p50 (questions translated)": timing_nonzero(rows, "translate_s"),
    }


def timing_nonzero(rows: list[dict], key: str) -> str:
    vals = [r[key] for r in rows if r.get(key)]
    if not vals:
        return "–"
    med, low, high = _median_ci(vals)
    return f"{med:.2f} [{low:.2f}, {high:.2f}] (n={len(vals)})"


def run_verified(args, settings: Settings) -> None:
    """``--set dev|test``: the chain over the verified questions, unscoped, on a knowledge base of every shared
    English report and Chinese document; with ``--compare`` each question is asked before (grounding and
    translation off) and after, back to back, with the same loaded model."""
    import rag.answer as answer_mod
    from rag.retrieve import HybridRetriever
    from rag.translate import QueryTranslator

    pdfs = sorted((testdata() / "esg_pdfs").glob("*.pdf")) + sorted((testdata() / "zh_pdfs").glob("*.pdf"))
    model = args.models.split(",")[0]
    settings = settings.replace(llm=model)
    from rag.assistant import Assistant

    # A knowledge base that already holds documents is used as it is (building all 16 takes over an hour on 2 busy
    # cores): questions about a document it lacks are skipped and counted. An empty one gets every document.
    have = {d.name for d in Assistant(settings.replace(kb_dir=args.kb)).documents()}
    assistant = open_assistant(args.kb, [] if have else pdfs, settings)
    have = {d.name for d in assistant.documents()}
    every = load_verified(args.set)
    items = subset_verified([i for i in every if not i.doc or i.doc in have], args.limit)
    skipped = sum(bool(i.doc) and i.doc not in have for i in every)
    if not items:
        raise SystemExit(f"no {args.set} questions about the documents in {args.kb}")
    llm = MeasuredLLM(make_llm(settings))
    llm.llm.load()  # type: ignore[attr-defined]
    timers = {"check": _Timed(answer_mod.check), "translate": _Timed(QueryTranslator.translate)}
    answer_mod.check = timers["check"]  # type: ignore[assignment]
    QueryTranslator.translate = lambda self, *a, **k: timers["translate"](self, *a, **k)  # type: ignore[method-assign]
    retriever = assistant.retriever()
    languages = assistant.languages()
    configs = {"after": RagChain(retriever, llm, settings, translator=QueryTranslator(llm), languages=languages)}
    if args.compare:
        configs = {"before": RagChain(retriever, llm, settings, ground=False)} | configs
    if args.fusion_compare:
        # Issue 15: the same chain over the same knowledge base, retrieval fused by RRF 1/1 (the old default) and by
        # the min-max score fusion chosen on the dev split's retrieval (dense 0.4 / BM25 0.6), whatever the default.
        fusions = {
            "fusion rrf 1/1": settings.replace(fusion="rrf", dense_weight=1.0, bm25_weight=1.0),
            "fusion scores 0.4/0.6": settings.replace(fusion="scores", dense_weight=0.4, bm25_weight=0.6),
        }
        configs = {
            label: RagChain(
                HybridRetriever(retriever.kbs, retriever.embedder, fused),
                llm,
                fused,
                translator=QueryTranslator(llm),
                languages=languages,
            )
            for label, fused in fusions.items()
        }
    first_token(next(iter(configs.values())), "What is this report about?", Scope())  # warm up the system prompt
    records: dict[str, list[VRecord]] = {c: [] for c in configs}
    wall = time.perf_counter()
    for n, item in enumerate(items, 1):
        for config, chain in configs.items():
            rec = ask_verified(chain, item, config, timers)
            records[config].append(rec)
            print(
                f"[{config} {n}/{len(items)} {item.lang_pair} {'A' if item.answerable else 'U'}] "
                f"{'REFUSED' if rec.refused else 'answer '} ttft={rec.ttft_s or 0:.1f}s total={rec.total_s:.1f}s "
                f"verify={1000 * rec.verify_s:.1f}ms removed={len(rec.removed)} | {item.question[:50]} -> "
                f"{rec.answer[:90]!r}",
                file=sys.stderr,
                flush=True,
            )
    by_id = {i.id: i for i in items}
    out: dict = {
        "date": today(),
        "machine": machine(),
        "command": " ".join(["python", *sys.argv]),
        "set": args.set,
        "model": model,
        "llm": llm.name,
        "items": len(items),
        "documents": sorted(have),
        "skipped_no_document": skipped,
        "wall_s": round(time.perf_counter() - wall),
        "metrics": {},
        "rows": {},
        "records": {c: [asdict(r) for r in recs] for c, recs in records.items()},
    }
    for config, recs in records.items():
        rows = [score_verified(by_id[r.id], r) for r in recs]
        out["rows"][config] = rows
        groups = {"overall": rows} | {lp: [r for r in rows if r["lang_pair"] == lp] for lp in LANG_PAIRS}
        groups["table"] = [r for r in rows if r.get("kind") == "table"]  # issue 18: table cells as their own slice
        out["metrics"][config] = {g: verified_metrics(rs) for g, rs in groups.items() if rs}
    text = verified_table(out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=1))
    print(text)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text)


def verified_table(out: dict) -> str:
    """One markdown table per configuration: metrics x (overall, each language pair, table questions)."""
    lines = [
        f"{out['set']} split, {out['items']} questions ({out['skipped_no_document']} skipped: their document is not "
        f"in the knowledge base of {len(out['documents'])}), model {out['model']} ({out['llm']}), {out['date']}, "
        f"{out['machine']}; wall {out['wall_s']} s",
        "",
    ]
    for config, groups in out["metrics"].items():
        names = list(groups)
        lines += [f"**{config}**", "", "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for metric in next(iter(groups.values())):
            lines.append(f"| {metric} | " + " | ".join(groups[g][metric] for g in names) + " |")
        lines.append("")
    return "\n".join(lines)


# --- driver --------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", type=Path, default=testdata() / "qa" / "esg_qa_en.jsonl")
    ap.add_argument("--models", default="small,large")
    ap.add_argument("--limit", type=int, default=None, help="stratified subset: all unanswerable + answerable")
    ap.add_argument("--kb", type=Path, default=KB_DEFAULT)
    ap.add_argument("--judge", default="large", help="judge LLM: 'large', 'small', a .gguf path, or 'none'")
    ap.add_argument("--rescore", type=Path, default=None, help="re-judge the answers stored in this --json output")
    ap.add_argument("--threads", type=int, default=Settings().threads)
    ap.add_argument("--cache-probe", type=int, default=4, help="questions for the prefix-cache TTFT comparison")
    ap.add_argument(
        "--gate",
        type=float,
        default=None,
        help="answerability gate threshold (default: the model's calibrated one; 0: off). With --rescore, items the "
        "stored run answered whose gate P(yes) is below it count as refused",
    )
    ap.add_argument(
        "--set",
        choices=("dev", "test"),
        default=None,
        help="run the verified question set (benchmarks/data/questions_*.jsonl) of this split, unscoped, on a "
        "knowledge base of every shared English report and Chinese document (default --kb bench-kb-verified); "
        "the first of --models only",
    )
    ap.add_argument(
        "--compare", action="store_true", help="with --set: each question also before (grounding and translation off)"
    )
    ap.add_argument(
        "--fusion-compare",
        action="store_true",
        help="with --set: each question with RRF 1/1 and with score fusion 0.4/0.6 (issue 15)",
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None, help="write the markdown section here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--items", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.worker:
        run_worker(args)
        return

    settings = Settings.from_env(threads=args.threads)
    if args.set:
        if args.kb == KB_DEFAULT:
            args.kb = Settings().model_cache / "bench-kb-verified"
        run_verified(args, settings)
        return
    items = subset(load_items(args.qa), args.limit)
    if args.rescore:
        out = json.loads(args.rescore.read_text())
        wanted = {r["id"] for r in next(iter(out["models"].values()))["records"]}
        items = [i for i in load_items(args.qa) if i.id in wanted]
        runs = {
            m: {k: v[k] for k in ("llm", "records", "cache", "follow_ups")}
            | {k: v["metrics"][k] for k in ("load_s", "peak_rss_mb", "wall_s")}
            for m, v in out["models"].items()
        }
        if args.gate is not None:
            for run in runs.values():
                run["records"] = [apply_gate(r, args.gate) for r in run["records"]]
            out["command"] += f" | rescored: python {' '.join(sys.argv)}"
        finish(out, runs, items, settings, args)
        return
    pdfs = sorted((testdata() / "esg_pdfs").glob("*.pdf"))
    assistant = open_assistant(args.kb, pdfs, settings)
    calib = calibrate(load_items(args.qa), assistant.retriever())
    print(f"calibration: recommended min_dense_score {calib['recommended']}", file=sys.stderr)
    out: dict = {
        "date": today(),
        "machine": machine(),
        "command": " ".join(["python", *sys.argv]),
        "settings": {
            k: getattr(settings, k)
            for k in (
                "top_k",
                "llm_ctx",
                "max_answer_tokens",
                "max_prompt_tokens",
                "passage_tokens",
                "min_dense_score",
                "chunk_tokens",
            )
        }
        | {"gate": args.gate},
        "items": len(items),
        "calibration": calib,
        "models": {},
    }
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        items_path = Path(tmp) / "items.json"
        items_path.write_text(json.dumps([asdict(i) for i in items]))
        for model in args.models.split(","):
            res_path = Path(tmp) / f"{model}.json"
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                model,
                "--items",
                str(items_path),
                "--out",
                str(res_path),
                "--kb",
                str(args.kb),
                "--threads",
                str(args.threads),
                "--cache-probe",
                str(args.cache_probe),
                *(["--gate", str(args.gate)] if args.gate is not None else []),
            ]
            t = time.perf_counter()
            subprocess.run(cmd, check=True)
            runs[model] = json.loads(res_path.read_text())
            runs[model]["wall_s"] = round(time.perf_counter() - t)
    finish(out, runs, items, settings, args)


def apply_gate(row: dict, threshold: float) -> dict:
    """A stored record as a run with a higher gate threshold would have produced it: an answer whose gate P(yes) is
    below ``threshold`` becomes a gate refusal (the gate decides before generating, so answers above it are the
    same). Exact only for thresholds at or above the stored run's own."""
    p = row.get("gate_p")
    if p is None or p >= threshold or not row["llm_called"] or row["refused"]:
        return row
    return row | {
        "answer": refusal_text("en", silent_reason("en")),
        "refused": True,
        "reason": silent_reason("en"),
        "cited_pages": [],
        "passages": [],
        "ttft_s": None,
        "llm_called": False,
        "prompt_tokens": 0,
        "answer_tokens": 0,
    }


def finish(out: dict, runs: dict, items: list[Item], settings: Settings, args) -> None:
    """Judge every model's answers, then print and write the results."""
    from rag.judge import Judge

    judge = Judge(llm=None if args.judge == "none" else make_llm(settings.replace(llm=args.judge)))
    for model, run in runs.items():
        metrics, details = score(items, run["records"], judge)
        cache = run["cache"]
        metrics.update(
            {
                "load_s": run["load_s"],
                "peak_rss_mb": run["peak_rss_mb"],
                "wall_s": run["wall_s"],
                "ttft_cold_p50_s": round(percentile(cache["cold_ttft"], 50), 2) if cache["cold_ttft"] else None,
                "ttft_warm_p50_s": round(percentile(cache["warm_ttft"], 50), 2) if cache["warm_ttft"] else None,
                "follow_up_sources_p50_s": round(percentile([f["sources_s"] for f in run["follow_ups"]], 50), 2),
            }
        )
        out["models"][model] = {
            "llm": run["llm"],
            "metrics": metrics,
            "details": details,
            "records": run["records"],
            "cache": cache,
            "follow_ups": run["follow_ups"],
        }
    out["judge"] = judge.name
    text = json.dumps(out, ensure_ascii=False, indent=1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    print(summary_table(out))
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(summary_table(out))


def summary_table(out: dict) -> str:
    keys = [
        ("correctness", "correctness (all items)"),
        ("correctness_answerable", "correctness (answerable)"),
        ("refusal_accuracy", "refusal accuracy (unanswerable)"),
        ("answer_rate", "answer rate (answerable)"),
        ("citation_accuracy", "citation accuracy (answer cites a gold page)"),
        ("citation_precision", "citation precision (cited passages on a gold page)"),
        ("gold_shown", "a gold page among the passages read (answered items)"),
        ("citation_accuracy_verified", "citation accuracy, gold = every verified evidence page"),
        ("citation_precision_verified", "citation precision, gold = every verified evidence page"),
        ("gold_shown_verified", "a verified evidence page among the passages read"),
        ("answered_with_citation", "answers with ≥1 citation"),
        ("sources_p50_s", "time to sources p50 (s)"),
        ("sources_p95_s", "time to sources p95 (s)"),
        ("ttft_p50_s", "TTFT p50 (s)"),
        ("ttft_p95_s", "TTFT p95 (s)"),
        ("ttft_warm_p50_s", "TTFT p50, system prefix cached (s)"),
        ("ttft_cold_p50_s", "TTFT p50, cache emptied (s)"),
        ("gen_tokens_per_s", "generation tokens/s"),
        ("prompt_tokens_mean", "prompt tokens (mean)"),
        ("total_p50_s", "answer time p50 (s)"),
        ("follow_up_sources_p50_s", "time to sources with follow-up rewrite p50 (s)"),
        ("refused_by_retrieval", "refused by retrieval (no document/year, or below min_dense_score)"),
        ("refused_by_gate", "refused by the answerability gate"),
        ("load_s", "model load (s)"),
        ("peak_rss_mb", "peak RSS (MB)"),
        ("wall_s", "benchmark wall time (s)"),
    ]
    models = list(out["models"])
    lines = ["| metric | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for key, label in keys:
        vals = [out["models"][m]["metrics"].get(key) for m in models]
        lines.append(f"| {label} | " + " | ".join("–" if v is None else str(v) for v in vals) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
