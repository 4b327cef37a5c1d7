"""Parse + chunk speed and chunk sizes: load_pdf, detect_meta and chunk_pages on the shared PDFs, one process.

    python benchmarks/parse_chunk.py                      # the 9 esg_pdfs
    python benchmarks/parse_chunk.py --dirs esg_pdfs zh_pdfs finance_pdfs --real --baseline

``--real`` also counts every chunk and key line with the real e5 tokenizer; ``--exact`` chunks with it (instead of
the estimate); ``--baseline`` times plain pypdf ``extract_text`` on the same files (the floor for any pypdf-based
loader).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, testdata, today
from rag.chunk import approx_tokens, chunk_pages
from rag.meta import detect_meta
from rag.pdf import load_pdf


def pct(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dirs", nargs="+", default=["esg_pdfs"])
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--real", action="store_true", help="count tokens with the real e5 tokenizer too")
    ap.add_argument("--baseline", action="store_true", help="time plain pypdf extract_text as well")
    ap.add_argument("--exact", action="store_true", help="chunk with the real e5 token counter (not the estimate)")
    args = ap.parse_args()

    real = None
    if args.real or args.exact:
        from rag.embed import E5Embedder

        real = E5Embedder(threads=1).token_count

    print(f"# parse + chunk, {today()}, {machine()}")
    print(f"command: python benchmarks/parse_chunk.py {' '.join(sys.argv[1:])}\n")
    print("| file | pages | chunks | pypdf s | load s | meta s | chunk s | company | year | lang |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    totals = {"pages": 0, "chunks": 0, "pypdf": 0.0, "load": 0.0, "meta": 0.0, "chunk": 0.0}
    approx, real_counts, key_counts = [], [], []
    spans = 0
    cpu = base_cpu = 0.0
    for folder in args.dirs:
        for path in sorted((testdata() / folder).glob("*.pdf")):
            base = 0.0
            if args.baseline:
                import pypdf

                t, c = time.perf_counter(), time.process_time()
                reader = pypdf.PdfReader(path)
                if reader.is_encrypted:
                    reader.decrypt("")
                for page in reader.pages:
                    page.extract_text()
                base = time.perf_counter() - t
                base_cpu += time.process_time() - c
            c0 = time.process_time()
            t0 = time.perf_counter()
            pages = load_pdf(path)
            t1 = time.perf_counter()
            meta = detect_meta(pages, path.name)
            t2 = time.perf_counter()
            chunks = chunk_pages(
                pages,
                file=path.name,
                doc_id="bench",
                meta=meta,
                max_tokens=args.max_tokens,
                count_tokens=real if args.exact else None,
            )
            t3 = time.perf_counter()
            cpu += time.process_time() - c0
            for key, value in (("pypdf", base), ("load", t1 - t0), ("meta", t2 - t1), ("chunk", t3 - t2)):
                totals[key] += value
            totals["pages"] += len(pages)
            totals["chunks"] += len(chunks)
            approx += [approx_tokens(c.text) for c in chunks]
            spans += sum(1 for c in chunks if c.source.last_page)
            if args.real:
                real_counts += [real(c.text) for c in chunks]
                key_counts += [real(c.key) for c in chunks]
            print(
                f"| {folder}/{path.name} | {len(pages)} | {len(chunks)} | {base:.2f} | {t1 - t0:.2f} | {t2 - t1:.2f} "
                f"| {t3 - t2:.2f} | {meta.company} | {meta.year} | {meta.language} |"
            )
    parse_chunk = totals["load"] + totals["meta"] + totals["chunk"]
    print(
        f"\ntotal: {totals['pages']} pages, {totals['chunks']} chunks; load {totals['load']:.1f} s, meta "
        f"{totals['meta']:.1f} s, chunk {totals['chunk']:.1f} s -> parse+chunk {parse_chunk:.1f} s "
        f"({1000 * parse_chunk / max(1, totals['pages']):.0f} ms/page); CPU time {cpu:.1f} s "
        f"({1000 * cpu / max(1, totals['pages']):.0f} ms/page; wall time rises when other processes share the CPU)"
    )
    if args.baseline:
        print(f"plain pypdf extract_text: {totals['pypdf']:.1f} s, CPU time {base_cpu:.1f} s")
    print(f"chunks spanning two pages: {spans} of {len(approx)}")
    print(
        f"chunk size, estimated tokens (budget {args.max_tokens}): mean {statistics.mean(approx):.0f}, median "
        f"{statistics.median(approx):.0f}, p10 {pct(approx, 0.1)}, p90 {pct(approx, 0.9)}, max {max(approx)}"
    )
    if args.real:
        print(
            f"chunk size, real e5 tokens: mean {statistics.mean(real_counts):.0f}, median "
            f"{statistics.median(real_counts):.0f}, p10 {pct(real_counts, 0.1)}, p90 {pct(real_counts, 0.9)}, "
            f"max {max(real_counts)}"
        )
        print(
            f"key line, real e5 tokens: mean {statistics.mean(key_counts):.0f}, p90 {pct(key_counts, 0.9)}, "
            f"max {max(key_counts)}"
        )


if __name__ == "__main__":
    main()
