"""Routing benchmark: accuracy, confusion matrix and latency of the intent router, with the knowledge base in view.

    python benchmarks/routing.py [--no-qa] [--kb] [--content] [--calibrate] [--threads 2] [--errors]

Development set: tests/data/routing.jsonl (handwritten, Chinese and English) plus, unless ``--no-qa``, the distinct
questions of the shared QA sets (``../shared/testdata/qa/*.jsonl``, read at run time and labelled ``rag``; they are not
copied into the repo). The example bank (assets/intents.jsonl) and the FAQ never contain these messages. It is routed
without a knowledge base (the message alone) and, with ``--kb``, with a knowledge base of 8 shared test PDFs in view
(ingested by the real pipeline into ``model_cache/bench-routing-kb``, kept between runs) -- what the app does.

``--content`` runs benchmarks/data/routing_content.jsonl (issue 16): each audio clip of ``../shared/testdata/audio``
(the JFK clip muxed into an mp4, the others as audio files) and each Chinese PDF of ``zh_pdfs`` is ingested alone into
its own knowledge base with the real pipeline (Whisper, e5, faiss; cached in ``model_cache/bench-routing-content``), and
each content question is routed with its source's knowledge base in view; the messages that must not go to RAG are
routed against every one of those knowledge bases and against an empty one.

Reports accuracy, knowledge questions routed away from RAG, the confusion matrix, what decided (``Route.reason``), and
p50/p95 of ``Router.classify`` wall and CPU time (one query embedding plus the knowledge-base evidence; the load
average is printed because the 2 cores are shared). ``--calibrate`` grid-searches ``faq_min``, ``faq_margin`` and
``away_margin`` (see docs/bench/routing.md) and sweeps the knowledge-base thresholds.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
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
from rag.route import LABELS, Features, Router, Thresholds, decide
from rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
LABELLED = ROOT / "tests" / "data" / "routing.jsonl"
CONTENT = ROOT / "benchmarks" / "data" / "routing_content.jsonl"
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


def predict(features: list[Features], t: Thresholds) -> list[str]:
    return [decide(f, t)[0] for f in features]


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


# ------------------------------------------------------------------ knowledge bases


def esg_kb(embedder: E5Embedder, settings: Settings):
    """The 8 shared test PDFs ingested by the real pipeline into ``model_cache/bench-routing-kb`` (kept)."""
    from rag.assistant import Assistant

    kb_settings = settings.replace(kb_dir=Path(settings.model_cache) / "bench-routing-kb")
    assistant = Assistant(kb_settings, embedder=embedder)
    have = {d.name for d in assistant.kb.documents()}
    todo = [testdata() / rel for rel in KB_PDFS if Path(rel).name not in have]
    if todo:
        print(f"ingesting {len(todo)} PDFs into {kb_settings.kb_dir} (kept for later runs) ...", flush=True)
        failed = [r.message for r in assistant.ingest(todo) if not r.ok]
        if failed:
            raise SystemExit("; ".join(failed))
    return assistant.kb


def content_kbs(embedder: E5Embedder, settings: Settings, sources: list[str]) -> dict[str, object]:
    """One knowledge base per source, each holding that source alone (audio clips through Whisper; the JFK clip as
    an mp4 video, as a user would upload a briefing video). Cached under ``model_cache/bench-routing-content``."""
    from rag.assistant import Assistant
    from rag.whisper import make_transcriber

    root = Path(settings.model_cache) / "bench-routing-content"
    transcriber = None
    kbs = {}
    for source in sources:
        folder = "audio" if (testdata() / "audio" / source).is_file() else "zh_pdfs"
        path = testdata() / folder / source
        kb_dir = root / hashlib.sha256(source.encode()).hexdigest()[:12]
        if source == "whisper_jfk.flac":
            from tests.fixtures_media import make_video

            video = root / "media" / "jfk_speech.mp4"
            if not video.is_file():
                video.parent.mkdir(parents=True, exist_ok=True)
                make_video(video, path, lead_in_s=3.0)
            path = video
        if transcriber is None and folder == "audio":
            transcriber = make_transcriber(settings)
        assistant = Assistant(settings.replace(kb_dir=kb_dir), embedder=embedder, transcriber=transcriber)
        if not assistant.kb.documents():
            t0 = time.perf_counter()
            [result] = list(assistant.ingest([path]))
            if not result.ok:
                raise SystemExit(f"{source}: {result.message}")
            print(f"  ingested {path.name} alone: {result.message} ({time.perf_counter() - t0:.0f} s)", flush=True)
        kbs[source] = assistant.kb
    return kbs


# ------------------------------------------------------------------ running


def route_all(router: Router, items: list[tuple]) -> tuple[list, list[float], list[float]]:
    """Classify each (message, knowledge bases) pair; returns routes and wall / CPU milliseconds per call. A message
    given as a ``Query`` with its vector is not embedded again (the time is then routing without the embedding)."""
    routes, wall, cpu = [], [], []
    for text, kbs in items:
        c, t = time.process_time(), time.perf_counter()
        routes.append(router.classify(text, kbs=kbs))
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return routes, wall, cpu


def report(title: str, rows: list[dict], routes: list, wall: list[float], cpu: list[float], errors: bool) -> dict:
    gold = [r["label"] for r in rows]
    pred = [r.label for r in routes]
    m = evaluate(gold, pred)
    away = sum(g == "rag" and p != "rag" for g, p in zip(gold, pred, strict=True))
    n_rag = sum(g == "rag" for g in gold)
    kept = sum(g != "rag" and p != "rag" for g, p in zip(gold, pred, strict=True))
    print(f"\n## {title}")
    print(
        f"accuracy {m['accuracy']:.3f} ({sum(g == p for g, p in zip(gold, pred, strict=True))}/{m['n']}); "
        f"knowledge questions routed away from RAG: {away}/{n_rag}; other messages kept out of RAG: "
        f"{kept}/{m['n'] - n_rag}"
    )
    for lang in ("en", "zh"):
        idx = [i for i, r in enumerate(rows) if r["lang"] == lang]
        if idx:
            ml = evaluate([gold[i] for i in idx], [pred[i] for i in idx])
            print(f"  {lang}: accuracy {ml['accuracy']:.3f} over {ml['n']}")
    print()
    print_confusion(m["confusion"])
    print(
        f"\nclassify() wall p50 {percentile(wall, 50):.1f} ms, p95 {percentile(wall, 95):.1f} ms; CPU p50 "
        f"{percentile(cpu, 50):.1f} ms, p95 {percentile(cpu, 95):.1f} ms ({len(wall)} calls); 1-min load "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    reasons = Counter(r.reason for r in routes)
    print("decided by: " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))
    wrong = [(r, p) for r, p in zip(rows, routes, strict=True) if r["label"] != p.label]
    if wrong:
        print("misrouted:" if errors else "misrouted (first 15; --errors for all):")
        for r, p in wrong if errors else wrong[:15]:
            print(f"  {r['label']:>12} -> {p.label:<12} {r['text'][:90]!r}\n      {p.explanation[:300]}")
    return {"accuracy": m["accuracy"], "away": away, "kept": kept, "n": m["n"], "p95": percentile(wall, 95)}


def floor_report(router: Router, settings: Settings, routes: list, kbs: list, rows: list[dict]) -> None:
    """The fixed relevance floor (``Settings.min_dense_score``) against a floor relative to the knowledge base: each
    content question's best cosine on its source, and its z-score against what the router's unrelated messages (same
    language) reach on that knowledge base (``KbEvidence.dense_z``). A relative floor can rescue a question the fixed
    one refuses only if its z stands clear of unrelated messages'."""
    floor = settings.min_dense_score
    print(f"\n## relevance floor on the content questions (fixed: best cosine < {floor} is refused)")
    refused = []
    for route, kb, row in zip(routes, kbs, rows, strict=True):
        e = router.features(route.query, kb, route.query).kb
        if e is None or e.dense is None or e.dense_z is None or e.dense_typical is None:
            continue
        if e.dense < floor:
            refused.append(e.dense_z)
            print(
                f"  [{row['kind']}/{row['lang']}] cosine {e.dense:.3f}, unrelated messages {e.dense_typical:.3f}, "
                f"z {e.dense_z:+.1f}: {row['text'][:70]!r}"
            )
    above = ", ".join(f"z >= {k}: {sum(z >= k for z in refused)}" for k in (1, 2, 3))
    print(f"refused by the fixed floor (as asked, no translation): {len(refused)}/{len(rows)}; of these {above}")


class _GateOnly:
    """The LLM as the chain sees it, recording the answerability gate's P(yes) and generating no answer (a question
    translation, which retrieval needs, is generated as usual)."""

    def __init__(self, llm) -> None:
        self.llm, self.name, self.n_ctx = llm, llm.name, llm.n_ctx
        self.p_yes: float | None = None

    def count_tokens(self, text: str) -> int:
        return self.llm.count_tokens(text)

    def yes_probability(self, messages) -> float | None:
        self.p_yes = self.llm.yes_probability(messages)
        return self.p_yes

    def stream(self, messages, max_tokens: int, stop=()):
        if "<passages>" not in messages[-1].content:  # not the answer prompt: the question's translation
            yield from self.llm.stream(messages, max_tokens, stop)


def gate_report(items: list[dict], embedder, settings: Settings, kbs: dict, llm: str | None) -> None:
    """Each content question through ``Assistant.answer`` (its source alone in view, translation on) up to the
    answerability gate: the gate's P(yes), or what refused the question before it."""
    from rag.answer import GATE_THRESHOLDS
    from rag.assistant import Assistant
    from rag.llm import make_llm

    model = make_llm(settings.replace(llm=llm) if llm else settings)
    threshold = GATE_THRESHOLDS.get(model.name, 0.0)
    print(f"\n## answerability gate on the content questions ({model.name}, refuses below P(yes) {threshold})")
    by_kind: dict[tuple[str, str], list[float | None]] = {}
    for r in (r for r in items if r["expect_route"] == "rag"):
        probe = _GateOnly(model)
        kb = kbs[r["source"]]
        assistant = Assistant(settings.replace(kb_dir=kb.directory), embedder=embedder, llm=probe, translate=True)
        answer = assistant.answer(r["question"])
        p = probe.p_yes
        by_kind.setdefault((r["kind"], r["lang"]), []).append(p)
        verdict = "before the gate: " + (answer.reason or "") if p is None else f"P(yes) {p:.2f}"
        print(f"  [{r['kind']}/{r['lang']}] {verdict[:80]}: {r['question'][:60]!r}")
    for (kind, lang), ps in sorted(by_kind.items()):
        seen = sorted(p for p in ps if p is not None)
        passed = sum(p >= threshold for p in seen)
        spread = f"P(yes) {seen[0]:.2f}-{seen[-1]:.2f}, median {seen[len(seen) // 2]:.2f}" if seen else ""
        print(
            f"{kind}/{lang}: {len(ps)} questions, {len(ps) - len(seen)} refused before the gate, {len(seen)} gated: "
            f"{passed} pass, {len(seen) - passed} refused; {spread}"
        )


def answer_sample(items: list[dict], embedder, settings: Settings, kbs: dict, n: int, llm: str | None) -> None:
    """Answer ``n`` content questions (spread over kinds and languages) through ``Assistant.answer`` with the source
    alone in view: route, refusal, citations (and ▶ mm:ss for media)."""
    from rag.assistant import Assistant
    from rag.llm import make_llm

    if llm:
        settings = settings.replace(llm=llm)
    model = make_llm(settings)
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in items:
        if r["expect_route"] == "rag":
            groups.setdefault((r["kind"], r["lang"]), []).append(r)
    picked: list[dict] = []
    while len(picked) < n and any(groups.values()):
        for key in sorted(groups):
            if groups[key] and len(picked) < n:
                picked.append(groups[key].pop(0))
    print(f"\n## answers to {len(picked)} content questions ({model.name}; each source alone in view)")
    cited = routed = 0
    seconds = []
    for r in picked:
        kb = kbs[r["source"]]
        # As in the app: a question in the other language than the source also searches with its translation.
        assistant = Assistant(settings.replace(kb_dir=kb.directory), embedder=embedder, llm=model, translate=True)
        t0 = time.perf_counter()
        answer = assistant.answer(r["question"])
        seconds.append(time.perf_counter() - t0)
        routed += answer.route == "rag"
        labels = [c.source.label() for c in answer.citations]
        cited += bool(labels)
        state = "refused" if answer.refused else ("cited" if labels else "uncited")
        print(f"  [{r['kind']}/{r['lang']}] {answer.route} {state} {labels[:2]} {r['question'][:60]!r}")
        print(f"      {answer.text[:160]!r}")
    print(
        f"routed to rag {routed}/{len(picked)}; answered with a citation {cited}/{len(picked)}; "
        f"seconds per answer p50 {percentile(seconds, 50):.0f}, max {max(seconds):.0f}"
    )


# ------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-qa", action="store_true", help="only the handwritten set, not the shared QA questions")
    ap.add_argument("--calibrate", action="store_true", help="grid-search thresholds and cross-validate")
    ap.add_argument("--kb", action="store_true", help="also route the development set with 8 test PDFs in view")
    ap.add_argument("--content", action="store_true", help="route routing_content.jsonl, each source alone in a KB")
    ap.add_argument("--no-dev", action="store_true", help="skip the development set (with --content)")
    ap.add_argument("--gate", action="store_true", help="with --content: the answerability gate's P(yes), no answers")
    ap.add_argument("--floor", action="store_true", help="with --content: the relevance floor against the KB's own")
    ap.add_argument("--answers", type=int, default=0, help="with --content: answer N content questions with the LLM")
    ap.add_argument("--llm", default=None, help="with --answers: small, large (default: the settings') or a .gguf")
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
        f"({router.embedded_last_reload} embedded, rest from cache); thresholds {router.thresholds}"
    )
    counts = Counter((r["label"], r["lang"]) for r in rows)
    print(f"development set: {len(rows)} — " + ", ".join(f"{k[0]}/{k[1]} {v}" for k, v in sorted(counts.items())))
    texts = [r["text"] for r in rows]
    gold = [r["label"] for r in rows]

    if args.no_dev:
        rows, texts, gold, args.kb, args.calibrate = [], [], [], False, False
    else:
        routes, wall, cpu = route_all(router, [(t, None) for t in texts])
        report("development set, no knowledge base in view (the message alone)", rows, routes, wall, cpu, args.errors)
        hand = [i for i, r in enumerate(rows) if r["source"] == "routing.jsonl"]
        mh = evaluate([gold[i] for i in hand], [routes[i].label for i in hand])
        print(f"handwritten set only: accuracy {mh['accuracy']:.3f} over {mh['n']}, rag away {mh['rag_away']:.1%}")
    features = [router.features(r.query, None, r.query) for r in routes] if args.calibrate else []

    if args.kb:
        kb = esg_kb(embedder, settings)
        router.classify("warm-up", kbs=[kb])  # per-knowledge-base statistics are built once, outside the timing
        # The messages' embeddings from the first pass are reused: the times below are the routing on top of them.
        routes, wall, cpu = route_all(router, [(r.query, [kb]) for r in routes])
        report(
            f"development set, knowledge base of {len(KB_PDFS)} test PDFs ({len(kb)} passages) in view "
            "(times without the query embedding, computed in the first pass)",
            rows,
            routes,
            wall,
            cpu,
            args.errors,
        )
        if args.calibrate:
            features = [router.features(r.query, [kb], r.query) for r in routes]

    if args.content:
        items = load_jsonl(CONTENT)
        sources = sorted({r["source"] for r in items if r["source"]})
        print(f"\ningesting {len(sources)} sources, each alone ...", flush=True)
        kbs = content_kbs(embedder, settings, sources)
        from rag.index import KnowledgeBase

        empty = KnowledgeBase(None, embedder.name, embedder.dim)
        for kb in kbs.values():
            router.classify("warm-up", kbs=[kb])
        crow, pairs = [], []
        for r in items:
            row = {"text": r["question"], "label": r["expect_route"], "lang": r["lang"], "kind": r["kind"]}
            targets = [kbs[r["source"]]] if r["source"] else [*kbs.values(), empty]
            for kb in targets:
                crow.append(row)
                pairs.append((r["question"], [kb]))
        routes, wall, cpu = route_all(router, pairs)
        rag_idx = [i for i, r in enumerate(crow) if r["label"] == "rag"]
        other_idx = [i for i, r in enumerate(crow) if r["label"] != "rag"]
        report(
            f"content questions ({len(rag_idx)}: audio clips and Chinese documents, each source alone in view)",
            [crow[i] for i in rag_idx],
            [routes[i] for i in rag_idx],
            [wall[i] for i in rag_idx],
            [cpu[i] for i in rag_idx],
            args.errors,
        )
        alone = [router.classify(routes[i].query) for i in rag_idx]  # ablation: the message alone, no KB
        for kind in ("audio", "zh_doc"):
            idx = [i for i in rag_idx if crow[i]["kind"] == kind]
            ok = sum(routes[i].label == "rag" for i in idx)
            ok_alone = sum(a.label == "rag" for a, i in zip(alone, rag_idx, strict=True) if crow[i]["kind"] == kind)
            print(f"  {kind}: {ok}/{len(idx)} to rag ({ok_alone} without the knowledge base in view)")
        report(
            f"messages that must not go to RAG ({len(other_idx) // (len(kbs) + 1)}), each routed against every one of "
            f"the {len(kbs)} single-source knowledge bases and an empty one",
            [crow[i] for i in other_idx],
            [routes[i] for i in other_idx],
            [wall[i] for i in other_idx],
            [cpu[i] for i in other_idx],
            args.errors,
        )

    if args.content and args.calibrate:
        # The knowledge-base thresholds matter where the knowledge base decides: sweep them on the content set.
        cfeat = [router.features(r.query, kb, r.query) for r, (_, kb) in zip(routes, pairs, strict=True)]
        cgold = [r["label"] for r in crow]
        base = router.thresholds
        print("\ncontent set sweeps (content questions to rag / other messages kept out of RAG, of 63 / 480):")
        for name, values in (
            ("kb_dense_z", np.arange(1.5, 4.51, 0.5)),
            ("kb_lexical", np.arange(0.5, 1.51, 0.25)),
            ("kb_lexical_margin", np.arange(0.0, 0.61, 0.15)),
            ("kb_coverage", np.arange(0.1, 0.51, 0.1)),
            ("kb_none_z", np.arange(0.0, 2.01, 0.5)),
            ("kb_none_lead", np.arange(0.0, 0.061, 0.02)),
        ):
            line = []
            for v in values:
                pred = predict(cfeat, dataclasses.replace(base, **{name: round(float(v), 3)}))
                to_rag = sum(g == "rag" and p == "rag" for g, p in zip(cgold, pred, strict=True))
                kept = sum(g != "rag" and p != "rag" for g, p in zip(cgold, pred, strict=True))
                line.append(f"{v:.2f}:{to_rag}/{kept}")
            print(f"  sweep {name}: " + "  ".join(line))
        # Without the document-reference rule ("the speaker", 录音): what the knowledge base alone rescues.
        plain = [dataclasses.replace(f, knowledge=False) for f in cfeat]
        pred = predict(plain, base)
        to_rag = sum(g == "rag" and p == "rag" for g, p in zip(cgold, pred, strict=True))
        print(f"  with no vocabulary / document-reference rule at all: {to_rag}/63 content questions to rag")

    if args.content and args.floor:
        picked = [routes[i] for i in rag_idx], [pairs[i][1] for i in rag_idx], [crow[i] for i in rag_idx]
        floor_report(router, settings, *picked)

    if args.content and args.gate:
        gate_report(items, embedder, settings, kbs, args.llm)

    if args.content and args.answers:
        answer_sample(items, embedder, settings, kbs, args.answers, args.llm)

    if stress:
        sroutes = [router.classify(r["text"]) for r in stress]
        away = [(r, p) for r, p in zip(stress, sroutes, strict=True) if p.label != "rag"]
        print(
            f"\nstress set (MMESGBench questions {args.mmesg_offset}-{args.mmesg_offset + len(stress)}, all knowledge "
            f"questions): {len(stress)}; routed away from RAG: {len(away) / len(stress):.1%}"
        )
        for r, p in away if args.errors else away[:10]:
            print(f"  -> {p.label:<12} [{p.reason} {p.score:.3f}] {r['text'][:100]!r}")

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
        sweeps = (
            ("faq_min", np.arange(0.88, 0.961, 0.01)),
            ("away_margin", np.arange(-0.02, 0.061, 0.01)),
            ("kb_dense_z", np.arange(1.5, 4.01, 0.5)),
            ("kb_lexical", np.arange(0.5, 1.51, 0.25)),
            ("kb_none_z", np.arange(0.0, 2.01, 0.5)),
            ("kb_none_lead", np.arange(0.0, 0.061, 0.02)),
        )
        for name, values in sweeps:
            line = []
            for v in values:
                t = dataclasses.replace(base, **{name: round(float(v), 3)})
                mm = evaluate(gold, predict(features, t))
                line.append(f"{v:.2f}:{mm['accuracy']:.3f}/{mm['rag_away']:.1%}")
            print(f"  sweep {name} (accuracy/rag away): " + "  ".join(line))


if __name__ == "__main__":
    main()
