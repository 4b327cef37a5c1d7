"""The app's behaviour, independent of the widgets: one browser session's state (``UiSession``) and the
``Controller`` whose methods the Gradio handlers of ``ui.chat`` and ``ui.documents`` call (tests call them
directly). It talks to ``rag`` only through ``rag.assistant.Assistant``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rag.assistant import Assistant, Session
from rag.errors import RagError
from rag.fsio import atomic_copy
from rag.settings import Settings
from rag.types import Answer, Document, Hit, IngestResult, Scope, format_clock
from ui.i18n import t
from ui.render import Renderer
from ui.warmup import Warmup

HISTORY_TURNS = 3  # earlier exchanges handed to the assistant for follow-up questions


@dataclass
class UiSession:
    """One browser session: the assistant session (private uploads), chat history and UI language."""

    session: Session
    lang: str = "en"
    admin: bool = False
    history: list[tuple[str, str]] = field(default_factory=list)  # (question, answer) for follow-ups
    private_files: dict[str, Path] = field(default_factory=dict)  # private upload name -> uploaded file
    eval_stop: threading.Event = field(default_factory=threading.Event)  # set by the Stop button
    eval_out: Path | None = None  # folder of the last evaluation report
    key: str = field(default_factory=lambda: secrets.token_hex(16))  # names this session's files on disk

    def __deepcopy__(self, memo: dict) -> UiSession:
        # gr.State deep-copies its value; a session holds an index and locks, which must be shared, not copied.
        return self


def make_scope(mode: str, docs: Sequence[str] | None, company: str | None) -> Scope:
    """The retrieval scope chosen in the UI (``mode``: ``all``, ``docs`` or ``company``)."""
    if mode == "docs":
        if not docs:
            raise RagError("choose at least one document to search in, or search all documents")
        return Scope(docs=tuple(docs))
    if mode == "company":
        if not company:
            raise RagError("choose a company to search in, or search all documents")
        return Scope(company=company)
    return Scope()


# The example question at the end of the help answer (FAQ entry "capabilities"), in English and Chinese.
_TRY_EXAMPLE = {"en": re.compile(r"(Try: )'.*'(\s*)$"), "zh": re.compile(r"(可以试试问：)“[^”]*”(。?\s*)$")}


def suggested_question(docs: Sequence[Document], lang: str) -> str | None:
    """A question the documents present can answer: about a report (else a recording) naming a company, in
    ``lang`` if one is, with its year; else about the first document by name. ``None`` without documents."""
    named = sorted(
        (d for d in docs if d.meta.company), key=lambda d: (d.meta.language != lang, d.kind != "pdf", d.name)
    )
    if named:
        doc = named[0]
        year = "_year" if doc.meta.year else ""
        return t(lang, f"suggest_company{year}").format(company=doc.meta.company, year=doc.meta.year)
    if docs:
        return t(lang, "suggest_doc").format(name=docs[0].name)
    return None


def with_suggestion(text: str, docs: Sequence[Document]) -> str:
    """The help answer with its example question replaced by one the documents present can answer (the bundled FAQ
    suggests a Costco question whatever the knowledge base holds). Other texts are returned unchanged."""
    for lang, pattern in _TRY_EXAMPLE.items():
        m = pattern.search(text)
        if m:
            question = suggested_question(docs, lang)
            if question is None:
                return text[: m.start()] + t(lang, "suggest_upload")
            quoted = f"'{question}'" if lang == "en" else f"“{question}”"
            return text[: m.start()] + m.group(1) + quoted + m.group(2)
    return text


def _size(doc: Document, lang: str) -> str:
    if doc.pages is not None:
        return f"{doc.pages} {t(lang, 'pages')}"
    if doc.duration_s is not None:
        return format_clock(doc.duration_s)
    return ""


class Controller:
    """The app's behaviour, independent of the widgets: every Gradio handler of chat and documents calls it."""

    def __init__(self, assistant: Assistant, media_dir: Path | None = None, warmup: Warmup | None = None) -> None:
        self.assistant = assistant
        self.warmup = warmup  # models loading in the background since start-up; None: load on first use
        self.settings: Settings = assistant.settings
        self.media_dir = Path(media_dir or tempfile.mkdtemp(prefix="esg-media-")).resolve()
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self.renderer = Renderer(lambda source: self.media_url(source.file, None))
        self._media_lock = threading.Lock()

    # ------------------------------------------------------------------ sessions and permissions
    @property
    def shared_mode(self) -> bool:
        """With an admin token set, only the admin adds to (or deletes from) the shared knowledge base."""
        return bool(self.settings.admin_token)

    def new_session(self) -> UiSession:
        return UiSession(self.assistant.new_session())

    def unlock(self, token: str, ui: UiSession) -> str:
        if not self.shared_mode:
            return ""
        ui.admin = bool(token) and hmac.compare_digest(token.encode(), self.settings.admin_token.encode())
        if not ui.admin:
            raise RagError("wrong admin token")
        return "✓ admin: uploads and deletions now change the shared knowledge base"

    def can_write_shared(self, ui: UiSession) -> bool:
        return not self.shared_mode or ui.admin

    def is_private(self, name: str, ui: UiSession) -> bool:
        kb = ui.session.kb
        return kb is not None and kb.document(name) is not None

    # ------------------------------------------------------------------ documents
    def documents(self, ui: UiSession) -> list[Document]:
        return self.assistant.documents(ui.session)

    def docs_rows(self, ui: UiSession) -> list[list[object]]:
        rows = []
        for d in self.documents(ui):
            rows.append(
                [
                    d.name,
                    t(ui.lang, "kind_pdf" if d.kind == "pdf" else "kind_media"),
                    _size(d, ui.lang),
                    d.chunks,
                    d.meta.company or "",
                    d.meta.year or "",
                    t(ui.lang, "where_private" if self.is_private(d.name, ui) else "where_shared"),
                ]
            )
        return rows

    def docs_headers(self, lang: str) -> list[str]:
        keys = ("col_file", "col_kind", "col_size", "col_chunks", "col_company", "col_year", "col_where")
        return [t(lang, k) for k in keys]

    def deletable(self, ui: UiSession) -> list[str]:
        docs = self.documents(ui)
        if self.can_write_shared(ui):
            return [d.name for d in docs]
        return [d.name for d in docs if self.is_private(d.name, ui)]

    def companies(self, ui: UiSession) -> list[str]:
        return sorted({d.meta.company for d in self.documents(ui) if d.meta.company})

    def media_docs(self, ui: UiSession) -> list[str]:
        return [d.name for d in self.documents(ui) if d.kind == "media"]

    def ingest(
        self, paths: Sequence[str | Path], ui: UiSession, progress: Callable[[float, str], None] | None = None
    ) -> Iterator[IngestResult]:
        """Ingest uploaded files (one result per file, bad files never stop the others).

        In shared mode a visitor's uploads go to the session's private knowledge base; otherwise to the shared one.
        """
        files = [Path(p) for p in paths]
        private = not self.can_write_shared(ui)
        for path, result in zip(
            files,
            self.assistant.ingest(
                files, [p.name for p in files], session=ui.session, private=private, progress=progress
            ),
            strict=False,
        ):
            if private and result.ok:
                ui.private_files[result.file] = path
            yield result

    def delete(self, names: Sequence[str], ui: UiSession) -> list[str]:
        """Delete documents; returns one message line per name."""
        if not names:
            raise RagError("choose the documents to delete first")
        lines = []
        for name in names:
            if not self.is_private(name, ui) and not self.can_write_shared(ui):
                lines.append(f"✗ {name}: only the administrator can delete shared documents")
                continue
            if self.assistant.delete(name, ui.session):
                ui.private_files.pop(name, None)
                lines.append(f"✓ {name}: deleted")
            else:
                lines.append(f"✗ {name}: no such document")
        return lines

    def rebuild(self, progress: Callable[[float, str], None] | None = None) -> list[IngestResult]:
        return self.assistant.rebuild(progress=progress)

    # ------------------------------------------------------------------ media and transcripts
    def media_url(self, name: str, ui: UiSession | None) -> str | None:
        """A URL Gradio serves for a stored media file: a copy in ``media_dir`` (the knowledge base folder itself
        is never exposed)."""
        src = self.assistant.source_path(name)
        if src is None and ui is not None:
            src = ui.private_files.get(name)
        if src is None or not Path(src).is_file():
            return None
        src = Path(src)
        key = hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:16]
        dest = self.media_dir / key / src.name
        with self._media_lock:
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.tmp")
                try:
                    os.link(src, tmp)  # a hard link costs no copy of a large video
                    os.replace(tmp, dest)
                except OSError:  # another file system: copy instead
                    tmp.unlink(missing_ok=True)
                    atomic_copy(src, dest)
        return "gradio_api/file=" + urllib.parse.quote(str(dest))

    def renderer_for(self, ui: UiSession) -> Renderer:
        """A renderer that can also play the session's private media uploads."""
        return Renderer(lambda source: self.media_url(source.file, ui))

    def transcript(self, name: str | None, ui: UiSession) -> tuple[list[list[str]], str | None, str | None]:
        """Rows (start, end, text) of a media document's transcript, and paths of its SRT and VTT files."""
        if not name:
            return [], None, None
        segments = self.assistant.segments(name, ui.session)
        if not segments:
            raise RagError(f"no transcript for {name!r}")
        # Per session and unguessable: two visitors' private recordings may share a name, and the folder is served.
        folder = self.media_dir / "subtitles" / hashlib.sha256(f"{ui.key}:{name}".encode()).hexdigest()[:32]
        folder.mkdir(parents=True, exist_ok=True)
        stem = Path(name).stem
        paths = {}
        for fmt in ("srt", "vtt"):
            paths[fmt] = folder / f"{stem}.{fmt}"
            paths[fmt].write_text(self.assistant.subtitles(name, fmt, ui.session), encoding="utf-8")
        rows = [[format_clock(s.start_s), format_clock(s.end_s), s.text.strip()] for s in segments]
        return rows, str(paths["srt"]), str(paths["vtt"])

    # ------------------------------------------------------------------ chat
    def ask(self, question: str, ui: UiSession, scope: Scope) -> Iterator[tuple[str, Answer | None]]:
        """Stream one answer as HTML snapshots; the last item carries the final Answer."""
        route: str | None = None
        hits: tuple[Hit, ...] = ()
        text = ""
        history = ui.history[-HISTORY_TURNS:]
        renderer = self.renderer_for(ui)
        yield renderer.pending(None, (), "", ui.lang), None
        for event in self.assistant.ask(question, history, scope, ui.session):
            if event.kind == "route":
                route = event.route
                yield renderer.pending(route, hits, text, ui.lang), None
            elif event.kind == "sources":
                hits = event.hits
                yield renderer.pending(route, hits, text, ui.lang), None
            elif event.kind == "token":
                text += event.text
                yield renderer.pending(route, hits, text, ui.lang), None
            elif event.kind == "done" and event.answer is not None:
                answer = event.answer
                if answer.route in ("faq", "chitchat"):
                    answer = replace(answer, text=with_suggestion(answer.text, self.documents(ui)))
                ui.history.append((question, answer.text))
                del ui.history[:-HISTORY_TURNS]  # only the last turns feed follow-ups; keep a session's memory bounded
                yield renderer.final(answer, ui.lang), answer
