"""The RAG chain (LangChain runnables): condense a follow-up -> retrieve -> budgeted prompt -> stream -> citations.

    condense (LLM, only with history) | retrieve (scoped) | respond (sources, tokens, done)

``respond`` refuses without calling the LLM when retrieval says what is missing or finds nothing relevant (best
dense cosine below ``settings.min_dense_score``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace

from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda

from rag.citation import locate_pages
from rag.errors import RagError
from rag.followup import follow_up, resolve_relative_years
from rag.ground import check
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
from rag.translate import QueryTranslator, fuse
from rag.types import Answer, Event, Query, Retrieval, Retriever, Scope

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


@dataclass(frozen=True)
class Turn:
    """State passed along the chain for one question."""

    question: str
    history: tuple[tuple[str, str], ...] = ()
    scope: Scope = Scope()
    language: str = "en"
    standalone: str = ""
    retrieval: Retrieval | None = None
    query: Query | None = None  # the router's Query: its text and embedding serve retrieval when nothing was rewritten
    translated: str = ""  # the question in the documents' other language (cross-lingual retrieval), if asked


class RagChain:
    """Answers one question at a time from a retriever and an LLM; cheap to construct, safe to share.

    ``stream`` yields ``sources`` (the passages shown to the model: passage ``[n]`` is ``hits[n-1]``), then
    ``token`` pieces, then ``done`` with the final Answer. The streamed pieces are provisional: the final
    ``text`` is the verified one (rag/ground.py: unsupported sentences removed, marks re-pointed, or a refusal when
    nothing verifiable is left), so show ``answer.text`` once ``done`` arrives.
    """

    def __init__(
        self,
        retriever: Retriever,
        llm: LLM,
        settings: Settings,
        gate: float | None = None,
        *,
        ground: bool = True,
        translator: QueryTranslator | None = None,
        languages: Callable[[Scope], Collection[str]] | None = None,
    ) -> None:
        """``gate``: P(yes) below which the passages are judged not to hold the answer (``None``: the calibrated
        value for the model, off for uncalibrated ones; ``0``: off). Only ``YesNoScorer`` LLMs are gated.
        ``ground``: check the reply against its passages (``rag.ground``; off only to measure without it).
        ``translator``: also retrieve with the question translated into the other language, when ``languages``
        (the document languages within a scope; ``None``: assume both) holds it."""
        self.retriever = retriever
        self.llm = llm
        self.settings = settings
        self.gate = GATE_THRESHOLDS.get(llm.name, DEFAULT_GATE) if gate is None else gate
        self.ground = ground
        self.translator = translator
        self.languages = languages
        self.chain: Runnable[Turn, Event] = (
            RunnableLambda(self._condense, name="condense")
            | RunnableLambda(self._retrieve, name="retrieve")
            | RunnableLambda(self._cross_lingual, name="cross_lingual")
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
        """The LLM rewrite of a follow-up, with the last turns as context. Relative years ("the previous fiscal
        year", 上一财年) are first made concrete, so the rewrite must keep the year (``clean_rewrite``)."""
        start = time.perf_counter()
        question = resolve_relative_years(turn.question, turn.history)
        if question != turn.question:
            log.info("relative year: %r -> %r", turn.question, question)
        messages = rewrite_messages(question, turn.history)
        raw = "".join(self.llm.stream(messages, max_tokens=REWRITE_MAX_TOKENS, stop=("\n",)))
        standalone = clean_rewrite(raw, question, turn.history)
        log.info("rewrote %r -> %r in %.2f s", turn.question, standalone, time.perf_counter() - start)
        return replace(turn, standalone=standalone)

    def _retrieve(self, turn: Turn) -> Turn:
        q = turn.query
        if q is not None and q.vector is not None and turn.standalone in (turn.question, q.text):
            # Not rewritten: search with the router's text (greeting removed) and its embedding, not a second one.
            return replace(turn, retrieval=self.retriever.retrieve(q.text, turn.scope, vector=q.vector))
        return replace(turn, retrieval=self.retriever.retrieve(turn.standalone, turn.scope))

    def _cross_lingual(self, turn: Turn) -> Turn:
        """Also retrieve with the question translated into the other language (when documents in it are in scope)
        and fuse the two rankings, so a Chinese question finds English pages (and the other way round)."""
        r = turn.retrieval
        if self.translator is None or r is None or r.missing:
            return turn
        target = "en" if turn.language == "zh" else "zh"
        if self.languages is not None and target not in self.languages(turn.scope):
            return turn
        translated = self.translator.translate(turn.standalone, target)
        if not translated:
            return turn
        other = self.retriever.retrieve(translated, turn.scope)
        return replace(turn, retrieval=fuse(r, other, self.settings.top_k, self.settings.rrf_k), translated=translated)

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
        base = Answer(
            "",
            ROUTE,
            hits=retrieval.hits,
            question=turn.question,
            standalone_question=turn.standalone,
            translated_question=turn.translated,
        )
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
        yield Event(
            "done", answer=finalize(raw, prompt.hits, turn.language, replace(base, hits=prompt.hits), self.ground)
        )

    # --- public API ---------------------------------------------------------------------------------------------

    def stream(
        self,
        question: str,
        history: Sequence[tuple[str, str]] = (),
        scope: Scope = Scope(),
        query: Query | None = None,
    ) -> Iterator[Event]:
        """Answer ``question`` (given earlier ``(user, assistant)`` exchanges) as a stream of events. ``query``: the
        router's ``Query`` for it (language detected and embedding computed once per message)."""
        question = (question or "").strip()
        if not question:
            raise RagError("the question is empty: type a question about your documents")
        turn = Turn(
            question,
            tuple((u or "", a or "") for u, a in history),
            scope,
            query.language if query is not None else detect_language(question),
            query=query,
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


def finalize(raw: str, hits, language: str, base: Answer, ground: bool = True) -> Answer:
    """The final Answer from the model's full reply: citations mapped to ``hits``, refusals recognised, and (with
    ``ground``) the grounding contract enforced: a sentence stating a figure or name no cited passage holds is
    re-cited or removed (``Answer.removed``), citations are marked ``verified``, and an answer left without a
    citation becomes a refusal saying what the passages do not state."""
    if not raw:
        reason = "模型没有给出回答" if language == "zh" else "the model gave no answer"
        return replace(base, text=refusal_text(language, reason), refused=True, reason=reason)
    if is_refusal(raw):
        # A refusal has no sources: strip marks so text and citations agree.
        return replace(base, text=strip_citations(raw), refused=True, reason=refusal_reason_from_text(raw, language))
    text, citations = extract_citations(repoint_citations(attribute_citations(tidy_marks(raw), hits), hits), hits)
    if ground:
        # The translation gives the question's words in the other script: a Chinese answer's figure is then checked
        # for what it is about in an English passage too ("内部碳价" -> "internal carbon price").
        question = " ".join(filter(None, (base.standalone_question or base.question, base.translated_question)))
        g = check(text, hits, language, question)
        base = replace(base, checks=g.checks, removed=g.removed)
        if g.refusal is not None:
            return replace(base, text=refusal_text(language, g.refusal), refused=True, reason=g.refusal)
        text, citations = extract_citations(g.text, hits)
        citations = tuple(replace(c, verified=c.n in g.verified) for c in citations)
    return replace(base, text=text, citations=locate_pages(text, citations))
