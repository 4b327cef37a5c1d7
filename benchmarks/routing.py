"""Routing benchmark: accuracy, confusion matrix and latency of the intent router, and threshold calibration.

    python benchmarks/routing.py [--no-qa] [--kb] [--calibrate] [--threads 2]

The labelled set is tests/data/routing.jsonl (handwritten, Chinese and English) plus, unless ``--no-qa``, the distinct
questions of the shared QA sets (``../shared/testdata/qa/*.jsonl``, read at run time and labelled ``rag``; they are not
copied into the repo). The example bank (assets/intents.jsonl) and the FAQ never contain these messages.

Reports accuracy, the confusion matrix, the share of knowledge questions routed away from RAG, and p50/p95 latency of
``Router.classify`` (the example bank is embedded before timing; the load average is printed because the 2 cores are
shared). ``--calibrate`` grid-searches ``faq_min``, ``faq_margin`` and ``away_margin`` (fewest misroutes, a knowledge
question sent away from RAG counting twice, at most 1% of knowledge questions leaving RAG; the middle of the best
plateau) and reports 5-fold cross-validated accuracy, so the thresholds are not judged on the messages they were fitted
to. ``--kb`` ingests shared test PDFs and shows the safety-net score (the facade's best dense cosine) per label, to
calibrate ``kb_strong``; ``--mmesg N`` adds N ESG questions from MMESGBench as a RAG-only stress set.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import load_jsonl, machine, percentile, testdata, today
from rag.embed import E5Embedder
from rag.route import LABELS, Features, Router, Thresholds, decide, safety_net_applies
from rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
LABELLED = ROOT / "tests" / "data" / "routing.jsonl"
KB_PDFS = (
    "esg_pdfs/climretrieve_costco_climate_action_plan.pdf",
    "esg_pdfs/climretrieve_ct_reit_2022_esg_report.pdf",
    "esg_pdfs/climretrieve_bhp_climate_transition_action_plan.pdf",
    "esg_pdfs/climretrieve_rio_tinto_climate_change_report_2023.pdf",
    "esg_pdfs/cfb_suez_sd_progress_report_2023.pdf",
    "zh_pdfs/ESGDisclosure-in-China.pdf",
    "zh_pdfs/hkex-esg-reporting-guide.pdf",
    "zh_pdfs/A股上市公司ESG评级分析报告2020.pdf",
)

log = logging.getLogger("bench")


def load_set(use_qa: bool, mmesg: int, offset: int = 0) -> tuple[list[dict], list[dict]]:
    rows = [dict(r, source="routing.jsonl") for r in load_jsonl(LABELLED)]
    stress: list[dict] = []
    if use_qa:
        seen = {r["text"] for r in rows}
        for path in sorted((testdata() / "qa").glob("*.jsonl")):
            for item in load_jsonl(path):
                q = item["question"].strip()
                if q not in seen:
                    seen.add(q)
                    rows.append({"text": q, "label": "rag", "lang": item.get("lang", "en"), "source": path.name})
    if mmesg:
        items = json.loads((testdata() / "qa" / "raw" / "MMESGBench_samples.json").read_text(encoding="utf-8"))
        questions = sorted({i["question"].strip() for i in items})
        random.Random(0).shuffle(questions)
        picked = questions[offset : offset + mmesg]
        stress = [{"text": q, "label": "rag", "lang": "en", "source": "MMESGBench"} for q in picked]
    return rows, stress


def evaluate(gold: list[str], pred: list[str]) -> dict:
    n = len(gold)
    correct = sum(g == p for g, p in zip(gold, pred, strict=True))
    rag = [p for g, p in zip(gold, pred, strict=True) if g == "rag"]
    confusion = Counter(zip(gold, pred, strict=True))
    return {
        "n": n,
        "accuracy": correct / n if n else float("nan"),
        "rag_away": sum(p != "rag" for p in rag) / len(rag) if rag else 0.0,
        "confusion": confusion,
    }


def print_confusion(confusion: Counter) -> None:
    head = "gold \\ routed"
    print(f"| {head:<13} | " + " | ".join(f"{lab:>12}" for lab in LABELS) + " |")
    print("|" + "---|" * (len(LABELS) + 1))
    for g in LABELS:
        print(f"| {g:<13} | " + " | ".join(f"{confusion.get((g, p), 0):>12}" for p in LABELS) + " |")


def predict(features: list[Features], t: Thresholds, kb: list[float | None] | None = None) -> list[str]:
    out = []
    for i, f in enumerate(features):
        label, _, _, reason = decide(f, t)
        if kb is not None and safety_net_applies(label, reason) and kb[i] is not None and kb[i] >= t.kb_strong:
            label = "rag"
        out.append(label)
    return out


def cost(gold: list[str], pred: list[str]) -> int:
    """Misroutes, with a knowledge question sent away from RAG counted twice (it loses the user's answer)."""
    return sum((g != p) + (g == "rag" and p != "rag") for g, p in zip(gold, pred, strict=True))


def grid(features: list[Features], gold: list[str], base: Thresholds) -> tuple[Thresholds, float, float]:
    """Lowest cost subject to rag_away <= 1%; ties resolved to the middle of the best plateau."""
    faq_mins = np.round(np.arange(0.86, 0.9651, 0.01), 3)
    margins = np.round(np.arange(-0.03, 0.0651, 0.005), 3)
    best: list[tuple[float, float, float]] = []
    best_cost = None
    for fm in faq_mins:
        for fmar in margins:
            for am in margins:
                t = dataclasses.replace(base, faq_min=float(fm), faq_margin=float(fmar), away_margin=float(am))
                pred = predict(features, t)
                if evaluate(gold, pred)["rag_away"] > 0.01:
                    continue
                c = cost(gold, pred)
                if best_cost is None or c < best_cost:
                    best_cost, best = c, [(fm, fmar, am)]
                elif c == best_cost:
                    best.append((fm, fmar, am))
    if not best:
        return base, float("nan"), float("nan")
    # The median of each coordinate over the plateau, snapped to a plateau point: robust to small shifts.
    arr = np.array(best)
    med = np.median(arr, axis=0)
    pick = arr[np.argmin(((arr - med) ** 2).sum(axis=1))]
    chosen = dataclasses.replace(base, faq_min=float(pick[0]), faq_margin=float(pick[1]), away_margin=float(pick[2]))
    m = evaluate(gold, predict(features, chosen))
    return chosen, m["accuracy"], m["rag_away"]


def cross_validate(features: list[Features], gold: list[str], base: Thresholds, folds: int = 5) -> tuple[float, float]:
    order = list(range(len(gold)))
    random.Random(42).shuffle(order)
    pred = [""] * len(gold)
    for k in range(folds):
        test = set(order[k::folds])
        train = [i for i in order if i not in test]
        t, _, _ = grid([features[i] for i in train], [gold[i] for i in train], base)
        for i in test:
            pred[i] = predict([features[i]], t)[0]
    m = evaluate(gold, pred)
    return m["accuracy"], m["rag_away"]


# ------------------------------------------------------------------ safety-net score


def build_kb_scorer(embedder: E5Embedder, settings: Settings, pages_only: bool):
    """The facade's safety-net score over a knowledge base of shared test PDFs.

    By default the real pipeline: ingest into ``model_cache/bench-routing-kb`` (kept between runs) and score a message
    with ``HybridRetriever.retrieve(message, k=3).best_dense``, exactly what ``Assistant.ask`` passes to the router.
    ``--kb-pages`` (or an ingestion failure) uses a stand-in: the best cosine over 800-character page windows.
    """
    pdfs = [testdata() / rel for rel in KB_PDFS]
    if not pages_only:
        try:
            from rag.index import KnowledgeBase
            from rag.ingest import Ingestor
            from rag.retrieve import HybridRetriever

            kb_settings = settings.replace(kb_dir=Path(settings.model_cache) / "bench-routing-kb")
            kb = KnowledgeBase.open(kb_settings.kb_dir, embedder)
            have = {d.name for d in kb.documents()}
            todo = [p for p in pdfs if p.name not in have]
            if todo:
                print(f"ingesting {len(todo)} PDFs into {kb_settings.kb_dir} (kept for later runs) ...", flush=True)
                failed = [r.message for r in Ingestor(kb, embedder, kb_settings).ingest(todo) if not r.ok]
                if failed:
                    raise RuntimeError("; ".join(failed))
            retriever = HybridRetriever([kb], embedder, kb_settings)

            def score(message: str) -> float | None:
                return retriever.retrieve(message, k=3).best_dense

            return score, f"HybridRetriever best_dense over {len(kb)} chunks of {len(pdfs)} PDFs"
        except Exception as exc:  # the benchmark still runs with the stand-in; say why
            print(f"real pipeline unavailable ({type(exc).__name__}: {exc}); using page windows", flush=True)
    import pypdf

    texts: list[str] = []
    for path in pdfs:
        for page in pypdf.PdfReader(path).pages:
            text = " ".join((page.extract_text() or "").split())
            texts += [text[i : i + 800] for i in range(0, len(text), 600) if len(text[i : i + 800]) > 80]
    key = hashlib.sha256(("\n".join(texts) + embedder.name).encode()).hexdigest()[:16]
    path = Path(settings.model_cache) / f"bench-routing-kb-{key}.npy"
    if path.is_file():
        vecs = np.load(path, allow_pickle=False)
    else:
        print(f"embedding {len(texts)} page windows (cached in {path}) ...", flush=True)
        vecs = embedder.passages(texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vecs)

    def window_score(message: str) -> float:
        return float(np.max(vecs @ embedder.query(message)))

    return window_score, f"best cosine over {len(texts)} page windows of {len(pdfs)} PDFs"


# ------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-qa", action="store_true", help="only the handwritten set, not the shared QA questions")
    ap.add_argument("--calibrate", action="store_true", help="grid-search thresholds and cross-validate")
    ap.add_argument("--kb", action="store_true", help="measure the safety-net score on a KB built from test PDFs")
    ap.add_argument("--kb-pages", action="store_true", help="with --kb: page windows instead of the real pipeline")
    ap.add_argument("--mmesg", type=int, default=0, help="add N MMESGBench questions as a RAG-only stress set")
    ap.add_argument("--mmesg-offset", type=int, default=0, help="skip this many (shuffled) MMESGBench questions")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--errors", action="store_true", help="list every misrouted message")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    rows, stress = load_set(not args.no_qa, args.mmesg, args.mmesg_offset)
    settings = Settings.from_env()
    embedder = E5Embedder(threads=args.threads)
    router = Router(embedder, settings=settings)
    t0 = time.perf_counter()
    router.warm()
    warm_s = time.perf_counter() - t0
    print(f"# routing benchmark — {today()} — {machine()}")
    print(
        f"example bank: {sum(len(v) for v in router._ensure().knn_vecs.values())} examples + "
        f"{len(router._ensure().entry_rows)} FAQ variants; warm-up {warm_s:.1f} s "
        f"({router.embedded_last_reload} embedded, rest from cache)"
    )
    counts = Counter((r["label"], r["lang"]) for r in rows)
    print(f"labelled messages: {len(rows)} — " + ", ".join(f"{k[0]}/{k[1]} {v}" for k, v in sorted(counts.items())))

    # Latency of the full classify() (rules, one query embedding, neighbours, decision; no kb_score).
    texts = [r["text"] for r in rows]
    latencies, cpu, routes = [], [], []
    load_before = os.getloadavg()[0]
    for text in texts:
        c, t = time.process_time(), time.perf_counter()
        routes.append(router.classify(text))
        latencies.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    load_after = os.getloadavg()[0]
    embedded = [ms for ms, r in zip(latencies, routes, strict=True) if not r.reason.startswith("rule:")]
    gold = [r["label"] for r in rows]
    pred = [r.label for r in routes]
    m = evaluate(gold, pred)
    print(f"\nshipped thresholds: {router.thresholds}")
    print(
        f"accuracy {m['accuracy']:.3f} ({sum(g == p for g, p in zip(gold, pred, strict=True))}/{m['n']}); "
        f"knowledge questions routed away from RAG: {m['rag_away']:.1%}"
    )
    for lang in ("en", "zh"):
        idx = [i for i, r in enumerate(rows) if r["lang"] == lang]
        ml = evaluate([gold[i] for i in idx], [pred[i] for i in idx])
        print(f"  {lang}: accuracy {ml['accuracy']:.3f} over {ml['n']}")
    hand = [i for i, r in enumerate(rows) if r["source"] == "routing.jsonl"]
    mh = evaluate([gold[i] for i in hand], [pred[i] for i in hand])
    print(f"  handwritten set only: accuracy {mh['accuracy']:.3f} over {mh['n']}, rag away {mh['rag_away']:.1%}")
    print()
    print_confusion(m["confusion"])
    print(
        f"\nlatency classify(): p50 {percentile(latencies, 50):.1f} ms, p95 {percentile(latencies, 95):.1f} ms "
        f"(all {len(latencies)}); embedded path only: p50 {percentile(embedded, 50):.1f} ms, "
        f"p95 {percentile(embedded, 95):.1f} ms ({len(embedded)}); threads={args.threads}"
    )
    print(
        f"CPU time per classify() (all threads): p50 {percentile(cpu, 50):.1f} ms, p95 {percentile(cpu, 95):.1f} ms; "
        f"1-min load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} cores"
    )
    reasons = Counter(r.reason for r in routes)
    print("decided by: " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))
    wrong = [(r, p) for r, p in zip(rows, routes, strict=True) if r["label"] != p.label]
    if wrong:
        print("\nmisrouted:" if args.errors else "\nmisrouted (first 15; --errors for all):")
        for r, p in wrong if args.errors else wrong[:15]:
            print(f"  {r['label']:>12} -> {p.label:<12} [{p.reason} {p.score:.3f}] {r['text'][:100]!r}")

    if stress:
        sroutes = [router.classify(r["text"]) for r in stress]
        away = [(r, p) for r, p in zip(stress, sroutes, strict=True) if p.label != "rag"]
        print(
            f"\nstress set (MMESGBench questions {args.mmesg_offset}-{args.mmesg_offset + len(stress)}, all knowledge "
            f"questions): {len(stress)}; routed away from RAG: "
            f"{len(away) / len(stress):.1%}"
        )
        for r, p in away if args.errors else away[:10]:
            print(f"  -> {p.label:<12} [{p.reason} {p.score:.3f}] {r['text'][:100]!r}")

    features = [router.features(text) for text in texts] if (args.calibrate or args.kb) else []
    if args.calibrate:
        base = router.thresholds
        chosen, acc, away = grid(features, gold, base)
        print(
            f"\ncalibration on all {len(gold)}: faq_min={chosen.faq_min} faq_margin={chosen.faq_margin} "
            f"away_margin={chosen.away_margin} -> accuracy {acc:.3f}, rag away {away:.1%}"
        )
        cv_acc, cv_away = cross_validate(features, gold, base)
        print(
            f"5-fold cross-validated (thresholds fitted on 4/5, scored on the held-out 1/5): accuracy {cv_acc:.3f}, "
            f"rag away {cv_away:.1%}"
        )
        for name, values in (("faq_min", np.arange(0.88, 0.961, 0.01)), ("away_margin", np.arange(-0.02, 0.061, 0.01))):
            line = []
            for v in values:
                t = dataclasses.replace(base, **{name: round(float(v), 3)})
                mm = evaluate(gold, predict(features, t))
                line.append(f"{v:.2f}:{mm['accuracy']:.3f}/{mm['rag_away']:.1%}")
            print(f"  sweep {name} (accuracy/rag away): " + "  ".join(line))

    if args.kb:
        scorer, what = build_kb_scorer(embedder, settings, args.kb_pages)
        kb = [scorer(f.text) for f in features]
        print(f"\nsafety-net score ({what}); None = nothing retrieved: {sum(s is None for s in kb)}")
        for label in LABELS:
            vals = [s for s, g in zip(kb, gold, strict=True) if g == label and s is not None]
            if vals:
                print(
                    f"  {label:>12}: min {min(vals):.3f} p50 {np.median(vals):.3f} p95 "
                    f"{np.percentile(vals, 95):.3f} max {max(vals):.3f}"
                )
        non_rag = [s for s, g in zip(kb, gold, strict=True) if g in ("chitchat", "out_of_scope") and s is not None]
        # The net must never flip a real chit-chat / out-of-scope message: the lowest 0.01 step above all of them.
        recommended = math.ceil((max(non_rag) + 0.005) * 100) / 100
        print(
            f"  highest chit-chat/out-of-scope score: {max(non_rag):.3f} -> recommended kb_strong {recommended:.2f} "
            f"(shipped {router.thresholds.kb_strong})"
        )
        for v in np.arange(0.82, 0.901, 0.01):
            t = dataclasses.replace(router.thresholds, kb_strong=round(float(v), 3))
            mm = evaluate(gold, predict(features, t, kb))
            print(f"  kb_strong={v:.2f}: accuracy {mm['accuracy']:.3f}, rag away {mm['rag_away']:.1%}")
        # The net with a deliberately weak classifier: every message without ESG vocabulary leaves RAG by kNN.
        weak = dataclasses.replace(router.thresholds, away_margin=-1.0, kb_strong=recommended)
        mw = evaluate(gold, predict(features, weak))
        mk = evaluate(gold, predict(features, weak, kb))
        print(
            f"  weak classifier (away_margin=-1): knowledge questions leave RAG {mw['rag_away']:.1%} without the net, "
            f"{mk['rag_away']:.1%} with it at kb_strong={recommended:.2f}"
        )


if __name__ == "__main__":
    main()
