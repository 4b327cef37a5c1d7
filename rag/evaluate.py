"""Evaluation runs: the real app pipeline over a QA set, every answer scored, finished questions cached.

    assistant = Assistant(settings)
    report = run_eval(assistant, load_qa(path), EvalConfig("hybrid"), cache_dir=out, progress=callback)
    markdown_path, png_paths = write_report(report, out)        # rag.report

    # The app's Evaluation tab: the knowledge base a visitor sees (shared + their private uploads), the app's models:
    report = run_eval(app_assistant, items, EvalConfig(mode), judge="same", cache_dir=cache, session=visitor, stop=ev)

The stages are typed and separate: ``rag.qa`` parses the QA file into ``QAItem``s, this module runs them through an
``Assistant`` (its models, its knowledge base), ``rag.score`` scores each answer with a ``rag.judge.Judge``, and
``rag.report`` writes the Markdown report and charts of the resulting ``EvalReport``.

Resumable: with a ``cache_dir``, every finished question appends lines to ``cache_dir/eval_cache.jsonl``, keyed by
the question and a fingerprint of everything that changes its answer (settings, documents, pipeline code) and,
separately, of the judge. A rerun reuses what is unchanged: a judge change re-scores stored answers without asking
the pipeline again. Stored answers name their passages by chunk id: the passages themselves are the knowledge base's
(``rag.index``), which the fingerprint pins.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import ConfigError, RagError
from rag.judge import Judge
from rag.qa import QAItem
from rag.results import EvalCache, EvalReport, PipelineRecord, QuestionResult, chunk_key
from rag.score import NDCG_K, Scores, score_question
from rag.settings import Settings
from rag.types import Document

if TYPE_CHECKING:
    from rag.assistant import Assistant, Session
    from rag.llm import LLM

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
EVAL_VERSION = 1  # bump when scoring changes in a way the judge fingerprint can't see
CACHE_VERSION = 2  # bump when the stored answer format changes (2: passages stored as chunk references)
CACHE_FILE = "eval_cache.jsonl"
MODES = ("hybrid", "dense", "bm25")
JUDGES = ("same", "none", "small", "large")  # or a path to a .gguf file
_RAG_DIR = Path(__file__).resolve().parent
# The modules a question passes through: editing one invalidates stored answers.
PIPELINE_MODULES = (
    "assistant.py",
    "answer.py",
    "prompt.py",
    "citation.py",
    "followup.py",
    "ground.py",
    "translate.py",
    "retrieve.py",
    "route.py",
    "intent_rules.py",
    "kb_evidence.py",
    "faq.py",
    "llm.py",
    "embed.py",
    "index.py",
    "bm25.py",
    "text.py",
    "types.py",
)
# The modules that score an answer: editing one invalidates stored scores (not answers).
JUDGE_MODULES = ("judge.py", "score.py", "evaluate.py", "text.py")


class EvalStopped(Exception):
    """The caller's ``stop`` event was set: the run ended between two steps. Not a ``RagError``: nothing failed, and
    the questions finished so far are in the cache."""


# --- configuration and fingerprints -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalConfig:
    """One pipeline configuration: retrieval ``mode`` and ``llm`` (None = the assistant's model)."""

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
    if config.mode == "dense":
        base = base.replace(dense_weight=base.dense_weight or 1.0, bm25_weight=0.0)
    elif config.mode == "bm25":
        base = base.replace(dense_weight=0.0, bm25_weight=base.bm25_weight or 1.0)
    return base.replace(llm=config.llm) if config.llm else base


_PIPELINE_FIELDS = (
    "embedder chunk_tokens two_level retrieve_k top_k dense_weight bm25_weight rrf_k bm25_k1 bm25_b min_dense_score "
    "llm llm_ctx max_answer_tokens max_prompt_tokens llm_base_url llm_model"
).split()


def _sha(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:20]


def code_fingerprint(directory: Path = _RAG_DIR, modules: Sequence[str] = PIPELINE_MODULES) -> str:
    """Hash of the source of ``modules`` in ``directory`` (an edit to the prompt changes every answer).

    Ingestion code is not included: its effect reaches answers only through the chunks, which are hashed instead.
    """
    h = hashlib.sha256()
    for name in sorted(modules):
        path = Path(directory) / name
        h.update(name.encode())
        h.update(path.read_bytes() if path.is_file() else b"")
    return h.hexdigest()[:20]


def pipeline_fingerprint(
    settings: Settings, documents: Sequence[Document], chunk_ids: Sequence[str] = (), faq: Path | None = None
) -> str:
    """What an answer depends on besides the question: settings, the documents and their chunks, the FAQ, the code."""
    names = {f.name for f in fields(Settings)}
    values = {name: getattr(settings, name) for name in _PIPELINE_FIELDS if name in names}
    docs = sorted((d.name, d.sha256) for d in documents)
    chunks = hashlib.sha256("\n".join(sorted(chunk_ids)).encode()).hexdigest()[:20]
    faq_hash = hashlib.sha256(faq.read_bytes()).hexdigest()[:16] if faq and faq.is_file() else ""
    return _sha(
        {
            "settings": values,
            "docs": docs,
            "chunks": chunks,
            "faq": faq_hash,
            "code": code_fingerprint(),
            "format": CACHE_VERSION,
        }
    )


def judge_fingerprint(judge: Judge) -> str:
    """What a score depends on besides the answer: the judge's model and embedder, and the scoring code."""
    embedder = judge.embedder.name if judge.embedder is not None else "none"
    return _sha(
        {
            "judge": judge.name,
            "embedder": embedder,
            "v": EVAL_VERSION,
            "code": code_fingerprint(_RAG_DIR, JUDGE_MODULES),
        }
    )


# --- models -----------------------------------------------------------------------------------------------------------


def _llm_key(settings: Settings) -> str:
    return f"{settings.llm_base_url}|{settings.llm_model}" if settings.llm_base_url else settings.llm


def assistant_for(base: Assistant, config: EvalConfig, llms: dict[str, LLM] | None = None) -> Assistant:
    """An Assistant running ``config``: ``base`` itself when it already does, else one on the same knowledge base
    sharing ``base``'s embedder and any model already built (``llms``, by model, grows with the models made here)."""
    from rag.assistant import Assistant

    llms = {} if llms is None else llms
    llms.setdefault(_llm_key(base.settings), base.llm)
    settings = settings_for(base.settings, config)
    if settings == base.settings:
        return base
    assistant = Assistant(settings, embedder=base.embedder, llm=llms.get(_llm_key(settings)))
    llms.setdefault(_llm_key(settings), assistant.llm)  # built lazily: nothing loads until first use
    return assistant


def on_kb(base: Assistant, kb_dir: Path) -> Assistant:
    """An Assistant with ``base``'s settings and models over the knowledge base in ``kb_dir``."""
    from rag.assistant import Assistant

    return Assistant(base.settings.replace(kb_dir=Path(kb_dir)), embedder=base.embedder, llm=base.llm)


def make_judge(spec: str | Judge, assistant: Assistant, llms: dict[str, LLM] | None = None) -> Judge:
    """The judge ``spec`` names: ``"same"`` (the assistant's model), ``"none"`` (deterministic checks only),
    ``"small"``/``"large"``/a ``.gguf`` path (that model, shared through ``llms`` with a pipeline already using it);
    a ``Judge`` is used as it is. The judge embeds with the assistant's embedder."""
    if isinstance(spec, Judge):
        return spec
    if spec == "none":
        return Judge(None, assistant.embedder)
    if spec == "same":
        return Judge(assistant.llm, assistant.embedder)
    from rag.llm import make_llm

    llms = {} if llms is None else llms
    settings = assistant.settings.replace(llm=spec, llm_base_url="")
    llm = llms.get(_llm_key(settings)) or make_llm(settings)
    llms.setdefault(_llm_key(settings), llm)
    return Judge(llm, assistant.embedder)


# --- running ----------------------------------------------------------------------------------------------------------


def _noop(fraction: float, message: str) -> None:
    pass


def run_eval(
    assistant: Assistant,
    items: Sequence[QAItem],
    config: EvalConfig | None = None,
    *,
    judge: str | Judge = "same",
    cache_dir: Path | None = None,
    session: Session | None = None,
    qa_source: str = "",
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> EvalReport:
    """Ask ``assistant`` (its models, its knowledge base plus ``session``'s private documents) every item under
    ``config`` and score each answer.

    ``judge``: ``"same"`` (the pipeline's model, the default), ``"none"`` (deterministic checks only),
    ``"small"``/``"large"``/a ``.gguf`` path, or a ``Judge``. With ``cache_dir``, finished questions are cached in
    ``cache_dir/eval_cache.jsonl`` and reused by a later run. Items whose document is not in the knowledge base are
    skipped with a reason. ``progress(fraction, message)`` is called before each question, before judging it and
    when the run ends; when ``stop`` is set, the run raises ``EvalStopped`` at the next of those points. Raises
    ``ConfigError`` when the knowledge base is empty or holds none of the documents the items name.
    """
    config = config or EvalConfig()
    llms: dict[str, LLM] = {}  # a judge naming the pipeline's model shares it
    runner = assistant_for(assistant, config, llms)
    judged_by = make_judge(judge, runner, llms)
    return _run(runner, items, config, judged_by, cache_dir, session, qa_source, progress, stop)


def run_compare(
    assistant: Assistant,
    items: Sequence[QAItem],
    configs: Sequence[EvalConfig],
    *,
    judge: str | Judge = "same",
    cache_dir: Path | None = None,
    qa_source: str = "",
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> list[EvalReport]:
    """``run_eval`` for each configuration with one judge (``"same"``: ``assistant``'s model, so scores are
    comparable) and models shared between configurations."""
    if not configs:
        raise ConfigError("nothing to compare: give at least one configuration")
    report = progress or _noop
    llms: dict[str, LLM] = {}
    shared_judge = make_judge(judge, assistant, llms)
    reports = []
    for n, config in enumerate(configs):

        def step(fraction: float, message: str, n: int = n) -> None:
            report((n + fraction) / len(configs), message)

        runner = assistant_for(assistant, config, llms)
        reports.append(_run(runner, items, config, shared_judge, cache_dir, None, qa_source, step, stop))
    return reports


def _run(
    assistant: Assistant,
    items: Sequence[QAItem],
    config: EvalConfig,
    judge: Judge,
    cache_dir: Path | None,
    session: Session | None,
    qa_source: str,
    progress: Progress | None,
    stop: threading.Event | None,
) -> EvalReport:
    from rag.faq import faq_path

    def step(fraction: float, message: str) -> None:
        if stop is not None and stop.is_set():
            raise EvalStopped
        (progress or _noop)(fraction, message)

    started = time.perf_counter()
    settings = assistant.settings
    documents = assistant.documents(session)
    known = {d.name for d in documents}
    kbs = [assistant.kb] + ([session.kb] if session is not None and session.kb is not None else [])
    all_chunks = [c for kb in kbs for c in kb.chunks()]
    chunks = {chunk_key(c): c for c in all_chunks}
    pfp = pipeline_fingerprint(settings, documents, [c.id for c in all_chunks], faq_path(settings))
    jfp = judge_fingerprint(judge)
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    cache = EvalCache(Path(cache_dir) / CACHE_FILE if cache_dir is not None else None)
    k = settings.top_k
    results: list[QuestionResult] = []
    skipped: list[tuple[str, str]] = []
    items = list(items)
    if not documents:
        raise ConfigError(f"the knowledge base in {settings.kb_dir} has no documents: ingest some or pass --docs")
    named = sorted({i.doc for i in items if i.doc})
    if items and all(i.doc and i.doc not in known for i in items):
        shown = ", ".join(named[:3]) + (f" (+{len(named) - 3} more)" if len(named) > 3 else "")
        raise ConfigError(f"none of the documents the questions name are in the knowledge base: {shown}")
    name = config.name(settings)
    for i, item in enumerate(items):
        step(i / max(1, len(items)), f"{name}: {i + 1}/{len(items)} {item.question[:60]}")
        if item.doc and item.doc not in known:
            skipped.append((item.id, f"document {item.doc} is not in the knowledge base"))
            continue
        pkey = _sha({"row": {"question": item.question, "doc": item.doc}, "pipeline": pfp, "mode": config.mode})
        skey = _sha({"p": pkey, "judge": jfp, "row": asdict(item)})
        stored = cache.result(skey, item)
        if stored is not None:
            results.append(stored)
            continue
        try:
            record = cache.pipeline(pkey, chunks)
            if record is None:
                t0 = time.perf_counter()
                answer = assistant.answer(item.question, scope=item.scope, session=session)
                seconds = time.perf_counter() - t0
                retrieval = assistant.search(item.question, item.scope, k=NDCG_K, mode=config.mode, session=session)
                record = PipelineRecord(answer, retrieval, seconds)
                cache.add_pipeline(pkey, record)
            step((i + 0.5) / max(1, len(items)), f"{name}: {i + 1}/{len(items)} judging")
            scores, notes = score_question(item, record.answer, record.retrieval, judge, k)
        except RagError as exc:
            log.warning("question %s failed: %s", item.id, exc)
            results.append(QuestionResult(item, "", "error", False, Scores(), error=str(exc)))
            continue
        result = QuestionResult(
            item=item,
            answer=record.answer.text,
            route=record.answer.route,
            refused=record.answer.refused,
            scores=scores,
            citations=tuple(c.source.label() for c in record.answer.citations),
            retrieved=tuple(h.chunk.source.label() for h in record.retrieval.hits[:k]),
            notes=tuple(notes),
            seconds=record.seconds,
        )
        cache.add_result(skey, result)
        results.append(result)
    step(1.0, f"{name}: done")
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


# --- knowledge base for an evaluation ---------------------------------------------------------------------------------

DOC_SUFFIXES = {".pdf", ".mp3", ".mp4", ".wav", ".m4a", ".flac", ".ogg", ".webm", ".mkv", ".mov"}


def find_documents(docs_dir: Path, items: Sequence[QAItem]) -> tuple[list[Path], list[str]]:
    """The files to ingest for ``items``: each named ``doc`` (looked up in ``docs_dir``, its ``doc_dir`` sub-folder,
    then anywhere below), or every document in ``docs_dir`` when no item names one. Returns (paths, missing names)."""
    docs_dir = Path(docs_dir)
    if not docs_dir.is_dir():
        raise ConfigError(f"--docs folder not found: {docs_dir}")
    wanted = {(i.doc, i.doc_dir) for i in items if i.doc}
    if not wanted:
        files = sorted(p for p in docs_dir.iterdir() if p.is_file() and p.suffix.lower() in DOC_SUFFIXES)
        if not files:
            raise ConfigError(f"no PDF or media files in {docs_dir}")
        return files, []
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name, sub in sorted(wanted, key=lambda w: w[0] or ""):
        if name is None or name in found:
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
    assistant: Assistant, docs_dir: Path, items: Sequence[QAItem], out_dir: Path, progress: Progress | None = None
) -> Assistant:
    """Ingest the documents ``items`` need into a scratch knowledge base under ``out_dir`` (re-used across runs while
    chunking settings stay the same; unchanged files are not re-embedded) and return an Assistant over it with
    ``assistant``'s models."""
    paths, missing = find_documents(docs_dir, items)
    for name in missing:
        log.warning("document %s named by the QA file is not in %s; its questions will be skipped", name, docs_dir)
    if not paths:
        raise ConfigError(f"none of the documents named in the QA file are in {docs_dir}")
    s = assistant.settings
    tag = _sha({"embedder": s.embedder, "chunk": s.chunk_tokens, "two_level": s.two_level})[:10]
    scratch = on_kb(assistant, Path(out_dir) / f"kb-{tag}")
    failed = [r for r in scratch.ingest(paths, progress=progress) if not r.ok]
    for r in failed:
        log.warning("could not ingest %s: %s", r.file, r.message)
    if len(failed) == len(paths):
        raise ConfigError(f"no document could be ingested from {docs_dir}: {failed[0].message}")
    return scratch


__all__ = [
    "CACHE_FILE",
    "JUDGES",
    "MODES",
    "EvalConfig",
    "EvalStopped",
    "assistant_for",
    "code_fingerprint",
    "find_documents",
    "judge_fingerprint",
    "make_judge",
    "on_kb",
    "pipeline_fingerprint",
    "prepare_kb",
    "run_compare",
    "run_eval",
    "settings_for",
]
