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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rag import errors
from rag.embed import Embedder
from rag.errors import DamagedFile, IngestError, RagError, TooLarge, UnsupportedFile
from rag.index import KnowledgeBase
from rag.settings import Settings
from rag.types import Chunk, DocMeta, Document, IngestResult, Page

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


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given, and the supported files inside folders (recursively, sorted)."""
    out: list[Path] = []
    for path in paths:
        if Path(path).is_dir():
            out.extend(sorted(p for p in Path(path).rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED))
        else:
            out.append(Path(path))
    return out


# ----------------------------------------------------------------------------- isolated PDF parsing
@dataclass(frozen=True)
class Parsed:
    pages: int
    meta: DocMeta
    chunks: list[Chunk]


def _parse_pdf(path: str, name: str, doc_id: str, max_tokens: int, max_pages: int) -> Parsed:
    from rag.chunk import chunk_pages
    from rag.meta import detect_meta
    from rag.pdf import load_pdf

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
        _CTX.set_forkserver_preload(["rag.pdf", "rag.chunk", "rag.meta"])
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
@dataclass(frozen=True)
class _Prepared:
    kind: str  # "pdf" or "media"
    sha: str
    parsed: Parsed | None = None  # None for media (transcribed later) and for files that will be skipped


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
        save_every_s: float = 0.0,
    ) -> Iterator[IngestResult]:
        """Ingest files, yielding a result for each as it finishes (in input order).

        With ``settings.ingest_workers`` > 1, PDFs are parsed that many at a time ahead of the embedding. The
        knowledge base is saved after each file, or with ``save_every_s`` > 0 at most that often and at the end
        (bulk ingestion: a crash then resumes from the last save, since unchanged files are skipped).
        """
        progress = progress or _noop
        names = [safe_name(n) for n in (names if names is not None else [Path(p).name for p in paths])]
        total = len(paths)
        workers = max(1, self.settings.ingest_workers)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="parse") if workers > 1 else None
        ahead: dict[int, Future] = {}
        last_save = time.monotonic()
        dirty = False

        def submit_until(limit: int) -> None:
            if pool is None:
                return
            for j in range(limit):
                if j not in ahead and j < total:
                    ahead[j] = pool.submit(self._prepare, Path(paths[j]), names[j])

        try:
            for i, (path, name) in enumerate(zip(paths, names, strict=True)):

                def step(fraction: float, message: str, i: int = i, name: str = name) -> None:
                    progress((i + max(0.0, min(1.0, fraction))) / total, f"{name}: {message}")

                step(0.0, "checking")
                submit_until(i + 2 * workers)  # bounded read-ahead: parsed documents wait in memory
                try:
                    future = ahead.pop(i, None)
                    prepared = future.result() if future is not None else self._prepare(Path(path), name, step)
                    result = self._finish(Path(path), name, prepared, step, language)
                    if save and result.ok and not result.skipped:
                        dirty = True
                        if save_every_s <= 0 or time.monotonic() - last_save >= save_every_s:
                            step(0.98, "saving")
                            self._save()
                            last_save, dirty = time.monotonic(), False
                except IngestError as exc:
                    result = IngestResult(name, False, str(exc))
                except RagError as exc:
                    self.kb.discard_pending(name)
                    dirty = False  # a failed save rolled memory back to the last saved state
                    result = IngestResult(name, False, str(exc))
                step(1.0, result.message)
                log.info("%s: %s", name, result.message)
                yield result
            if dirty:
                self._save()
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _save(self) -> None:
        try:
            self.kb.save()
        except RagError:
            # Memory must agree with disk: forget what could not be saved.
            self.kb.rollback()
            raise

    def _prepare(self, path: Path, name: str, step: Progress = _noop) -> _Prepared:
        """Check the file, hash it and (for a PDF) parse it: the part that can run ahead in parallel."""
        kind = check_file(path, name, self.settings.max_upload_mb)
        sha = file_sha256(path)
        if self._skip(name, sha) is not None or kind != "pdf":
            return _Prepared(kind, sha)
        t0 = time.perf_counter()
        step(0.05, "parsing")
        parsed = parse_pdf_isolated(path, name, sha, self.settings)
        self.timings["parse"] += time.perf_counter() - t0
        return _Prepared(kind, sha, parsed)

    def _skip(self, name: str, sha: str) -> IngestResult | None:
        existing = self.kb.document(name)
        if existing is not None and existing.sha256 == sha:
            return IngestResult(name, True, "unchanged, already in the knowledge base", existing, skipped=True)
        same = next((d for d in self.kb.documents() if d.sha256 == sha), None)
        if same is not None:
            return IngestResult(name, True, f"same content as {same.name}, already in the knowledge base", same, True)
        return None

    def _finish(self, path: Path, name: str, prep: _Prepared, step: Progress, language: str | None) -> IngestResult:
        """Transcribe (media), then make the document searchable: BM25 at once, dense once embedded."""
        skipped = self._skip(name, prep.sha)
        if skipped is not None:
            return skipped
        existing = self.kb.document(name)
        kind, sha = prep.kind, prep.sha
        notice = None
        if prep.parsed is not None:
            parsed = prep.parsed
            chunks = parsed.chunks
            doc = Document(name, sha, "pdf", len(chunks), pages=parsed.pages, meta=parsed.meta)
        else:
            t0 = time.perf_counter()
            chunks, doc, notice = self._transcribe(path, name, sha, step, language)
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
        message = f"{verb}: {what}, {len(chunks)} passages" + (f" ({notice})" if notice else "")
        return IngestResult(name, True, message, self.kb.document(name) or doc)

    def _embed(self, chunks: Sequence[Chunk], step: Progress):
        import numpy as np

        texts = self.embed_texts(chunks)
        t0 = time.perf_counter()
        parts = []
        # Progress after every batch the embedder computes at once (its own batch size: the same calls, so the same
        # vectors and speed as one call for all), so the bar moves while a long document is embedded.
        batch = max(1, int(getattr(self.embedder, "batch_size", 32)))
        for start in range(0, len(texts), batch):
            step(0.3 + 0.65 * start / len(texts), f"embedding {start}/{len(texts)} passages")
            parts.append(self.embedder.passages(texts[start : start + batch]))
        step(0.95, f"embedded {len(texts)} passages")
        self.timings["embed"] += time.perf_counter() - t0
        return np.vstack(parts)

    def _transcribe(self, path: Path, name: str, sha: str, step: Progress, language: str | None):
        from rag.media import probe
        from rag.meta import detect_meta, known_company
        from rag.transcript import TranscriptCache, chunk_segments, transcribe_cached

        info = probe(path, self.settings.max_media_s)
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
        # Keyed by content hash, so only someone holding the same file can hit an entry; a different model or an
        # explicitly different language transcribes again.
        cache = TranscriptCache(self.settings.kb_dir / "transcripts")
        language = language or self.settings.media_language or None
        transcript, _ = transcribe_cached(self._transcriber, path, sha, cache, language, on_progress)
        # Company and year as the speakers state them, so scoping works for media too.
        stated = detect_meta([Page(1, transcript.text)], name)
        # A company the knowledge base already knows, named by the file or the speakers, beats what the transcript
        # alone suggests: recognition misspells names, and a briefing rarely spells out the legal name.
        known = sorted({d.meta.company for d in self.kb.documents() if d.meta.company})
        company = known_company(name, transcript.text, known) or stated.company
        meta = DocMeta(company=company, year=stated.year, language=transcript.doc_language)
        chunks = chunk_segments(transcript.segments, file=name, doc_id=sha, meta=meta, duration_s=transcript.duration_s)
        doc = Document(name, sha, "media", len(chunks), duration_s=info.duration_s, meta=meta)
        return chunks, doc, transcript.notice


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
