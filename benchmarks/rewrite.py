"""Follow-up rewriting on the conversation set: standalone second questions keep their meaning, follow-ups resolve.

    python benchmarks/rewrite.py [--set dev|test|all] [--llm large|small|PATH] [--json OUT]

Reads ``benchmarks/data/conversations.jsonl`` (two-turn conversations: ``kind`` is ``standalone`` for a second
question complete on its own, ``followup`` for one that needs the first turn; ``must_contain`` lists the terms the
resolved question must hold). Runs the chain's condense step (``rag.followup`` decides, the bundled LLM rewrites
follow-ups) and reports, per kind, with 95% bootstrap intervals:

- standalone kept: the question reaches retrieval unchanged (identity);
- follow-ups resolved: the rewrite holds every ``must_contain`` term (case-insensitive);
- rewrite time p50/p95 (0 when no LLM call is made).

``--before REPO`` also runs the condense step of another checkout of this repository (e.g. the commit before
``rag.followup``, where every question with history went through the LLM rewrite) on the same items, in a child
process, and prints both side by side.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fmt_ci, load_jsonl, machine, percentile, today

log = logging.getLogger("bench.rewrite")
DATA = Path(__file__).resolve().parent / "data" / "conversations.jsonl"


class _NoRetriever:
    def retrieve(self, *args, **kwargs):  # the condense step never retrieves
        raise AssertionError("not used")


def resolved(rewrite: str, terms: list[str]) -> bool:
    low = rewrite.lower()
    return all(t.lower() in low for t in terms)


def run(items: list[dict], chain) -> list[dict]:
    from rag.answer import Turn

    out = []
    for item in items:
        history = tuple((q, a) for q, a in item["history"])
        turn = Turn(item["question"], history)
        start = time.perf_counter()
        result = chain._condense(turn)
        elapsed = time.perf_counter() - start
        rewrite = result.standalone
        kept = rewrite.strip() == item["question"].strip()
        out.append(
            {
                "id": item["id"],
                "kind": item["kind"],
                "question": item["question"],
                "rewrite": rewrite,
                "kept": kept,
                "resolved": resolved(rewrite, item.get("must_contain") or []),
                "seconds": round(elapsed, 3),
            }
        )
        log.info("%s %s %.2fs %r -> %r", item["id"], item["kind"], elapsed, item["question"], rewrite)
    return out


def summary(rows: list[dict]) -> dict[str, str]:
    standalone = [r for r in rows if r["kind"] == "standalone"]
    follow = [r for r in rows if r["kind"] == "followup"]
    return {
        "standalone kept": fmt_ci([float(r["kept"]) for r in standalone]),
        "follow-ups resolved": fmt_ci([float(r["resolved"]) for r in follow]),
        "standalone rewrite s p50/p95": "{:.2f} / {:.2f}".format(
            percentile([r["seconds"] for r in standalone], 50), percentile([r["seconds"] for r in standalone], 95)
        ),
        "follow-up rewrite s p50/p95": "{:.2f} / {:.2f}".format(
            percentile([r["seconds"] for r in follow], 50), percentile([r["seconds"] for r in follow], 95)
        ),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", choices=("dev", "test", "all"), default="dev")
    p.add_argument("--llm", default="large")
    p.add_argument("--before", type=Path, default=None, help="another checkout to run side by side")
    p.add_argument("--repo", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    if args.repo:
        # A child run of --before: ``rag`` comes from the other checkout.
        sys.path.insert(0, str(Path(args.repo).resolve()))
    from rag.answer import RagChain
    from rag.llm import make_llm
    from rag.settings import Settings

    items = [r for r in load_jsonl(args.data) if args.set == "all" or r["split"] == args.set]
    settings = Settings.from_env(llm=args.llm)
    chain = RagChain(_NoRetriever(), make_llm(settings), settings)
    results = {"ours": run(items, chain)}
    if args.before:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "before.json"
            cmd = [sys.executable, __file__, "--set", args.set, "--llm", args.llm, "--data", str(args.data)]
            subprocess.run([*cmd, "--repo", str(args.before.resolve()), "--json", str(out)], check=True)
            results[f"before ({args.before.name})"] = json.loads(out.read_text(encoding="utf-8"))["ours"]
    if args.repo:  # a child run for --before: the rows only
        args.json.write_text(json.dumps(results, ensure_ascii=False), encoding="utf-8")
        return 0

    print(f"# Follow-up rewriting ({today()}, {machine()})")
    print(f"set={args.set} items={len(items)} llm={args.llm}")
    names = list(results)
    print("| metric | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    tables = {n: summary(rows) for n, rows in results.items()}
    for metric in tables[names[0]]:
        print(f"| {metric} | " + " | ".join(tables[n][metric] for n in names) + " |")
    misses = [
        r
        for r in results["ours"]
        if (r["kind"] == "standalone" and not r["kept"]) or (r["kind"] == "followup" and not r["resolved"])
    ]
    for r in misses:
        print(f"- miss {r['id']} ({r['kind']}): {r['question']!r} -> {r['rewrite']!r}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
