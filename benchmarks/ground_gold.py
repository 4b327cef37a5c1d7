"""The grounding check alone (issue 14), no model: does it keep right answers and catch wrong ones?

For every item of the verified set (``--set dev|test|all``), the passages are the chunks that ingestion makes of the
item's gold pages (the real report, pypdf via ``rag.pdf``, chunked by ``rag.chunk.chunk_pages``, tables' headers
carried as ingestion carries them). Each answer cites every passage, as a model citing the right page would:

- **gold kept**: the gold answer of an answerable item passes (no refusal); ``whole``: no sentence of it removed.
  A miss is a false refusal the model's right answer would meet.
- **wrong figure caught**: the gold answer with one figure changed (its number times 1.37, same format) is refused
  or loses the sentence stating it. A miss is a wrong figure shown as verified.
- **other report caught**: the gold answer (with figures or names) checked against another document's gold
  passages is refused. A miss is the entity confusion of the original design notes, passed by grounding.

    python benchmarks/ground_gold.py --set dev [--json out.json] [--show]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import document_chunks, fmt_ci, machine, source_pages, today, verified_questions
from rag.figures import extract_figures
from rag.ground import check, names_in
from rag.settings import Settings
from rag.text import detect_language
from rag.types import Chunk, Hit

_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def perturbed(answer: str) -> str | None:
    """``answer`` with its first non-year figure's number times 1.37, written the same way (decimals, commas)."""
    for fig in extract_figures(answer):
        if fig.year_like:
            continue
        m = _NUMBER.search(fig.text)
        start = answer.find(fig.text)
        if m is None or start < 0:
            continue
        old = m.group(0)
        decimals = len(old.split(".")[1]) if "." in old else 0
        value = float(old.replace(",", "")) * 1.37
        new = f"{value:,.{decimals}f}" if "," in old else f"{value:.{decimals}f}"
        if new == old:
            continue
        at = start + m.start()
        return answer[:at] + new + answer[at + len(old) :]
    return None


def passages(chunks: list[Chunk], pages: list[int]) -> list[Chunk]:
    """The chunks that cover any of ``pages`` (1-based), in document order."""
    return [c for c in chunks if set(source_pages(c.source)) & set(pages)]


def cite_all(answer: str, n: int) -> str:
    return answer.rstrip(".。 ") + " " + "".join(f"[{i + 1}]" for i in range(n)) + "."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=("dev", "test", "all"), required=True)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--show", action="store_true", help="print every miss")
    args = ap.parse_args()

    items = [row for row in verified_questions(args.set) if row["answerable"] and row["doc"]]
    settings = Settings.from_env()
    chunks = {doc: document_chunks(doc, settings.chunk_tokens) for doc in sorted({i["doc"] for i in items})}

    rows, wall = [], time.perf_counter()
    for n, item in enumerate(items):
        found = passages(chunks[item["doc"]], item["pages"])
        if not found:
            continue
        hits = [Hit(c, 1.0) for c in found]
        language = detect_language(item["question"])
        row: dict = {"id": item["id"], "lang_pair": item["lang_pair"], "kind": item["kind"]}
        g = check(cite_all(item["answer"], len(hits)), hits, language, item["question"])
        row["kept"] = float(g.refusal is None)
        row["whole"] = float(g.refusal is None and not g.removed)
        row["kept_reason"] = g.refusal or "; ".join(r.reason for r in g.removed)
        wrong = perturbed(item["answer"])
        if wrong is not None:
            g = check(cite_all(wrong, len(hits)), hits, language, item["question"])
            row["wrong_caught"] = float(g.refusal is not None or bool(g.removed))
            row["wrong_answer"] = wrong
        other = next(
            (
                o
                for o in items[n + 1 :] + items[:n]
                if o["doc"] != item["doc"] and passages(chunks[o["doc"]], o["pages"])
            ),
            None,
        )
        if other is not None and (extract_figures(item["answer"]) or names_in(item["answer"])):
            other_hits = [Hit(c, 1.0) for c in passages(chunks[other["doc"]], other["pages"])]
            g = check(cite_all(item["answer"], len(other_hits)), other_hits, language, item["question"])
            row["other_caught"] = float(g.refusal is not None)
            row["other_doc"] = other["doc"]
        rows.append(row)

    def rate(key: str, subset: list[dict]) -> str:
        values = [r[key] for r in subset if key in r]
        return fmt_ci(values) if values else "–"

    groups = {"all": rows} | {
        lp: [r for r in rows if r["lang_pair"] == lp] for lp in ("en-en", "zh-en", "zh-zh", "en-zh")
    }
    groups["table"] = [r for r in rows if r["kind"] == "table"]
    lines = [
        f"{args.set} split, {len(rows)} answerable questions with gold passages, {today()}, {machine()}, "
        f"wall {time.perf_counter() - wall:.1f} s (checking only)",
        "",
        "| questions | gold kept | gold whole | wrong figure caught | other report caught |",
        "|---|---|---|---|---|",
    ]
    for name, subset in groups.items():
        if subset:
            keys = ("kept", "whole", "wrong_caught", "other_caught")
            lines.append(f"| {name} | " + " | ".join(rate(k, subset) for k in keys) + " |")
    print("\n".join(lines))
    if args.show:
        for r in rows:
            if not r["kept"]:
                print(f"false refusal {r['id']}: {r['kept_reason']}", file=sys.stderr)
            if r.get("wrong_caught") == 0.0:
                print(f"wrong figure passed {r['id']}: {r['wrong_answer']!r}", file=sys.stderr)
            if r.get("other_caught") == 0.0:
                print(f"other report passed {r['id']} against {r['other_doc']}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"date": today(), "machine": machine(), "rows": rows}, ensure_ascii=False))


if __name__ == "__main__":
    main()
