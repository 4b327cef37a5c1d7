"""Command line: ``python -m rag ingest|search|ask|docs|delete|rebuild|eval``.

Results go to stdout (``--json`` prints exactly one JSON document); logs and progress go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rag.errors import ConfigError, RagError
from rag.settings import Settings
from rag.types import Answer, Hit, Scope

log = logging.getLogger("rag")


def _hit_json(hit: Hit) -> dict:
    src = hit.chunk.source
    return {
        "file": src.file,
        "page": src.page,
        "page_end": src.last_page or src.page,
        "start_s": src.start_s,
        "end_s": src.end_s,
        "score": round(hit.score, 6),
        "text": hit.chunk.text,
    }


def load_history(path: Path) -> list[tuple[str, str]]:
    """Earlier turns for ``ask --history``: a JSON list of ``[question, answer]`` pairs, oldest first."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RagError(f"cannot read the history file {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise RagError(f"the history file {path} is not JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, list):
        raise RagError(f"the history file {path} must hold a JSON list of [question, answer] pairs")
    turns = []
    for i, pair in enumerate(data):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise RagError(f"history item {i} in {path} is not a [question, answer] pair of strings: {pair!r:.80}")
        turns.append((pair[0], pair[1]))
    return turns


def answer_json(answer: Answer) -> dict:
    """The ``ask --json`` object: route, answer, and only the passages the answer cites (``verified``: a sentence
    citing it states figures or names checked to be in it), and the sentences ``removed`` with the reason."""
    return {
        "route": answer.route,
        "route_reason": answer.route_reason,
        "answer": answer.text,
        "refused": answer.refused,
        "question": answer.question,
        "standalone_question": answer.standalone_question,
        "translated_question": answer.translated_question,
        "citations": [
            {
                "n": c.n,
                "file": c.source.file,
                "page": c.source.page,
                "page_end": c.source.last_page or c.source.page,
                "passage_pages": [c.passage_source.page, c.passage_source.last_page or c.passage_source.page]
                if c.passage_source.page is not None
                else None,
                "start_s": c.source.start_s,
                "end_s": c.source.end_s,
                "text": c.hit.chunk.text,
                "verified": c.verified,
            }
            for c in answer.citations
        ],
        "removed": [{"sentence": r.sentence, "reason": r.reason} for r in answer.removed],
    }


class _Bar:
    """A one-line progress bar on stderr (only when stderr is a terminal; otherwise a log line per file step)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = ""

    def __call__(self, fraction: float, message: str) -> None:
        if self.tty:
            filled = int(30 * fraction)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%} {message[:70]:<70}")
            sys.stderr.flush()
        elif message != self.last:
            log.debug("%3.0f%% %s", 100 * fraction, message)
        self.last = message

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rag", description="ESG document assistant (offline RAG).")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = p.add_subparsers(dest="command", required=True)

    def kb_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--kb", type=Path, default=None, help="knowledge base folder (default: ESG_KB_DIR, else knowledge_base/)"
        )

    sp = sub.add_parser("ingest", help="add PDFs and media files (or folders of them) to the knowledge base")
    sp.add_argument("files", nargs="+", type=Path, help="files, or folders searched recursively")
    sp.add_argument("--workers", type=int, default=None, help="PDF parser processes running ahead (default 1)")
    sp.add_argument("--language", default=None, help="spoken language of media files (default: auto-detect)")
    sp.add_argument("--json", action="store_true", help="print one JSON array of per-file results")
    kb_arg(sp)

    for name, helptext in (("search", "retrieve passages for a question"), ("ask", "answer a question")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("question")
        sp.add_argument("--doc", action="append", default=[], help="restrict to this document (repeatable)")
        sp.add_argument("--company", default=None, help="restrict to this company's documents")
        sp.add_argument("--year", type=int, default=None, help="restrict to documents of this report year")
        sp.add_argument("--json", action="store_true")
        kb_arg(sp)
        if name == "search":
            sp.add_argument("--k", type=int, default=5)
            sp.add_argument("--mode", choices=("hybrid", "dense", "bm25"), default="hybrid")
        else:
            sp.add_argument("--llm", default=None, help="small, large or a path to a .gguf file")
            sp.add_argument(
                "--history", type=Path, default=None, help="JSON file: a list of [question, answer] pairs, oldest first"
            )

    sp = sub.add_parser("docs", help="list the documents in the knowledge base")
    sp.add_argument("--json", action="store_true")
    kb_arg(sp)
    sp = sub.add_parser("delete", help="remove documents from the knowledge base")
    sp.add_argument("names", nargs="+")
    kb_arg(sp)
    sp = sub.add_parser("rebuild", help="rebuild the index from the stored source files")
    kb_arg(sp)
    sp = sub.add_parser("finetune", help="train a query adapter on triples built from the knowledge base itself")
    sp.add_argument("--max-chunks", type=int, default=300, help="chunks sampled for training queries (default 300)")
    sp.add_argument(
        "--llm-queries", type=int, default=0, help="chunks whose queries the LLM writes, en + zh (slow; default 0)"
    )
    sp.add_argument("--rank", type=int, default=16, help="adapter rank (default 16)")
    sp.add_argument("--epochs", type=int, default=30)
    sp.add_argument("--remove", action="store_true", help="delete the adapter: search uses the plain embedder again")
    kb_arg(sp)
    sp = sub.add_parser("eval", help="score the pipeline on a QA set (retrieval, faithfulness, relevance, correctness)")
    sp.add_argument("--qa", type=Path, default=None, help="JSONL rows: question, answer, doc, page(s), evidence")
    sp.add_argument("--docs", type=Path, default=None, help="ingest the QA set's documents from here into a scratch KB")
    sp.add_argument("--llm", dest="llms", action="append", default=[], help="small, large or .gguf (repeat: compare)")
    sp.add_argument("--judge", default="same", help="judge model: same (as --llm), none, small, large or .gguf")
    sp.add_argument("--mode", choices=("hybrid", "dense", "bm25"), default="hybrid", help="retrieval mode")
    sp.add_argument("--compare", action="store_true", help="run dense, bm25 and hybrid (for each --llm) side by side")
    sp.add_argument("--limit", type=int, default=None, help="only the first N questions")
    sp.add_argument("--out", type=Path, default=Path("eval_out"), help="report, charts and resume cache go here")
    sp.add_argument(
        "--agreement", action="store_true", help="instead of a QA set: agreement of the --judge checks with --labels"
    )
    sp.add_argument("--labels", type=Path, default=None, help="hand-labelled judge cases (default: the bundled set)")
    kb_arg(sp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        overrides: dict[str, object] = {}
        if getattr(args, "kb", None) is not None:
            overrides["kb_dir"] = args.kb
        if getattr(args, "llm", None):
            overrides["llm"] = args.llm
        settings = Settings.from_env(**overrides)
        if "kb_dir" not in overrides:
            from rag.storage import resolve_storage

            # The same knowledge base as the app: persistent /data on a Space or when ESG_DATA_DIR is set.
            settings, _ = resolve_storage(settings)
        return _run(args, settings)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _scope(args: argparse.Namespace) -> Scope:
    return Scope(tuple(args.doc), args.company, args.year)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from rag.assistant import Assistant

    if args.command == "eval":
        return _agreement(args, settings) if args.agreement else _eval(args, settings)
    if args.command == "finetune":
        from rag.finetune import cli_finetune

        print(cli_finetune(args, settings))
        return 0
    assistant = Assistant(settings)
    if args.command == "ingest":
        from rag.ingest import expand_paths

        if args.workers is not None:
            assistant.settings = settings = settings.replace(ingest_workers=args.workers)
            settings.validate()
        files = expand_paths(args.files)
        bar = _Bar()
        results = []
        # Bulk runs save every 30 s (a crash resumes from there: unchanged files are skipped), not per file.
        save_every = 30.0 if len(files) > 20 else 0.0
        for result in assistant.ingest(files, progress=bar, language=args.language, save_every_s=save_every):
            results.append(result)
            if bar.tty:
                sys.stderr.write("\r" + " " * 110 + "\r")
            if not args.json:
                mark = "ok  " if result.ok else "FAIL"
                print(f"{mark} {result.file}: {result.message}", flush=True)
        bar.done()
        if args.json:
            rows = [{"file": r.file, "ok": r.ok, "skipped": r.skipped, "message": r.message} for r in results]
            print(json.dumps(rows, ensure_ascii=False))
        return 0 if all(r.ok for r in results) else 1
    if args.command == "search":
        retrieval = assistant.search(args.question, _scope(args), k=args.k, mode=args.mode)
        if args.json:
            print(json.dumps([_hit_json(h) for h in retrieval.hits], ensure_ascii=False))
        else:
            if retrieval.missing:
                print(f"({retrieval.missing})")
            for i, hit in enumerate(retrieval.hits, 1):
                text = " ".join(hit.chunk.text.split())
                print(f"[{i}] {hit.chunk.source.label()}  score={hit.score:.4f}\n    {text[:300]}")
        return 0
    if args.command == "ask":
        answer = None
        history = load_history(args.history) if args.history else ()
        for event in assistant.ask(args.question, history=history, scope=_scope(args)):
            if event.kind == "token" and not args.json:
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif event.kind == "done":
                answer = event.answer
        assert answer is not None
        if args.json:
            print(json.dumps(answer_json(answer), ensure_ascii=False))
        else:
            if answer.route != "rag" or answer.refused:
                print(answer.text, end="")
            print()
            for c in answer.citations:
                print(f"[{c.n}] {c.source.label()}")
        return 0
    if args.command == "docs":
        docs = assistant.documents()
        if args.json:
            from rag.index import document_to_json

            print(json.dumps([document_to_json(d) for d in docs], ensure_ascii=False))
        else:
            for d in docs:
                size = f"{d.pages} pages" if d.pages is not None else f"{d.duration_s or 0:.0f} s"
                print(f"{d.name}\t{size}\t{d.chunks} passages\t{d.meta.company or '-'}\t{d.meta.year or '-'}")
        return 0
    if args.command == "delete":
        missing = [n for n in args.names if not assistant.delete(n)]
        for n in missing:
            print(f"error: no document named {n!r}", file=sys.stderr)
        return 1 if missing else 0
    if args.command == "rebuild":
        results = assistant.rebuild(progress=_Bar())
        for r in results:
            print(f"{'ok  ' if r.ok else 'FAIL'} {r.file}: {r.message}")
        return 0 if all(r.ok for r in results) else 1
    raise AssertionError(args.command)


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    """``eval``: every QA item through the pipeline, scored; prints the summary, writes the report to ``--out``.
    Returns 1 when a question failed."""
    from rag.assistant import Assistant
    from rag.evaluate import MODES, EvalConfig, prepare_kb, run_compare, run_eval
    from rag.qa import load_qa
    from rag.report import comparison_table, overall_table, write_comparison, write_report

    if args.docs is not None and args.kb is not None:
        raise ConfigError("give --docs (a scratch knowledge base) or --kb (an existing one), not both")
    if args.qa is None:
        raise ConfigError("give --qa FILE.jsonl (or --agreement to check the judge against the hand labels)")
    items = load_qa(args.qa)
    if args.limit is not None:
        if args.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {args.limit}")
        items = items[: args.limit]
    out = Path(args.out)
    # --compare runs every retrieval mode for every --llm (default: the configured one); several --llm without
    # --compare compare the models in --mode.
    models: list[str | None] = list(args.llms) or [None]
    modes = list(MODES) if args.compare else [args.mode]
    configs = [EvalConfig(m, llm) for llm in models for m in modes]
    bar = _Bar()
    try:
        assistant = Assistant(settings)
        if args.docs is not None:
            assistant = prepare_kb(assistant, args.docs, items, out, bar)
        source = str(args.qa)
        if len(configs) == 1:
            reports = [
                run_eval(assistant, items, configs[0], judge=args.judge, cache_dir=out, qa_source=source, progress=bar)
            ]
            md, charts = write_report(reports[0], out)
            table = overall_table(reports[0])
        else:
            reports = run_compare(
                assistant, items, configs, judge=args.judge, cache_dir=out, qa_source=source, progress=bar
            )
            md, charts = write_comparison(reports, out)
            table = comparison_table(reports)
    finally:
        bar.done()
    failed = sum(r.failed for r in reports)
    skipped = len(reports[0].skipped)
    print(
        f"{len(reports[0].results)} questions, judge {reports[0].judge}"
        + (f", {skipped} skipped (document not in the knowledge base)" if skipped else "")
        + (f", {failed} failed" if failed else "")
    )
    print(f"\n{table}\n\nreport: {md}")
    for p in charts:
        print(f"chart:  {p}")
    return 1 if failed else 0


def _agreement(args: argparse.Namespace, settings: Settings) -> int:
    """``eval --agreement``: how well each judge check agrees with the hand labels (``--judge none``: without an LLM;
    ``same``: the configured model). Prints the table docs/bench/evaluation.md quotes."""
    import time

    from rag.agreement import LABELS_PATH, agreement, agreement_table, load_labels
    from rag.embed import make_embedder
    from rag.judge import Judge

    llm = None
    if args.judge != "none":
        from rag.llm import make_llm

        llm = make_llm(settings if args.judge == "same" else settings.replace(llm=args.judge, llm_base_url=""))
    judge = Judge(llm, make_embedder(settings.embedder, settings.threads))
    cases = load_labels(args.labels or LABELS_PATH)
    start = time.perf_counter()
    print(agreement_table(agreement(cases, judge, llm=llm is not None)))
    log.info(
        "%d labelled cases, judge %s, %d LLM calls, %.0f s",
        len(cases),
        judge.name,
        judge.calls,
        time.perf_counter() - start,
    )
    return 0
