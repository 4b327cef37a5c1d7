"""Helpers shared by the benchmark scripts (not part of the app)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import subprocess
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def testdata() -> Path:
    return Path(os.environ.get("ESG_TESTDATA", ROOT.parent / "shared" / "testdata")).resolve()


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), cpu)
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {cpu}, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def today() -> str:
    return dt.date.today().isoformat()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def source_pages(source) -> list[int]:
    """The 1-based pages a passage's ``Source`` spans (``page`` to ``last_page``); none for media."""
    return list(range(source.page, (source.last_page or source.page) + 1)) if source.page else []


def verified_questions(split: str = "all") -> list[dict]:
    """The verified question set's rows (benchmarks/data/questions_*.jsonl) of ``split``: dev, test or all."""
    paths = sorted((ROOT / "benchmarks" / "data").glob("questions_*.jsonl"))
    rows = [row for path in paths for row in load_jsonl(path)]
    return [row for row in rows if split == "all" or row["split"] == split]


def document_chunks(doc: str, max_tokens: int) -> list:
    """The chunks ingestion makes of a shared test document (English or Chinese): pypdf via ``rag.pdf``, then
    ``rag.chunk.chunk_pages`` (tables' headers carried)."""
    from rag.chunk import chunk_pages
    from rag.pdf import load_pdf
    from rag.types import DocMeta

    path = next(p for p in (testdata() / d / doc for d in ("esg_pdfs", "zh_pdfs")) if p.is_file())
    return chunk_pages(load_pdf(path), file=doc, doc_id=doc, meta=DocMeta(), max_tokens=max_tokens)


def gold_groups(rows: list[dict]) -> dict[tuple[str, str], set[int]]:
    """(doc, question) -> gold pages, over rows that have a page."""
    groups: dict[tuple[str, str], set[int]] = defaultdict(set)
    for row in rows:
        if row.get("page") is not None and row.get("doc"):
            groups[(row["doc"], row["question"])].add(int(row["page"]))
    return dict(groups)


def verified_pages(qa_dir: Path) -> dict[tuple[str, str], set[int]]:
    """(doc, question) -> every page the collector verified as holding one of the question's gold evidence extracts.

    ``esg_qa_en.jsonl`` keeps one ``page`` per Climate Finance Bench question, although its gold evidence joins up to
    five extracts; the per-source file lists the page of each (``evidence_pages_verified``, checked against pypdf's
    text like ``page``: testdata SOURCES.md). Hits on those pages are hits on gold evidence too.
    """
    out: dict[tuple[str, str], set[int]] = defaultdict(set)
    for path in sorted(qa_dir.glob("*.jsonl")):
        for row in load_jsonl(path):
            pages = [int(p) for p in row.get("evidence_pages_verified") or [] if p is not None]
            if pages and row.get("doc"):
                out[(row["doc"], row["question"])].update(pages)
    return dict(out)


def with_verified(groups: dict[tuple[str, str], set[int]], verified: dict[tuple[str, str], set[int]]):
    """The same groups with every verified evidence page added to their gold pages."""
    return {key: pages | verified.get(key, set()) for key, pages in groups.items()}


def rank_metrics(ranked_pages: list[list[int | set[int]]], gold: list[set[int]]) -> dict[str, float]:
    """hit@1/5/10 and MRR (first hit on a gold page) over queries.

    Each ranked entry is one hit: its page, or the set of pages a passage spans (a passage across pages 4-5 is one
    hit at one rank, not two).
    """
    n = len(gold)
    out = {"hit@1": 0.0, "hit@5": 0.0, "hit@10": 0.0, "mrr": 0.0}
    for pages, g in zip(ranked_pages, gold, strict=True):
        first = next((i for i, p in enumerate(pages) if (p & g if isinstance(p, set) else p in g)), None)
        if first is not None:
            out["mrr"] += 1 / (first + 1)
            for k in (1, 5, 10):
                out[f"hit@{k}"] += first < k
    return {k: round(v / n, 3) for k, v in out.items()} if n else out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    idx = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[idx]


def bootstrap_ci(values: list[float], n: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile-bootstrap ``level`` interval: ``(mean, low, high)``.

    Deterministic (fixed ``seed``) so two runs of a benchmark report the same interval for the same outcomes.
    """
    import random

    if not values:
        return (float("nan"), float("nan"), float("nan"))
    rng = random.Random(seed)
    k = len(values)
    means = sorted(sum(rng.choices(values, k=k)) / k for _ in range(n))
    tail = (1 - level) / 2
    low = means[int(tail * (n - 1))]
    high = means[int((1 - tail) * (n - 1))]
    return (sum(values) / k, low, high)


def fmt_ci(values: list[float]) -> str:
    """``0.733 [0.612, 0.841] (n=45)``: a rate with its 95% bootstrap interval."""
    mean, low, high = bootstrap_ci(values)
    return f"{mean:.3f} [{low:.3f}, {high:.3f}] (n={len(values)})"
