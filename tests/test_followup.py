"""Follow-up detection: a standalone question is never rewritten; one that refers back is.

Fast tests of the lexical rule and of the chain with a scripted LLM; the real-model conversation tests are in
tests/test_answer.py (the follow-up resolved by the bundled LLM) and the conversation set is measured by
benchmarks/rewrite.py.
"""

from __future__ import annotations

import json

import pytest

from rag.answer import RagChain
from rag.cli import load_history
from rag.errors import RagError
from rag.followup import follow_up
from rag.llm import ScriptedLLM
from tests.test_answer import SETTINGS, FakeRetriever

HISTORY = [("How much wastewater did SUEZ treat in 2023?", "2.8 billion m3 [1].")]


@pytest.mark.parametrize(
    "question",
    [
        "How much wastewater did SUEZ treat in 2023?",  # the case: asked again, it must stay the same
        "What is SUEZ's wastewater treatment target?",
        "How does Siemens measure its emissions?",  # "its" refers to a name in the question itself
        "Which products that are taxonomy-aligned did Orange sell?",  # "that" as a conjunction
        "What targets does Samsung set for this year?",
        "What did the speaker ask his fellow Americans to do?",  # "his" refers to "the speaker"
        "Who won the World Cup in 2022?",
        "SUEZ 2023年处理了多少废水？",  # a Chinese question naming the company in Latin letters
        "三星电子2023年的用水量是多少？",
        "尤其是哪些行业的ESG披露较好？",  # 尤其 is not the pronoun 其
        "What is the environmental weight of the IT services sector in EcoVadis?",  # the acronym IT is not "it"
        "中证800成分股ESG评级B+以上的比例是多少？",  # 以上 here is "or above", not "the above"
        "What is the boiling point of water?",  # a definite noun phrase that is not a report's referent
    ],
)
def test_a_standalone_question_needs_no_history(question):
    assert follow_up(question, HISTORY).needs_history is False


@pytest.mark.parametrize(
    ("question", "cue"),
    [
        ("and in 2022?", "continues"),
        ("What about Scope 3?", "continues"),
        ("Scope 3?", "fragment"),
        ("What is its target?", "'its'"),
        ("What did the company emit in 2022?", "'the company'"),
        ("Is that figure audited?", "'that'"),
        ("What did he say about water?", "'he'"),
        ("那范围3呢？", "continues"),
        ("该公司的目标是什么？", "'该公司'"),
        ("其中多少来自欧洲？", "'其中'"),
        ("2022年呢？", "呢"),
        ("Which CDP reports has it submitted?", "'it'"),  # a subject pronoun after the verb, even after a name
        ("What is the target for 2027?", "without saying whose"),
        ("上一财年是多少？", "'上一'"),
    ],
)
def test_a_question_that_refers_back_needs_history(question, cue):
    result = follow_up(question, HISTORY)
    assert result.needs_history is True
    assert cue in result.cue


def test_nothing_needs_history_when_there_is_none():
    assert follow_up("and in 2022?", ()).needs_history is False


def test_a_standalone_second_question_reaches_retrieval_unchanged_without_an_llm_call():
    llm = ScriptedLLM(["SUEZ treated 2.8 billion m3 [1]."])
    retriever = FakeRetriever()
    question = "How much wastewater did SUEZ treat in 2023?"
    history = [("What is Costco's emissions target?", "A 39% cut by 2030 [1].")]
    answer = RagChain(retriever, llm, SETTINGS).ask(question, history=history)
    assert len(llm.calls) == 1  # the answer only: no rewrite call
    assert retriever.calls[0][0] == question
    assert answer.standalone_question == question


def test_a_follow_up_still_goes_through_the_rewrite():
    llm = ScriptedLLM(["How much wastewater did SUEZ treat in 2022?", "2.7 billion m3 [1]."])
    retriever = FakeRetriever()
    answer = RagChain(retriever, llm, SETTINGS).ask("and in 2022?", history=HISTORY)
    assert len(llm.calls) == 2
    assert retriever.calls[0][0] == "How much wastewater did SUEZ treat in 2022?"
    assert answer.standalone_question == "How much wastewater did SUEZ treat in 2022?"


def test_history_file_is_read_as_question_answer_pairs(tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps([["Q1", "A1 [1]"], ["Q2", "A2"]]), encoding="utf-8")
    assert load_history(path) == [("Q1", "A1 [1]"), ("Q2", "A2")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ('{"q": "a"}', "JSON list"),
        ('[["only a question"]]', "history item 0"),
        ('[["Q", 3]]', "history item 0"),
    ],
)
def test_a_bad_history_file_names_the_problem(tmp_path, content, message):
    path = tmp_path / "history.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RagError, match=message):
        load_history(path)


def test_a_missing_history_file_is_a_clear_error(tmp_path):
    with pytest.raises(RagError, match="cannot read the history file"):
        load_history(tmp_path / "nope.json")


def test_a_rewrite_that_changed_nothing_or_switched_language_falls_back_to_the_context_form():
    from rag.prompt import clean_rewrite

    history = [("三星电子2023年的范围1排放是多少？", "约120万吨 [1]。")]
    # The model answered in English: the Chinese follow-up keeps its language and gains the earlier question.
    assert clean_rewrite("What is Samsung's range 2 emissions?", "范围2呢？", history) == (
        "范围2呢？ (三星电子2023年的范围1排放是多少？)"
    )
    english = [("What was SUEZ's gender equality index score in 2023?", "83.6 [1].")]
    assert clean_rewrite("What is the target for 2027?", "What is the target for 2027?", english) == (
        "What is the target for 2027? (SUEZ, 2023)"
    )
    # A real rewrite in the question's language is kept.
    resolved = "三星电子2023年的范围2排放是多少？"
    assert clean_rewrite(resolved, "范围2呢？", history) == resolved
