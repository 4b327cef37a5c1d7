"""Documents: the upload area (beside the chat), the Documents tab (the knowledge base table, deletion, transcripts
of videos and recordings with SRT/VTT downloads, the administrator's unlock) and the rebuild banner's button.

In shared mode (an admin token is set) a visitor's uploads are private to their session; only the administrator
changes the shared knowledge base. Ingest, delete and rebuild run one at a time in their own queue group, so chat is
served beside them.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from rag.errors import RagError
from ui.controller import Controller, UiSession
from ui.i18n import t
from ui.render import lines_html, results_html


def transcript_headers(lang: str) -> list[str]:
    return [t(lang, "col_start"), t(lang, "col_end"), t(lang, "col_text")]


def upload_classes(lang: str) -> list[str]:
    """CSS classes of an upload area: ``esg-zh`` shows Gradio's built-in "Drop File Here - or - Click to Upload" in
    Chinese (ui/style.css). Gradio picks that text from the browser's language, not from the app's toggle."""
    return ["esg-zh"] if lang == "zh" else []


@dataclass
class UploadView:
    """The upload area in the chat tab's side column, with the per-file result lines under it."""

    upload: gr.File
    private_note: gr.Markdown
    results: gr.HTML

    def relabel(self, lang: str) -> list[tuple[gr.components.Component, object]]:
        return [
            (self.upload, gr.File(label=t(lang, "upload"), elem_classes=upload_classes(lang))),
            (self.private_note, gr.Markdown(t(lang, "upload_private"))),
        ]


@dataclass
class DocsView:
    """The Documents tab's components."""

    table: gr.Dataframe
    delete_pick: gr.Dropdown
    delete_btn: gr.Button
    delete_out: gr.HTML
    transcript_pick: gr.Dropdown
    srt_btn: gr.DownloadButton
    vtt_btn: gr.DownloadButton
    transcript_table: gr.Dataframe
    admin_token: gr.Textbox
    admin_btn: gr.Button
    admin_out: gr.Markdown

    def relabel(self, lang: str, rows: list[list[object]], headers: list[str]) -> list:
        """(component, update) pairs for the language toggle; ``rows`` are the table's rows in ``lang``."""
        return [
            (self.delete_btn, gr.Button(value=t(lang, "delete"))),
            (self.srt_btn, gr.DownloadButton(label=t(lang, "srt"))),
            (self.vtt_btn, gr.DownloadButton(label=t(lang, "vtt"))),
            (self.table, gr.Dataframe(value=rows or None, headers=headers, label=t(lang, "docs_table"))),
            (self.delete_pick, gr.Dropdown(label=t(lang, "delete_pick"))),
            (self.transcript_pick, gr.Dropdown(label=t(lang, "transcript_pick"))),
            # An empty table in the new language: the headers of a table shown are part of its value.
            (
                self.transcript_table,
                gr.Dataframe(value=None, label=t(lang, "transcript"), headers=transcript_headers(lang)),
            ),
        ]


def build_upload(ctl: Controller, lang: str) -> UploadView:
    upload = gr.File(file_count="multiple", label=t(lang, "upload"), height=150, elem_id="esg-upload")
    private_note = gr.Markdown(t(lang, "upload_private"), visible=ctl.shared_mode)
    results = gr.HTML("", elem_id="esg-results", min_height=64)
    return UploadView(upload, private_note, results)


def build_tab(ctl: Controller, lang: str) -> DocsView:
    """The Documents tab's components; call inside ``gr.Tab``."""
    table = gr.Dataframe(
        headers=ctl.docs_headers(lang),
        label=t(lang, "docs_table"),
        interactive=False,
        wrap=True,
        elem_id="esg-docs-table",
    )
    with gr.Row(equal_height=False, elem_classes="esg-bottom"):
        delete_pick = gr.Dropdown([], multiselect=True, label=t(lang, "delete_pick"), scale=4)
        delete_btn = gr.Button(t(lang, "delete"), variant="stop", scale=1, min_width=150)
    delete_out = gr.HTML("")
    with gr.Row():
        transcript_pick = gr.Dropdown([], label=t(lang, "transcript_pick"), scale=4)
        srt_btn = gr.DownloadButton(t(lang, "srt"), visible=False, scale=1)
        vtt_btn = gr.DownloadButton(t(lang, "vtt"), visible=False, scale=1)
    transcript_table = gr.Dataframe(
        headers=transcript_headers(lang),
        label=t(lang, "transcript"),
        interactive=False,
        wrap=True,
        column_widths=["90px", "90px", "auto"],
        elem_id="esg-transcript",
    )
    with gr.Accordion(t(lang, "admin"), open=False, visible=ctl.shared_mode):
        with gr.Row(equal_height=True):
            admin_token = gr.Textbox(type="password", label=t(lang, "admin_token"), scale=4)
            admin_btn = gr.Button(t(lang, "admin_unlock"), scale=1)
        admin_out = gr.Markdown("")
    return DocsView(
        table,
        delete_pick,
        delete_btn,
        delete_out,
        transcript_pick,
        srt_btn,
        vtt_btn,
        transcript_table,
        admin_token,
        admin_btn,
        admin_out,
    )


def listing_outputs(docs: DocsView, scope_docs: gr.Dropdown, scope_company: gr.Dropdown) -> list:
    """Everything that lists the documents, in the order ``listing_updates`` returns their updates."""
    return [docs.table, docs.delete_pick, scope_docs, scope_company, docs.transcript_pick]


def listing_updates(ctl: Controller, ui: UiSession) -> tuple:
    """Fresh values for ``listing_outputs``: the table, the delete list, the scope choices and the media list."""
    rows = ctl.docs_rows(ui)
    names = [str(r[0]) for r in rows]
    return (
        gr.Dataframe(value=rows or None, headers=ctl.docs_headers(ui.lang)),
        gr.Dropdown(choices=ctl.deletable(ui), value=[], multiselect=True),
        gr.Dropdown(choices=names),
        gr.Dropdown(choices=ctl.companies(ui)),
        gr.Dropdown(choices=ctl.media_docs(ui), value=None),
    )


def wire(
    ctl: Controller,
    area: UploadView,
    docs: DocsView,
    listing: list,
    ui_state: gr.State,
    banner: gr.Group,
    rebuild_btn: gr.Button,
) -> None:
    """Connect upload, delete, transcript, rebuild and unlock; ``listing`` is ``listing_outputs(...)``."""

    # One result line per file, progress from the ingest callback.
    def on_upload(files: list[str] | None, ui: UiSession, progress=gr.Progress()):  # noqa: B008 - Gradio's way to ask for a progress bar
        if not files:
            yield (gr.File(), gr.HTML(), *listing_updates(ctl, ui))
            return
        done = []

        def report(fraction: float, message: str) -> None:
            progress(max(0.0, min(1.0, fraction)), desc=message)

        try:
            for result in ctl.ingest(files, ui, progress=report):
                done.append(result)
                yield (gr.File(), results_html(done), *listing_updates(ctl, ui))
        except RagError as exc:
            raise gr.Error(str(exc)) from exc
        yield (None, results_html(done), *listing_updates(ctl, ui))

    area.upload.upload(
        on_upload,
        [area.upload, ui_state],
        [area.upload, area.results, *listing],
        concurrency_limit=1,
        concurrency_id="ingest",
        show_progress="full",
        show_progress_on=[area.results],  # one bar, under the upload box, not one per output
    )

    def on_delete(names: list[str], ui: UiSession):
        try:
            lines = ctl.delete(names or [], ui)
        except RagError as exc:
            raise gr.Error(str(exc)) from exc
        return (lines_html(lines), *listing_updates(ctl, ui))

    docs.delete_btn.click(on_delete, [docs.delete_pick, ui_state], [docs.delete_out, *listing], concurrency_id="ingest")

    def on_transcript(name: str | None, ui: UiSession):
        if not name:
            return gr.Dataframe(value=None), gr.DownloadButton(visible=False), gr.DownloadButton(visible=False)
        try:
            rows, srt, vtt = ctl.transcript(name, ui)
        except RagError as exc:
            raise gr.Error(str(exc)) from exc
        return (
            gr.Dataframe(value=rows, headers=transcript_headers(ui.lang)),
            gr.DownloadButton(value=srt, visible=True),
            gr.DownloadButton(value=vtt, visible=True),
        )

    docs.transcript_pick.change(
        on_transcript, [docs.transcript_pick, ui_state], [docs.transcript_table, docs.srt_btn, docs.vtt_btn]
    )

    def on_rebuild(ui: UiSession, progress=gr.Progress()):  # noqa: B008 - Gradio's way to ask for a progress bar
        if not ctl.can_write_shared(ui):
            raise gr.Error("only the administrator can rebuild the shared knowledge base")
        try:
            done = ctl.rebuild(lambda f, m: progress(max(0.0, min(1.0, f)), desc=m))
        except RagError as exc:
            raise gr.Error(str(exc)) from exc
        problem = ctl.assistant.kb_status()
        return (gr.Group(visible=problem is not None), results_html(done), *listing_updates(ctl, ui))

    rebuild_btn.click(
        on_rebuild,
        [ui_state],
        [banner, area.results, *listing],
        concurrency_limit=1,
        concurrency_id="ingest",
        show_progress_on=[area.results],
    )

    def on_unlock(token: str, ui: UiSession):
        try:
            note = ctl.unlock(token, ui)
        except RagError as exc:
            raise gr.Error(str(exc)) from exc
        return ("", note, gr.Markdown(visible=False), *listing_updates(ctl, ui))

    docs.admin_btn.click(
        on_unlock, [docs.admin_token, ui_state], [docs.admin_token, docs.admin_out, area.private_note, *listing]
    )
