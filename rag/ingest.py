"""Ingestion: check a file, parse it in an isolated worker (PDF) or transcribe it (media), chunk, embed, index.

PDF parsing runs in a separate process with a wall-clock and memory limit, so a crafted file that loops or
balloons is killed without hurting the app. A failed file leaves the knowledge base unchanged.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag import errors
from rag.embed import Embedder
from rag.errors import DamagedFile, IngestError, RagError, TooLarge, UnsupportedFile
from rag.index import KnowledgeBase
from rag.settings import Settings
from rag.types import Chunk, DocMeta, Document, IngestResult

log = logging.getLogger(__name__)

PDF_EXTENSIONS = frozenset({".pdf"})
MEDIA_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".mp3", ".wav", ".m4a", ".flac"})
SUPPORTED = PDF_EXTENSIONS | MEDIA_EXTENSIONS

# progress(fraction 0..1, message)
Progress = Callable[[float, str], None]


def _noop(fraction: float, message: str) -> None:
    return None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def safe_name(name: str) -> str:
    """A display/storage name: the base name only, no control or path characters."""
    base = re.split(r"[\\/]", name)[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip().lstrip(".")
    return base[:200] or "document"


_MAGIC_OK: dict[str, Callable[[bytes], bool]] = {
    ".pdf": lambda h: b"%PDF-" in h[:1024],
    ".mp4": lambda h: h[4:8] == b"ftyp",
    ".mov": lambda h: h[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"),
    ".m4a": lambda h: h[4:8] == b"ftyp",
    ".mkv": lambda h: h[:4] == b"\x1a\x45\xdf\xa3",
    ".webm": lambda h: h[:4] == b"\x1a\x45\xdf\xa3",
    ".avi": lambda h: h[:4] == b"RIFF" and h[8:12] == b"AVI ",
    ".wav": lambda h: h[:4] in (b"RIFF", b"RIFX", b"RF64") and h[8:12] == b"WAVE",
    ".flac": lambda h: h[:4] == b"fLaC" or h[:3] == b"ID3",
    ".mp3": lambda h: h[:3] == b"ID3" or (len(h) > 1 and h[0] == 0xFF and (h[1] & 0xE0) == 0xE0),
}


def check_file(path: Path, name: str, max_mb: float) -> str:
    """Refuse what can't be ingested before reading it; returns the kind, ``pdf`` or ``media``."""
    ext = Path(name).suffix.lower()
    if ext not in SUPPORTED:
        allowed = ", ".join(sorted(e.lstrip(".") for e in SUPPORTED))
        raise UnsupportedFile(f"unsupported file type: {ext or '(none)'!r} (supported: {allowed})")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UnsupportedFile(f"unreadable file: {exc.strerror}") from exc
    if size == 0:
        raise UnsupportedFile("empty file")
    if size > max_mb * 1024 * 1024:
        raise TooLarge(f"too large: {size / 1048576:.0f} MB, the limit is {max_mb:g} MB")
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if not _MAGIC_OK[ext](head):
        what = "not a PDF" if ext == ".pdf" else "not a media file"
        raise UnsupportedFile(f"{what}: the content does not match the file name's {ext}")
    return "pdf" if ext in PDF_EXTENSIONS else "media"


# ----------------------------------------------------------------------------- isolated PDF parsing
@dataclass(frozen=True)
class Parsed:
    pages: int
    meta: DocMeta
    chunks: list[Chunk]


def _parse_pdf(path: str, name: str, doc_id: str, max_tokens: int, max_pages: int) -> Parsed:
    from rag.chunk import chunk_pages
    from rag.load import load_pdf
    from rag.meta import detect_meta

    pages = load_pdf(Path(path), max_pages=max_pages)
    meta = detect_meta(pages, name)
    chunks = chunk_pages(pages, file=name, doc_id=doc_id, meta=meta, max_tokens=max_tokens)
    return Parsed(len(pages), meta, chunks)


def _worker(conn, args: tuple, memory_mb: int) -> None:  # pragma: no cover - runs in the child process
    import resource

    limit = memory_mb * 1024 * 1024
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError) as exc:  # e.g. a container that forbids raising it; the time limit still holds
        logging.getLogger(__name__).warning("could not set the parser memory limit: %s", exc)
    try:
        conn.send(("ok", _parse_pdf(*args)))
    except RagError as exc:
        conn.send(("error", type(exc).__name__, str(exc)))
    except MemoryError:
        conn.send(("error", "DamagedFile", f"damaged PDF: parsing needed more than {memory_mb} MB"))
    except Exception as exc:
        conn.send(("error", "DamagedFile", f"damaged PDF: {type(exc).__name__}: {str(exc)[:200]}"))
    finally:
        conn.close()


_CTX = None


def _context():
    global _CTX
    if _CTX is None:
        # forkserver: children don't inherit the app's threads or loaded models (fork would copy a
        # multi-threaded process, which can deadlock).
        _CTX = mp.get_context("forkserver")
        _CTX.set_forkserver_preload(["rag.load", "rag.chunk", "rag.meta"])
    return _CTX


def parse_pdf_isolated(path: Path, name: str, doc_id: str, settings: Settings) -> Parsed:
    """Parse and chunk a PDF in a child process limited to ``parse_timeout_s`` seconds and ``parse_memory_mb``."""
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    args = (str(path), name, doc_id, settings.chunk_tokens, settings.max_pdf_pages)
    proc = ctx.Process(target=_worker, args=(send, args, settings.parse_memory_mb), daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(settings.parse_timeout_s):
            raise DamagedFile(f"damaged PDF: parsing took longer than {settings.parse_timeout_s:g} s and was stopped")
        try:
            message = recv.recv()
        except EOFError:
            raise DamagedFile("damaged PDF: the parser crashed (it may have run out of memory)") from None
    finally:
        recv.close()
        if proc.is_alive():
            proc.kill()
        proc.join(5)
    if message[0] == "ok":
        return message[1]
    cls = getattr(errors, message[1], DamagedFile)
    raise cls(message[2])


# ----------------------------------------------------------------------------- the pipeline
class Ingestor:
    """Adds files to a knowledge base; one result per file, bad files never stop the others."""

    def __init__(
        self,
        kb: KnowledgeBase,
        embedder: Embedder,
        settings: Settings,
        transcriber_factory: Callable[[], object] | None = None,
    ) -> None:
        self.kb = kb
        self.embedder = embedder
        self.settings = settings
        self._transcriber_factory = transcriber_factory
        self._transcriber = None
        self.timings: dict[str, float] = {"parse": 0.0, "embed": 0.0, "index": 0.0, "transcribe": 0.0}

    def embed_texts(self, chunks: Sequence[Chunk]) -> list[str]:
        """What gets embedded: the two-level "key information" line, or the full passage."""
        if self.settings.two_level:
            return [c.key or c.text for c in chunks]
        return [c.text for c in chunks]

    def ingest(
        self,
        paths: Sequence[Path],
        names: Sequence[str] | None = None,
        progress: Progress | None = None,
        language: str | None = None,
        save: bool = True,
    ) -> Iterator[IngestResult]:
        """Ingest files one by one, yielding a result for each as it finishes."""
        progress = progress or _noop
        names = list(names) if names is not None else [Path(p).name for p in paths]
        total = len(paths)
        for i, (path, raw_name) in enumerate(zip(paths, names, strict=True)):
            name = safe_name(raw_name)

            def step(fraction: float, message: str, i: int = i, name: str = name) -> None:
                progress((i + max(0.0, min(1.0, fraction))) / total, f"{name}: {message}")

            step(0.0, "checking")
            try:
                result = self._ingest_one(Path(path), name, step, language)
                if save and result.ok and not result.skipped:
                    step(0.98, "saving")
                    try:
                        self.kb.save()
                    except RagError:
                        # Memory must agree with disk: forget the document that could not be saved.
                        self.kb.rollback()
                        raise
            except IngestError as exc:
                result = IngestResult(name, False, str(exc))
            except RagError as exc:
                self.kb.discard_pending(name)
                result = IngestResult(name, False, str(exc))
            step(1.0, result.message)
            log.info("%s: %s", name, result.message)
            yield result

    def _ingest_one(self, path: Path, name: str, step: Progress, language: str | None) -> IngestResult:
        kind = check_file(path, name, self.settings.max_upload_mb)
        sha = file_sha256(path)
        existing = self.kb.document(name)
        if existing is not None and existing.sha256 == sha:
            return IngestResult(name, True, "unchanged, already in the knowledge base", existing, skipped=True)
        same = next((d for d in self.kb.documents() if d.sha256 == sha), None)
        if same is not None:
            return IngestResult(name, True, f"same content as {same.name}, already in the knowledge base", same, True)
        t0 = time.perf_counter()
        if kind == "pdf":
            step(0.05, "parsing")
            parsed = parse_pdf_isolated(path, name, sha, self.settings)
            chunks, meta = parsed.chunks, parsed.meta
            doc = Document(name, sha, "pdf", len(chunks), pages=parsed.pages, meta=meta)
            self.timings["parse"] += time.perf_counter() - t0
        else:
            chunks, doc = self._transcribe(path, name, sha, step, language)
            self.timings["transcribe"] += time.perf_counter() - t0
        if not chunks:
            raise errors.NoText("no text layer" if kind == "pdf" else "no speech found")
        # BM25 can find the document now, while its embeddings are computed.
        self.kb.add_pending(doc, chunks)
        try:
            vectors = self._embed(chunks, step)
            t1 = time.perf_counter()
            self.kb.add(doc, chunks, vectors, source=path)
            self.timings["index"] += time.perf_counter() - t1
        except BaseException:
            self.kb.discard_pending(name)
            raise
        what = f"{doc.pages} pages" if kind == "pdf" else f"{doc.duration_s or 0:.0f} s of media"
        verb = "replaced" if existing is not None else "ingested"
        return IngestResult(name, True, f"{verb}: {what}, {len(chunks)} passages", self.kb.document(name) or doc)

    def _embed(self, chunks: Sequence[Chunk], step: Progress):
        import numpy as np

        texts = self.embed_texts(chunks)
        t0 = time.perf_counter()
        parts = []
        batch = 64
        for start in range(0, len(texts), batch):
            step(0.3 + 0.65 * start / len(texts), f"embedding {start}/{len(texts)} passages")
            parts.append(self.embedder.passages(texts[start : start + batch]))
        self.timings["embed"] += time.perf_counter() - t0
        return np.vstack(parts)

    def _transcribe(self, path: Path, name: str, sha: str, step: Progress, language: str | None):
        from rag.media import probe
        from rag.transcript import TranscriptCache, chunk_segments

        info = probe(path, self.settings.max_media_s)
        cache = TranscriptCache(self.settings.kb_dir / "transcripts") if self.kb.directory else None
        transcript = cache.get(sha) if cache else None
        if transcript is None:
            if self._transcriber is None:
                if self._transcriber_factory is None:
                    raise IngestError("media ingestion needs a transcriber, none is configured")
                self._transcriber = self._transcriber_factory()
            started = time.monotonic()

            def on_progress(done_s: float, total_s: float) -> None:
                frac = done_s / total_s if total_s else 0.0
                elapsed = time.monotonic() - started
                eta = elapsed / frac - elapsed if frac > 0.02 else None
                msg = f"transcribing {done_s:.0f}/{total_s:.0f} s, elapsed {elapsed:.0f} s"
                step(0.05 + 0.25 * frac, msg + (f", about {eta:.0f} s left" if eta is not None else ""))

            step(0.05, "transcribing")
            transcript = self._transcriber.transcribe(path, language=language or None, progress=on_progress)
            if cache:
                cache.put(sha, transcript)
        meta = DocMeta(company=None, year=None, language=transcript.language if transcript.language == "zh" else "en")
        chunks = chunk_segments(transcript.segments, file=name, doc_id=sha, meta=meta)
        doc = Document(name, sha, "media", len(chunks), duration_s=info.duration_s, meta=meta)
        return chunks, doc


def rebuild(directory: Path, embedder: Embedder, settings: Settings, progress: Progress | None = None) -> list:
    """Rebuild the knowledge base in ``directory`` from its stored sources (after a format or embedder change)."""
    sources = sorted(p for p in (directory / "sources").glob("*/*") if p.is_file())
    kb = KnowledgeBase(directory, embedder.name, embedder.dim, hnsw_threshold=settings.hnsw_threshold)
    # Continue the generation count so the old manifest's files are never overwritten before the swap.
    gens = [int(m.group(1)) for p in directory.glob("*-*.*") if (m := re.match(r"(?:index|chunks)-(\d+)\.", p.name))]
    kb._generation = max(gens, default=0)
    ingestor = Ingestor(kb, embedder, settings)
    results = list(ingestor.ingest(sources, [p.name for p in sources], progress=progress, save=False))
    kb.save()
    return results
