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
from rag.followup import follow_up, resolve_relative_years
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
        # Chinese questions with a subject of their own, even with the shapes of an elliptical one:
        "三星电子2023年的范围1排放是多少呢？",  # 呢 after a question word is only a softener
        "是否所有上市公司都要披露ESG报告？",  # opens with 是否 but names ESG reports
        "兴业银行发行了多少只绿色债券？",
        "ESG评级分为几个等级？",
        "什么是范围3排放？",
        "沪深300公司环境指标的披露率从2018年到2020年变化了多少？",  # dev conv-033
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
        ("公用事业板块的ESG披露率呢？", "呢"),  # longer than a fragment, but 呢 with no question word
        ("环境关键绩效指标的目标需要披露哪几项？", "no subject"),  # dev conv-067: "which items", of whose rules?
        ("被评为D的情形有哪些？", "no subject"),  # a passive with no subject
        ("2009年的时候有多少份？", "no subject"),  # a bare time, and "how many" of what?
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
    # The context is the earlier question's subject, less its year: the follow-up names its own.
    assert clean_rewrite("What is the target for 2027?", "What is the target for 2027?", english) == (
        "What is the target for 2027? (SUEZ gender equality index score)"
    )
    # A real rewrite in the question's language is kept.
    resolved = "三星电子2023年的范围2排放是多少？"
    assert clean_rewrite(resolved, "范围2呢？", history) == resolved


def test_a_rewrite_that_drops_the_new_number_falls_back():
    from rag.prompt import clean_rewrite

    history = [("By how much did SUEZ reduce its Scope 1 and 2 emissions between 2021 and 2023?", "By 4.2% [1].")]
    # "What" and "about" survive any rewrite; "3" did not, so this is another question.
    bad = clean_rewrite("What is the company's water withdrawal target?", "What about Scope 3?", history)
    assert bad.startswith("What about Scope 3? (") and "SUEZ" in bad
    good = "What were SUEZ's Scope 3 emissions between 2021 and 2023?"
    assert clean_rewrite(good, "What about Scope 3?", history) == good
    # A resolved year must survive the rewrite.
    siemens = [("What were Siemens' Scope 1 emissions in fiscal 2024?", "347 kt [1].")]
    question = "How about fiscal year 2023?"
    assert clean_rewrite("What were Siemens' Scope 1 emissions in fiscal 2024?", question, siemens) == (
        "How about fiscal year 2023? (Siemens Scope 1 emissions)"
    )


SIEMENS = [("What were Siemens' Scope 1 emissions in fiscal 2024?", "347 thousand t CO2e in fiscal 2024 [1].")]
SAMSUNG = [("What were Samsung Electronics' Scope 1 emissions in 2023?", "3,733 thousand t CO2e in 2023 [1].")]
SIEMENS_ZH = [("西门子2024财年的范围1排放是多少？", "西门子2024财年范围1排放为34.7万吨二氧化碳当量 [1]。")]
FY = [("What was Costco's water use in FY2023?", "12 million m3 [1].")]


@pytest.mark.parametrize(
    ("question", "history", "resolved"),
    [
        ("How about the previous fiscal year?", SIEMENS, "How about fiscal year 2023?"),
        ("And two years earlier?", SAMSUNG, "And in 2021?"),
        ("What was it the year before?", SAMSUNG, "What was it in 2022?"),
        ("And in the prior year?", SAMSUNG, "And in 2022?"),
        ("And the previous year?", SIEMENS, "And in fiscal 2023?"),  # the anchor's form is kept
        ("And the previous year?", FY, "And in FY2022?"),
        ("And the year before last?", SAMSUNG, "And in 2021?"),
        ("And the following year?", SAMSUNG, "And in 2024?"),
        ("How much water did they use that year?", SAMSUNG, "How much water did they use in 2023?"),
        ("And that year's water use?", SAMSUNG, "And the 2023 water use?"),
        ("Compare 2020 with the following year.", SAMSUNG, "Compare 2020 with 2021."),  # the question's own year
        ("上一财年是多少？", SIEMENS_ZH, "2023财年是多少？"),  # dev conv-057
        ("上一年呢？", SAMSUNG, "2022年呢？"),
        ("那两年前呢？", SAMSUNG, "那2021年呢？"),
        ("次年呢？", SAMSUNG, "2024年呢？"),
        ("前一年是多少？", SIEMENS_ZH, "2023财年是多少？"),
        # Left alone: no year to count from, a year already named, "next year" (from today), "2023年前" (before 2023).
        ("And the previous year?", [("What is Costco's target?", "A 39% cut [1].")], "And the previous year?"),
        ("What about the year before 2020?", SAMSUNG, "What about the year before 2020?"),
        ("What is the target for next year?", SAMSUNG, "What is the target for next year?"),
        ("2023年前的排放是多少？", SAMSUNG, "2023年前的排放是多少？"),
        ("以上年份的排放呢？", SAMSUNG, "以上年份的排放呢？"),
        ("And in 2022?", SAMSUNG, "And in 2022?"),
    ],
)
def test_relative_years_become_the_year_they_mean(question, history, resolved):
    assert resolve_relative_years(question, history) == resolved


def test_the_latest_turn_with_a_year_is_the_anchor():
    history = [*SAMSUNG, ("And in 2022?", "3,500 thousand t [1]."), ("What about Scope 2?", "No figure [1].")]
    assert resolve_relative_years("And the year before?", history) == "And in 2021?"


def test_the_rewrite_sees_the_concrete_year_and_must_keep_it():
    llm = ScriptedLLM(["What were Siemens' Scope 1 emissions in fiscal year 2023?", "320 kt [1]."])
    retriever = FakeRetriever()
    answer = RagChain(retriever, llm, SETTINGS).ask("How about the previous fiscal year?", history=SIEMENS)
    assert "Follow-up question: How about fiscal year 2023?" in llm.calls[0][1].content
    assert answer.standalone_question == "What were Siemens' Scope 1 emissions in fiscal year 2023?"
    assert answer.question == "How about the previous fiscal year?"
    # A rewrite that loses the year falls back to the resolved question with its context.
    llm = ScriptedLLM(["What were Siemens' Scope 1 emissions in fiscal 2024?", "347 kt [1]."])
    answer = RagChain(FakeRetriever(), llm, SETTINGS).ask("How about the previous fiscal year?", history=SIEMENS)
    assert answer.standalone_question == "How about fiscal year 2023? (Siemens Scope 1 emissions)"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("question", "history", "year", "subject", "earlier"),
    [
        ("And the previous year?", HISTORY, "2022", "suez", None),
        ("上一财年是多少？", SIEMENS_ZH, "2023", "西门子", None),
        # The literal follow-ups of a new user (issue 18): the year as asked, the subject from the first turn, and
        # not the first turn's year as well.
        ("And in 2022?", HISTORY, "2022", "suez", "2023"),
        ("那2022年呢？", SIEMENS_ZH, "2022", "西门子", "2024"),
    ],
)
def test_real_relative_year_is_resolved(llm_small, llm_settings, question, history, year, subject, earlier):
    """The bundled model rewrites the follow-up; the question that reaches retrieval names the concrete year."""
    retriever = FakeRetriever(missing="nothing")  # refused after retrieval: only the rewrite uses the model
    answer = RagChain(retriever, llm_small, llm_settings).ask(question, history=history)
    standalone = answer.standalone_question
    assert retriever.calls[0][0] == standalone
    assert year in standalone and subject in standalone.lower(), standalone
    assert "previous" not in standalone and "上一" not in standalone, standalone
    assert earlier is None or earlier not in standalone, standalone
