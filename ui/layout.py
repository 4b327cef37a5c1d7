"""The page: header and language toggle, the rebuild banner, the three tabs, the footer; and the handlers that span
tabs (page load, language toggle). ``build_ui(assistant)`` builds it and loads no model.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from rag.assistant import Assistant
from rag.storage import Storage
from ui import chat, documents, evaluation
from ui.controller import Controller, UiSession
from ui.i18n import t
from ui.render import esc, footer_text, header_html
from ui.warmup import Warmup


def build_ui(
    assistant: Assistant,
    media_dir: Path | None = None,
    storage: Storage | None = None,
    warmup: Warmup | None = None,
) -> gr.Blocks:
    """Build the interface over ``assistant`` (loads no model; the knowledge base is read when a page loads).
    ``storage`` (from ``rag.storage``) is described in the footer; ``warmup``: the models loading since start-up,
    whose status the page shows and a first question waits for. The ``Controller`` is ``demo.controller``."""
    ctl = Controller(assistant, media_dir, warmup)
    lang0 = "en"

    # Gradio keeps every upload in its cache until restart; private documents must not linger: hourly sweep, 1 day.
    with gr.Blocks(title="ESG Document Assistant", fill_width=False, delete_cache=(3600, 86400)) as demo:
        demo.controller = ctl  # for tests and benchmarks; ``demo.evaluator`` below

        def new_ui_session() -> UiSession:
            return ctl.new_session()

        ui_state = gr.State(new_ui_session)  # a plain function: gr.State deep-copies a bound method's object

        with gr.Row(equal_height=True):
            header = gr.HTML(header_html(lang0), elem_id="esg-header-box", js_on_load=None)
            lang_radio = gr.Radio(
                [("English", "en"), ("中文", "zh")],
                value=lang0,
                show_label=False,
                container=False,
                elem_id="esg-lang",
                scale=0,
                min_width=190,
            )
        # What the server is preparing at start-up; polled each second until the models are ready.
        status = gr.Markdown("", visible=warmup is not None, elem_id="esg-status")
        status_timer = gr.Timer(1.0, active=warmup is not None)
        with gr.Group(visible=False, elem_id="esg-banner") as banner:
            banner_text = gr.Markdown()
            rebuild_btn = gr.Button(t(lang0, "rebuild"), variant="primary", size="sm")

        with gr.Tabs():
            with gr.Tab(t(lang0, "tab_chat"), id="chat") as tab_chat, gr.Row():
                with gr.Column(scale=7):
                    conversation = chat.build_conversation(lang0)
                with gr.Column(scale=3, min_width=280):
                    scope = chat.build_scope(lang0)
                    upload = documents.build_upload(ctl, lang0)
            with gr.Tab(t(lang0, "tab_docs"), id="docs") as tab_docs:
                docs = documents.build_tab(ctl, lang0)
            with gr.Tab(t(lang0, "tab_eval"), id="eval") as tab_eval:
                evals = evaluation.build(ctl, lang0)
        footer = gr.Markdown(footer_text(lang0, storage), elem_id="esg-footer")

        listing = documents.listing_outputs(docs, scope.docs, scope.company)
        chat.wire(ctl, conversation, scope, ui_state)
        documents.wire(ctl, upload, docs, listing, ui_state, banner, rebuild_btn)
        evaluation.wire(evals, ui_state)
        demo.evaluator = evals.evaluator  # for tests

        def on_load(ui: UiSession, request: gr.Request):
            accept = (request.headers.get("accept-language", "") if request else "").lower()
            ui.lang = "zh" if accept.startswith("zh") else "en"
            problem = ctl.assistant.kb_status()
            banner_update = gr.Group(visible=problem is not None)
            text = f"**⚠ {t(ui.lang, 'kb_banner')}:** {esc(problem or '')}"
            lists = documents.listing_updates(ctl, ui) if problem is None else (gr.Dataframe(),) + (gr.Dropdown(),) * 4
            return (ui.lang, banner_update, text, *lists)

        demo.load(on_load, [ui_state], [lang_radio, banner, banner_text, *listing])

        def on_status(ui: UiSession):
            if warmup is None:
                return gr.Markdown(visible=False), gr.Timer(active=False)
            return gr.Markdown(warmup.status(ui.lang), visible=True), gr.Timer(active=not warmup.ready.is_set())

        demo.load(on_status, [ui_state], [status, status_timer], queue=False, show_progress="hidden")
        status_timer.tick(on_status, [ui_state], [status, status_timer], queue=False, show_progress="hidden")

        def relabel(lang: str, rows: list[list[object]]) -> list[tuple[gr.components.Component, object]]:
            """Every (component, update) the language toggle changes, header first; ``rows``: the documents table."""
            return [
                (header, header_html(lang)),
                (tab_chat, gr.Tab(label=t(lang, "tab_chat"))),
                (tab_docs, gr.Tab(label=t(lang, "tab_docs"))),
                (tab_eval, gr.Tab(label=t(lang, "tab_eval"))),
                *conversation.relabel(lang),
                *scope.relabel(lang),
                *upload.relabel(lang),
                (rebuild_btn, gr.Button(value=t(lang, "rebuild"))),
                *docs.relabel(lang, rows, ctl.docs_headers(lang)),
                *evals.relabel(lang),
                (footer, gr.Markdown(footer_text(lang, storage))),
                (status, gr.Markdown(warmup.status(lang) if warmup is not None else "")),
            ]

        def on_lang(lang: str, ui: UiSession):
            ui.lang = lang
            return tuple(update for _, update in relabel(lang, ctl.docs_rows(ui)))

    # The components the toggle changes, listed outside the Blocks: an update made inside would render as a second
    # copy of the component. No rows: building reads no knowledge base.
    toggled = [component for component, _ in relabel(lang0, [])]
    with demo:
        lang_radio.change(on_lang, [lang_radio, ui_state], toggled, queue=False)
    return demo
