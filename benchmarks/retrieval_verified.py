"""Retrieval on the verified question set (issue 15); run as ``python benchmarks/retrieval.py --set dev|test``.

See benchmarks/retrieval.py for the options. Everything is decided on dev; test is reported with the dev choices.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, bootstrap_ci, fmt_ci, load_jsonl, machine, peak_rss_mb, percentile, testdata, today
from rag.embed import E5Embedder
from rag.index import KnowledgeBase
from rag.ingest import Ingestor
from rag.retrieve import (
    HybridRetriever,
    Ranked,
    fuse,
    fuse_agreement,
    fuse_pages,
    fuse_rrf,
    fuse_scores,
    group_by_page,
    merge_page,
)
from rag.settings import Settings
from rag.types import Chunk, Scope

log = logging.getLogger("bench")

GROUPS = {"en": "esg_pdfs", "zh": "zh_pdfs"}
SETS = ("questions_en_reports.jsonl", "questions_zh_docs.jsonl")
PAIRS = ("en-en", "zh-en", "zh-zh", "en-zh")
N = 50  # candidates per list, as Settings.retrieve_k


def load_questions(split: str) -> list[dict]:
    """Answerable items of ``split`` with gold pages, from both verified sets."""
    rows = []
    for name in SETS:
        for row in load_jsonl(ROOT / "benchmarks" / "data" / name):
            if row["split"] == split and row.get("answerable") and row.get("pages") and row.get("doc"):
                rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------- knowledge bases
def build_kbs(root: Path, embedder: E5Embedder, settings: Settings, ingest: bool = True) -> dict[str, KnowledgeBase]:
    """One knowledge base per language group under ``root``, ingested once (timed into build.json) and reused."""
    timings_path = root / "build.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    kbs = {}
    for group, folder in GROUPS.items():
        directory = root / group
        kb = KnowledgeBase.open(directory, embedder)
        pdfs = sorted((testdata() / folder).glob("*.pdf"))
        missing = [p for p in pdfs if kb.document(p.name) is None]
        if missing and ingest:
            ingestor = Ingestor(kb, embedder, settings.replace(kb_dir=directory))
            embedder.query("warm up")
            t0 = time.perf_counter()
            results = list(ingestor.ingest(missing))
            wall = time.perf_counter() - t0
            if not all(r.ok for r in results):
                raise SystemExit(f"ingest failed: {[r for r in results if not r.ok]}")
            if len(missing) == len(pdfs):
                pages = sum(r.document.pages or 0 for r in results)
                timings[group] = {"pages": pages, "wall_s": round(wall, 1), "pages_per_s": round(pages / wall, 2)}
                timings_path.write_text(json.dumps(timings, indent=1))
        kbs[group] = kb
    return kbs


def full_text_kb(kb: KnowledgeBase, embedder: E5Embedder, settings: Settings, cache: Path) -> KnowledgeBase:
    """The same chunks with whole-chunk vectors (ESG_TWO_LEVEL=false), in memory; the vectors are cached."""
    chunks = kb.chunks()
    ids = [c.id for c in chunks]
    vectors = None
    if cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            if list(data["ids"]) == ids:
                vectors = data["vectors"]
    if vectors is None:
        texts = Ingestor(kb, embedder, settings.replace(two_level=False)).embed_texts(chunks)
        t0 = time.perf_counter()
        vectors = embedder.passages(texts)
        log.warning("embedded %d whole chunks in %.0f s", len(texts), time.perf_counter() - t0)
        np.savez(cache, ids=np.array(ids), vectors=vectors)
    full = KnowledgeBase(None, kb.embedder_name, kb.dim)
    row = {cid: i for i, cid in enumerate(ids)}
    for doc in kb.documents():
        own = [c for c in chunks if c.source.file == doc.name]
        full.add(doc, own, vectors[[row[c.id] for c in own]])
    return full


# ----------------------------------------------------------------------------------------------- ranking helpers
def page_sets(ranked: Sequence[Chunk], k: int = 10) -> list[set[int]]:
    """Pages of each of the ``k`` passages the reader would get (one passage per page)."""
    out = []
    for group in group_by_page(list(ranked), k):
        src = merge_page(group).source
        out.append(set(range(src.page, (src.last_page or src.page) + 1)) if src.page else set())
    return out


def first_rank(pages: Sequence[set[int]], gold: set[int]) -> int | None:
    return next((i + 1 for i, p in enumerate(pages) if p & gold), None)


def merge_dense(a: Ranked, b: Ranked) -> Ranked:
    """A chunk found by either vector, with its better cosine."""
    best: dict[str, tuple[Chunk, float]] = {}
    for chunk, score in list(a) + list(b):
        if chunk.id not in best or score > best[chunk.id][1]:
            best[chunk.id] = (chunk, score)
    return sorted(best.values(), key=lambda p: -p[1])


@dataclass
class Item:
    row: dict
    group: str
    scoped: bool
    lists: dict[str, Ranked] = field(default_factory=dict)  # dense, dense_full, dense_both, bm25 (+ translated)
    ranks: dict[str, int | None] = field(default_factory=dict)


def metric_values(ranks: Sequence[int | None]) -> dict[str, list[float]]:
    return {
        "hit@1": [float(r is not None and r <= 1) for r in ranks],
        "hit@5": [float(r is not None and r <= 5) for r in ranks],
        "hit@10": [float(r is not None and r <= 10) for r in ranks],
        "mrr": [1.0 / r if r else 0.0 for r in ranks],
    }


def summary(items: Sequence[Item], method: str) -> dict[str, dict[str, str]]:
    """Per lang_pair, cross-lingual and overall: each metric as ``fmt_ci``; ``mean`` for sorting."""
    out = {}
    slices = {p: [i for i in items if i.row["lang_pair"] == p] for p in PAIRS}
    slices["cross"] = [i for i in items if i.row["lang_pair"] in ("zh-en", "en-zh")]
    slices["all"] = list(items)
    for name, chosen in slices.items():
        if not chosen:
            continue
        values = metric_values([i.ranks.get(method) for i in chosen])
        out[name] = {m: fmt_ci(v) for m, v in values.items()}
        out[name]["_mean"] = {m: round(bootstrap_ci(v)[0], 3) for m, v in values.items()}
    return out


# ----------------------------------------------------------------------------------------------- fusion variants
def variants(settings: Settings) -> dict[str, Callable[[Ranked, Ranked], Ranked]]:
    """Every fusion compared on dev (issue 15 item 2)."""
    out: dict[str, Callable[[Ranked, Ranked], Ranked]] = {}
    for wd, wb in ((1, 1), (1, 1.5), (1, 2), (1, 3), (1.5, 1)):
        for k in (10, 60):
            out[f"rrf d{wd} b{wb} k{k}"] = lambda d, b, wd=wd, wb=wb, k=k: fuse_rrf(((wd, d), (wb, b)), k)
            out[f"pages d{wd} b{wb} k{k}"] = lambda d, b, wd=wd, wb=wb, k=k: fuse_pages(((wd, d), (wb, b)), k)
    for wd in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
        for norm in ("minmax", "max", "z"):
            out[f"scores-{norm} d{wd}"] = lambda d, b, wd=wd, norm=norm: fuse_scores(((wd, d), (1 - wd, b)), norm)
            out[f"scores-{norm}-fill d{wd}"] = lambda d, b, wd=wd, norm=norm: fuse_scores(
                ((wd, d), (1 - wd, b)), norm, fill=True
            )
    for low in (0.1, 0.2, 0.3, 0.4):
        out[f"agreement low{low}"] = lambda d, b, low=low: fuse_agreement(d, b, (1, 1), 60, low)
    out["settings"] = lambda d, b: fuse(d, b, settings)
    return out


# ----------------------------------------------------------------------------------------------- baseline
def run_baseline(root: Path, items: list[Item], threads: int) -> dict:
    """PyPDFLoader -> RecursiveCharacterTextSplitter(1000, 200) -> FAISS (same e5) + BM25Retriever, RRF (k=60).

    Split texts and vectors are cached under ``root/baseline-<group>/`` (JSON + npz, no pickle); the first build's
    times are kept in build.json for the ingestion comparison."""
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document as LCDocument
    from langchain_core.embeddings import Embeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from benchmarks.retrieval import textbook_rrf

    e5 = E5Embedder(threads=threads)

    class E5(Embeddings):
        def embed_documents(self, texts):
            return e5.passages(texts).tolist()

        def embed_query(self, text):
            return e5.query(text).tolist()

    timings_path = root / "build.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    stores, bm25_all, bm25_doc = {}, {}, {}
    for group, folder in GROUPS.items():
        cache = root / f"baseline-{group}"
        if not (cache / "vectors.npz").exists():
            cache.mkdir(parents=True, exist_ok=True)
            e5.query("warm up")
            t0 = time.perf_counter()
            docs = []
            for pdf in sorted((testdata() / folder).glob("*.pdf")):
                docs.extend(PyPDFLoader(str(pdf)).load())
            splits = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
            parse_s = time.perf_counter() - t0
            vectors = e5.passages([d.page_content for d in splits])
            wall = time.perf_counter() - t0
            rows = [
                {"text": d.page_content, "doc": Path(d.metadata["source"]).name, "page": d.metadata["page"]}
                for d in splits
            ]
            (cache / "splits.json").write_text(json.dumps(rows, ensure_ascii=False))
            np.savez(cache / "vectors.npz", vectors=vectors)
            timings[f"baseline-{group}"] = {
                "pages": len(docs),
                "parse_s": round(parse_s, 1),
                "wall_s": round(wall, 1),
                "pages_per_s": round(len(docs) / wall, 2),
            }
            timings_path.write_text(json.dumps(timings, indent=1))
        rows = json.loads((cache / "splits.json").read_text())
        with np.load(cache / "vectors.npz", allow_pickle=False) as data:
            vectors = data["vectors"]
        lc_docs = [LCDocument(page_content=r["text"], metadata={"source": r["doc"], "page": r["page"]}) for r in rows]
        stores[group] = FAISS.from_embeddings(
            [(r["text"], v.tolist()) for r, v in zip(rows, vectors, strict=True)],
            E5(),
            metadatas=[d.metadata for d in lc_docs],
        )
        bm25_all[group] = BM25Retriever.from_documents(lc_docs, k=10)
        for name in {r["doc"] for r in rows}:
            bm25_doc[name] = BM25Retriever.from_documents([d for d in lc_docs if d.metadata["source"] == name], k=10)
    for item in items:
        q, doc = item.row["question"], item.row["doc"]
        store = stores[item.group]
        if item.scoped:
            dense = store.similarity_search(q, k=10, filter={"source": doc}, fetch_k=2000)
            sparse = bm25_doc[doc].invoke(q)
        else:
            dense = store.similarity_search(q, k=10)
            sparse = bm25_all[item.group].invoke(q)
        hybrid = textbook_rrf(dense, sparse)
        gold = set(item.row["pages"])
        for mode, ranked in (("dense", dense), ("bm25", sparse), ("hybrid", hybrid)):
            pages = [{int(d.metadata["page"]) + 1} if d.metadata["source"] == doc else set() for d in ranked]
            item.ranks[f"textbook {mode}"] = first_rank(pages, gold)
    return timings


# ----------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description="retrieval on the verified question set (issue 15)")
    ap.add_argument("--set", dest="split", choices=("dev", "test"), required=True)
    ap.add_argument("--kb", type=Path, required=True, help="knowledge bases are built here once and reused")
    ap.add_argument("--threads", type=int, default=Settings().threads)
    ap.add_argument("--translate", action="store_true", help="cross-lingual rows with LLM query translation")
    ap.add_argument("--grid", action="store_true", help="score every fusion variant (tune on dev only)")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--no-ingest", action="store_true", help="only the documents already in --kb (a partial run)")
    ap.add_argument("--whole-chunks", action="store_true", help="also embed whole chunks (two-level comparison)")
    ap.add_argument("--no-adapter", action="store_true", help="ignore a fine-tuned adapter beside the index")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    settings = Settings.from_env(threads=args.threads, **({"adapter": False} if args.no_adapter else {}))
    embedder = E5Embedder(threads=args.threads)
    args.kb.mkdir(parents=True, exist_ok=True)
    kbs = build_kbs(args.kb, embedder, settings, ingest=not args.no_ingest)
    full = (
        {g: full_text_kb(kb, embedder, settings, args.kb / f"{g}-fulltext.npz") for g, kb in kbs.items()}
        if args.whole_chunks
        else {}
    )
    retrievers = {g: HybridRetriever([kb], embedder, settings) for g, kb in kbs.items()}
    full_retrievers = {g: HybridRetriever([kb], embedder, settings) for g, kb in full.items()}
    group_of = {d.name: g for g, kb in kbs.items() for d in kb.documents()}
    rows = [r for r in load_questions(args.split) if r["doc"] in group_of]
    items = [Item(r, group_of[r["doc"]], scoped) for scoped in (True, False) for r in rows]

    translations: dict[str, str | None] = {}
    trans_path = args.kb / "translations.json"
    if args.translate:
        translations = json.loads(trans_path.read_text()) if trans_path.exists() else {}
        cross = sorted({r["question"] for r in rows if r["lang_pair"] in ("zh-en", "en-zh")} - set(translations))
        if cross:
            from rag.llm import make_llm
            from rag.translate import QueryTranslator

            translator = QueryTranslator(make_llm(settings))
            for q in cross:
                row = next(r for r in rows if r["question"] == q)
                t0 = time.perf_counter()
                translations[q] = translator.translate(q, row["lang_pair"].split("-")[1])
                log.warning("translated in %.1f s: %s -> %s", time.perf_counter() - t0, q, translations[q])
                trans_path.write_text(json.dumps(translations, ensure_ascii=False, indent=1))

    # Candidate lists once per question and scoping; every method below ranks from them.
    for item in items:
        q = item.row["question"]
        scope = Scope(docs=(item.row["doc"],)) if item.scoped else Scope()
        key = retrievers[item.group].candidates(q, scope, N)
        item.lists = {"dense": key.dense, "bm25": key.bm25}
        if full_retrievers:
            whole = full_retrievers[item.group].candidates(q, scope, N, vector=key.qvec)
            item.lists["dense_full"] = whole.dense
            item.lists["dense_both"] = merge_dense(key.dense, whole.dense)
        other = translations.get(q)
        if other:
            t = retrievers[item.group].candidates(other, scope, N)
            item.lists.update({"t_dense": t.dense, "t_bm25": t.bm25})
            if full_retrievers:
                tw = full_retrievers[item.group].candidates(other, scope, N, vector=t.qvec)
                item.lists["t_dense_full"] = tw.dense

    def rank(item: Item, ranked: Ranked) -> int | None:
        return first_rank(page_sets([c for c, _ in ranked]), set(item.row["pages"]))

    # The two fusions compared on answers (issue 15), side by side whatever the settings choose.
    fusions = {
        "RRF 1/1": settings.replace(fusion="rrf", dense_weight=1.0, bm25_weight=1.0, rrf_k=60),
        "scores 0.4/0.6": settings.replace(fusion="scores", dense_weight=0.4, bm25_weight=0.6),
    }

    def fused(it: Item, dense: str, with_settings: Settings = settings, t: str = "") -> Ranked:
        return fuse(it.lists[t + dense], it.lists[t + "bm25"], with_settings)

    methods = {
        "dense (key lines)": lambda it: it.lists["dense"],
        "dense (whole chunks)": lambda it: it.lists["dense_full"],
        "dense (both)": lambda it: it.lists["dense_both"],
        "bm25": lambda it: it.lists["bm25"],
        "hybrid (key lines)": lambda it: fused(it, "dense"),
        "hybrid (whole chunks)": lambda it: fused(it, "dense_full"),
        "hybrid (both)": lambda it: fused(it, "dense_both"),
    }
    for label, fs in fusions.items():
        methods[f"hybrid, {label}"] = lambda it, fs=fs: fused(it, "dense", fs)
    dense_key = "dense" if settings.two_level else "dense_full"
    for item in items:
        for name, make in methods.items():
            if not full_retrievers and ("whole" in name or "both" in name):
                continue
            item.ranks[name] = rank(item, make(item))
        if "t_bm25" in item.lists:
            # Query translation as the app does it: both queries retrieved (hybrid), the rankings fused by page.
            first, second = fused(item, dense_key), fused(item, dense_key, t="t_")
            item.ranks["hybrid + translation"] = rank(item, fuse_rrf(((1.0, first), (1.0, second)), settings.rrf_k))
            for label, fs in fusions.items():
                pair = fused(item, "dense", fs), fused(item, "dense", fs, t="t_")
                both = fuse_rrf(((1.0, pair[0]), (1.0, pair[1])), fs.rrf_k)
                item.ranks[f"hybrid, {label} + translation"] = rank(item, both)
        elif args.translate and item.row["lang_pair"] in ("zh-en", "en-zh"):
            # No usable translation: the question is retrieved as asked.
            item.ranks["hybrid + translation"] = item.ranks[
                "hybrid (key lines)" if settings.two_level else "hybrid (whole chunks)"
            ]
            for label in fusions:
                item.ranks[f"hybrid, {label} + translation"] = item.ranks[f"hybrid, {label}"]
    if args.translate:
        # What the app retrieves: the question as asked, plus its translation when it is cross-lingual.
        apps = {"app": ("hybrid (key lines)", "hybrid + translation")}
        apps.update({f"app, {label}": (f"hybrid, {label}", f"hybrid, {label} + translation") for label in fusions})
        for item in items:
            for app, (asked, translated) in apps.items():
                app_rank = item.ranks.get(translated, item.ranks[asked])
                item.ranks[f"{app}: hybrid, translation if cross-lingual"] = app_rank
    if args.grid:
        for name, fusion in variants(settings).items():
            for dense_name in ("dense", "dense_full", "dense_both") if full_retrievers else ("dense",):
                for item in items:
                    item.ranks[f"grid {dense_name} {name}"] = rank(
                        item, fusion(item.lists[dense_name], item.lists["bm25"])
                    )

    timings = {} if args.no_baseline else run_baseline(args.kb, items, args.threads)
    if not timings:
        build = args.kb / "build.json"
        timings = json.loads(build.read_text()) if build.exists() else {}

    # Query latency of the app's path (embed + both lists + fusion + pages), hybrid, k=5, per question and scoping.
    latencies = []
    for item in items:
        scope = Scope(docs=(item.row["doc"],)) if item.scoped else Scope()
        t0 = time.perf_counter()
        retrievers[item.group].retrieve(item.row["question"], scope, k=5)
        latencies.append(time.perf_counter() - t0)

    out: dict = {
        "date": today(),
        "machine": machine(),
        "command": " ".join(sys.argv),
        "split": args.split,
        "questions": len(rows),
        "settings": {
            "fusion": settings.fusion,
            "dense_weight": settings.dense_weight,
            "bm25_weight": settings.bm25_weight,
            "rrf_k": settings.rrf_k,
            "two_level": settings.two_level,
            "adapter": settings.adapter,
        },
        "build": timings,
        "query_p50_ms": round(1000 * percentile(latencies, 50), 1),
        "query_p95_ms": round(1000 * percentile(latencies, 95), 1),
        "peak_rss_mb": round(peak_rss_mb()),
        "results": {},
    }
    names = sorted({m for it in items for m in it.ranks})
    for scoped in (True, False):
        chosen = [i for i in items if i.scoped is scoped]
        label = "scoped" if scoped else "unscoped"
        out["results"][label] = {m: summary([i for i in chosen if m in i.ranks], m) for m in names}
        out["per_question_" + label] = {
            i.row["id"]: {m: i.ranks[m] for m in names if m in i.ranks and not m.startswith("grid")} for i in chosen
        }
    text = json.dumps(out, indent=1, ensure_ascii=False)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    print_tables(out, names)


def print_tables(out: dict, names: Sequence[str]) -> None:
    print(f"# {out['split']}: {out['questions']} questions; {out['date']}; {out['machine']}")
    print(f"settings {out['settings']}; query p50 {out['query_p50_ms']} ms, p95 {out['query_p95_ms']} ms")
    for label, results in out["results"].items():
        main_names = [n for n in names if not n.startswith("grid")]
        print(f"\n## {label}\n| method | slice | hit@1 | hit@5 | hit@10 | MRR |\n|---|---|---|---|---|---|")
        for name in main_names:
            for slc, m in results[name].items():
                print(f"| {name} | {slc} | {m['hit@1']} | {m['hit@5']} | {m['hit@10']} | {m['mrr']} |")
        grid = [n for n in names if n.startswith("grid")]
        if grid:
            print(f"\n### fusion grid ({label}): hit@5 / MRR, all and cross")
            ordered = sorted(
                grid, key=lambda n: (-results[n]["all"]["_mean"]["hit@5"], -results[n]["all"]["_mean"]["mrr"])
            )
            for name in ordered:
                a = results[name]["all"]["_mean"]
                c = results[name].get("cross", {}).get("_mean", {})
                print(
                    f"{name:45} {a['hit@5']:.3f} {a['mrr']:.3f}   cross {c.get('hit@5', 0):.3f} {c.get('mrr', 0):.3f}"
                )


if __name__ == "__main__":
    main()
