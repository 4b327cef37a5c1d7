"""The Chat tab: the conversation, the question box and examples, and the search scope.

A question is taken at once (the box clears, the question shows) and then answered as a stream of HTML snapshots
from ``Controller.ask``: the passages being read, the text as it is written, then the final answer with its sources.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import gradio as gr

from rag.errors import RagError
from ui import server
from ui.controller import Controller, UiSession, make_scope
from ui.i18n import EXAMPLES, t
from ui.render import esc

log = logging.getLogger(__name__)

# Longer questions are cut to their start (and the visitor told): a question is a sentence or two, and a pasted page
# would crowd the passages out of the model's 4,096-token window.
MAX_QUESTION_CHARS = 2000


def scope_choices(lang: str) -> list[tuple[str, str]]:
    return [(t(lang, "scope_all"), "all"), (t(lang, "scope_docs"), "docs"), (t(lang, "scope_company"), "company")]


@dataclass
class ChatView:
    """The conversation column's components."""

    chatbot: gr.Chatbot
    msg: gr.Textbox
    send_btn: gr.Button
    clear_btn: gr.Button
    examples: gr.Examples
    pending: gr.State  # the question taken from the box, handed to the streaming step

    def relabel(self, lang: str) -> list[tuple[gr.components.Component, object]]:
        """(component, update) pairs for the language toggle."""
        return [
            (self.chatbot, gr.Chatbot(label=t(lang, "chat_label"), placeholder=placeholder_html(lang))),
            (self.msg, gr.Textbox(placeholder=t(lang, "placeholder"))),
            (self.send_btn, gr.Button(value=t(lang, "send"))),
            (self.clear_btn, gr.Button(value=t(lang, "clear"))),
            (self.examples.dataset, gr.Dataset(label=t(lang, "examples"))),
        ]


@dataclass
class ScopeView:
    """Where to search: all documents, chosen documents or one company."""

    mode: gr.Radio
    docs: gr.Dropdown
    company: gr.Dropdown

    def relabel(self, lang: str) -> list[tuple[gr.components.Component, object]]:
        return [
            (self.mode, gr.Radio(choices=scope_choices(lang), label=t(lang, "scope"))),
            (self.docs, gr.Dropdown(label=t(lang, "scope_pick_docs"))),
            (self.company, gr.Dropdown(label=t(lang, "scope_pick_company"))),
        ]


def placeholder_html(lang: str) -> str:
    """What an empty conversation shows."""
    return f"<div style='text-align:center;opacity:.7'>{esc(t(lang, 'chat_placeholder'))}</div>"


def build_conversation(lang: str) -> ChatView:
    """The conversation, question box, examples and New-conversation button; call inside the tab's column."""
    # No floating label (it covered the messages scrolled under it); the height follows the conversation, from
    # min_height up to max_height, then it scrolls (a fixed height left a white area under short conversations).
    chatbot = gr.Chatbot(
        label=t(lang, "chat_label"),
        show_label=False,
        height=None,
        min_height=260,
        max_height=620,
        layout="panel",
        latex_delimiters=[],
        feedback_options=None,
        buttons=[],  # its copy buttons would copy our HTML markup, not the answer text
        elem_id="esg-chat",
        placeholder=placeholder_html(lang),
    )
    with gr.Row(equal_height=True):
        msg = gr.Textbox(
            placeholder=t(lang, "placeholder"),
            show_label=False,
            scale=8,
            lines=1,
            max_lines=4,
            autofocus=True,
            elem_id="esg-question",
        )
        send_btn = gr.Button(t(lang, "send"), variant="primary", scale=1, elem_id="esg-send")
    examples = gr.Examples(EXAMPLES, inputs=[msg], label=t(lang, "examples"), examples_per_page=6)
    clear_btn = gr.Button(t(lang, "clear"), size="sm", variant="secondary")
    return ChatView(chatbot, msg, send_btn, clear_btn, examples, gr.State(""))


def build_scope(lang: str) -> ScopeView:
    mode = gr.Radio(scope_choices(lang), value="all", label=t(lang, "scope"), elem_id="esg-scope")
    docs = gr.Dropdown([], multiselect=True, label=t(lang, "scope_pick_docs"), visible=False, elem_id="esg-docs")
    company = gr.Dropdown([], label=t(lang, "scope_pick_company"), visible=False, elem_id="esg-company")
    return ScopeView(mode, docs, company)


def wire(ctl: Controller, view: ChatView, scope: ScopeView, ui_state: gr.State) -> None:
    """Connect the chat's handlers: ask (Enter or the button), new conversation, scope choice."""

    def on_scope_mode(mode: str):
        return gr.Dropdown(visible=mode == "docs"), gr.Dropdown(visible=mode == "company")

    scope.mode.change(on_scope_mode, [scope.mode], [scope.docs, scope.company], queue=False)

    # First take the question (clears the box at once), then stream the answer. Queued (without a limit) so its
    # messages reach the page: Gradio shows gr.Warning only for queued events.
    def take_question(message: str, chat: list, ui: UiSession):
        message = (message or "").strip()
        if not message:
            gr.Warning(t(ui.lang, "empty_question"))
            return gr.Textbox(), chat, ""
        if len(message) > MAX_QUESTION_CHARS:
            total = f"{len(message):,}"
            gr.Warning(t(ui.lang, "long_question").format(total=total, n=f"{MAX_QUESTION_CHARS:,}"))
            message = message[:MAX_QUESTION_CHARS].rstrip()
        return "", [*chat, {"role": "user", "content": esc(message)}], message

    def stream_answer(question: str, chat: list, ui: UiSession, mode: str, docs: Sequence[str], company: str | None):
        if not question:
            return
        chat = list(chat)
        chat.append({"role": "assistant", "content": ctl.renderer.pending(None, (), "", ui.lang)})
        try:
            yield from _wait_for_models(chat, ui)
            yield from _stream(question, chat, ui, mode, docs, company)
        finally:
            server.release_memory()  # after every answer, finished, failed or abandoned: freed heap back to the OS

    def _wait_for_models(chat: list, ui: UiSession):
        """A question that arrives while the models load at start-up waits, saying what is being prepared."""
        warmup = ctl.warmup
        shown = None
        while warmup is not None and not warmup.ready.is_set():
            status = warmup.status(ui.lang)
            if status != shown:
                chat[-1] = {"role": "assistant", "content": ctl.renderer.waiting(status, ui.lang)}
                shown = status
                yield chat
            warmup.ready.wait(0.5)

    def _stream(question: str, chat: list, ui: UiSession, mode: str, docs: Sequence[str], company: str | None):
        try:
            answer_scope = make_scope(mode, docs, company)
            for html_text, _answer in ctl.ask(question, ui, answer_scope):
                chat[-1] = {"role": "assistant", "content": html_text}
                yield chat
        except RagError as exc:
            chat[-1] = {"role": "assistant", "content": ctl.renderer.error(str(exc), ui.lang)}
            yield chat
            raise gr.Error(str(exc)) from exc
        except Exception as exc:  # the boundary: log the cause, tell the user, keep the chat usable
            log.exception("answering %r failed", question)
            message = f"internal error ({type(exc).__name__}); see the server log"
            chat[-1] = {"role": "assistant", "content": ctl.renderer.error(message, ui.lang)}
            yield chat
            raise gr.Error(message) from exc

    ask_inputs = [view.pending, view.chatbot, ui_state, scope.mode, scope.docs, scope.company]
    # Enter, the Ask button, and a click on an example question (after it fills the box) ask.
    for trigger in (view.msg.submit, view.send_btn.click, view.examples.load_input_event.then):
        trigger(
            take_question,
            [view.msg, view.chatbot, ui_state],
            [view.msg, view.chatbot, view.pending],
            concurrency_limit=None,
            show_progress="hidden",
        ).then(stream_answer, ask_inputs, [view.chatbot], concurrency_id="chat")

    def clear_chat(ui: UiSession):
        ui.history.clear()
        return []

    view.clear_btn.click(clear_chat, [ui_state], [view.chatbot], queue=False)
    view.chatbot.clear(clear_chat, [ui_state], [view.chatbot], queue=False)  # the chat's own trash button
