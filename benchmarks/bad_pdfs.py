"""Every malformed, encrypted or adversarial PDF in ../shared/testdata/bad_pdfs through the real ingest checks and
the isolated parser worker: counts of ingested / rejected by reason / killed at a limit.

    python benchmarks/bad_pdfs.py [--timeout 30] [--memory-mb 1024]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, testdata, today
from rag.errors import RagError
from rag.ingest import check_file, file_sha256, parse_pdf_isolated
from rag.settings import Settings


def reason_of(message: str) -> str:
    """The reason class of a one-line refusal: the text before the first colon."""
    return message.split(":", 1)[0].strip()


def sweep(settings: Settings) -> list[dict]:
    root = testdata() / "bad_pdfs"
    rows = [json.loads(line) for line in (root / "MANIFEST.jsonl").read_text().splitlines() if line.strip()]
    out = []
    for row in rows:
        path = root / row["file"]
        t = time.perf_counter()
        try:
            check_file(path, path.name, settings.max_upload_mb)
            parsed = parse_pdf_isolated(path, path.name, file_sha256(path), settings)
            outcome = {"result": "ingested", "pages": parsed.pages, "chunks": len(parsed.chunks)}
        except RagError as exc:
            msg = str(exc)
            killed = "longer than" in msg or "crashed" in msg or ("more than" in msg and "MB" in msg)
            outcome = {"result": "killed" if killed else "rejected", "reason": reason_of(msg), "message": msg}
        outcome.update(file=row["file"], secs=round(time.perf_counter() - t, 2))
        out.append(outcome)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--memory-mb", type=int, default=1024)
    args = ap.parse_args()
    settings = Settings.from_env(environ={}, parse_timeout_s=args.timeout, parse_memory_mb=args.memory_mb)
    t0 = time.perf_counter()
    results = sweep(settings)
    wall = time.perf_counter() - t0
    counts = collections.Counter(r["result"] for r in results)
    reasons = collections.Counter(r["reason"] for r in results if r["result"] != "ingested")
    print(f"# bad_pdfs sweep, {today()}, {machine()}")
    print(f"command: python benchmarks/bad_pdfs.py --timeout {args.timeout:g} --memory-mb {args.memory_mb}")
    print(f"files: {len(results)}, wall {wall:.1f} s, slowest {max(r['secs'] for r in results):.1f} s")
    print("outcomes:", dict(counts))
    print("reasons:", dict(reasons))
    for r in results:
        if r["result"] != "ingested":
            print(f"  {r['result']:8} {r['file']}: {r['message']}")


if __name__ == "__main__":
    main()
