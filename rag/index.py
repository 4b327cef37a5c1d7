"""The knowledge base: a faiss dense index, a BM25 index and a chunk store, persisted without pickle.

Layout of ``kb_dir``::

    manifest.json            format version, embedder, generation, counts, documents (written last, atomically)
    index-<gen>.faiss        faiss index, row i <-> line i of the chunk store
    chunks-<gen>.jsonl       one JSON object per chunk
    sources/<sha256>/<name>  the ingested files, kept for playback and for rebuilds

A save writes a new generation's files, then swaps ``manifest.json`` by rename, so a crash at any point leaves the
previous consistent generation in place. Documents whose embeddings are still running are searchable by BM25 only
and are not saved until their vectors are in.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import faiss
import numpy as np

from rag.bm25 import BM25, tokenize
from rag.embed import Embedder
from rag.errors import RagError, RebuildNeeded
from rag.fsio import atomic_copy, atomic_write
from rag.types import Chunk, DocMeta, Document, Source

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def chunk_to_json(chunk: Chunk) -> dict:
    return {
        "id": chunk.id,
        "doc_id": chunk.doc_id,
        "text": chunk.text,
        "source": {k: v for k, v in asdict(chunk.source).items() if v is not None},
        "meta": asdict(chunk.meta),
        "heading": chunk.heading,
        "key": chunk.key,
        **({"page_starts": list(chunk.page_starts)} if chunk.page_starts else {}),
        **({"table_header": chunk.table_header} if chunk.table_header else {}),
    }


def chunk_from_json(obj: dict) -> Chunk:
    return Chunk(
        id=obj["id"],
        doc_id=obj["doc_id"],
        text=obj["text"],
        source=Source(**obj["source"]),
        meta=DocMeta(**obj.get("meta", {})),
        heading=obj.get("heading", ""),
        key=obj.get("key", ""),
        page_starts=tuple(obj.get("page_starts", ())),
        table_header=obj.get("table_header", ""),
    )


def document_to_json(doc: Document) -> dict:
    data = asdict(doc)
    data["meta"] = asdict(doc.meta)
    return data


def document_from_json(obj: dict) -> Document:
    obj = dict(obj)
    obj["meta"] = DocMeta(**obj.get("meta", {}))
    return Document(**obj)


@dataclass(frozen=True)
class _Named:
    """Just the identity of an embedder, for reopening a knowledge base without the model."""

    name: str
    dim: int


@dataclass
class _Entry:
    chunk: Chunk
    tokens: list[str]


class KnowledgeBase:
    """Chunks of many documents with dense (faiss) and BM25 search. Thread-safe.

    ``directory=None`` makes an in-memory knowledge base (a visitor's private uploads); otherwise ``open`` loads it
    from disk and ``save`` persists it.
    """

    def __init__(
        self,
        directory: Path | None,
        embedder_name: str,
        dim: int,
        *,
        hnsw_threshold: int = 50_000,
        k1: float = 1.2,
        b: float = 0.75,
    ) -> None:
        self.directory = directory
        self.embedder_name = embedder_name
        self.dim = dim
        self.hnsw_threshold = hnsw_threshold
        self.k1, self.b = k1, b
        self._lock = threading.RLock()
        self._entries: list[_Entry] = []  # committed: row i of the faiss index
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._pending: dict[str, tuple[Document, list[_Entry]]] = {}  # name -> BM25-only, awaiting vectors
        self._docs: dict[str, Document] = {}
        self._index: faiss.Index = faiss.IndexFlatIP(dim)
        self._bm25: BM25 | None = None
        self._bm25_entries: list[_Entry] = []
        self._generation = 0
        self.version = 0  # bumped on every change; caches key on it

    # ----------------------------------------------------------------- loading
    @classmethod
    def open(cls, directory: Path, embedder: Embedder, **kwargs: object) -> KnowledgeBase:
        """Load the knowledge base in ``directory`` (an empty one if there is none yet).

        Raises ``RebuildNeeded`` when the stored files disagree with each other or were built by another embedder
        or format version.
        """
        kb = cls(directory, embedder.name, embedder.dim, **kwargs)  # type: ignore[arg-type]
        manifest_path = directory / MANIFEST
        if not manifest_path.exists():
            return kb
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RebuildNeeded(f"knowledge base manifest {manifest_path} is unreadable ({exc}); rebuild it") from exc
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise RebuildNeeded(
                f"knowledge base in {directory} has format version {version}, this app reads {FORMAT_VERSION}; "
                "rebuild it (python -m rag rebuild)"
            )
        if manifest.get("embedder") != embedder.name or manifest.get("dim") != embedder.dim:
            raise RebuildNeeded(
                f"knowledge base in {directory} was built with embedder {manifest.get('embedder')!r} "
                f"(dim {manifest.get('dim')}), the app uses {embedder.name!r} (dim {embedder.dim}); "
                "rebuild it (python -m rag rebuild)"
            )
        gen = int(manifest["generation"])
        index_path = directory / f"index-{gen}.faiss"
        chunks_path = directory / f"chunks-{gen}.jsonl"
        try:
            index = faiss.read_index(str(index_path))
            with open(chunks_path, encoding="utf-8") as fh:
                chunks = [chunk_from_json(json.loads(line)) for line in fh if line.strip()]
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise RebuildNeeded(f"knowledge base files in {directory} are unreadable ({exc}); rebuild it") from exc
        if not (index.ntotal == len(chunks) == manifest.get("count")):
            raise RebuildNeeded(
                f"knowledge base in {directory} is inconsistent: {index.ntotal} vectors, {len(chunks)} chunks, "
                f"manifest says {manifest.get('count')}; rebuild it (python -m rag rebuild)"
            )
        if index.d != embedder.dim:
            raise RebuildNeeded(f"faiss index dimension {index.d} != embedder dimension {embedder.dim}; rebuild it")
        kb._index = index
        kb._vectors = index.reconstruct_n(0, index.ntotal) if index.ntotal else kb._vectors
        kb._entries = [_Entry(c, tokenize(c.text + " " + c.heading)) for c in chunks]
        kb._docs = {d["name"]: document_from_json(d) for d in manifest.get("documents", [])}
        kb._generation = gen
        kb._rebuild_bm25()
        log.info("opened knowledge base %s: %d documents, %d chunks", directory, len(kb._docs), len(chunks))
        return kb

    # ----------------------------------------------------------------- reading
    def documents(self) -> list[Document]:
        """Committed documents, then those still being embedded, by name."""
        with self._lock:
            docs = dict(self._docs)
            docs.update({name: doc for name, (doc, _) in self._pending.items()})
        return sorted(docs.values(), key=lambda d: d.name.lower())

    def document(self, name: str) -> Document | None:
        with self._lock:
            if name in self._docs:
                return self._docs[name]
            pending = self._pending.get(name)
            return pending[0] if pending else None

    def is_pending(self, name: str) -> bool:
        with self._lock:
            return name in self._pending

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries) + sum(len(e) for _, e in self._pending.values())

    def source_path(self, name: str) -> Path | None:
        """The stored copy of an ingested file (``None`` for in-memory knowledge bases)."""
        doc = self.document(name)
        if doc is None or self.directory is None:
            return None
        path = self.directory / "sources" / doc.sha256 / name
        return path if path.exists() else None

    def chunks(self, names: Iterable[str] | None = None) -> list[Chunk]:
        wanted = None if names is None else set(names)
        with self._lock:
            return [e.chunk for e in self._bm25_entries if wanted is None or e.chunk.source.file in wanted]

    # ----------------------------------------------------------------- search
    def _rows_for(self, files: set[str] | None, entries: Sequence[_Entry]) -> np.ndarray | None:
        if files is None:
            return None
        return np.fromiter((i for i, e in enumerate(entries) if e.chunk.source.file in files), dtype=np.int64)

    def search_dense(self, qvec: np.ndarray, k: int, files: set[str] | None = None) -> list[tuple[Chunk, float]]:
        """Top ``k`` chunks by cosine similarity (inner product of normalised vectors), optionally only in ``files``."""
        with self._lock:
            n = self._index.ntotal
            if n == 0 or k <= 0:
                return []
            rows = self._rows_for(files, self._entries)
            params = None
            if rows is not None:
                if rows.size == 0:
                    return []
                params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(rows))
                if isinstance(self._index, faiss.IndexHNSW):
                    params = faiss.SearchParametersHNSW(sel=faiss.IDSelectorBatch(rows), efSearch=max(64, 2 * k))
            kk = min(k, n if rows is None else int(rows.size))
            scores, ids = self._index.search(qvec.reshape(1, -1).astype(np.float32), kk, params=params)
            return [(self._entries[i].chunk, float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def search_bm25(self, query: str, k: int, files: set[str] | None = None) -> list[tuple[Chunk, float]]:
        """Top ``k`` chunks by BM25, committed and still-embedding documents alike."""
        with self._lock:
            bm25, entries = self._bm25, self._bm25_entries
            if bm25 is None or not entries:
                return []
            rows = self._rows_for(files, entries)
            if rows is not None and rows.size == 0:
                return []
            return [(entries[i].chunk, s) for i, s in bm25.top(tokenize(query), k, rows)]

    def dense_scores(self, qvec: np.ndarray, chunk_ids: Sequence[str]) -> dict[str, float]:
        """Cosine of the query with the stored vectors of the given chunks (those with vectors only)."""
        with self._lock:
            wanted = set(chunk_ids)
            rows = [i for i, e in enumerate(self._entries) if e.chunk.id in wanted]
            if not rows:
                return {}
            sims = self._vectors[rows] @ qvec.astype(np.float32)
            return {self._entries[i].chunk.id: float(s) for i, s in zip(rows, sims, strict=True)}

    # ----------------------------------------------------------------- writing
    def add_pending(self, doc: Document, chunks: Sequence[Chunk]) -> None:
        """Make a document searchable by BM25 at once, while its embeddings are computed."""
        with self._lock:
            self._pending[doc.name] = (doc, [_Entry(c, tokenize(c.text + " " + c.heading)) for c in chunks])
            self._rebuild_bm25()

    def add(self, doc: Document, chunks: Sequence[Chunk], vectors: np.ndarray, source: Path | None = None) -> None:
        """Add (or replace, by name) a document with one vector per chunk; ``source`` is kept under sources/."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(chunks), self.dim):
            raise ValueError(f"expected vectors of shape ({len(chunks)}, {self.dim}), got {vectors.shape}")
        if source is not None and self.directory is not None:
            self._store_source(source, doc)
        with self._lock:
            pending = self._pending.pop(doc.name, None)
            entries = pending[1] if pending else [_Entry(c, tokenize(c.text + " " + c.heading)) for c in chunks]
            keep = [i for i, e in enumerate(self._entries) if e.chunk.source.file != doc.name]
            self._entries = [self._entries[i] for i in keep] + entries
            self._vectors = np.vstack([self._vectors[keep], vectors]) if keep else vectors
            self._docs[doc.name] = replace(doc, chunks=len(chunks))
            self._rebuild_dense(incremental=len(keep) == self._index.ntotal, added=vectors)
            self._rebuild_bm25()

    def discard_pending(self, name: str) -> None:
        """Forget a document whose embedding failed or was cancelled."""
        with self._lock:
            if self._pending.pop(name, None) is not None:
                self._rebuild_bm25()

    def delete(self, name: str) -> bool:
        """Remove a document from dense and BM25 search alike. Returns whether it existed."""
        with self._lock:
            existed = name in self._docs or name in self._pending
            self._pending.pop(name, None)
            doc = self._docs.pop(name, None)
            keep = [i for i, e in enumerate(self._entries) if e.chunk.source.file != name]
            if len(keep) != len(self._entries):
                self._entries = [self._entries[i] for i in keep]
                self._vectors = self._vectors[keep]
                self._rebuild_dense(incremental=False)
            self._rebuild_bm25()
        if doc is not None and self.directory is not None and not any(d.sha256 == doc.sha256 for d in self.documents()):
            shutil.rmtree(self.directory / "sources" / doc.sha256, ignore_errors=True)
        return existed

    def rollback(self) -> None:
        """Drop unsaved changes: reload the last saved generation (documents still embedding are kept)."""
        if self.directory is None:
            return
        with self._lock:
            saved = KnowledgeBase.open(
                self.directory,
                _Named(self.embedder_name, self.dim),
                hnsw_threshold=self.hnsw_threshold,
                k1=self.k1,
                b=self.b,
            )
            self._entries, self._vectors, self._docs = saved._entries, saved._vectors, saved._docs
            self._index, self._generation = saved._index, saved._generation
            self._rebuild_bm25()

    def save(self) -> None:
        """Persist committed documents as a new generation, then swap the manifest atomically."""
        if self.directory is None:
            return
        with self._lock:
            directory = self.directory
            directory.mkdir(parents=True, exist_ok=True)
            gen = self._generation + 1
            lines = "".join(json.dumps(chunk_to_json(e.chunk), ensure_ascii=False) + "\n" for e in self._entries)
            manifest = {
                "format_version": FORMAT_VERSION,
                "embedder": self.embedder_name,
                "dim": self.dim,
                "generation": gen,
                "count": len(self._entries),
                "index_type": type(self._index).__name__,
                "documents": [document_to_json(d) for d in sorted(self._docs.values(), key=lambda d: d.name)],
            }
            try:
                atomic_write(directory / f"chunks-{gen}.jsonl", lines.encode("utf-8"))
                index_bytes = faiss.serialize_index(self._index).tobytes()
                atomic_write(directory / f"index-{gen}.faiss", index_bytes)
                atomic_write(directory / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8"))
            except OSError as exc:
                for name in (f"chunks-{gen}.jsonl", f"index-{gen}.faiss"):
                    (directory / name).unlink(missing_ok=True)
                raise RagError(f"could not save the knowledge base in {directory}: {exc.strerror or exc}") from exc
            self._generation = gen
            self._collect_garbage(gen)
            log.info("saved knowledge base generation %d (%d chunks)", gen, len(self._entries))

    # ----------------------------------------------------------------- internals
    def _store_source(self, source: Path, doc: Document) -> None:
        assert self.directory is not None
        dest = self.directory / "sources" / doc.sha256 / doc.name
        if dest.exists():
            return
        # Renamed into place, not fsynced: as before, only save() (its manifest) is the durable commit point.
        atomic_copy(source, dest, fsync=False)

    def _collect_garbage(self, gen: int) -> None:
        assert self.directory is not None
        keep = {f"chunks-{gen}.jsonl", f"index-{gen}.faiss"}
        for path in self.directory.glob("*-*.*"):
            if path.name.startswith(("chunks-", "index-")) and path.name not in keep:
                path.unlink(missing_ok=True)
        for path in self.directory.glob(".*.tmp"):
            path.unlink(missing_ok=True)
        live = {d.sha256 for d in self._docs.values()} | {d.sha256 for d, _ in self._pending.values()}
        sources = self.directory / "sources"
        if sources.is_dir():
            for sub in sources.iterdir():
                if sub.is_dir() and sub.name not in live:
                    shutil.rmtree(sub, ignore_errors=True)

    def _rebuild_dense(self, incremental: bool, added: np.ndarray | None = None) -> None:
        n = len(self._entries)
        want_hnsw = n >= self.hnsw_threshold
        is_hnsw = isinstance(self._index, faiss.IndexHNSW)
        if incremental and added is not None and want_hnsw == is_hnsw:
            self._index.add(added)
        else:
            if want_hnsw:
                index = faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = 80
                index.hnsw.efSearch = 64
            else:
                index = faiss.IndexFlatIP(self.dim)
            if n:
                index.add(self._vectors)
            self._index = index
        self.version += 1

    def _rebuild_bm25(self) -> None:
        entries = list(self._entries)
        for _, pending in self._pending.values():
            entries.extend(pending)
        self._bm25_entries = entries
        self._bm25 = BM25([e.tokens for e in entries], self.k1, self.b) if entries else None
        self.version += 1
