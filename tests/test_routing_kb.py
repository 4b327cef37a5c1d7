"""Routing with the knowledge base in view (issue 16), on real parts: a real mp4 upload (PyAV, Whisper, e5, faiss),
the real router, the real LLM for the cited answer.

Speech shares no ESG vocabulary with the router's examples, so only the knowledge base's own content can tell that a
question is about it; a world-knowledge question with nothing in the knowledge base must still not go to ``rag``.
"""

from __future__ import annotations

import json
import re

import pytest

from rag.assistant import Assistant
from rag.cli import answer_json, main
from rag.index import KnowledgeBase
from rag.kb_evidence import EvidenceScorer
from rag.route import Router
from rag.settings import Settings
from rag.types import Chunk, Document, Query, Source
from tests.test_route import CountingEmbedder  # counts query embeddings

SPEAKER_QUESTION = "What did the speaker ask his fellow Americans to do?"
WORLD_CUP = "Who won the football World Cup in 2022?"


@pytest.fixture(scope="module")
def speech(tmp_path_factory, jfk_video, embedder, llm_small, whisper):
    """An Assistant with an empty shared knowledge base and a session holding the uploaded JFK video (private)."""
    settings = Settings.from_env(
        environ={}, kb_dir=tmp_path_factory.mktemp("speech_kb"), model_cache=Settings().model_cache, llm="small"
    )
    counting = CountingEmbedder(embedder)
    assistant = Assistant(settings, embedder=counting, llm=llm_small, transcriber=whisper)
    session = assistant.new_session()
    [result] = list(assistant.ingest([jfk_video], session=session, private=True))
    assert result.ok, result.message
    assert assistant.kb.documents() == [] and session.kb.documents()[0].kind == "media"
    return assistant, session, counting


def _kb_with(embedder, text: str, name: str = "speech.mp4") -> KnowledgeBase:
    """An in-memory knowledge base holding one real-embedded passage (a transcript line at 3-14 s)."""
    kb = KnowledgeBase(None, embedder.name, embedder.dim)
    chunk = Chunk("c1", "d1", text, Source(name, start_s=3.0, end_s=14.0))
    kb.add(Document(name, "d1", "media", 1, duration_s=14.0), [chunk], embedder.passages([text]))
    return kb


@pytest.mark.slow
def test_question_about_an_uploaded_video_routes_to_rag_and_cites_the_moment(speech):
    assistant, session, _ = speech
    answer = assistant.answer(SPEAKER_QUESTION, session=session)
    assert answer.route == "rag", answer.route_reason
    assert "american" in answer.route_reason, answer.route_reason  # the knowledge-base evidence is reported
    assert not answer.refused and answer.citations, answer.text
    label = answer.citations[0].source.label()
    assert label.startswith("jfk_speech.mp4 ▶ 00:"), label
    assert answer_json(answer)["route_reason"] == answer.route_reason
    # Without "the speaker" (a reference to a recording) only the knowledge base's content can tell.
    route = assistant.router.classify("What did he ask his fellow Americans to do?", kbs=[assistant.kb, session.kb])
    assert route.label == "rag" and route.reason == "kb:lexical", route.explanation
    assert assistant.router.classify("What did he ask his fellow Americans to do?").label != "rag"  # alone


def test_a_greeting_still_gets_the_greeting_with_the_video_in_view(speech):
    assistant, session, _ = speech
    answer = assistant.answer("hello", session=session)
    assert answer.route == "chitchat" and answer.route_reason.startswith("rule:greeting")
    assert answer.text == next(e for e in assistant.router.entries if e.id == "greeting").answer


def test_world_knowledge_with_no_overlap_is_not_sent_to_rag(speech, tmp_path, embedder):
    assistant, session, _ = speech
    answer = assistant.answer(WORLD_CUP, session=session)
    assert answer.route != "rag", answer.route_reason
    # An empty knowledge base: nothing could answer it.
    empty = Assistant(
        Settings.from_env(environ={}, kb_dir=tmp_path / "kb", model_cache=Settings().model_cache), embedder=embedder
    )
    answer = empty.answer(WORLD_CUP)
    assert answer.route in ("out_of_scope", "chitchat") and "kb:" in answer.route_reason, answer.route_reason
    # ... while an ESG question on the empty knowledge base still goes to the documents (they say what is missing).
    assert empty.router.classify("What are Costco's scope 3 emissions?", kbs=[empty.kb]).label == "rag"


def test_one_query_embedding_per_question_shared_by_router_and_retrieval(speech):
    assistant, session, counting = speech
    retrieval_calls = []
    retriever_class = type(assistant.retriever(session))
    original = retriever_class.retrieve

    def spy(self, query, *args, **kwargs):
        retrieval_calls.append(kwargs.get("vector") is not None)
        return original(self, query, *args, **kwargs)

    assistant.router.warm()  # the example bank is embedded (or read from the disk cache) before counting
    retriever_class.retrieve = spy
    try:
        counting.queries.clear()
        events = list(assistant.ask("hi, " + SPEAKER_QUESTION, session=session))
    finally:
        retriever_class.retrieve = original
    assert [e.route for e in events if e.kind == "route"] == ["rag"]
    assert counting.queries == [SPEAKER_QUESTION]  # once, without the greeting; the router's vector was reused
    assert retrieval_calls == [True]


def test_knowledge_base_statistics_follow_the_knowledge_base_as_it_changes(embedder, tmp_path):
    settings = Settings.from_env(environ={}, kb_dir=tmp_path, model_cache=Settings().model_cache)
    router = Router(embedder, settings=settings)
    kb = KnowledgeBase(None, embedder.name, embedder.dim)
    question = "What almost hurt the small dog?"
    assert router.classify(question, kbs=[kb]).label != "rag"  # empty: nothing to ask
    text = "The child almost hurt the small dog."
    kb.add(
        Document("clip.wav", "d1", "media", 1, duration_s=3.0),
        [Chunk("c1", "d1", text, Source("clip.wav", start_s=0.0, end_s=3.0))],
        embedder.passages([text]),
    )
    route = router.classify(question, kbs=[kb])
    assert route.label == "rag" and route.reason == "kb:lexical", route.explanation
    assert "dog" in route.detail
    kb.delete("clip.wav")
    assert router.classify(question, kbs=[kb]).label != "rag"  # the cache was invalidated by the deletion


def test_evidence_is_relative_to_the_knowledge_base(embedder, tmp_path):
    """The same words weigh differently in a one-line transcript and in an unrelated knowledge base."""
    settings = Settings.from_env(environ={}, kb_dir=tmp_path, model_cache=Settings().model_cache)
    router = Router(embedder, settings=settings)
    background = router._ensure().background
    speech_kb = _kb_with(embedder, "And so my fellow Americans, ask not what your country can do for you.")
    other_kb = _kb_with(embedder, "Sunday is the best part of the week.", "sunday.wav")
    scorer = EvidenceScorer()
    q = Query(SPEAKER_QUESTION, "en", embedder.query(SPEAKER_QUESTION))
    on_speech = scorer.evidence([speech_kb], q.text, q.vector, "en", background)
    on_other = scorer.evidence([other_kb], q.text, q.vector, "en", background)
    assert "american" in on_speech.terms[0] or "fellow" in on_speech.terms[0], on_speech
    assert on_speech.lexical > on_other.lexical and on_speech.dense_z > on_other.dense_z, (on_speech, on_other)
    both = scorer.evidence([other_kb, speech_kb], q.text, q.vector, "en", background)
    assert both.terms == on_speech.terms and both.dense_z == pytest.approx(on_speech.dense_z)


def test_ask_json_has_the_route_reason(tmp_path, capsys):
    code = main(["ask", "thanks a lot!", "--json", "--kb", str(tmp_path / "kb")])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["route"] == "chitchat" and data["route_reason"] == "rule:thanks: thanks"


def test_ask_json_with_history_locates_the_page_of_a_passage_that_spans_two_pages(
    assistant, embedder, tmp_path, capsys
):
    """``main(["ask", "--history", FILE, "--json"])`` end to end on the session knowledge base (real embedder, index,
    router and grounding; a scripted LLM): the history file's earlier turn resolves the follow-up, and the citation of
    Costco's passage on pp. 3-4 names p. 4, the page holding the cited sentence (``page``/``page_end``), and the whole
    passage's pages (``passage_pages``)."""
    import shutil

    from rag import assistant as assistant_module
    from rag.llm import ScriptedLLM

    costco = "climretrieve_costco_climate_action_plan.pdf"
    [passage] = [c for c in assistant.kb.chunks([costco]) if (c.source.page, c.source.last_page) == (3, 4)]
    assert "19%" in passage.text[passage.page_starts[0] :]  # the cited figure is on the second page
    standalone = "What share of Costco's global purchased energy was clean energy at the end of 2022?"
    answered: list[int] = []

    def reply(messages) -> str:
        prompt = messages[-1].content
        if "Standalone question:" in prompt:
            return standalone
        [n] = re.findall(rf"\[(\d+)\] \({re.escape(costco)}, pp\. 3–4\)", prompt)
        answered.append(int(n))
        return f"At the end of calendar year 2022, clean energy was 19% of Costco's global purchased energy [{n}]."

    llm = ScriptedLLM(reply)

    class WithTestParts(assistant_module.Assistant):
        def __init__(self, settings, **_):
            super().__init__(settings, embedder=embedder, llm=llm)

    kb = tmp_path / "kb"
    shutil.copytree(assistant.settings.kb_dir, kb)
    history = tmp_path / "history.json"
    history.write_text(
        json.dumps([["What is Costco's Scope 1 and 2 target?", "A 39% absolute reduction by 2030 [1]."]]),
        encoding="utf-8",
    )
    question = "What share of its purchased energy was clean energy at the end of 2022?"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(assistant_module, "Assistant", WithTestParts)
        code = main(["ask", question, "--history", str(history), "--json", "--kb", str(kb)])
    data = json.loads(capsys.readouterr().out)

    assert code == 0 and data["route"] == "rag" and not data["refused"], data
    assert data["question"] == question and data["standalone_question"] == standalone  # the history was read
    assert len(llm.calls) == 2 and len(answered) == 1  # the rewrite, then the answer
    [citation] = data["citations"]
    assert citation["n"] == answered[0] and citation["file"] == costco and citation["verified"] is True
    assert (citation["page"], citation["page_end"], citation["passage_pages"]) == (4, 4, [3, 4])
    assert passage.text in citation["text"]  # the passage (read with what follows it on p. 4)
