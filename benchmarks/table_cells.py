"""Table cells (issue 18): does the model answer the asked cell when the rows it reads carry their headers?

For each answerable ``kind: table`` question of the verified set (``--set dev|test``), the passage that ingestion
makes holding the item's ``evidence`` (the real report, pypdf via ``rag.pdf``, chunked as ``rag.ingest`` chunks it)
is the only passage. The default bundled model answers twice, with the rows labelled (``rag.table.label_cells``,
the default) and as extracted (``build_prompt(label_tables=False)``); nothing else differs. This isolates the prompt
change from retrieval: ``benchmarks/answers.py --set`` measures the whole chain (its ``table`` slice).

- first figure right: the answer's first figure (years and figures of the question left out) matches the gold
  answer's first figure (``rag.figures``: formats and units normalised); any figure right: one of them does;
- other cell only: none does, and the answer states another figure of the evidence row (a swapped column);
- labelled: the passage holds the header of the evidence row's table, so the rewrite changed it; carried: the
  passage continues a table whose header is in the text before it, and reads it from ``Chunk.table_header``;
- ``--coverage``: no model, only those two counts.

    python benchmarks/table_cells.py --set dev [--json out.json] [--coverage]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import document_chunks, fmt_ci, machine, today, verified_questions
from rag.figures import extract_figures, figure_matches
from rag.llm import make_llm
from rag.prompt import build_prompt
from rag.settings import Settings
from rag.table import label_cells
from rag.types import Hit


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _figures(text: str) -> list:
    return [f for f in extract_figures(text) if not f.year_like]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=("dev", "test"), required=True)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--coverage", action="store_true", help="only count the passages read with their table header")
    args = ap.parse_args()

    items = [row for row in verified_questions(args.set) if row["kind"] == "table" and row["answerable"]][: args.limit]
    settings = Settings.from_env()
    llm = make_llm(settings)
    if not args.coverage:
        llm.load()
    chunks: dict[str, list] = {}
    rows, wall = [], time.perf_counter()
    for item in items:
        doc = item["doc"]
        if doc not in chunks:
            chunks[doc] = document_chunks(doc, settings.chunk_tokens)
        holding = [c for c in chunks[doc] if _squash(item["evidence"]) in _squash(c.text)]
        if not holding:
            print(f"{item['id']}: no passage holds the evidence (it spans two chunks); skipped", file=sys.stderr)
            continue
        gold = _figures(item["answer"])[:1]
        others = [f for f in extract_figures(" ".join(item["figures"])) if not any(figure_matches(f, g) for g in gold)]
        passage = holding[0]
        out: dict = {
            "id": item["id"],
            "lang_pair": item["lang_pair"],
            # before the chunk carried its table's header, only a header inside the passage labelled its rows
            "header": label_cells(passage.text) != passage.text,
            "carried": bool(passage.table_header) and label_cells(passage.text) == passage.text,
        }
        if args.coverage:
            rows.append(out)
            continue
        for config, labels in (("labels", True), ("plain", False)):
            prompt = build_prompt(
                item["question"],
                [Hit(passage, 1.0)],
                llm,
                settings.max_answer_tokens,
                settings.max_prompt_tokens,
                label_tables=labels,
            )
            answer = "".join(llm.stream(prompt.messages, settings.max_answer_tokens))
            asked = _figures(item["question"])  # "Scope 1 + Scope 2" repeated from the question is no answer
            said = [f for f in _figures(answer) if not any(figure_matches(f, q) for q in asked)]
            right = any(figure_matches(f, g) for f in said for g in gold)
            first = bool(said) and any(figure_matches(said[0], g) for g in gold)
            other = not right and any(figure_matches(f, o) for f in said for o in others)
            out[config] = {"right": float(right), "first": float(first), "other_cell": float(other), "answer": answer}
        rows.append(out)
        print(
            f"{item['id']} header in passage: {out['header']}; right with labels {out['labels']['right']:.0f}, "
            f"as extracted {out['plain']['right']:.0f} | {out['labels']['answer'][:80]!r}",
            file=sys.stderr,
            flush=True,
        )

    if args.coverage:
        inside = sum(r["header"] for r in rows)
        carried = sum(r["carried"] for r in rows)
        print(
            f"{args.set} split, {len(rows)} answerable table questions whose evidence one passage holds (of "
            f"{len(items)}): header inside the passage {inside}, carried from the text before (Chunk.table_header) "
            f"{carried}, neither {len(rows) - inside - carried}"
        )
        return
    lines = [
        f"{args.set} split, {len(rows)} answerable table questions (of {len(items)}), model {llm.name}, {today()}, "
        f"{machine()}; wall {time.perf_counter() - wall:.0f} s",
        "",
        "| passages | n | first figure right: labelled | as extracted | any figure right: labelled | as extracted "
        "| other cell only: labelled | as extracted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, subset in (
        ("all", rows),
        ("header in the passage", [r for r in rows if r["header"]]),
        ("header carried from the text before", [r for r in rows if r["carried"]]),
    ):
        if subset:
            metrics = ("first", "right", "other_cell")
            cells = [fmt_ci([r[c][m] for r in subset]) for m in metrics for c in ("labels", "plain")]
            lines.append(f"| {name} | {len(subset)} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "table": text}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
