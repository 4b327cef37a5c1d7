"""The text toolkit (rag.text) on real English and Chinese sentences of the kind the reports and answers contain."""

from __future__ import annotations

import re

from rag.text import (
    CITATION,
    CJK_CHARS,
    FULLWIDTH,
    HAN,
    KEY_TERM_STOPWORDS,
    OVERLAP_STOPWORDS,
    SEARCH_STOPWORDS,
    STOPWORDS,
    cjk_bigrams,
    content_tokens,
    count_han,
    detect_language,
    ends_sentence,
    first_sentence,
    has_cjk,
    is_cjk_char,
    is_refusal,
    is_refusal_statement,
    normalize,
    only_states_absence,
    overlap_units,
    search_tokens,
    split_clauses,
    split_sentences,
    split_statements,
    strip_citations,
)

# --- character classes


def test_character_classes():
    assert has_cjk("Rio Tinto 力拓") and not has_cjk("Rio Tinto")
    assert has_cjk("カーボンニュートラル") and has_cjk("탄소중립")  # kana and Hangul are CJK letters (layout)
    assert is_cjk_char("碳") and not is_cjk_char("C") and not is_cjk_char("")
    assert not is_cjk_char("，")  # punctuation is not a letter
    assert count_han("2023年温室气体排放") == 7
    assert count_han("カーボン탄소") == 0  # Han only: kana and Hangul are not Chinese
    wide = re.compile(f"[{HAN}{FULLWIDTH}]")
    assert all(wide.match(c) for c in "碳，。（１２％") and not wide.match("a")
    assert re.fullmatch(f"[{CJK_CHARS}]+", "温室气体カーボン탄소")


# --- language


def test_detect_language_questions():
    assert detect_language("What are Costco's scope 3 emissions?") == "en"
    assert detect_language("腾讯2022年的碳排放是多少？") == "zh"
    assert detect_language("Costco 的 ESG 目标是什么？") == "zh"  # mixed: leans Chinese
    assert detect_language("What does 碳中和 mean in the Tencent report?") == "en"  # a quoted term stays English
    assert detect_language("") == "en"
    assert detect_language("2023") == "en"


def test_detect_language_documents():
    # Questions, documents and transcripts are judged by one rule, so their languages compare.
    assert detect_language("Our targets are to reduce emissions by 15% by 2025.") == "en"
    assert detect_language("投资组合经理及分析师正逐渐将环境、社会和治理（ESG）因素纳入投资决策过程。") == "zh"
    assert detect_language("如何編備環境、社會及管治報告 HKEX ESG") == "zh"  # traditional characters
    assert detect_language("Rio Tinto 力拓 annual climate report for investors") == "en"


def test_normalize():
    assert normalize("排放  减少 １２％\n\tin ２０２３") == "排放 减少 12% in 2023"


# --- sentences


def test_split_sentences_english_keeps_abbreviations_and_decimals():
    text = "Emissions fell 4.5% in FY2023, e.g. at the Kennecott site. See Fig. 3 for details. J. Smith chairs it."
    assert split_sentences(text) == [
        "Emissions fell 4.5% in FY2023, e.g. at the Kennecott site.",
        "See Fig. 3 for details.",
        "J. Smith chairs it.",
    ]


def test_split_sentences_chinese():
    text = "公司2023年温室气体排放量为120万吨。目标是2030年前达峰；同时提高可再生能源比例！"
    assert split_sentences(text) == [
        "公司2023年温室气体排放量为120万吨。",
        "目标是2030年前达峰；",
        "同时提高可再生能源比例！",
    ]


def test_split_clauses():
    assert split_clauses("排放下降，用水减少、废弃物回收率提高") == ["排放下降，", "用水减少、", "废弃物回收率提高"]
    assert split_clauses("Scope 1 fell; Scope 2 rose: see page 4") == ["Scope 1 fell;", "Scope 2 rose:", "see page 4"]


def test_ends_sentence():
    assert ends_sentence("We met the target.") and ends_sentence("我们实现了目标。")
    assert ends_sentence("他说：“完成了。”")
    assert ends_sentence("The three pillars are:") and not ends_sentence("The three pillars are:", colons=False)
    assert not ends_sentence("Our Scope") and not ends_sentence("温室气体排放")


def test_first_sentence():
    assert first_sentence("The documents don't answer this. Scope 1 was 5 t [1].") == "The documents don't answer this."
    assert first_sentence("根据已知信息无法回答该问题。报告未提及。") == "根据已知信息无法回答该问题。"
    assert first_sentence("Line one\nLine two") == "Line one"
    assert first_sentence("   ") == ""


def test_split_statements():
    text = "- Scope 1 was 388,500 tCO2e [1].\n- Water use fell 12% (p. 14) [2]. No. 3 plant closed."
    assert split_statements(text) == [
        "Scope 1 was 388,500 tCO2e [1].",
        "Water use fell 12% (p. 14) [2].",
        "No. 3 plant closed.",
    ]
    assert split_statements("No. None of the sites had a spill [1].") == ["No.", "None of the sites had a spill [1]."]
    assert split_statements("- 用水量下降8%[1]。\n- 废弃物回收率为95%[2]！") == [
        "用水量下降8%[1]。",
        "废弃物回收率为95%[2]！",
    ]
    assert split_statements("Scope 1 fell 5%.\n[1]") == ["Scope 1 fell 5%. [1]"]  # a lone mark joins its sentence


# --- tokens and stopwords


def test_cjk_bigrams():
    assert cjk_bigrams("温室气体") == ["温室", "室气", "气体"]
    assert cjk_bigrams("碳") == [] and cjk_bigrams("") == []


def test_search_tokens():
    toks = search_tokens("Scope 1 emissions fell 12.5% in 2023; 温室气体排放")
    assert "emission" in toks and "12.5" in toks and "2023" in toks
    assert "in" not in toks and "温室" in toks and "体排" in toks
    assert search_tokens("the reduced targets") == ["reduc", "target"]
    assert search_tokens("碳 排放") == ["碳", "排放"]  # a one-character run is kept whole
    assert "not" in search_tokens("not disclosed")  # BM25 keeps negations (its own stopword list)


def test_overlap_units():
    units = overlap_units("The plant cut its water use by 12% in 2022.")
    assert units == {"plant", "cut", "water", "use", "12", "2022"}
    assert overlap_units("排放 下降") == {"排放", "放下", "下降"}  # Chinese read as one run, across spaces
    assert overlap_units("力") == set()


def test_content_tokens():
    assert content_tokens("The emissions of our company decreased across sites") == ["emission", "decreased", "site"]
    assert content_tokens("温室气体，碳") == ["温室", "室气", "气体", "碳"]
    assert content_tokens("ＡＢＣ plants") == ["abc", "plant"]  # NFKC first


def test_stopword_lists_are_named_variants_of_one_vocabulary():
    # The search and citation lists are subsets of the judge's list; key-term words are four letters or more.
    assert SEARCH_STOPWORDS <= STOPWORDS and OVERLAP_STOPWORDS <= STOPWORDS
    assert "not" not in SEARCH_STOPWORDS and "not" in OVERLAP_STOPWORDS
    assert {"year", "report", "company"} <= KEY_TERM_STOPWORDS


# --- citations and refusals


def test_citation_pattern_and_strip():
    assert [m.group(1) for m in CITATION.finditer("A [1]. B [2, 3]. C 【4】 D [5-6].")] == ["1", "2, 3", "4", "5-6"]
    assert strip_citations("Water use fell 12% [1][2].") == "Water use fell 12%."
    assert strip_citations("排放下降了30%【1】。") == "排放下降了30%。"
    assert strip_citations("[1] Scope 1 [2, 3] and  Scope 2 [4-5]") == "Scope 1 and Scope 2"
    assert strip_citations("No marks here.") == "No marks here."


def test_is_refusal_reads_the_first_sentence():
    assert is_refusal("The documents don't answer this: the report does not cover biodiversity.")
    assert is_refusal("根据已知信息无法回答该问题：报告未提及生物多样性。")
    assert is_refusal("The passages do not mention water targets [1].")
    # A partial answer is an answer, shown and counted as one.
    assert not is_refusal("Scope 1 was 388,500 tCO2e [1]. The report does not state the Scope 3 target.")
    assert not is_refusal("No. The company does not disclose its scenarios.")
    assert not is_refusal("")


def test_is_refusal_statement_and_only_states_absence():
    assert is_refusal_statement("The report does not disclose its Scope 3 emissions [1].")
    assert is_refusal_statement("报告未提及生物多样性目标。")
    assert not is_refusal_statement("Scope 1 was 388,500 tCO2e [1].")
    assert only_states_absence("Not disclosed. The report does not mention water recycling.")
    assert only_states_absence("No. The company does not disclose its scenarios.")
    assert only_states_absence("")
    assert not only_states_absence("The report does not state the Scope 3 target. Scope 1 was 388,500 tCO2e [1].")
    assert not only_states_absence("There were no significant spills and no fines in 2023 [1].")
