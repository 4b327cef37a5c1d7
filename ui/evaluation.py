"""The Evaluation tab: score the assistant on a QA file (or the bundled sample set) with the app's own models, over
the documents the visitor sees, through ``Assistant.evaluate``.

One run at a time app-wide, in its own queue group, so chat is served beside it: the run shares the app's models and
contends with chat only for the LLM lock, one call at a time. Stop ends a run after its current step; finished
questions are cached, so a rerun continues where it stopped.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from rag.errors import RagError
from ui.controller import Controller, UiSession
from ui.documents import upload_classes
from ui.i18n import t
from ui.render import report_for_display

# An evaluation holds the shared LLM for seconds per question: in shared mode a visitor runs at most this many.
EVAL_MAX_QUESTIONS = 50
EVAL_JUDGES = ("same", "none")  # the app's own model or no model: never load another one in a shared app


class EvalStopped(Exception):
    """The visitor pressed Stop before any question finished: there is nothing to score."""


@dataclass(frozen=True)
class EvalRun:
    """A finished evaluation in the app: what to show and what to offer for download."""

    summary: str  # one or more lines for the status area (UI language)
    markdown: str  # the report, safe to display (see ``report_for_display``)
    report: Path  # report.md
    charts: list[Path]  # PNGs
    archive: Path  # zip of report.md and the charts
    warnings: list[str]  # skipped or failed questions, a limit the visitor didn't set; also in ``summary``


def _zip(archive: Path, files: Sequence[Path]) -> Path:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f.name)
    return archive


class Evaluator:
    """Runs evaluations for the app's visitors and keeps their report files."""

    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self._lock = threading.Lock()
        self._root: Path | None = None

    @property
    def root(self) -> Path:
        """Evaluation files: a private temporary folder, created on first use. Not under ``media_dir``, which Gradio
        serves by path: the answer cache may quote a visitor's private documents. Gradio copies the files a handler
        returns into its own cache, so reports are downloadable all the same."""
        with self._lock:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="esg-eval-"))
                atexit.register(shutil.rmtree, self._root, True)
            return self._root

    def evaluate(
        self,
        qa_file: str | Path | None,
        ui: UiSession,
        mode: str = "hybrid",
        judge: str = "same",
        limit: int | None = None,
        progress: Callable[[float, str], None] | None = None,
    ) -> EvalRun:
        """Evaluate the knowledge base this visitor sees (shared plus their private uploads) with the app's models.

        ``qa_file``: an uploaded JSONL file, or ``None`` for the bundled sample set; ``limit``: run only the first
        questions (0/None = all; a visitor in shared mode runs at most ``EVAL_MAX_QUESTIONS``). Raises ``RagError``
        for a bad file or an empty knowledge base. Stopped (``stop``) after some questions, the run reports the scores
        of those; before any, it raises ``EvalStopped``.
        """
        if judge not in EVAL_JUDGES:
            raise RagError(f"judge must be one of {', '.join(EVAL_JUDGES)}, got {judge!r}")
        cap = int(limit) if limit and int(limit) > 0 else None
        imposed = self.ctl.shared_mode and not ui.admin and (cap is None or cap > EVAL_MAX_QUESTIONS)
        if imposed:
            cap = EVAL_MAX_QUESTIONS
        ui.eval_stop.clear()
        out = self.root / "runs" / uuid.uuid4().hex[:16]  # a fresh folder: no chart of an earlier run lingers
        # One answer cache for every visitor: its keys hold the documents' names, hashes and chunk ids, so a visitor
        # reuses only answers computed over exactly the documents they see.
        run = self.ctl.assistant.evaluate(
            Path(qa_file) if qa_file else None,
            out,
            self.root / "cache",
            mode=mode,
            judge=judge,
            limit=cap,
            progress=progress,
            session=ui.session,
            stop=ui.eval_stop,
        )
        if run.report is None:
            raise EvalStopped
        if ui.eval_out is not None:  # Gradio already copied the visitor's previous report for download
            shutil.rmtree(ui.eval_out, ignore_errors=True)
        ui.eval_out = out
        notes: list[str] = []  # for the status line
        warnings: list[str] = []  # also shown as pop-ups: what the visitor did not ask for
        if run.asked < run.total:
            (warnings if imposed else notes).append(t(ui.lang, "eval_limited").format(n=run.asked, total=run.total))
        if run.missing_docs:
            missing = run.missing_docs
            shown = ", ".join(missing[:3]) + (f" (+{len(missing) - 3})" if len(missing) > 3 else "")
            warnings.append(t(ui.lang, "eval_skipped").format(n=run.skipped, docs=shown))
        if run.failed:
            warnings.append(t(ui.lang, "eval_failed").format(n=run.failed))
        done = t(ui.lang, "eval_done").format(n=run.evaluated, s=run.seconds, reused=run.reused, source=run.source)
        if run.stopped:
            done = t(ui.lang, "eval_stopped_partial").format(n=run.evaluated, total=run.asked) + "\n\n" + done
        charts = list(run.charts)
        return EvalRun(
            summary="\n\n".join([done, *notes, *(f"⚠ {w}" for w in warnings)]),
            markdown=report_for_display(run.report.read_text(encoding="utf-8")),
            report=run.report,
            charts=charts,
            archive=_zip(out / "evaluation_report.zip", [run.report, *charts]),
            warnings=warnings,
        )

    def stop(self, ui: UiSession) -> str:
        """Ask this visitor's running evaluation to stop before its next question."""
        ui.eval_stop.set()
        return t(ui.lang, "eval_stopped")


# ---------------------------------------------------------------------------------------------------------- the tab
def intro_text(lang: str, sample_size: int) -> str:
    """The tab's explanation; ``sample_size``: questions in the bundled sample set."""
    return t(lang, "eval_intro").format(n=sample_size)


def mode_choices(lang: str) -> list[tuple[str, str]]:
    return [(t(lang, f"eval_mode_{m}"), m) for m in ("hybrid", "dense", "bm25")]


def judge_choices(lang: str) -> list[tuple[str, str]]:
    return [(t(lang, f"eval_judge_{j}"), j) for j in EVAL_JUDGES]


@dataclass
class EvalTab:
    """The Evaluation tab's components (built inside the tab by ``build``)."""

    evaluator: Evaluator
    sample_size: int
    intro: gr.Markdown
    file: gr.File
    mode: gr.Radio
    judge: gr.Radio
    limit: gr.Number
    run_btn: gr.Button
    stop_btn: gr.Button
    status: gr.Markdown
    charts: gr.Gallery
    files: gr.File
    report: gr.Markdown

    def relabel(self, lang: str) -> list[tuple[gr.components.Component, object]]:
        """(component, update) pairs for the language toggle."""
        return [
            (self.intro, gr.Markdown(intro_text(lang, self.sample_size))),
            (self.file, gr.File(label=t(lang, "eval_upload"), elem_classes=upload_classes(lang))),
            (self.mode, gr.Radio(choices=mode_choices(lang), label=t(lang, "eval_mode"))),
            (self.judge, gr.Radio(choices=judge_choices(lang), label=t(lang, "eval_judge"))),
            (self.limit, gr.Number(label=t(lang, "eval_limit"))),
            (self.run_btn, gr.Button(value=t(lang, "eval_run"))),
            (self.stop_btn, gr.Button(value=t(lang, "eval_stop"))),
            (self.charts, gr.Gallery(label=t(lang, "eval_charts"))),
            (self.files, gr.File(label=t(lang, "eval_files"))),
        ]


def build(ctl: Controller, lang: str) -> EvalTab:
    """The tab's components; call inside ``gr.Tab``. Loads nothing (the sample set's size is counted from its file)."""
    sample_size = ctl.assistant.eval_sample_size()
    intro = gr.Markdown(intro_text(lang, sample_size))
    with gr.Row(equal_height=False):
        file = gr.File(
            label=t(lang, "eval_upload"),
            file_types=[".jsonl", ".json", ".txt"],
            height=120,
            scale=3,
            elem_id="esg-eval-file",
        )
        with gr.Column(scale=2, min_width=260):
            mode = gr.Radio(mode_choices(lang), value="hybrid", label=t(lang, "eval_mode"))
            judge = gr.Radio(judge_choices(lang), value="same", label=t(lang, "eval_judge"))
        with gr.Column(scale=1, min_width=200):
            limit = gr.Number(0, precision=0, minimum=0, label=t(lang, "eval_limit"))
            run_btn = gr.Button(t(lang, "eval_run"), variant="primary", elem_id="esg-eval-run")
            stop_btn = gr.Button(t(lang, "eval_stop"), variant="stop", size="sm")
    status = gr.Markdown("", min_height=64, elem_id="esg-eval-status")  # the progress bar shows here
    # Results appear after a run: charts in a row (click to enlarge), downloads, then the full-width report (its
    # per-question table is wide).
    charts = gr.Gallery(
        label=t(lang, "eval_charts"),
        columns=3,
        height="auto",
        object_fit="contain",
        format="png",
        buttons=["fullscreen", "download"],
        visible=False,
        elem_id="esg-eval-charts",
    )
    files = gr.File(file_count="multiple", label=t(lang, "eval_files"), interactive=False, visible=False)
    report = gr.Markdown("", max_height=900, elem_id="esg-eval-report")
    return EvalTab(
        Evaluator(ctl), sample_size, intro, file, mode, judge, limit, run_btn, stop_btn, status, charts, files, report
    )


def wire(tab: EvalTab, ui_state: gr.State) -> None:
    """Connect the tab's handlers."""
    evaluator = tab.evaluator

    def on_eval(
        qa_file: str | None,
        mode: str,
        judge: str,
        limit: float | None,
        ui: UiSession,
        progress=gr.Progress(),  # noqa: B008 - Gradio's way to ask for a progress bar
    ):
        try:
            run = evaluator.evaluate(
                qa_file, ui, mode, judge, int(limit or 0), lambda f, m: progress(max(0.0, min(1.0, f)), desc=m)
            )
        except EvalStopped:
            return t(ui.lang, "eval_stopped"), gr.Markdown(), gr.Gallery(), gr.File()
        except RagError as exc:
            raise gr.Error(str(exc)) from exc
        for warning in run.warnings:
            gr.Warning(warning)
        return (
            run.summary,
            run.markdown,
            gr.Gallery(value=[str(p) for p in run.charts], visible=True),
            gr.File(value=[str(run.archive), str(run.report)] + [str(p) for p in run.charts], visible=True),
        )

    eval_event = tab.run_btn.click(
        on_eval,
        [tab.file, tab.mode, tab.judge, tab.limit, ui_state],
        [tab.status, tab.report, tab.charts, tab.files],
        concurrency_limit=1,
        concurrency_id="eval",
        show_progress="full",
        show_progress_on=[tab.status],
    )

    def on_eval_stop(ui: UiSession):
        return evaluator.stop(ui)

    # Stop: the flag ends a running evaluation after its current step; ``cancels`` drops one still queued.
    tab.stop_btn.click(on_eval_stop, [ui_state], [tab.status], queue=False, cancels=[eval_event])
