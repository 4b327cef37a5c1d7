"""Compare two runs of the behaviour benchmarks: did a change keep every answer and every rank?

    python benchmarks/compare_runs.py --answers BEFORE.json AFTER.json --retrieval BEFORE.json AFTER.json

``--answers`` takes two ``--json`` outputs of ``benchmarks/answers.py``: per model and question it compares the answer
text, whether it refused and the cited pages (the behaviour), and also the refusal reason, whether the LLM was called
and the pages shown to it; the LLM's fingerprint (prompt tokens, tokens of its raw reply, the gate's P(yes)), which
tells a changed prompt or generation from a change in what is done with the reply; the calibration's best dense
cosines per question; and the quality metrics (timings left out: they measure the machine, not the behaviour).
``--retrieval`` takes two ``--json`` outputs of ``benchmarks/retrieval.py``: per question the hybrid rank of the first
gold page (both golds) and the top-5 pages; the hit@k / MRR metrics of every mode; the chunk and page counts.

Prints identical / differing counts per part and every differing item; exits 1 if anything differs, 0 if not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Per-question fields of answers.py records. BEHAVIOUR is what issue 17 asks to keep; CONTEXT explains a difference.
BEHAVIOUR = ("answer", "refused", "cited_pages")
CONTEXT = ("reason", "llm_called", "shown_pages")
# What the LLM was given and gave back: equal fingerprints with a different answer mean the reply was post-processed
# differently (citation repair, grounding), not that the prompt or the generation changed.
FINGERPRINT = ("prompt_tokens", "answer_tokens", "gate_p")
# Metric keys that are timings or memory: they vary run to run on a shared machine.
TIMING_SUFFIXES = ("_s", "_ms", "_mb", "tokens_per_s")
# Cosines and the gate's P(yes) come from float32 arithmetic: equal to this many decimals counts as equal.
COSINE_DECIMALS = 6


class Report:
    """Collects one part's identical / differing counts and the differing items."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.same = 0
        self.diffs: list[str] = []

    def check(self, key: str, before: object, after: object) -> None:
        if before == after:
            self.same += 1
        else:
            self.diffs.append(f"  {key}\n    before: {_short(before)}\n    after:  {_short(after)}")

    def print(self) -> None:
        print(f"{self.title}: {self.same} identical, {len(self.diffs)} differing")
        for d in self.diffs:
            print(d)


def _short(value: object, limit: int = 400) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def _fingerprint(record: dict) -> dict:
    gate = record.get("gate_p")
    return {
        "prompt_tokens": record.get("prompt_tokens"),
        "answer_tokens": record.get("answer_tokens"),
        "gate_p": None if gate is None else round(gate, COSINE_DECIMALS),
    }


def _quality(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.endswith(TIMING_SUFFIXES)}


def compare_answers(before: dict, after: dict) -> list[Report]:
    """Per model: every question's behaviour fields, then the quality metrics; and the calibration cosines."""
    reports = []
    for model in sorted(set(before["models"]) | set(after["models"])):
        b, a = before["models"].get(model), after["models"].get(model)
        behaviour = Report(f"answers [{model}] per question ({', '.join(BEHAVIOUR)})")
        context = Report(f"answers [{model}] per question context ({', '.join(CONTEXT)})")
        fingerprint = Report(f"answers [{model}] per question LLM fingerprint ({', '.join(FINGERPRINT)})")
        metrics = Report(f"answers [{model}] quality metrics")
        reports += [behaviour, context, fingerprint, metrics]
        if b is None or a is None:
            behaviour.diffs.append(f"  model {model} is only in the {'after' if b is None else 'before'} run")
            continue
        rb = {r["id"]: r for r in b["records"]}
        ra = {r["id"]: r for r in a["records"]}
        for qid in sorted(set(rb) | set(ra)):
            if qid not in rb or qid not in ra:
                behaviour.diffs.append(f"  {qid}: only in the {'after' if qid not in rb else 'before'} run")
                continue
            fb, fa = _fingerprint(rb[qid]), _fingerprint(ra[qid])
            label = qid if fb == fa else f"{qid} (LLM fingerprint differs)"
            behaviour.check(label, {f: rb[qid].get(f) for f in BEHAVIOUR}, {f: ra[qid].get(f) for f in BEHAVIOUR})
            context.check(qid, {f: rb[qid].get(f) for f in CONTEXT}, {f: ra[qid].get(f) for f in CONTEXT})
            fingerprint.check(qid, fb, fa)
        qb, qa = _quality(b["metrics"]), _quality(a["metrics"])
        for key in sorted(set(qb) | set(qa)):
            metrics.check(key, qb.get(key), qa.get(key))
    calib = Report("answers calibration (best dense cosine per question, sorted; recommended threshold)")
    cb, ca = before.get("calibration", {}), after.get("calibration", {})
    for key in ("answerable", "unanswerable", "off_topic"):
        calib.check(
            key,
            [round(x, COSINE_DECIMALS) for x in cb.get(key, [])],
            [round(x, COSINE_DECIMALS) for x in ca.get(key, [])],
        )
    for key in ("recommended", "refused_by_retrieval"):
        calib.check(key, cb.get(key), ca.get(key))
    return [*reports, calib]


def compare_retrieval(before: dict, after: dict) -> list[Report]:
    """Our pipeline's per-question hybrid ranks and top 5, every mode's metrics, the index size; the baseline's
    metrics (it shares only our embedder)."""
    ranks = Report("retrieval per question (hybrid: rank, rank_verified, top5 pages)")
    fields = ("rank", "rank_verified", "top5")
    gb = {(g["doc"], g["question"]): g for g in before["ours"]["hybrid_per_group"]}
    ga = {(g["doc"], g["question"]): g for g in after["ours"]["hybrid_per_group"]}
    for key in sorted(set(gb) | set(ga)):
        name = f"{key[0]} | {key[1][:80]}"
        if key not in gb or key not in ga:
            ranks.diffs.append(f"  {name}: only in the {'after' if key not in gb else 'before'} run")
            continue
        ranks.check(name, {f: gb[key][f] for f in fields}, {f: ga[key][f] for f in fields})
    metrics = Report("retrieval metrics (ours: every mode and gold; index size)")
    for gold in ("metrics", "metrics_verified"):
        for mode in sorted(set(before["ours"][gold]) | set(after["ours"][gold])):
            metrics.check(f"ours {gold} {mode}", before["ours"][gold].get(mode), after["ours"][gold].get(mode))
    for key in ("pages", "chunks", "embedded_tokens_total"):
        metrics.check(f"ours {key}", before["ours"].get(key), after["ours"].get(key))
    reports = [ranks, metrics]
    if "baseline" in before and "baseline" in after:
        base = Report("retrieval metrics (textbook baseline)")
        for gold in ("metrics", "metrics_verified"):
            for mode in sorted(before["baseline"][gold]):
                base.check(f"baseline {gold} {mode}", before["baseline"][gold][mode], after["baseline"][gold].get(mode))
        reports.append(base)
    return reports


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--answers", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="two answers.py --json files")
    ap.add_argument("--retrieval", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="two retrieval.py --json")
    args = ap.parse_args(argv)
    if not args.answers and not args.retrieval:
        ap.error("give --answers and/or --retrieval")
    reports: list[Report] = []
    for pair, compare in ((args.answers, compare_answers), (args.retrieval, compare_retrieval)):
        if pair:
            before, after = (json.loads(p.read_text(encoding="utf-8")) for p in pair)
            print(f"before: {pair[0]} ({before.get('date')}, {before.get('command')})")
            print(f"after:  {pair[1]} ({after.get('date')}, {after.get('command')})")
            reports += compare(before, after)
    for r in reports:
        r.print()
    differing = sum(len(r.diffs) for r in reports)
    print(f"\nTOTAL: {sum(r.same for r in reports)} identical, {differing} differing")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
