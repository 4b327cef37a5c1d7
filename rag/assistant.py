"""The one place where backends are wired: settings -> embedder, knowledge bases, LLM, transcriber, router, chain.

The web app (``ui/``) and the CLI talk only to ``Assistant``. Nothing loads at construction; each model loads on first
use.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rag.embed import Embedder, make_embedder
from rag.errors import RagError, RebuildNeeded
from rag.index import MANIFEST, KnowledgeBase
from rag.ingest import Ingestor, Progress, rebuild
from rag.retrieve import HybridRetriever
from rag.settings import Settings
from rag.types import Answer, Document, Event, IngestResult, Query, Retrieval, Scope, Segment

log = logging.getLogger(__name__)

SUBTITLE_FORMATS = ("srt", "vtt")


@dataclass
class Session:
    """One visitor: private uploads (in memory, never shown to others)."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    kb: KnowledgeBase | None = None


@dataclass(frozen=True)
class Evaluation:
    """A finished evaluation run, in plain values for the app (``Assistant.evaluate``)."""

    source: str  # the QA file's name as shown to the user
    total: int  # questions in the QA file
    asked: int  # questions run (the first ``limit`` of them)
    evaluated: int  # questions with a result, answered now or reused
    reused: int  # results reused from an earlier run
    failed: int  # questions whose pipeline raised an error (noted in the report)
    skipped: int  # questions skipped because their document is not in the knowledge base
    missing_docs: tuple[str, ...]  # the documents those questions name
    seconds: float  # wall time of the run
    report: Path | None  # report.md (None: stopped before any question finished)
    charts: tuple[Path, ...]  # PNG charts beside it
    stopped: bool = False  # ended by ``stop``: the report scores the questions finished before it


class _Stopped(Exception):
    """``Assistant.evaluate``'s stop event was set (raised between two questions)."""


class Assistant:
    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        llm: object | None = None,
        transcriber: object | None = None,
        translate: bool | None = None,
    ) -> None:
        """``translate``: cross-lingual retrieval (``rag.translate``: a Chinese question also searches with its
        English translation, and the other way round). ``None``: on for the LLM built from the settings, off for
        an injected one (a test double scripts its replies; a custom backend may be slow or cost money)."""
        self.settings = settings
        self.embedder = embedder or make_embedder(settings.embedder, settings.threads)
        self._llm = llm
        self._transcriber = transcriber
        self.translate = llm is None if translate is None else translate
        self._kb: KnowledgeBase | None = None
        self._router = None
        self._translator = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ wiring (lazy)
    @property
    def kb(self) -> KnowledgeBase:
        """The shared, persistent knowledge base. Raises ``RebuildNeeded`` if the stored one can't be used."""
        with self._lock:
            if self._kb is None:
                self._kb = KnowledgeBase.open(
                    self.settings.kb_dir,
                    self.embedder,
                    hnsw_threshold=self.settings.hnsw_threshold,
                    k1=self.settings.bm25_k1,
                    b=self.settings.bm25_b,
                )
            return self._kb

    @property
    def llm(self):
        with self._lock:
            if self._llm is None:
                from rag.llm import make_llm

                self._llm = make_llm(self.settings)
            return self._llm

    @property
    def translator(self):
        """Cross-lingual retrieval's query translator (the LLM's, cached per question; shared by all questions)."""
        with self._lock:
            if self._translator is None:
                from rag.translate import QueryTranslator

                self._translator = QueryTranslator(self.llm)
            return self._translator

    def languages(self, session: Session | None = None):
        """A function of a scope giving the languages (``en``, ``zh``) of the documents in it: the chain translates
        a question only when documents in the other language are in scope."""

        def of(scope: Scope) -> set[str]:
            docs = self.documents(session)
            if scope.docs:
                docs = [d for d in docs if d.name in scope.docs]
            return {d.meta.language for d in docs}

        return of

    def transcriber(self):
        with self._lock:
            if self._transcriber is None:
                from rag.whisper import make_transcriber

                self._transcriber = make_transcriber(self.settings)
            return self._transcriber

    @property
    def router(self):
        with self._lock:
            if self._router is None:
                from rag.route import Router

                self._router = Router(self.embedder, self.faq_path(), self.settings)
            return self._router

    def faq_path(self) -> Path:
        """The user's editable FAQ in the knowledge base folder (copied from assets/ on first use)."""
        from rag.faq import ensure_user_faq

        return ensure_user_faq(self.settings)

    def new_session(self) -> Session:
        return Session(kb=KnowledgeBase(None, self.embedder.name, self.embedder.dim))

    def _kbs(self, session: Session | None) -> list[KnowledgeBase]:
        kbs = [self.kb]
        if session is not None and session.kb is not None:
            kbs.append(session.kb)
        return kbs

    def retriever(self, session: Session | None = None) -> HybridRetriever:
        return HybridRetriever(self._kbs(session), self.embedder, self.settings)

    # ------------------------------------------------------------------ documents
    def documents(self, session: Session | None = None) -> list[Document]:
        """Shared documents plus the session's private ones."""
        docs = self.kb.documents()
        if session is not None and session.kb is not None:
            docs += session.kb.documents()
        return docs

    def ingest(
        self,
        paths: Sequence[Path],
        names: Sequence[str] | None = None,
        *,
        session: Session | None = None,
        private: bool = False,
        progress: Progress | None = None,
        language: str | None = None,
        save_every_s: float = 0.0,
    ) -> Iterator[IngestResult]:
        """Ingest into the shared knowledge base, or into the session's private one when ``private``."""
        kb = session.kb if (private and session is not None and session.kb is not None) else self.kb
        ingestor = Ingestor(kb, self.embedder, self.settings, transcriber_factory=self.transcriber)
        yield from ingestor.ingest(paths, names, progress=progress, language=language, save_every_s=save_every_s)

    def delete(self, name: str, session: Session | None = None) -> bool:
        if session is not None and session.kb is not None and session.kb.delete(name):
            return True
        if self.kb.delete(name):
            self.kb.save()
            return True
        return False

    def source_path(self, name: str) -> Path | None:
        return self.kb.source_path(name)

    def segments(self, name: str, session: Session | None = None) -> list[Segment]:
        """Timed transcript of a media document (seconds): the cached Whisper segments when the shared knowledge base
        kept them, else one segment per indexed passage (private uploads keep no transcript). Empty for a PDF."""
        kbs = [session.kb] if session is not None and session.kb is not None else []
        for kb in [*kbs, self.kb]:
            doc = kb.document(name)
            if doc is None:
                continue
            if doc.kind != "media":
                return []
            if kb.directory is not None:
                from rag.transcript import TranscriptCache

                transcript = TranscriptCache(kb.directory / "transcripts").get(doc.sha256)
                if transcript is not None:
                    return list(transcript.segments)
            chunks = sorted(kb.chunks([name]), key=lambda c: c.source.start_s or 0.0)
            return [Segment(c.source.start_s or 0.0, c.source.end_s or 0.0, c.text) for c in chunks]
        return []

    def rebuild(self, progress: Progress | None = None) -> list[IngestResult]:
        """Rebuild the shared knowledge base from its stored sources, then reopen it."""
        with self._lock:
            results = rebuild(self.settings.kb_dir, self.embedder, self.settings, progress)
            self._kb = None
        return results

    def has_knowledge_base(self) -> bool:
        """True when a knowledge base was ever saved in ``kb_dir`` (even one since emptied): the app then builds no
        sample knowledge base on start."""
        return (self.settings.kb_dir / MANIFEST).exists()

    def subtitles(self, name: str, fmt: str = "srt", session: Session | None = None) -> str:
        """A media document's transcript as subtitles: ``fmt`` ``srt`` (SubRip) or ``vtt`` (WebVTT), times from
        ``segments``. Raises ``RagError`` when the document has no transcript (a PDF, or an unknown name)."""
        from rag.transcript import to_srt, to_vtt

        if fmt not in SUBTITLE_FORMATS:
            raise RagError(f"subtitle format must be one of {', '.join(SUBTITLE_FORMATS)}, got {fmt!r}")
        segments = self.segments(name, session)
        if not segments:
            raise RagError(f"no transcript for {name!r}")
        return to_srt(segments) if fmt == "srt" else to_vtt(segments)

    # ------------------------------------------------------------------ start-up
    def warm_up(self, on_step: Callable[[str], None] | None = None) -> None:
        """Load every model now (at app start) instead of on the first question. ``on_step(stage)`` is called before
        each stage: ``embedder``, ``router`` (the FAQ and intent examples embedded), ``llm`` (on first start the
        bundled weights are assembled and verified, then loaded). Raises what the first question would raise (a
        ``RagError`` such as ``ModelError``)."""
        step = on_step or (lambda stage: None)
        step("embedder")
        self.embedder.query("warm-up")
        step("router")
        self.router.warm()
        step("llm")
        load = getattr(self.llm, "load", None)  # a server-backed LLM has nothing to load
        if load is not None:
            load()

    def llm_size_bytes(self) -> int | None:
        """Size of the in-process LLM's weights in bytes (what loading it reads), ``None`` for an LLM server."""
        if self.settings.llm_base_url:
            return None
        from rag.llm import BUNDLED

        if self.settings.llm in BUNDLED:
            return BUNDLED[self.settings.llm].size
        path = Path(self.settings.llm).expanduser()
        return path.stat().st_size if path.is_file() else None

    def kb_status(self) -> str | None:
        """``None`` when the knowledge base is usable, else the one-line reason it must be rebuilt."""
        try:
            self.kb  # noqa: B018 - opening it is the check
        except RebuildNeeded as exc:
            return str(exc)
        return None

    # ------------------------------------------------------------------ questions
    def search(
        self, question: str, scope: Scope = Scope(), k: int = 5, mode: str = "hybrid", session: Session | None = None
    ) -> Retrieval:
        return self.retriever(session).retrieve(question, scope, k=k, mode=mode)

    def ask(
        self,
        question: str,
        history: Sequence[tuple[str, str]] = (),
        scope: Scope = Scope(),
        session: Session | None = None,
    ) -> Iterator[Event]:
        """Route the message, then stream the reply as events (``route``, ``sources``, ``token``…, ``done``).

        The message's language is detected and its query embedding computed once, on a ``Query`` that the router
        fills and retrieval and the prompt reuse. The router judges it against the knowledge bases it would be asked
        of (the shared one plus the session's uploads); ``Answer.route_reason`` says why it went where it did.
        """
        from rag.answer import RagChain
        from rag.text import detect_language

        retriever = self.retriever(session)
        query = Query(question.strip(), detect_language(question))
        route = self.router.classify(query, kbs=retriever.kbs)
        yield Event("route", route=route.label)
        if route.label != "rag":
            answer = Answer(route.reply or "", route.label, question=question, route_reason=route.explanation)
            yield Event("done", answer=answer)
            return
        chain = RagChain(
            retriever,
            self.llm,
            self.settings,
            translator=self.translator if self.translate else None,
            languages=self.languages(session),
        )
        for event in chain.stream(question, history, scope, query=route.query):
            if event.kind == "done" and event.answer is not None:
                event = replace(event, answer=replace(event.answer, route_reason=route.explanation))
            yield event

    def answer(self, question: str, **kwargs: object) -> Answer:
        """``ask`` without streaming."""
        final = None
        for event in self.ask(question, **kwargs):  # type: ignore[arg-type]
            if event.kind == "done":
                final = event.answer
        assert final is not None
        return final

    # ------------------------------------------------------------------ evaluation (the app's Evaluation tab)
    @staticmethod
    def eval_sample_size() -> int:
        """Questions in the bundled sample QA set (0 when it is missing)."""
        from rag.qa import SAMPLE_QA_PATH

        try:
            return sum(1 for line in SAMPLE_QA_PATH.read_text(encoding="utf-8").splitlines() if line.strip())
        except OSError:
            return 0

    def evaluate(
        self,
        qa_file: Path | None,
        out_dir: Path,
        cache_dir: Path,
        *,
        mode: str = "hybrid",
        judge: str = "same",
        limit: int | None = None,
        progress: Progress | None = None,
        session: Session | None = None,
        stop: threading.Event | None = None,
    ) -> Evaluation:
        """Score this assistant, with its own models, on a QA file (JSON lines; ``None`` = the bundled sample set)
        over the knowledge base ``session`` sees (shared plus its private uploads).

        ``mode``: retrieval mode scored (``hybrid``, ``dense``, ``bm25``); ``judge``: ``same`` (this model) or
        ``none`` (deterministic checks only); ``limit``: run only the first questions (0/None = all). Finished
        questions are cached in ``cache_dir`` and reused while nothing that changes their answer has changed;
        ``out_dir`` receives report.md and its PNG charts. ``progress(fraction, message)`` is called before each
        question; an exception it raises ends the run. When ``stop`` is set the run ends before the next question
        (the one running finishes and is kept) and the report scores the questions finished (``stopped``). Raises
        ``RagError`` for a bad QA file, an unknown mode or an empty knowledge base.
        """
        from rag.evaluate import EvalConfig, run_eval
        from rag.qa import SAMPLE_QA_PATH, load_qa
        from rag.report import write_report

        config = EvalConfig(mode)  # validates the mode
        if qa_file:
            path, source = Path(qa_file), Path(qa_file).name
        else:
            path, source = SAMPLE_QA_PATH, f"{SAMPLE_QA_PATH.name} (bundled sample)"
        rows = load_qa(path, source)
        known = {d.name for d in self.documents(session)}
        if not known:
            raise RagError("the knowledge base is empty: add documents before evaluating")
        total = len(rows)
        if limit and limit > 0:
            rows = rows[:limit]
        missing = tuple(sorted({r.doc for r in rows if r.doc and r.doc not in known}))
        started = time.perf_counter()
        finished = [0]  # questions finished when the run stopped

        def step(fraction: float, message: str) -> None:
            at = fraction * len(rows)
            # Only between questions (run_eval reports i/n before question i): a question is never cut half-scored.
            if stop is not None and stop.is_set() and abs(at - round(at)) < 1e-6 and round(at) < len(rows):
                finished[0] = round(at)
                raise _Stopped
            if progress is not None:
                progress(fraction, message)

        def run(items: list, on_step: Progress | None):  # -> rag.evaluate.EvalReport
            return run_eval(
                self,
                items,
                config,
                judge=judge,
                cache_dir=cache_dir,
                session=session,
                qa_source=source,
                progress=on_step,
            )

        stopped = False
        try:
            report = run(rows, step)
        except _Stopped:
            stopped = True
            if not finished[0]:
                return Evaluation(
                    source, total, len(rows), 0, 0, 0, 0, missing, time.perf_counter() - started, None, (), True
                )
            # The questions finished are in the cache: scoring them again reads it and asks no model.
            report = run(rows[: finished[0]], None)
        report_md, charts = write_report(report, out_dir)
        return Evaluation(
            source=source,
            total=total,
            asked=len(rows),
            evaluated=len(report.results),
            reused=report.reused,
            failed=sum(1 for r in report.results if r.error),
            skipped=len(report.skipped),
            missing_docs=missing,
            seconds=time.perf_counter() - started,
            report=report_md,
            charts=tuple(charts),
            stopped=stopped,
        )
