"""Reranking with the bundled LLM: does it fix the order of the hybrid top 10, and at what cost per question?

    python benchmarks/rerank.py [--llm small|large] [--limit N] [--kb DIR]

No cross-encoder reranker ships with weights on PyPI, so the only offline reranker is the bundled chat LLM. For each
(document, question) group of the English ESG QA set (scoped to its document, as in ``benchmarks/retrieval.py``),
the hybrid retriever's 10 page passages are scored one by one with the LLM's P(yes) for "does this passage help answer
the question?" (one prompt evaluation each, the question in the cached prefix), then re-sorted by that probability
(ties keep the retrieval order). Reports hit@1/5/10 and MRR before and after, against the QA file's pages and against
every verified evidence page, how far P(yes) separates gold from other passages, and the seconds of LLM time each
question costs. The knowledge base is the one ``benchmarks/answers.py`` builds (``--kb``), built here if missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.answers import open_assistant, pages_of
from benchmarks.common import (
    gold_groups,
    load_jsonl,
    machine,
    percentile,
    rank_metrics,
    testdata,
    today,
    verified_pages,
    with_verified,
)
from rag.llm import ChatMessage, make_llm
from rag.settings import Settings
from rag.types import Scope

SYSTEM = "You judge whether a passage from a company report helps answer a question. Reply yes or no."
PASSAGE_CHARS = 1200  # about 300 tokens: a page passage's opening, enough to judge its topic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa", type=Path, default=testdata() / "qa" / "esg_qa_en.jsonl")
    ap.add_argument("--llm", default="small", help="'small', 'large' or a .gguf path")
    ap.add_argument("--limit", type=int, default=None, help="only the first N groups")
    ap.add_argument("--kb", type=Path, default=Settings().model_cache / "bench-kb-esg")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    settings = Settings.from_env(llm=args.llm)
    groups = gold_groups(load_jsonl(args.qa))
    verified = with_verified(groups, verified_pages(args.qa.parent))
    keys = list(groups)[: args.limit] if args.limit else list(groups)
    assistant = open_assistant(args.kb, sorted((testdata() / "esg_pdfs").glob("*.pdf")), settings)
    retriever = assistant.retriever()
    llm = make_llm(settings)
    before, after, seconds, rows = [], [], [], []
    for doc, question in keys:
        hits = retriever.retrieve(question, Scope(docs=(doc,)), k=10).hits
        t = time.perf_counter()
        probs = []
        for hit in hits:
            user = (
                f"Question: {question}\n\nPassage (page {hit.chunk.source.page}):\n"
                f"{hit.chunk.text[:PASSAGE_CHARS]}\n\nDoes this passage help answer the question? Reply yes or no."
            )
            p = llm.yes_probability((ChatMessage("system", SYSTEM), ChatMessage("user", user)))
            probs.append(0.0 if p is None else p)
        seconds.append(time.perf_counter() - t)
        order = sorted(range(len(hits)), key=lambda i: -probs[i])  # stable: ties keep the retrieval order
        before.append([set(pages_of(h)) for h in hits])
        after.append([set(pages_of(hits[i])) for i in order])
        rows.append({"doc": doc, "question": question, "p_yes": [round(p, 3) for p in probs], "pages": before[-1]})
        print(f"{len(rows)}/{len(keys)} {seconds[-1]:.1f} s", file=sys.stderr)

    def separation(gold_of) -> dict:
        """Mean P(yes) of passages on a gold page vs the others: a useful reranker separates them."""
        gold_p, other = [], []
        for row, key in zip(rows, keys, strict=True):
            for p, pages in zip(row["p_yes"], row["pages"], strict=True):
                (gold_p if pages & gold_of[key] else other).append(p)

        def mean(xs: list[float]) -> float | None:
            return round(sum(xs) / len(xs), 3) if xs else None

        return {"p_yes_gold_mean": mean(gold_p), "p_yes_other_mean": mean(other), "gold": len(gold_p)}

    out = {"date": today(), "machine": machine(), "command": " ".join(["python", *sys.argv]), "llm": llm.name}
    for name, gold_of in (("page", groups), ("verified", verified)):
        gold = [gold_of[k] for k in keys]
        out[name] = {
            "hybrid": rank_metrics(before, gold),
            "hybrid_llm_rerank": rank_metrics(after, gold),
            "separation": separation(gold_of),
        }
    out["rerank_s_per_question_p50"] = round(percentile(seconds, 50), 1)
    out["rerank_s_per_question_p95"] = round(percentile(seconds, 95), 1)
    out["groups"] = len(keys)
    out["rows"] = [r | {"pages": [sorted(p) for p in r["pages"]]} for r in rows]
    text = json.dumps(out, indent=1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    summary = {k: v for k, v in out.items() if k != "rows"}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
