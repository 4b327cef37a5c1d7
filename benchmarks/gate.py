"""Answerability gate: how well does the bundled LLM tell answerable from unanswerable questions before answering?

    python benchmarks/gate.py [--llm large|small|PATH] [--limit N] [--kb DIR] [--json PATH]

The chain refuses without generating when the model's P(yes) for "do the passages above state the answer?" falls
below a threshold (``rag.answer.GATE_THRESHOLDS``). This script measures that signal and its alternatives on the
English ESG QA set (54 (document, question) items, 18 of them ``answerable: false``), each scoped to its document.
For every item it builds the answer prompt exactly as the chain does, then reads the model's next-token
probabilities after each appended question in ``PHRASINGS`` (the production gate first). The passages stay in
llama.cpp's KV cache, so each phrasing after the first costs only its own tokens. Also scored: a passage pointer
("which passage states the answer? 0 if none": 1 - P(0)), and the mean P(yes) of all phrasings.

``--few-shot`` adds a "no" and a "yes" gate example to the system message (cached, so free per question).
Reports per signal: AUC (answerable vs unanswerable), the best refusal accuracy reachable while still answering
>= 80% of answerable items (the issue's joint target), and the operating point of the production threshold.
Thresholds are fitted on the same items they are scored on, so the "best" figures are optimistic.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.answers import load_items, open_assistant, pages_of, subset
from benchmarks.common import machine, testdata, today
from rag.answer import GATE_THRESHOLDS
from rag.llm import ChatMessage, make_llm
from rag.prompt import build_prompt, gate_messages
from rag.settings import Settings
from rag.types import Scope

# The production question comes first; it is asked exactly as the chain asks it (rag.prompt.gate_messages).
PHRASINGS = {
    "production": None,
    "explicit": "\n\nIs the answer to this question written explicitly in the passages above? Reply yes or no.",
    "no_guess": "\n\nCan this question be answered from the passages above alone, without guessing or outside "
    "knowledge? Reply yes or no.",
    "figure": "\n\nDo the passages above state the answer to this question? A figure, name or target asked for must "
    "appear in the passages; a passage that only mentions the topic is not enough. Reply yes or no.",
    "exact_topic": "\n\nDoes any passage above answer exactly what the question asks, rather than a related topic? "
    "Reply yes or no.",
}
POINTER = (
    "\n\nWhich passage states the answer to this question? Reply with the passage number only, or 0 if no passage "
    "states it."
)
TARGET_ANSWER_RATE = 0.80
# --few-shot: gate examples appended to the (cached) system message, one "no" and one "yes" on its worked example.
FEW_SHOT = """
Question: What were the plant's Scope 3 emissions in 2022?
Do the passages above state the answer to this question? Reply yes or no.
Answer: no
Question: Does the board oversee climate risks?
Do the passages above state the answer to this question? Reply yes or no.
Answer: yes"""


def auc(pos: list[float], neg: list[float]) -> float:
    """P(score of a random answerable item > that of a random unanswerable one); ties count half."""
    return sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))


def operating_points(pos: list[float], neg: list[float], production: float | None) -> dict:
    """Best refusal accuracy with answer rate >= the target, and the production threshold's point."""
    best = {"threshold": None, "answer_rate": None, "refusal": 0.0}
    for t in sorted(set(pos + neg)):
        kept = sum(p >= t for p in pos) / len(pos)
        refused = sum(q < t for q in neg) / len(neg)
        if kept >= TARGET_ANSWER_RATE and refused >= best["refusal"]:
            best = {"threshold": round(t, 3), "answer_rate": round(kept, 3), "refusal": round(refused, 3)}
    out = {"auc": round(auc(pos, neg), 3), "best_at_target": best}
    if production is not None:
        out["at_production_threshold"] = {
            "threshold": production,
            "answer_rate": round(sum(p >= production for p in pos) / len(pos), 3),
            "refusal": round(sum(q < production for q in neg) / len(neg), 3),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", type=Path, default=testdata() / "qa" / "esg_qa_en.jsonl")
    ap.add_argument("--llm", default="large", help="'small', 'large' or a .gguf path")
    ap.add_argument("--limit", type=int, default=None, help="a balanced subset of N items")
    ap.add_argument("--kb", type=Path, default=Settings().model_cache / "bench-kb-esg")
    ap.add_argument("--few-shot", action="store_true", help="add gate examples to the system message (FEW_SHOT)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.few_shot:
        import rag.prompt

        rag.prompt.SYSTEM_PROMPT += FEW_SHOT  # build_prompt reads it at call time
    settings = Settings.from_env(llm=args.llm)
    items = subset(load_items(args.qa), args.limit)
    assistant = open_assistant(args.kb, sorted((testdata() / "esg_pdfs").glob("*.pdf")), settings)
    retriever = assistant.retriever()
    llm = make_llm(settings)
    digits = {str(n): (str(n),) for n in range(10)}
    s = settings
    budget = (s.max_answer_tokens, s.max_prompt_tokens, "en", s.passage_tokens)
    rows = []
    started = time.perf_counter()
    for n, item in enumerate(items, 1):
        t = time.perf_counter()
        hits = retriever.retrieve(item.question, Scope(docs=(item.doc,))).hits
        prompt = build_prompt(item.question, hits, llm, *budget)
        system, user = prompt.messages
        row = {"id": item.id, "answerable": item.answerable, "tokens": prompt.tokens}
        row["shown"] = [pages_of(h) for h in prompt.hits]
        for name, suffix in PHRASINGS.items():
            messages = gate_messages(prompt) if suffix is None else (system, ChatMessage("user", user.content + suffix))
            p = llm.yes_probability(messages)  # type: ignore[attr-defined]
            row[name] = 0.5 if p is None else p  # None: the model said neither yes nor no
        m = llm.next_token_mass((system, ChatMessage("user", user.content + POINTER)), digits)  # type: ignore[attr-defined]
        valid = {k: v for k, v in m.items() if int(k) <= len(prompt.hits)}
        row["pointer"] = 1 - valid["0"] / sum(valid.values()) if sum(valid.values()) > 0 else 0.5
        row["mean"] = sum(row[k] for k in PHRASINGS) / len(PHRASINGS)
        row["seconds"] = round(time.perf_counter() - t, 2)
        rows.append(row)
        print(f"{n}/{len(items)} {row['seconds']:.1f} s {item.id}", file=sys.stderr, flush=True)

    production = GATE_THRESHOLDS.get(llm.name)
    signals = {}
    for name in [*PHRASINGS, "pointer", "mean"]:
        pos = [r[name] for r in rows if r["answerable"]]
        neg = [r[name] for r in rows if not r["answerable"]]
        signals[name] = operating_points(pos, neg, production if name == "production" else None)
    result = {
        "date": today(),
        "machine": machine(),
        "command": "python " + " ".join(sys.argv),
        "llm": llm.name,
        "items": len(rows),
        "answerable": sum(r["answerable"] for r in rows),
        "seconds_per_item_p50": sorted(r["seconds"] for r in rows)[len(rows) // 2],
        "wall_s": round(time.perf_counter() - started),
        "signals": signals,
        "rows": rows,
    }
    print("| signal | AUC | best refusal with answer rate >= 0.80 (answer rate, threshold) |")
    print("|---|---|---|")
    for name, s in signals.items():
        b = s["best_at_target"]
        print(f"| {name} | {s['auc']:.3f} | {b['refusal']:.3f} ({b['answer_rate']}, {b['threshold']}) |")
    if production is not None:
        p = signals["production"]["at_production_threshold"]
        print(f"production threshold {production}: answer rate {p['answer_rate']}, refusal {p['refusal']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
