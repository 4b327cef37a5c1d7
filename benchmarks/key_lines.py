"""Dense retrieval with the two-level index's key lines vs the full chunk text (real e5 embedder, real PDFs).

For every gold question of qa/esg_qa_en.jsonl on the chosen documents, chunks are ranked by cosine with the
question; a hit is a chunk whose pages contain a gold page. Three ways to embed a chunk: its full text, its key
line, and the sum of both (normalised). Ranked over all chosen documents together (distractors included).

    python benchmarks/key_lines.py                     # Rio Tinto, CT REIT, Costco, Suez, Orange
    python benchmarks/key_lines.py --docs all --max-tokens 256
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import gold_groups, load_jsonl, machine, rank_metrics, testdata, today
from rag.chunk import chunk_pages
from rag.embed import E5Embedder
from rag.meta import detect_meta
from rag.pdf import load_pdf

DEFAULT_DOCS = [
    "climretrieve_rio_tinto_climate_change_report_2023.pdf",
    "climretrieve_ct_reit_2022_esg_report.pdf",
    "climretrieve_costco_climate_action_plan.pdf",
    "cfb_suez_sd_progress_report_2023.pdf",
    "cfb_orange_2023_integrated_annual_report.pdf",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", nargs="+", default=DEFAULT_DOCS, help='file names in esg_pdfs, or "all"')
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    docs = sorted(p.name for p in (testdata() / "esg_pdfs").glob("*.pdf")) if args.docs == ["all"] else args.docs

    chunks = []
    for name in docs:
        pages = load_pdf(testdata() / "esg_pdfs" / name)
        chunks += chunk_pages(pages, file=name, doc_id=name, meta=detect_meta(pages, name), max_tokens=args.max_tokens)
    groups = {k: v for k, v in gold_groups(load_jsonl(testdata() / "qa" / "esg_qa_en.jsonl")).items() if k[0] in docs}

    emb = E5Embedder(threads=args.threads)
    t = time.perf_counter()
    full = emb.passages([c.text for c in chunks])
    t_full = time.perf_counter() - t
    t = time.perf_counter()
    keys = emb.passages([c.key for c in chunks])
    t_key = time.perf_counter() - t
    both = full + keys
    both /= np.linalg.norm(both, axis=1, keepdims=True)
    queries = np.vstack([emb.query(q) for _, q in groups])
    gold = list(groups.values())

    print(f"# key line vs full text, {today()}, {machine()}")
    print(f"command: python benchmarks/key_lines.py {' '.join(sys.argv[1:])}")
    print(f"{len(docs)} documents, {len(chunks)} chunks (budget {args.max_tokens}), {len(gold)} gold questions")
    print(f"embedding time: full text {t_full:.0f} s, key lines {t_key:.0f} s\n")
    print("| embedded | hit@1 | hit@5 | hit@10 | MRR |")
    print("|---|---|---|---|---|")
    for label, matrix in (("full text", full), ("key line", keys), ("full + key", both)):
        ranked = []
        for (doc, question), q in zip(groups, queries, strict=True):
            order = np.argsort(-(matrix @ q))
            pages = []
            for i in order[:50]:
                c = chunks[i]
                if c.source.file != doc:
                    pages.append(-1)  # a distractor document's chunk: never a hit
                    continue
                last = c.source.last_page or c.source.page
                # Count a chunk as its first page, or its second when that one is gold.
                pages.append(last if last in groups[(doc, question)] else c.source.page)
            ranked.append(pages)
        m = rank_metrics(ranked, gold)
        print(f"| {label} | {m['hit@1']} | {m['hit@5']} | {m['hit@10']} | {m['mrr']} |")


if __name__ == "__main__":
    main()
