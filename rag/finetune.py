"""Fine-tuning retrieval on the knowledge base itself (``python -m rag finetune``).

1. Training triples from the indexed chunks, in the seed's JSONL format ``{"query": ..., "pos": [...], "neg": [...]}``:
   a question per sampled chunk, written by the bundled LLM in English and Chinese (slow on 2 cores, so capped), or,
   without the LLM, a pseudo-query taken from the chunk (its heading and a sentence other than the embedded key
   line). Hard negatives are the question's BM25 and dense neighbours from the same report (other pages) and from
   other companies' reports (the "Baidu answered from Tencent's report" confusion).
2. A low-rank residual adapter on the frozen embedder's query vectors (rag/adapter.py), trained with numpy on an
   InfoNCE loss (the positive against the hard negatives and the batch's other positives), saved beside the index.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.adapter import Adapter
from rag.embed import Embedder
from rag.errors import RagError
from rag.index import KnowledgeBase
from rag.llm import LLM, ChatMessage
from rag.text import detect_language, split_sentences

log = logging.getLogger(__name__)

TRIPLES = "finetune_triples.jsonl"
QUERY_MAX_TOKENS = 40
_ASK = {
    "en": "Write one short question, in English, that the passage below answers. Reply with the question only.\n\n"
    "Passage:\n{text}\n\nQuestion:",
    "zh": "用中文写一个下面这段文字能回答的简短问题。只回复问题本身。\n\n段落：\n{text}\n\n问题：",
}


@dataclass
class Triple:
    """One training example: a query, its positive chunk and hard-negative chunks (ids into the knowledge base)."""

    query: str
    pos: str  # chunk id
    neg: list[str] = field(default_factory=list)
    lang: str = "en"
    origin: str = "pseudo"  # "llm" or "pseudo"
    vector: np.ndarray | None = field(default=None, repr=False)  # the query's embedding, kept for training


def _vectors(kb: KnowledgeBase, ids: Sequence[str]) -> np.ndarray:
    """The stored (indexed) vectors of the given chunks, in order: what search compares query vectors with."""
    # Read-only use of the knowledge base's rows; re-embedding them would cost minutes on 2 cores.
    with kb._lock:
        row = {e.chunk.id: i for i, e in enumerate(kb._entries)}
        return np.ascontiguousarray(kb._vectors[[row[i] for i in ids]], dtype=np.float32)


def sample_chunks(kb: KnowledgeBase, limit: int, seed: int = 0) -> list:
    """Up to ``limit`` page chunks with enough text, spread evenly over the documents."""
    by_doc: dict[str, list] = {}
    for chunk in kb.chunks():
        if chunk.source.page and len(chunk.text) >= 200:
            by_doc.setdefault(chunk.source.file, []).append(chunk)
    rng = random.Random(seed)
    for chunks in by_doc.values():
        rng.shuffle(chunks)
    out: list = []
    while len(out) < limit and any(by_doc.values()):
        for name in sorted(by_doc):
            if by_doc[name] and len(out) < limit:
                out.append(by_doc[name].pop())
    return out


def pseudo_query(chunk) -> str:
    """A query without the LLM: the chunk's heading plus its most specific sentence that is not the key line."""
    key = chunk.key or ""
    sentences = [s.strip() for s in split_sentences(chunk.text) if 30 <= len(s.strip()) <= 300]
    sentences = [s for s in sentences if s[:40] not in key] or sentences
    if not sentences:
        return " ".join((chunk.heading + " " + chunk.text[:200]).split())
    best = max(sentences, key=lambda s: len(set(re.findall(r"\w+", s.lower()))))
    return " ".join(f"{chunk.heading} {best}".split()) if chunk.heading and chunk.heading not in best else best


def llm_query(llm: LLM, chunk, lang: str) -> str | None:
    """A question about ``chunk`` in ``lang`` written by ``llm``, or ``None`` when the reply is unusable."""
    text = chunk.text[:1200]
    messages = (ChatMessage("user", _ASK[lang].format(text=text)),)
    raw = "".join(llm.stream(messages, max_tokens=QUERY_MAX_TOKENS, stop=("\n",))).strip()
    line = raw.splitlines()[0].strip().strip("\"'“”").strip() if raw else ""
    line = re.sub(r"^(?:question|问题)\s*[:：]\s*", "", line, flags=re.I)
    if len(line) < 6 or detect_language(line) != lang:
        return None
    return line


def hard_negatives(kb: KnowledgeBase, query: str, qvec: np.ndarray, pos, same: int = 3, other: int = 3) -> list[str]:
    """Chunk ids ranked high for ``query`` that are not the positive's page: ``same`` from its report (BM25 and
    dense, alternating) and ``other`` from other documents."""
    mine = {pos.source.file}
    others = {d.name for d in kb.documents()} - mine
    pos_page = (pos.source.file, pos.source.page)

    def pick(files: set[str], count: int) -> list[str]:
        if not files or count <= 0:
            return []
        dense = [c for c, _ in kb.search_dense(qvec, 20, files)]
        bm25 = [c for c, _ in kb.search_bm25(query, 20, files)]
        chosen: list[str] = []
        for pair in zip(bm25 + [None] * 20, dense + [None] * 20, strict=False):
            for c in pair:
                if c is None or c.id in chosen or (c.source.file, c.source.page) == pos_page:
                    continue
                chosen.append(c.id)
                if len(chosen) == count:
                    return chosen
        return chosen

    return pick(mine, same) + pick(others, other)


def build_triples(
    kb: KnowledgeBase,
    embedder: Embedder,
    *,
    max_chunks: int = 300,
    llm: LLM | None = None,
    llm_queries: int = 0,
    languages: Sequence[str] = ("en", "zh"),
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[Triple]:
    """Triples for up to ``max_chunks`` sampled chunks. The first ``llm_queries`` get LLM-written questions (one per
    language in ``languages``); the rest, and any the LLM fails on, get a pseudo-query."""
    chunks = sample_chunks(kb, max_chunks, seed)
    triples: list[Triple] = []
    for n, chunk in enumerate(chunks):
        queries: list[tuple[str, str, str]] = []
        if llm is not None and n < llm_queries:
            for lang in languages:
                q = llm_query(llm, chunk, lang)
                if q:
                    queries.append((q, lang, "llm"))
        if not queries:
            q = pseudo_query(chunk)
            queries.append((q, detect_language(q), "pseudo"))
        for q, lang, origin in queries:
            qvec = embedder.query(q)
            triples.append(Triple(q, chunk.id, hard_negatives(kb, q, qvec, chunk), lang, origin, qvec))
        if progress:
            progress(n + 1, len(chunks))
    return triples


def write_triples(triples: Sequence[Triple], kb: KnowledgeBase, path: Path) -> None:
    """The seed's JSONL format: one ``{"query": ..., "pos": [text], "neg": [texts]}`` object a line."""
    text = {c.id: c.text for c in kb.chunks()}
    with open(path, "w", encoding="utf-8") as fh:
        for t in triples:
            row = {"query": t.query, "pos": [text[t.pos]], "neg": [text[i] for i in t.neg if i in text]}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


@dataclass(frozen=True)
class TrainResult:
    adapter: Adapter
    seconds: float
    epochs: int
    train_loss: float
    val_loss: float
    val_loss_before: float


def _loss_and_grads(a, b, q, p, neg, tau, l2, want_grads=True):
    """InfoNCE over [batch positives | own hard negatives] for each query, with gradients for A and B."""
    bsz = q.shape[0]
    h = q @ a.T  # (B, r)
    u = q + h @ b.T  # (B, d)
    norm = np.linalg.norm(u, axis=1, keepdims=True)
    z = u / norm
    s_batch = z @ p.T / tau  # (B, B): diagonal is each query's positive
    s_hard = np.einsum("bd,bmd->bm", z, neg) / tau  # (B, m)
    logits = np.concatenate([s_batch, s_hard], axis=1)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    prob = e / e.sum(axis=1, keepdims=True)
    idx = np.arange(bsz)
    loss = float(-np.log(prob[idx, idx] + 1e-12).mean())
    if not want_grads:
        return loss, None, None
    g = prob.copy()
    g[idx, idx] -= 1.0
    g /= bsz
    dz = (g[:, :bsz] @ p + np.einsum("bm,bmd->bd", g[:, bsz:], neg)) / tau
    du = (dz - z * np.sum(dz * z, axis=1, keepdims=True)) / norm
    grad_b = du.T @ h + l2 * b
    grad_a = (du @ b).T @ q + l2 * a
    return loss + 0.5 * l2 * float((a * a).sum() + (b * b).sum()), grad_a, grad_b


def train_adapter(
    queries: np.ndarray,
    positives: np.ndarray,
    negatives: np.ndarray,
    embedder_name: str,
    *,
    rank: int = 16,
    epochs: int = 30,
    batch: int = 64,
    lr: float = 2e-3,
    tau: float = 0.05,
    l2: float = 1e-3,
    val_share: float = 0.1,
    seed: int = 0,
) -> TrainResult:
    """Train the adapter: ``queries`` (n, d), ``positives`` (n, d), ``negatives`` (n, m, d), all L2-normalised.

    Adam on A and B; the epoch with the lowest validation loss (a held-back ``val_share`` of the triples) is kept,
    and an adapter that does not beat the identity on validation is still returned but its loss says so."""
    start = time.perf_counter()
    n, dim = queries.shape
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_val = round(n * val_share) if n >= 20 else 0
    val, train = order[:n_val], order[n_val:]
    adapter = Adapter.identity(embedder_name, dim, rank, seed)
    a, b = adapter.a.astype(np.float64), adapter.b.astype(np.float64)
    q64, p64, n64 = queries.astype(np.float64), positives.astype(np.float64), negatives.astype(np.float64)

    def val_loss(a_, b_) -> float:
        idx = val if n_val else train
        return _loss_and_grads(a_, b_, q64[idx], p64[idx], n64[idx], tau, 0.0, want_grads=False)[0]

    before = val_loss(a, b)
    best = (before, a.copy(), b.copy(), 0)
    moments = [np.zeros_like(a), np.zeros_like(a), np.zeros_like(b), np.zeros_like(b)]
    step, last = 0, before
    for epoch in range(1, epochs + 1):
        rng.shuffle(train)
        losses = []
        for s in range(0, len(train), batch):
            idx = train[s : s + batch]
            if len(idx) < 2:
                continue
            loss, ga, gb = _loss_and_grads(a, b, q64[idx], p64[idx], n64[idx], tau, l2)
            losses.append(loss)
            step += 1
            for i, (param, grad) in enumerate(((a, ga), (b, gb))):
                m, v = moments[2 * i], moments[2 * i + 1]
                m *= 0.9
                m += 0.1 * grad
                v *= 0.999
                v += 0.001 * grad * grad
                param -= lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
        last = float(np.mean(losses)) if losses else last
        current = val_loss(a, b)
        if current < best[0]:
            best = (current, a.copy(), b.copy(), epoch)
        log.debug("epoch %d: train loss %.4f, validation loss %.4f", epoch, last, current)
    result = Adapter(embedder_name, best[1].astype(np.float32), best[2].astype(np.float32))
    return TrainResult(result, time.perf_counter() - start, best[3], last, best[0], before)


def training_arrays(
    triples: Sequence[Triple], kb: KnowledgeBase, embedder: Embedder, negatives: int = 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query vectors (embedded now), positive and hard-negative vectors (the index's own), negatives padded to
    ``negatives`` per triple by repeating the last one."""
    usable = [t for t in triples if t.neg]
    if not usable:
        raise RagError("no training triples with hard negatives: the knowledge base needs at least two pages")
    q = np.vstack([t.vector if t.vector is not None else embedder.query(t.query) for t in usable]).astype(np.float32)
    p = _vectors(kb, [t.pos for t in usable])
    ids = [(t.neg + [t.neg[-1]] * negatives)[:negatives] for t in usable]
    flat = _vectors(kb, [i for row in ids for i in row])
    return q, p, flat.reshape(len(usable), negatives, -1)


def finetune(
    settings,
    *,
    max_chunks: int = 300,
    llm_queries: int = 0,
    rank: int = 16,
    epochs: int = 30,
    seed: int = 0,
    embedder: Embedder | None = None,
    llm: LLM | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """``python -m rag finetune``: triples from the knowledge base in ``settings.kb_dir`` (written beside it as
    ``finetune_triples.jsonl``), an adapter trained on them and saved beside the index. Returns a summary (seconds)."""
    from rag.adapter import save_adapter
    from rag.embed import make_embedder

    embedder = embedder or make_embedder(settings.embedder, settings.threads)
    kb = KnowledgeBase.open(
        settings.kb_dir, embedder, hnsw_threshold=settings.hnsw_threshold, k1=settings.bm25_k1, b=settings.bm25_b
    )
    if not kb.documents():
        raise RagError(f"the knowledge base in {settings.kb_dir} is empty: ingest documents before fine-tuning")
    if llm_queries > 0 and llm is None:
        from rag.llm import make_llm

        llm = make_llm(settings)
    start = time.perf_counter()
    triples = build_triples(
        kb, embedder, max_chunks=max_chunks, llm=llm, llm_queries=llm_queries, seed=seed, progress=progress
    )
    write_triples(triples, kb, settings.kb_dir / TRIPLES)
    triples_s = time.perf_counter() - start
    q, p, n = training_arrays(triples, kb, embedder)
    result = train_adapter(q, p, n, embedder.name, rank=rank, epochs=epochs, seed=seed)
    pages = sum(d.pages or 0 for d in kb.documents())
    info = {
        "triples": len(triples),
        "llm_queries": sum(t.origin == "llm" for t in triples),
        "documents": len(kb.documents()),
        "pages": pages,
        "rank": rank,
        "best_epoch": result.epochs,
        "validation_loss_before": round(result.val_loss_before, 4),
        "validation_loss_after": round(result.val_loss, 4),
        "triples_s": round(triples_s, 1),
        "train_s": round(result.seconds, 1),
    }
    adapter = Adapter(result.adapter.embedder, result.adapter.a, result.adapter.b, info)
    save_adapter(adapter, settings.kb_dir)
    log.info("fine-tuned query adapter: %s", info)
    return info


def cli_finetune(args, settings) -> str:
    """The ``finetune`` command (rag/cli.py): train and save, or ``--remove``, the adapter. Returns the report line."""
    from rag.adapter import delete_adapter

    if args.remove:
        return "adapter removed" if delete_adapter(settings.kb_dir) else "no adapter to remove"
    if args.max_chunks < 1 or args.llm_queries < 0 or args.rank < 1 or args.epochs < 1:
        raise RagError("--max-chunks, --rank and --epochs must be at least 1, --llm-queries at least 0")
    info = finetune(
        settings, max_chunks=args.max_chunks, llm_queries=args.llm_queries, rank=args.rank, epochs=args.epochs
    )
    return json.dumps(info, ensure_ascii=False)
