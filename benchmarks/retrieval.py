"""Retrieval benchmark: our pipeline vs the textbook LangChain pipeline on the shared ESG reports.

    python benchmarks/retrieval.py --set dev|test --kb DIR [--translate] [--grid] [--no-baseline] [--json FILE]
    python benchmarks/retrieval.py [--chunk-tokens 256] [--full-text] [--workers 2] [--no-baseline]

With ``--set`` (issue 15): the verified question set (benchmarks/data/questions_*.jsonl, answerable items with gold
pages, one split), per lang_pair and overall hit@1/5/10 and MRR with 95% bootstrap intervals, for dense (key-line
vectors, whole-chunk vectors, both), BM25, hybrid and the textbook baseline, scoped to the question's document and
unscoped over every document of its language group (9 English reports, 7 Chinese documents). The knowledge bases
are built once under ``--kb`` (en/, zh/, with whole-chunk vectors and the baseline's vectors cached beside them) and
reused. ``--translate`` adds the cross-lingual rows with LLM query translation (translations cached in ``--kb``);
``--grid`` scores every fusion variant (tune on dev only).

Without ``--set``, the older shared-QA benchmark:

Reports hit@1/5/10 and MRR (scoped to each question's document) for dense, BM25 and hybrid, against two golds: the
QA file's ``page`` (the issue's metric) and every page verified as holding one of the question's gold evidence
extracts (``benchmarks.common.verified_pages``); ingestion pages/s with
parse, embed and index timed separately; the time until a new document is searchable by BM25; query latency
p50/p95; peak memory. The baseline needs `rank_bm25` (benchmarks/requirements.txt).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    gold_groups,
    load_jsonl,
    machine,
    peak_rss_mb,
    percentile,
    rank_metrics,
    source_pages,
    testdata,
    today,
    verified_pages,
    with_verified,
)
from rag.embed import E5Embedder
from rag.index import KnowledgeBase
from rag.ingest import Ingestor
from rag.retrieve import HybridRetriever
from rag.settings import Settings
from rag.types import Scope

log = logging.getLogger("bench")


def first_rank(pages: list[set[int]], gold: set[int]) -> int | None:
    """1-based rank of the first hit on a gold page, or None."""
    return next((i + 1 for i, p in enumerate(pages) if p & gold), None)


def run_ours(pdfs: list[Path], groups, verified, args) -> dict:
    embedder = E5Embedder(threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(
            environ={},
            kb_dir=Path(tmp),
            chunk_tokens=args.chunk_tokens,
            two_level=not args.full_text,
            threads=args.threads,
            ingest_workers=args.workers,
        )
        kb = KnowledgeBase(Path(tmp), embedder.name, embedder.dim)
        ingestor = Ingestor(kb, embedder, settings)
        embedder.query("warm up")  # load the model outside the timings
        t0 = time.perf_counter()
        results = list(ingestor.ingest(pdfs, save=False))
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        kb.save()
        save_s = time.perf_counter() - t1
        failed = [r for r in results if not r.ok]
        if failed:
            raise SystemExit(f"ingest failed: {failed}")
        pages = sum(r.document.pages or 0 for r in results)
        chunks = len(kb)
        tokens = [embedder.token_count(t) for t in ingestor.embed_texts(kb.chunks())]
        retriever = HybridRetriever([kb], embedder, settings)
        metrics, metrics_verified = {}, {}
        latencies = []
        for mode in ("dense", "bm25", "hybrid"):
            ranked = []
            for doc, question in groups:
                t = time.perf_counter()
                hits = retriever.retrieve(question, Scope(docs=(doc,)), k=10, mode=mode).hits
                if mode == "hybrid":
                    latencies.append(time.perf_counter() - t)
                ranked.append([set(source_pages(h.chunk.source)) for h in hits])
            metrics[mode] = rank_metrics(ranked, list(groups.values()))
            metrics_verified[mode] = rank_metrics(ranked, list(verified.values()))
            if mode == "hybrid":
                per_group = [
                    {
                        "doc": doc,
                        "question": question,
                        "gold": sorted(groups[(doc, question)]),
                        "verified": sorted(verified[(doc, question)]),
                        "rank": first_rank(pages, groups[(doc, question)]),
                        "rank_verified": first_rank(pages, verified[(doc, question)]),
                        "top5": [sorted(p) for p in pages[:5]],
                    }
                    for (doc, question), pages in zip(groups, ranked, strict=True)
                ]
        # A newly uploaded document: time until BM25 finds it (parse + chunk) vs until it is fully embedded.
        newest = pdfs[-1]
        kb.delete(newest.name)
        t = time.perf_counter()
        bm25_ready = None
        import threading

        done = threading.Event()

        def watch() -> None:
            nonlocal bm25_ready
            while not done.is_set():
                if kb.is_pending(newest.name):
                    bm25_ready = time.perf_counter() - t
                    return
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        list(ingestor.ingest([newest], save=False))
        fully = time.perf_counter() - t
        done.set()
        watcher.join()
    return {
        "config": {
            "chunk_tokens": args.chunk_tokens,
            "embedded": "full text" if args.full_text else "key line",
            "parse_workers": args.workers,
        },
        "pages": pages,
        "chunks": chunks,
        "embedded_tokens_mean": round(sum(tokens) / len(tokens), 1),
        "embedded_tokens_total": sum(tokens),
        "ingest_wall_s": round(wall, 1),
        "parse_s": round(ingestor.timings["parse"], 1),
        "embed_s": round(ingestor.timings["embed"], 1),
        "index_s": round(ingestor.timings["index"] + save_s, 2),
        "pages_per_s": round(pages / wall, 2),
        "new_doc": {
            "file": newest.name,
            "bm25_searchable_s": round(bm25_ready or -1, 2),
            "embedded_s": round(fully, 1),
        },
        "metrics": metrics,
        "metrics_verified": metrics_verified,
        "hybrid_per_group": per_group,
        "query_p50_ms": round(1000 * percentile(latencies, 50), 1),
        "query_p95_ms": round(1000 * percentile(latencies, 95), 1),
    }


def textbook_rrf(dense: list, sparse: list, k: int = 10) -> list:
    """The textbook pipeline's hybrid list: LangChain documents of both lists by reciprocal rank (constant 60)."""
    fused: dict[tuple, float] = {}
    keyed = {}
    for ranked in (dense, sparse):
        for rank, d in enumerate(ranked):
            key = (d.metadata["source"], d.metadata["page"], d.page_content)
            keyed[key] = d
            fused[key] = fused.get(key, 0) + 1 / (60 + rank + 1)
    return [keyed[key] for key in sorted(fused, key=lambda key: -fused[key])][:k]


def run_baseline(pdfs: list[Path], groups, verified, args) -> dict:
    """PyPDFLoader -> RecursiveCharacterTextSplitter(1000, 200) -> FAISS (same embedder) and BM25Retriever."""
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS
    from langchain_core.embeddings import Embeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    e5 = E5Embedder(threads=args.threads)

    class E5(Embeddings):
        def embed_documents(self, texts):
            return e5.passages(texts).tolist()

        def embed_query(self, text):
            return e5.query(text).tolist()

    e5.query("warm up")
    t0 = time.perf_counter()
    docs = []
    for pdf in pdfs:
        docs.extend(PyPDFLoader(str(pdf)).load())
    splits = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
    parse_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    store = FAISS.from_documents(splits, E5())
    embed_s = time.perf_counter() - t1
    by_doc: dict[str, list] = {}
    for d in splits:
        by_doc.setdefault(Path(d.metadata["source"]).name, []).append(d)
    bm25 = {name: BM25Retriever.from_documents(ds, k=10) for name, ds in by_doc.items()}
    metrics, metrics_verified = {}, {}
    ranked_all: dict[str, list[list[int]]] = {"dense": [], "bm25": [], "hybrid": []}
    for doc, question in groups:
        path = str(next(p for p in pdfs if p.name == doc))
        dense = store.similarity_search(question, k=10, filter={"source": path}, fetch_k=400)
        sparse = bm25[doc].invoke(question)
        hybrid = textbook_rrf(dense, sparse)
        for mode, ranked in (("dense", dense), ("bm25", sparse), ("hybrid", hybrid)):
            ranked_all[mode].append([int(d.metadata["page"]) + 1 for d in ranked])
    for mode, ranked in ranked_all.items():
        metrics[mode] = rank_metrics(ranked, list(groups.values()))
        metrics_verified[mode] = rank_metrics(ranked, list(verified.values()))
    pages = len(docs)
    return {
        "pages": pages,
        "chunks": len(splits),
        "ingest_wall_s": round(parse_s + embed_s, 1),
        "parse_s": round(parse_s, 1),
        "embed_s": round(embed_s, 1),
        "pages_per_s": round(pages / (parse_s + embed_s), 2),
        "metrics": metrics,
        "metrics_verified": metrics_verified,
    }


def main() -> None:
    if "--set" in sys.argv:
        from benchmarks.retrieval_verified import main as verified_main

        verified_main()
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", type=Path, default=testdata() / "qa" / "esg_qa_en.jsonl")
    ap.add_argument("--docs", type=Path, default=testdata() / "esg_pdfs")
    ap.add_argument("--chunk-tokens", type=int, default=Settings().chunk_tokens)
    ap.add_argument("--full-text", action="store_true", help="embed full chunks instead of key lines")
    ap.add_argument("--threads", type=int, default=Settings().threads)
    ap.add_argument("--workers", type=int, default=2, help="parallel PDF parser processes (ingest_workers)")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    rows = load_jsonl(args.qa)
    groups = gold_groups(rows)
    # A second gold: every page verified as holding one of the question's evidence extracts (common.verified_pages).
    verified = with_verified(groups, verified_pages(args.qa.parent))
    pdfs = sorted(args.docs.glob("*.pdf"))
    out = {"date": today(), "machine": machine(), "command": " ".join(sys.argv), "groups": len(groups)}
    out["groups_with_more_verified_pages"] = sum(verified[k] != groups[k] for k in groups)
    out["ours"] = run_ours(pdfs, groups, verified, args)
    if not args.no_baseline:
        out["baseline"] = run_baseline(pdfs, groups, verified, args)
    out["peak_rss_mb"] = round(peak_rss_mb(), 0)
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    ours = out["ours"]
    golds = (("metrics", "gold: the QA file's page"), ("metrics_verified", "gold: every verified evidence page"))
    for key, title in golds:
        print(f"\n{title}\n{'':10}{'hit@1':>8}{'hit@5':>8}{'hit@10':>8}{'MRR':>8}", file=sys.stderr)
        for name in ("ours", "baseline"):
            for mode, m in out.get(name, {}).get(key, {}).items():
                label = f"{name[:4]}-{mode}"
                print(f"{label:10}{m['hit@1']:8.3f}{m['hit@5']:8.3f}{m['hit@10']:8.3f}{m['mrr']:8.3f}", file=sys.stderr)
    for name in ("ours", "baseline"):
        if name in out:
            print(f"{name}: {out[name]['pages_per_s']} pages/s, {out[name]['chunks']} chunks", file=sys.stderr)
    print(f"query p50 {ours['query_p50_ms']} ms, p95 {ours['query_p95_ms']} ms", file=sys.stderr)


if __name__ == "__main__":
    main()
