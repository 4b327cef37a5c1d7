"""Evaluation reports: Markdown tables, PNG charts, and the files they are written to.

    markdown_path, png_paths = write_report(report, out_dir)          # report.md (+ three charts)
    markdown_path, png_paths = write_comparison(reports, out_dir)     # compare.md, one report per configuration

Charts are drawn on matplotlib's Agg canvas directly (no global backend switch), so this is safe inside the app.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from rag.evaluate import EvalConfig, EvalReport
from rag.score import METRICS, metric_label


def _fmt(value: float | None, n: int | None = None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if n is None else f"{value:.2f} (n={n})"


def _cell(text: str, limit: int) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def overall_table(report: EvalReport) -> str:
    """One row per metric: its mean and the number of questions it applies to (Markdown)."""
    lines = ["| metric | score | questions |", "|---|---|---|"]
    for m, (mean, n) in report.overall().items():
        lines.append(f"| {metric_label(m, report.k)} | {_fmt(mean)} | {n} |")
    return "\n".join(lines)


def comparison_table(reports: Sequence[EvalReport]) -> str:
    """Metrics side by side, one column per configuration (Markdown; also fine on a terminal)."""
    if not reports:
        return ""
    k = reports[0].k
    head = "| metric | " + " | ".join(r.config_name for r in reports) + " |"
    lines = [head, "|---|" + "---|" * len(reports)]
    overalls = [r.overall() for r in reports]
    for m in METRICS:
        lines.append(f"| {metric_label(m, k)} | " + " | ".join(_fmt(o[m][0]) for o in overalls) + " |")
    secs = [sum(x.seconds for x in r.results) / max(1, len(r.results)) for r in reports]
    lines.append("| seconds per answer | " + " | ".join(f"{s:.1f}" for s in secs) + " |")
    return "\n".join(lines)


def report_markdown(report: EvalReport, charts: Sequence[Path] = ()) -> str:
    """The whole report: run details, overall and per-document tables, per-question rows worst first, skipped
    questions; ``charts`` (from ``write_report``) are linked by file name."""
    k = report.k
    s = report.settings
    out = [
        "# Evaluation report",
        "",
        f"- QA set: {report.qa_source or '(given rows)'} — {len(report.results)} questions evaluated"
        + (f", {len(report.skipped)} skipped" if report.skipped else ""),
        f"- Configuration: {report.config_name} (LLM {s.get('llm')}, top_k {s.get('top_k')}, "
        f"embedder {s.get('embedder')}, chunk_tokens {s.get('chunk_tokens')})",
        f"- Judge: {report.judge}; numbers, units and years are checked against the cited text deterministically",
        f"- Run: {report.started}, {report.seconds:.0f} s; {report.computed} questions computed, "
        f"{report.reused} reused from the cache",
        "",
        "## Overall",
        "",
        overall_table(report),
        "",
    ]
    errors = [r for r in report.results if r.error]
    if errors:
        out += [f"{len(errors)} questions failed (see the table below).", ""]
    out += [f"![overall]({charts[0].name})", ""] if charts else []
    out += ["## Per document", ""]
    cols = list(METRICS)
    out.append("| document | n | " + " | ".join(metric_label(m, k) for m in cols) + " |")
    out.append("|---|---|" + "---|" * len(cols))
    for doc, overall in report.by_document().items():
        n = sum(1 for r in report.results if (r.item.doc or "(all documents)") == doc)
        out.append(f"| {_cell(doc, 60)} | {n} | " + " | ".join(_fmt(overall[m][0]) for m in cols) + " |")
    out.append("")
    if len(charts) > 1:
        out += [f"![per document]({charts[1].name})", ""]
    out += ["## Per question (worst first)", ""]
    short = ["hit", "mrr", "ndcg", "context_precision", "faithfulness", "answer_relevance", "correctness"]
    out.append(
        "| id | question | doc | mean | "
        + " | ".join(metric_label(m, k) for m in short)
        + " | refusal ok | answer | notes |"
    )
    out.append("|---|---|---|---|" + "---|" * len(short) + "---|---|---|")
    for r in report.worst_first():
        sc = r.scores
        ref = sc.refusal if sc.refusal is not None else sc.answered
        notes = "; ".join(r.notes) if not r.error else f"ERROR: {r.error}"
        out.append(
            f"| {r.item.id} | {_cell(r.item.question, 90)} | {_cell(r.item.doc or '–', 40)} | {_fmt(sc.mean())} | "
            + " | ".join(_fmt(sc.get(m)) for m in short)
            + f" | {_fmt(ref)} | {_cell(r.answer, 160)} | {_cell(notes, 200)} |"
        )
    if report.skipped:
        out += ["", "## Skipped", ""] + [f"- {rid}: {why}" for rid, why in report.skipped]
    out.append("")
    return "\n".join(out)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _charts(reports: Sequence[EvalReport], out_dir: Path, stem: str) -> list[Path]:
    """PNG charts (matplotlib's Agg canvas directly: no global backend switch, safe inside the app)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = reports[0].k
    paths: list[Path] = []
    metrics = [m for m in METRICS if any(r.overall()[m][0] is not None for r in reports)]
    labels = [metric_label(m, k) for m in metrics]

    # Overall: grouped horizontal bars, one group per metric, one bar per configuration.
    fig = Figure(figsize=(8, 0.5 + 0.45 * len(metrics) * max(1, len(reports))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    height = 0.8 / len(reports)
    for j, rep in enumerate(reports):
        ov = rep.overall()
        # A metric that doesn't apply (no such rows) gets no bar rather than a misleading zero.
        vals = [_or_nan(ov[m][0]) for m in metrics]
        ys = [i + j * height for i in range(len(metrics))]
        bars = ax.barh(ys, vals, height=height, label=rep.config_name)
        for bar, v in zip(bars, vals, strict=True):
            if not math.isnan(v):
                ax.text(v + 0.01, bar.get_y() + bar.get_height() / 2, f"{v:.2f}", va="center", fontsize=8)
    ax.set_yticks([i + height * (len(reports) - 1) / 2 for i in range(len(metrics))], labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("score (0–1, higher is better)")
    ax.set_title("Evaluation: overall" if len(reports) == 1 else "Evaluation: configurations compared")
    if len(reports) > 1:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    p = out_dir / f"{stem}_overall.png"
    fig.savefig(p, dpi=110)
    paths.append(p)

    # Per document (first report): one group per document.
    rep = reports[0]
    docs = rep.by_document()
    if docs:
        fig = Figure(figsize=(max(8, 1.3 * len(metrics) * max(1, len(docs)) / 2), 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        width = 0.8 / len(docs)
        for j, (doc, ov) in enumerate(docs.items()):
            xs = [i + j * width for i in range(len(metrics))]
            vals = [_or_nan(ov[m][0]) for m in metrics]
            ax.bar(xs, vals, width=width, label=doc[:60])
        ax.set_xticks([i + width * (len(docs) - 1) / 2 for i in range(len(metrics))], labels, rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("score")
        ax.set_title(f"Per document ({rep.config_name})")
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = out_dir / f"{stem}_by_document.png"
        fig.savefig(p, dpi=110)
        paths.append(p)

    # Distribution of per-question mean scores (worst questions on the left).
    fig = Figure(figsize=(8, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for rep in reports:
        means = sorted(m for m in (r.scores.mean() for r in rep.results if r.error is None) if m is not None)
        ax.plot(range(1, len(means) + 1), means, marker="o", markersize=3, label=rep.config_name)
    ax.set_xlabel("question (sorted by mean score)")
    ax.set_ylabel("mean score")
    ax.set_ylim(0, 1.05)
    ax.set_title("Per-question mean score")
    if len(reports) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    p = out_dir / f"{stem}_questions.png"
    fig.savefig(p, dpi=110)
    paths.append(p)
    return paths


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "eval"


def write_report(report: EvalReport, out_dir: Path) -> tuple[Path, list[Path]]:
    """Write ``report.md`` (or ``report_<config>.md`` for a non-default config) and its PNG charts to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "report" if report.config == EvalConfig() else f"report_{_slug(report.config_name)}"
    charts = _charts([report], out_dir, stem)
    md = out_dir / f"{stem}.md"
    md.write_text(report_markdown(report, charts), encoding="utf-8")
    return md, charts


def write_comparison(reports: Sequence[EvalReport], out_dir: Path) -> tuple[Path, list[Path]]:
    """``compare.md`` (side-by-side table, then each configuration's full report) and charts."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = _charts(reports, out_dir, "compare")
    parts = [
        "# Evaluation: configurations compared",
        "",
        f"QA set: {reports[0].qa_source or '(given rows)'}; judge: {reports[0].judge}.",
        "",
        comparison_table(reports),
        "",
        f"![compared]({charts[0].name})",
        "",
    ]
    for rep in reports:
        md, _ = write_report(rep, out_dir)
        parts.append(f"- [{rep.config_name}]({md.name})")
    path = out_dir / "compare.md"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path, charts


__all__ = ["comparison_table", "overall_table", "report_markdown", "write_comparison", "write_report"]
