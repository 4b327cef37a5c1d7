"""The RAG chain (LangChain runnables): condense a follow-up -> retrieve -> budgeted prompt -> stream -> citations.

    condense (LLM, only with history) | retrieve (scoped) | respond (sources, tokens, done)

``respond`` refuses without calling the LLM when retrieval says what is missing or finds nothing relevant (best
dense cosine below ``settings.min_dense_score``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda

from rag.citation import locate_pages
from rag.errors import RagError
from rag.followup import follow_up
from rag.llm import BUNDLED, LLM, YesNoScorer
from rag.prompt import (
    attribute_citations,
    build_prompt,
    clean_rewrite,
    detect_language,
    extract_citations,
    gate_messages,
    is_refusal,
    no_match_reason,
    refusal_reason_from_text,
    refusal_text,
    repoint_citations,
    rewrite_messages,
    silent_reason,
    strip_citations,
    tidy_marks,
)
from rag.settings import Settings
from rag.types import Answer, Event, Retrieval, Scope

log = logging.getLogger(__name__)

REWRITE_MAX_TOKENS = 64
ROUTE = "rag"

# Answerability gate: before answering, the model's P(yes) that the passages state the answer; below the model's
# threshold the question is refused without generating. Calibrated on the English ESG QA set (benchmarks/answers.py,
# docs/BENCHMARKS.md): for the 1.5B model, P(yes) of answerable and unanswerable questions overlap (AUC 0.82), and
# it falls as passages grow (one passage per page holds up to three chunks). With those passages 0.50 balances
# them best (92% of answerable kept, 56% of unanswerable refused; 0.58 kept 61% and refused 78%). Other questions
# to ask, a few-shot prompt and focused passages separated no better (benchmarks/gate.py, docs/BENCHMARKS.md).
# The 0.5B model leans to "no" on everything (P(yes) 0.21-0.31 either way), so its gate is off. Models not
# calibrated here are not gated.
GATE_THRESHOLDS: dict[str, float] = {
    BUNDLED["large"].display: 0.50,
    BUNDLED["small"].display: 0.0,
}
DEFAULT_GATE = 0.0


class Retriever(Protocol):
    def retrieve(self, query: str, scope: Scope = Scope(), k: int | None = None) -> Retrieval: ...


@dataclass(frozen=True)
class Turn:
    """State passed along the chain for one question."""

    question: str
    history: tuple[tuple[str, str], ...] = ()
    scope: Scope = Scope()
    language: str = "en"
    standalone: str = ""
    retrieval: Retrieval | None = None


class RagChain:
    """Answers one question at a time from a retriever and an LLM; cheap to construct, safe to share.

    ``stream`` yields ``sources`` (the passages shown to the model: passage ``[n]`` is ``hits[n-1]``), then
    ``token`` pieces, then ``done`` with the final Answer, whose ``text`` may differ from the streamed pieces
    by the removal of invalid ``[n]`` marks: show ``answer.text`` once ``done`` arrives.
    """

    def __init__(self, retriever: Retriever, llm: LLM, settings: Settings, gate: float | None = None) -> None:
        """``gate``: P(yes) below which the passages are judged not to hold the answer (``None``: the calibrated
        value for the model, off for uncalibrated ones; ``0``: off). Only ``YesNoScorer`` LLMs are gated."""
        self.retriever = retriever
        self.llm = llm
        self.settings = settings
        self.gate = GATE_THRESHOLDS.get(llm.name, DEFAULT_GATE) if gate is None else gate
        self.chain: Runnable[Turn, Event] = (
            RunnableLambda(self._condense, name="condense")
            | RunnableLambda(self._retrieve, name="retrieve")
            | RunnableGenerator(self._respond, name="respond")
        )

    # --- steps --------------------------------------------------------------------------------------------------

    def _condense(self, turn: Turn) -> Turn:
        """Rewrite a follow-up into a standalone question. A question complete on its own passes through unchanged,
        with no LLM call (``rag.followup``): only one that refers back to the conversation is rewritten."""
        cue = follow_up(turn.question, turn.history)
        if not cue.needs_history:
            return replace(turn, standalone=turn.question)
        log.info("follow-up (%s): rewriting %r with the history", cue.cue, turn.question)
        return self._rewrite(turn)

    def _rewrite(self, turn: Turn) -> Turn:
        """The LLM rewrite of a follow-up, with the last turns as context."""
        start = time.perf_counter()
        messages = rewrite_messages(turn.question, turn.history)
        raw = "".join(self.llm.stream(messages, max_tokens=REWRITE_MAX_TOKENS, stop=("\n",)))
        standalone = clean_rewrite(raw, turn.question, turn.history)
        log.info("rewrote %r -> %r in %.2f s", turn.question, standalone, time.perf_counter() - start)
        return replace(turn, standalone=standalone)

    def _retrieve(self, turn: Turn) -> Turn:
        return replace(turn, retrieval=self.retriever.retrieve(turn.standalone, turn.scope))

    def _refusal_reason(self, turn: Turn) -> str | None:
        r = turn.retrieval
        assert r is not None
        best = r.best_dense
        if r.missing or not r.hits or (best is not None and best < self.settings.min_dense_score):
            return no_match_reason(turn.language, r.scope, r.missing)
        return None

    def _respond(self, turns: Iterator[Turn]) -> Iterator[Event]:
        received = list(turns)  # the upstream lambda emits exactly one Turn
        turn = received[-1]
        assert turn.retrieval is not None
        retrieval = turn.retrieval
        base = Answer("", ROUTE, hits=retrieval.hits, question=turn.question, standalone_question=turn.standalone)
        reason = self._refusal_reason(turn)
        if reason is not None:
            text = refusal_text(turn.language, reason)
            yield Event("sources")
            yield Event("token", text=text)
            yield Event("done", answer=replace(base, text=text, refused=True, reason=reason))
            return

        s = self.settings
        prompt = build_prompt(
            turn.standalone,
            retrieval.hits,
            self.llm,
            s.max_answer_tokens,
            s.max_prompt_tokens,
            turn.language,
            s.passage_tokens,
        )
        log.debug(
            "prompt: %d tokens, %d passages (%d dropped, %d cut)",
            prompt.tokens,
            len(prompt.hits),
            prompt.dropped,
            prompt.truncated,
        )
        yield Event("sources", hits=prompt.hits)
        if self.gate > 0 and isinstance(self.llm, YesNoScorer):
            p_yes = self.llm.yes_probability(gate_messages(prompt))
            log.debug("answerability P(yes) = %s (gate %.2f)", p_yes, self.gate)
            if p_yes is not None and p_yes < self.gate:
                reason = silent_reason(turn.language)
                text = refusal_text(turn.language, reason)
                yield Event("token", text=text)
                yield Event("done", answer=replace(base, text=text, hits=prompt.hits, refused=True, reason=reason))
                return
        pieces: list[str] = []
        for piece in self.llm.stream(prompt.messages, max_tokens=s.max_answer_tokens):
            pieces.append(piece)
            yield Event("token", text=piece)
        raw = "".join(pieces).strip()
        yield Event("done", answer=finalize(raw, prompt.hits, turn.language, replace(base, hits=prompt.hits)))

    # --- public API ---------------------------------------------------------------------------------------------

    def stream(self, question: str, history: Sequence[tuple[str, str]] = (), scope: Scope = Scope()) -> Iterator[Event]:
        """Answer ``question`` (given earlier ``(user, assistant)`` exchanges) as a stream of events."""
        question = (question or "").strip()
        if not question:
            raise RagError("the question is empty: type a question about your documents")
        turn = Turn(
            question,
            tuple((u or "", a or "") for u, a in history),
            scope,
            detect_language(question),
        )
        yield from self.chain.stream(turn)

    def ask(self, question: str, history: Sequence[tuple[str, str]] = (), scope: Scope = Scope()) -> Answer:
        """``stream`` consumed: the final Answer."""
        answer = None
        for event in self.stream(question, history, scope):
            if event.kind == "done":
                answer = event.answer
        assert answer is not None
        return answer


def finalize(raw: str, hits, language: str, base: Answer) -> Answer:
    """The final Answer from the model's full reply: citations mapped to ``hits``, refusals recognised."""
    if not raw:
        reason = "模型没有给出回答" if language == "zh" else "the model gave no answer"
        return replace(base, text=refusal_text(language, reason), refused=True, reason=reason)
    if is_refusal(raw):
        # A refusal has no sources: strip marks so text and citations agree.
        return replace(base, text=strip_citations(raw), refused=True, reason=refusal_reason_from_text(raw, language))
    text, citations = extract_citations(repoint_citations(attribute_citations(tidy_marks(raw), hits), hits), hits)
    return replace(base, text=text, citations=locate_pages(text, citations))
