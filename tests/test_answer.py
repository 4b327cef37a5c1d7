"""The RAG chain. Fast tests use a scripted LLM and a fake retriever over real ``Chunk``s; the slow ones run the
real bundled LLM over the real knowledge base (session fixtures)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence

import pytest

from rag.answer import RagChain
from rag.errors import RagError
from rag.llm import ChatMessage, ScriptedLLM
from rag.prompt import REFUSAL, SYSTEM_PROMPT
from rag.settings import Settings
from rag.types import Chunk, DocMeta, Hit, Retrieval, Scope, Source

SETTINGS = Settings.from_env(environ={})

COSTCO = DocMeta(company="Costco", year=2023)
PASSAGES = [
    ("Costco aims to reduce Scope 1 and 2 emissions 39% by 2030 from a 2020 baseline.", 5),
    ("Our beef is sourced from areas not at high risk of deforestation.", 10),
    ("Reusable packaging pilots continued across warehouses.", 11),
    ("The Board's Sustainability Committee oversees climate risk.", 3),
    ("Refrigerant leaks were cut by 10% through monitoring.", 7),
]


def costco_hits(dense: float = 0.86) -> tuple[Hit, ...]:
    return tuple(
        Hit(
            Chunk(f"id{i}", "sha-costco", text, Source("costco_climate_action_plan.pdf", page=page), COSTCO),
            score=1 / (60 + i),
            dense=dense - i / 100,
        )
        for i, (text, page) in enumerate(PASSAGES)
    )


class FakeRetriever:
    """Returns fixed hits; records the queries and scopes it was asked for."""

    def __init__(self, hits: Sequence[Hit] = costco_hits(), missing: str | None = None) -> None:
        self.hits = tuple(hits)
        self.missing = missing
        self.calls: list[tuple[str, Scope]] = []

    def retrieve(self, query: str, scope: Scope = Scope(), k: int | None = None) -> Retrieval:
        self.calls.append((query, scope))
        if self.missing:
            return Retrieval(query, (), scope, self.missing)
        return Retrieval(query, self.hits, scope)


def run(chain: RagChain, question: str, **kw) -> list:
    return list(chain.stream(question, **kw))


def test_events_come_in_order_sources_tokens_done():
    llm = ScriptedLLM(["Costco targets a 39% cut by 2030 [1]."])
    events = run(RagChain(FakeRetriever(), llm, SETTINGS), "What is Costco's emissions target?")
    kinds = [e.kind for e in events]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"token"}
    assert "".join(e.text for e in events if e.kind == "token") == "Costco targets a 39% cut by 2030 [1]."
    answer = events[-1].answer
    assert answer.route == "rag" and not answer.refused
    assert events[0].hits == answer.hits  # passage [n] of the sources panel is passage [n] of the prompt


def test_citations_hold_only_cited_passages_and_match_the_prompt_numbers():
    llm = ScriptedLLM(["Beef comes from low-risk areas [5] and packaging is reused [4][9]."])
    answer = RagChain(FakeRetriever(), llm, SETTINGS).ask("How does Costco adapt?")
    prompt = llm.calls[0][1].content
    assert [c.n for c in answer.citations] == [5, 4]
    for c in answer.citations:
        block = prompt.split(f"\n[{c.n}] (", 1)[1].split("\n[", 1)[0]
        assert c.hit.chunk.text in block
    assert [c.source.page for c in answer.citations] == [10, 3]
    assert "[9]" not in answer.text
    assert {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)} == {5, 4}


def test_lost_in_the_middle_order_reaches_the_model():
    llm = ScriptedLLM(["ok [1]"])
    RagChain(FakeRetriever(), llm, SETTINGS).ask("target?")
    pages = [int(p) for p in re.findall(r"^\[\d+\] \([^)]*p\. (\d+)\)$", llm.calls[0][1].content, flags=re.M)]
    assert pages == [5, 11, 7, 3, 10]  # ranks 1,3,5,4,2


def test_no_history_means_no_rewrite_call():
    llm = ScriptedLLM(["An answer [1]."])
    retriever = FakeRetriever()
    answer = RagChain(retriever, llm, SETTINGS).ask("What is Costco's target?")
    assert len(llm.calls) == 1
    assert retriever.calls == [("What is Costco's target?", Scope())]
    assert answer.standalone_question == "What is Costco's target?"


def test_a_follow_up_is_rewritten_then_retrieved_and_answered():
    llm = ScriptedLLM(["What was Costco's emissions target in 2022?", "In 2022 the target was 39% [1]."])
    retriever = FakeRetriever()
    history = [("What is Costco's emissions target?", "A 39% cut by 2030 [1].")]
    answer = RagChain(retriever, llm, SETTINGS).ask("and in 2022?", history=history)
    assert len(llm.calls) == 2
    rewrite_call, answer_call = llm.calls
    assert rewrite_call[0] == answer_call[0] == ChatMessage("system", SYSTEM_PROMPT)  # shared KV prefix
    assert "Follow-up question: and in 2022?" in rewrite_call[1].content
    assert retriever.calls[0][0] == "What was Costco's emissions target in 2022?"
    assert answer_call[1].content.endswith("Question: What was Costco's emissions target in 2022?")
    assert answer.question == "and in 2022?"
    assert answer.standalone_question == "What was Costco's emissions target in 2022?"


def test_an_unusable_rewrite_falls_back_to_the_question_with_its_context():
    llm = ScriptedLLM(["", "Answer [1]."])
    retriever = FakeRetriever()
    RagChain(retriever, llm, SETTINGS).ask("and in 2022?", history=[("Costco's target?", "a")])
    assert retriever.calls[0][0] == "and in 2022? (Costco target)"


def test_an_uncited_answer_is_attributed_to_the_passage_that_states_it():
    llm = ScriptedLLM(["Costco aims to reduce Scope 1 and 2 emissions 39% by 2030 from a 2020 baseline."])
    answer = RagChain(FakeRetriever(), llm, SETTINGS).ask("What is Costco's target?")
    assert answer.text.endswith("baseline [1].")
    assert [c.hit.chunk.id for c in answer.citations] == ["id0"]


def test_scope_is_passed_to_the_retriever():
    retriever = FakeRetriever()
    scope = Scope(docs=("costco_climate_action_plan.pdf",), year=2023)
    RagChain(retriever, ScriptedLLM(["x [1]"]), SETTINGS).ask("target?", scope=scope)
    assert retriever.calls[0][1] == scope


def test_missing_document_is_refused_without_calling_the_llm():
    llm = ScriptedLLM()
    events = run(RagChain(FakeRetriever(missing="no document for Baidu"), llm, SETTINGS), "Baidu's shareholding?")
    answer = events[-1].answer
    assert llm.calls == []
    assert [e.kind for e in events] == ["sources", "token", "done"]
    assert events[0].hits == ()
    assert answer.refused and answer.citations == ()
    assert answer.text == "The documents don't answer this: no document for Baidu."
    assert events[1].text == answer.text


def test_chinese_refusal_is_in_chinese():
    llm = ScriptedLLM()
    answer = RagChain(FakeRetriever(missing="no document for Baidu"), llm, SETTINGS).ask("百度的股权结构是怎样的？")
    assert answer.refused and answer.text.startswith(REFUSAL["zh"]) and "Baidu" in answer.text
    assert llm.calls == []


def test_nothing_relevant_below_the_dense_threshold_is_refused_without_the_llm():
    llm = ScriptedLLM()
    threshold = SETTINGS.min_dense_score
    retriever = FakeRetriever(costco_hits(dense=threshold - 0.001))
    answer = RagChain(retriever, llm, SETTINGS).ask("What is the capital of France?")
    assert llm.calls == [] and answer.refused
    assert "nothing in the knowledge base is relevant" in answer.reason
    # just above the threshold, the LLM is asked
    llm2 = ScriptedLLM(["Paris [1]."])
    RagChain(FakeRetriever(costco_hits(dense=threshold + 0.001)), llm2, SETTINGS).ask("capital?")
    assert len(llm2.calls) == 1


def test_no_hits_is_refused():
    llm = ScriptedLLM()
    answer = RagChain(FakeRetriever(hits=()), llm, SETTINGS).ask("anything?", scope=Scope(docs=("a.pdf",)))
    assert answer.refused and "selected documents" in answer.reason and llm.calls == []


def test_a_model_refusal_has_no_citations_and_keeps_its_reason():
    llm = ScriptedLLM(["The documents don't answer this: carbon intensity is not disclosed [2]."])
    answer = RagChain(FakeRetriever(), llm, SETTINGS).ask("What is Costco's carbon intensity?")
    assert answer.refused and answer.citations == ()
    assert "[2]" not in answer.text
    assert answer.reason == "carbon intensity is not disclosed"


def test_an_empty_model_reply_becomes_a_refusal():
    answer = RagChain(FakeRetriever(), ScriptedLLM([""]), SETTINGS).ask("target?")
    assert answer.refused and answer.text.startswith(REFUSAL["en"])


def test_empty_question_is_a_clear_error():
    chain = RagChain(FakeRetriever(), ScriptedLLM(), SETTINGS)
    with pytest.raises(RagError, match="empty"):
        chain.ask("   ")


def test_prompt_fits_the_context_window():
    llm = ScriptedLLM(["ok [1]"], n_ctx=400)
    big = [
        Hit(Chunk(f"b{i}", "d", " ".join(["word"] * 200), Source("big.pdf", page=i)), 1.0, dense=0.9)
        for i in range(1, 6)
    ]
    settings = SETTINGS.replace(max_answer_tokens=100, max_prompt_tokens=4000)
    RagChain(FakeRetriever(big), llm, settings).ask("q?")
    used = sum(llm.count_tokens(m.content) + 6 for m in llm.calls[0]) + 4
    assert used + 100 <= 400


def test_the_answerability_gate_refuses_before_generating():
    llm = ScriptedLLM(["never streamed"], yes=[0.2])
    events = run(RagChain(FakeRetriever(), llm, SETTINGS, gate=0.5), "What is Costco's water target?")
    assert [e.kind for e in events] == ["sources", "token", "done"]
    answer = events[-1].answer
    assert answer.refused and answer.citations == () and llm.calls == []
    assert answer.text.startswith("The documents don't answer this: the passages found do not state it")
    assert answer.hits == events[0].hits and len(answer.hits) == 5  # the passages that were read stay visible
    # the gate question extends the answer prompt, so llama.cpp reads the passages once for both
    gate_msgs = llm.yes_calls[0]
    prompt_user = gate_msgs[1].content.split("\n\nDo the passages above state the answer")[0]
    assert prompt_user.endswith("Question: What is Costco's water target?")
    assert gate_msgs[0].content == SYSTEM_PROMPT


def test_the_gate_lets_answerable_questions_through():
    llm = ScriptedLLM(["39% by 2030 [1]."], yes=[0.9])
    answer = RagChain(FakeRetriever(), llm, SETTINGS, gate=0.5).ask("target?")
    assert not answer.refused and len(llm.calls) == 1 and len(llm.yes_calls) == 1
    assert llm.calls[0][1].content == llm.yes_calls[0][1].content.split("\n\nDo the passages")[0]


def test_no_opinion_or_a_disabled_gate_means_answering():
    llm = ScriptedLLM(["ok [1]"], yes=[None])
    assert not RagChain(FakeRetriever(), llm, SETTINGS, gate=0.5).ask("q?").refused
    off = ScriptedLLM(["ok [1]"], yes=[0.0])
    assert not RagChain(FakeRetriever(), off, SETTINGS, gate=0).ask("q?").refused
    assert off.yes_calls == []


def test_chinese_gate_question_is_chinese():
    llm = ScriptedLLM([], yes=[0.1])
    answer = RagChain(FakeRetriever(), llm, SETTINGS, gate=0.5).ask("Costco 的用水目标是什么？")
    assert "请只回答“是”或“否”" in llm.yes_calls[0][1].content
    assert answer.refused and answer.text.startswith(REFUSAL["zh"])


class ClosingLLM(ScriptedLLM):
    """Streams forever; records whether the stream was closed when the consumer stopped reading."""

    def __init__(self) -> None:
        super().__init__(["unused"])
        self.closed = threading.Event()

    def stream(self, messages: Sequence[ChatMessage], max_tokens: int, stop: Sequence[str] = ()) -> Iterator[str]:
        self.calls.append(list(messages))
        try:
            while True:
                yield "word "
        finally:
            self.closed.set()


def test_a_consumer_that_stops_reading_closes_the_llm_stream():
    llm = ClosingLLM()
    events = RagChain(FakeRetriever(), llm, SETTINGS).stream("target?")
    for event in events:
        if event.kind == "token":
            break
    events.close()
    assert llm.closed.is_set()


def test_retriever_errors_propagate():
    class Broken(FakeRetriever):
        def retrieve(self, query, scope=Scope(), k=None):
            raise RagError("knowledge base needs a rebuild")

    with pytest.raises(RagError, match="rebuild"):
        RagChain(Broken(), ScriptedLLM(), SETTINGS).ask("q?")


# --- the real chain: bundled small LLM over the real knowledge base (slow) -------------------------------------------


class CountingLLM:
    """Passes calls to the real model and counts them."""

    def __init__(self, llm) -> None:
        self.llm, self.name, self.n_ctx, self.calls = llm, llm.name, llm.n_ctx, 0

    def count_tokens(self, text: str) -> int:
        return self.llm.count_tokens(text)

    def stream(self, messages, max_tokens, stop=()):
        self.calls += 1
        yield from self.llm.stream(messages, max_tokens, stop)


def _cited_pages(answer) -> set[int]:
    return {p for c in answer.citations for p in range(c.source.page, (c.source.last_page or c.source.page) + 1)}


@pytest.fixture(scope="module")
def real_chain(assistant, llm_small, llm_settings):
    llm = CountingLLM(llm_small)
    return RagChain(assistant.retriever(), llm, llm_settings.replace(kb_dir=assistant.settings.kb_dir)), llm


@pytest.mark.slow
def test_real_answer_cites_the_page_that_holds_it(real_chain):
    chain, _ = real_chain
    events = list(chain.stream("What is Costco's Scope 1 and 2 emission reduction target?"))
    assert events[0].kind == "sources" and events[0].hits
    answer = events[-1].answer
    assert not answer.refused, answer.text
    assert "39" in answer.text
    assert 6 in _cited_pages(answer), (answer.text, [c.source.label() for c in answer.citations])


@pytest.mark.slow
def test_real_question_about_an_absent_company_is_refused_without_the_llm(real_chain):
    chain, llm = real_chain
    before = llm.calls
    answer = chain.ask("What is Baidu's shareholding structure?")
    assert answer.refused and "Baidu" in answer.text and answer.text.startswith("The documents don't answer this")
    assert llm.calls == before


@pytest.mark.slow
def test_real_chinese_question_is_answered_in_chinese_with_a_citation(assistant, llm_default):
    # The default model: the passage that states the recommendation (p. 3-4, "要求公司强制披露适用于中国公司的标准化ESG
    # 指标") is long, and the 0.5B model refuses over it while the 1.5B one answers from it (session 10).
    settings = Settings.from_env(environ={}, kb_dir=assistant.settings.kb_dir, model_cache=Settings().model_cache)
    answer = RagChain(assistant.retriever(), llm_default, settings).ask("这份报告建议证监会要求公司强制披露什么？")
    assert not answer.refused, answer.text
    cjk = len(re.findall(r"[\u4e00-\u9fff]", answer.text))
    assert cjk >= 0.5 * len(re.sub(r"\s", "", answer.text)), answer.text
    assert "指标" in answer.text, answer.text  # the standardised ESG indicators the report recommends
    assert answer.citations and all(c.source.file == "ESGDisclosure-in-China.pdf" for c in answer.citations)
    assert 4 in _cited_pages(answer), answer.citations


@pytest.mark.slow
def test_real_follow_up_is_rewritten_and_answered(real_chain):
    chain, llm = real_chain
    history = [("What were Costco's total emissions across all three scopes in FY22?", "174M MT CO2e, up 10% [1].")]
    before = llm.calls
    answer = chain.ask("And how much did its Scope 1 emissions change?", history=history)
    assert llm.calls == before + 2  # rewrite, then answer
    assert "costco" in answer.standalone_question.lower(), answer.standalone_question
    assert not answer.refused, answer.text
    assert "15" in answer.text and 4 in _cited_pages(answer), answer.text


class RecordingRetriever:
    """The real retriever, recording the queries it is asked for."""

    def __init__(self, retriever) -> None:
        self.retriever, self.queries = retriever, []

    def retrieve(self, query, *args, **kwargs):
        self.queries.append(query)
        return self.retriever.retrieve(query, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.retriever, name)


SUEZ_PDF = "esg_pdfs/cfb_suez_sd_progress_report_2023.pdf"  # "In 2023, we treated 2.8 billion m3 of wastewater" (p. 3)


@pytest.fixture(scope="module")
def suez_chain(kb_settings, embedder, llm_small, llm_settings, testdata, tmp_path_factory):
    """The real chain (bundled small LLM, real retriever) over the SUEZ report beside Costco's plan: the session
    knowledge base holds no SUEZ report, and adding one there would change what the other tests retrieve."""
    from rag.assistant import Assistant
    from tests.fixtures_kb import KB_PDFS

    settings = kb_settings.replace(kb_dir=tmp_path_factory.mktemp("suez_kb") / "knowledge_base")
    kb = Assistant(settings, embedder=embedder)
    results = list(kb.ingest([testdata / SUEZ_PDF, testdata / KB_PDFS[0]]))
    assert all(r.ok for r in results), [r.message for r in results]
    retriever, llm = RecordingRetriever(kb.retriever()), CountingLLM(llm_small)
    return RagChain(retriever, llm, llm_settings.replace(kb_dir=settings.kb_dir)), llm, retriever


@pytest.mark.slow
def test_real_standalone_second_question_after_an_unrelated_turn_is_searched_as_asked(suez_chain):
    """A Costco turn, then a question that names its own company and year: no rewrite (one model call, the answer),
    retrieval gets the question as asked, and the answer cites the SUEZ report's p. 3, which states 2.8 billion m3."""
    chain, llm, retriever = suez_chain
    history = [("What is Costco's Scope 1 and 2 emission reduction target?", "A 39% absolute cut by 2030 [1].")]
    question = "How much wastewater did SUEZ treat in 2023?"
    before, asked = llm.calls, len(retriever.queries)
    answer = chain.ask(question, history=history)
    assert answer.standalone_question == question
    assert retriever.queries[asked:] and set(retriever.queries[asked:]) == {question}, retriever.queries[asked:]
    assert llm.calls == before + 1  # the answer only
    assert not answer.refused, answer.text
    assert "2.8" in answer.text, answer.text
    assert {c.source.file for c in answer.citations} == {"cfb_suez_sd_progress_report_2023.pdf"}, answer.citations
    assert 3 in _cited_pages(answer), (answer.text, [c.source.label() for c in answer.citations])
