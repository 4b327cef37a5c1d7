"""Chunking and key lines: fast unit tests on constructed text, and the real PDFs against the real tokenizer."""

from __future__ import annotations

import functools
import re

import pytest

from rag.chunk import (
    APPROX_SAFETY,
    E5_WINDOW,
    approx_tokens,
    chunk_pages,
    figures,
    is_heading,
    key_line,
    split_clauses,
    split_sentences,
    split_to_fit,
)
from rag.pdf import load_pdf
from rag.types import DocMeta, Page

ZH_SENTENCE_END = "。！？；!?"


def _words(n: int, seed: str = "word") -> str:
    return " ".join(f"{seed}{i}" for i in range(n))


def _squash(text: str) -> str:
    return "".join(text.split())


_load = functools.cache(load_pdf)  # each PDF parsed once per module, however many tests read it


# --- token estimate --------------------------------------------------------------------------------------------


def test_approx_tokens_counts_prefix_and_grows_with_text():
    assert approx_tokens("") == 5  # "passage: " + <s> + </s>
    assert approx_tokens("a b c") < approx_tokens("a b c d e f g")
    assert approx_tokens("中国的ESG整合") > approx_tokens("中国")


TYPICAL = [
    "Our targets are to reduce our Scope 1 and 2 emissions by 15% by 2025 and 50% by 2030 (relative to 2018 levels).",
    "投资组合经理及分析师正逐渐将环境、社会和治理（Environmental，Social，Governance，以下简称 ESG）因素纳入投资决策。",
    "第三条 每年上市公司年度报告披露工作结束后，本所对上年12月31日前已在本所上市的公司信息披露工作进行考核。",
    "Adjusted EBITDAR $ 957,307 $ 3,497,254 $ 1,234.5 million; 32.6Mt CO2e; 1.5°C; €9.0 billion; 327,000",
    "MGM RESORTS INTERNATIONAL AND SUBSIDIARIES RECONCILIATIONS OF LAS VEGAS STRIP RESORTS NET REVENUES",
]
ATYPICAL = [
    "Talzenna (talazoparib) Combination with Xtandi (enzalutamide) for DNA Damage Repair (DDR)-deficient mCSPC",
    "methane (CH4), nitrous oxide (N2O), hydrofluorocarbons (HFCs), perfluorocarbons (PFCs) and sulphur hexafluoride",
]


@pytest.mark.parametrize("text", TYPICAL)
def test_approx_tokens_over_estimates_the_real_tokenizer(embedder, text):
    long = " ".join([text] * 6)  # paragraph-sized, where the estimate is calibrated
    assert approx_tokens(long) >= embedder.token_count(long)
    assert approx_tokens(long) <= 1.6 * embedder.token_count(long)  # and not wildly so


@pytest.mark.parametrize("text", ATYPICAL)
def test_approx_tokens_under_estimates_rare_words_within_the_safety_margin(embedder, text):
    long = " ".join([text] * 6)
    assert embedder.token_count(long) <= APPROX_SAFETY * approx_tokens(long)


# --- sentences, clauses, hard splits ---------------------------------------------------------------------------


def test_split_sentences_english_skips_abbreviations_and_decimals():
    text = (
        "Emissions fell 6% to 32.6Mt in 2023. Targets, e.g. the 2030 goal, are aligned with 1.5°C. "
        "See Fig. 3 for details! Did we meet it? Yes. Mr. J. Smith of Rio Tinto Ltd. agreed."
    )
    assert split_sentences(text) == [
        "Emissions fell 6% to 32.6Mt in 2023.",
        "Targets, e.g. the 2030 goal, are aligned with 1.5°C.",
        "See Fig. 3 for details!",
        "Did we meet it?",
        "Yes.",
        "Mr. J. Smith of Rio Tinto Ltd. agreed.",
    ]


def test_split_sentences_chinese():
    text = "公司治理是最重要的因素。环境议题正在被接受！这是真的吗？是的；“我们同意。”然后结束"
    assert split_sentences(text) == [
        "公司治理是最重要的因素。",
        "环境议题正在被接受！",
        "这是真的吗？",
        "是的；",
        "“我们同意。”",
        "然后结束",
    ]


def test_split_clauses():
    assert split_clauses("风险管理、客户要求，以及信托责任：均为驱动因素") == [
        "风险管理、",
        "客户要求，",
        "以及信托责任：",
        "均为驱动因素",
    ]
    assert split_clauses("first part, second part; third: fourth") == [
        "first part,",
        "second part;",
        "third:",
        "fourth",
    ]


def test_split_to_fit_prefers_sentence_then_clause_then_words():
    sentences = [f"Sentence {i} talks about {_words(12, 'topic')}." for i in range(10)]
    text = " ".join(sentences)
    pieces = split_to_fit(text, 120, approx_tokens)
    assert len(pieces) > 1
    assert all(approx_tokens(p) <= 120 for p in pieces)
    assert all(p.endswith(".") for p in pieces)  # cut at sentence ends only
    assert _squash(" ".join(pieces)) == _squash(text)

    clause_sentence = ", ".join(_words(15, f"c{i}x") for i in range(6)) + "."
    pieces = split_to_fit(clause_sentence, 80, approx_tokens)
    assert len(pieces) > 1 and _squash(" ".join(pieces)) == _squash(clause_sentence)
    assert all(approx_tokens(p) <= 80 for p in pieces)
    assert all(p.endswith((",", ".")) for p in pieces)

    no_marks = _words(400)
    pieces = split_to_fit(no_marks, 100, approx_tokens)
    assert all(approx_tokens(p) <= 100 for p in pieces)
    assert " ".join(pieces) == no_marks  # cut between words, nothing lost


def test_split_to_fit_chinese_without_punctuation_cuts_between_characters():
    text = "环境社会治理信息披露" * 200
    pieces = split_to_fit(text, 100, approx_tokens)
    assert len(pieces) > 5 and all(approx_tokens(p) <= 100 for p in pieces)
    assert "".join(pieces) == text


# --- headings, figures, key line -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Scope 2 reporting changes",
        "4.1 Climate action",
        "一、总则",
        "第二章 考核内容和标准",
        "（一）信息披露",
        "了解氣候相關風險",
    ],
)
def test_headings_detected(text):
    assert is_heading(text)


@pytest.mark.parametrize(
    "text",
    [
        "Our targets are to reduce our Scope 1 and 2 emissions by 15% by 2025.",
        "32.6Mt CO2e",
        "• Renewable energy",
        "Source: company data",
        "Technician with pre-reduced product at the BlueSmelting project in Sorel-Tracy, Canada",
        "我们的主要研究发现有：",
        "公司治理是投资者在其投资过程中整合最多的 ESG 因素，而参与调研的受访者希望环境议题被更多融入。",
        "and the need to integrate our ambitions",
    ],
)
def test_non_headings_rejected(text):
    assert not is_heading(text)


def test_figures_pick_amounts_percentages_and_years():
    text = "Emissions were 32.6Mt CO2e in 2023, 6% below 2018; we invested US$1.2 billion and 80万亿美元 by 2030."
    figs = figures(text)
    assert figs[:4] == ["32.6Mt CO2e", "6%", "US$1.2 billion", "80万亿"]
    assert "2023" in figs and "2018" in figs


def test_key_line_is_short_and_informative():
    meta = DocMeta(company="Rio Tinto", year=2023, language="en")
    text = (
        "Our Scope 1 and 2 emissions were 32.6Mt CO2e in 2023. This is 6% below our 2018 baseline of 34.5Mt CO2e "
        "and slightly below our adjusted 2022 emissions of 32.7Mt CO2e. " + _words(200)
    )
    key = key_line(text, "Where we are today", meta)
    assert approx_tokens(key) <= 64
    assert key.startswith("Rio Tinto 2023 | Where we are today | Our Scope 1 and 2 emissions were 32.6Mt")
    assert "6%" in key and "34.5Mt CO2e" in key
    assert key_line(text, "Where we are today", meta, max_tokens=30).count("|") >= 2
    assert approx_tokens(key_line(text, "H " * 100, meta, max_tokens=30)) <= 30


def test_key_line_chinese(embedder):
    meta = DocMeta(company="深圳证券交易所", year=2020, language="zh")
    text = "第三条每年上市公司年度报告披露工作结束后，本所对上年12月31日前已在本所上市的公司信息披露工作进行考核。" * 3
    key = key_line(text, "第一章 总则", meta, count_tokens=embedder.token_count)
    assert embedder.token_count(key) <= 64
    assert key.startswith("深圳证券交易所 2020 | 第一章 总则 | 第三条每年上市公司")


# --- chunking: constructed pages -------------------------------------------------------------------------------


def _pages() -> list[Page]:
    p1 = "\n\n".join(
        [
            "Scope 2 reporting changes",
            "In 2023 we updated our Scope 2 reporting. " + _words(60, "alpha") + ".",
            "A second paragraph follows. " + _words(50, "beta") + ".",
        ]
    )
    p2 = "\n\n".join(
        [
            "and it continues on the next page. " + _words(30, "gamma") + ".",
            "Water stewardship",
            "Water use fell 5% in 2023. " + _words(400, "delta") + ".",
        ]
    )
    p3 = "Closing words on the third page."
    p4 = "Fourth page text that must never share a chunk with page two. " + _words(10, "eps") + "."
    return [Page(1, p1), Page(2, p2), Page(3, p3), Page(4, p4)]


def test_chunks_respect_budget_pages_and_keep_all_text():
    pages = _pages()
    meta = DocMeta(company="Acme", year=2023)
    chunks = chunk_pages(pages, file="a.pdf", doc_id="doc1", meta=meta, max_tokens=128)
    assert all(approx_tokens(c.text) <= 128 for c in chunks)
    for c in chunks:
        last = c.source.last_page or c.source.page
        assert last - c.source.page <= 1  # never more than two pages
        assert c.source.file == "a.pdf" and c.doc_id == "doc1" and c.meta == meta
        assert c.key and approx_tokens(c.key) <= 64
    # Nothing lost, nothing duplicated, order kept (no overlap).
    assert _squash("".join(c.text for c in chunks)) == _squash("".join(p.text for p in pages))
    # Headings: the section's chunks carry it.
    water = [c for c in chunks if "delta5" in c.text or "delta300" in c.text]
    assert water and all(c.heading == "Water stewardship" for c in water)
    assert chunks[0].heading == "Scope 2 reporting changes" and chunks[0].text.startswith("Scope 2 reporting changes")
    # A chunk never ends on a heading.
    assert all(not is_heading(c.text.split("\n")[-1]) for c in chunks)


def test_chunk_ids_are_stable_and_unique():
    pages = [*_pages(), Page(5, "Same text.\n\nSame text."), Page(6, "Same text.")]
    a = chunk_pages(pages, file="a.pdf", doc_id="doc1", meta=DocMeta(), max_tokens=32)
    b = chunk_pages(pages, file="a.pdf", doc_id="doc1", meta=DocMeta(), max_tokens=32)
    c = chunk_pages(pages, file="a.pdf", doc_id="doc2", meta=DocMeta(), max_tokens=32)
    assert [x.id for x in a] == [x.id for x in b]
    assert len({x.id for x in a}) == len(a)
    assert not {x.id for x in a} & {x.id for x in c}


def test_paragraph_cut_by_page_break_spans_two_pages():
    pages = [
        Page(1, "Intro heading\n\nThe programme covers forty sites and"),
        Page(2, "continues with twelve more in 2024.\n\nAnother topic."),
    ]
    chunks = chunk_pages(pages, file="a.pdf", doc_id="d", meta=DocMeta())
    assert len(chunks) == 1
    assert chunks[0].source.page == 1 and chunks[0].source.last_page == 2
    assert "forty sites and continues with twelve" in chunks[0].text
    assert chunks[0].source.label() == "a.pdf, pp. 1–2"


def test_real_counter_is_used_and_window_never_exceeded(embedder):
    para = "排放减少了百分之三十并且投资继续增加" * 60 + "。"  # one ~700-token Chinese sentence
    pages = [Page(1, para + "\n\n" + _words(900))]
    chunks = chunk_pages(
        pages, file="x.pdf", doc_id="d", meta=DocMeta(), max_tokens=480, count_tokens=embedder.token_count
    )
    assert len(chunks) >= 3
    assert all(embedder.token_count(c.text) <= 480 for c in chunks)
    assert _squash("".join(c.text for c in chunks)) == _squash(pages[0].text)


# --- chunking: real PDFs ---------------------------------------------------------------------------------------


def test_chinese_pdfs_cut_at_chinese_sentence_ends_within_window(testdata, embedder):
    """Every zh_pdfs document, small budget to force cuts inside paragraphs: cuts fall on 。！？； (or a clause mark
    for sentences longer than the budget), and no chunk exceeds the budget in real tokens."""
    cut_ends: list[str] = []
    for path in sorted((testdata / "zh_pdfs").glob("*.pdf")):
        pages = _load(path)
        paragraphs = {p for page in pages for p in page.text.split("\n\n")}
        chunks = chunk_pages(
            pages, file=path.name, doc_id="d", meta=DocMeta(language="zh"), max_tokens=96,
            count_tokens=embedder.token_count,
        )  # fmt: skip
        assert chunks
        for c in chunks:
            assert embedder.token_count(c.text) <= 96
            last = c.text.split("\n")[-1]
            if last not in paragraphs and re.search("[\u4e00-\u9fff]", last):
                cut_ends.append(last[-1])  # this chunk ends inside a paragraph
    assert len(cut_ends) > 50
    at_sentence = sum(ch in ZH_SENTENCE_END for ch in cut_ends)
    at_clause = sum(ch in "，、：,:" for ch in cut_ends)
    assert at_sentence / len(cut_ends) >= 0.6, (at_sentence, len(cut_ends))
    assert (at_sentence + at_clause) / len(cut_ends) >= 0.9


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        ("zh_pdfs", "bkcfaesg_integration_chinafinal_chineseversion_535531.pdf"),
        ("zh_pdfs", "hkex-esg-reporting-guide.pdf"),
        ("esg_pdfs", "climretrieve_bhp_climate_change_report_2020.pdf"),
        ("esg_pdfs", "cfb_samsung_electronics_sustainability_report_2024.pdf"),
        ("finance_pdfs", "financebench_JOHNSON_JOHNSON_2022Q4_EARNINGS.pdf"),
    ],
)
def test_default_counter_never_exceeds_the_real_window(testdata, embedder, folder, name):
    """At the largest allowed budget (480) and the default estimate, no chunk passes 512 real tokens; chunks span at
    most two pages and keep every character of the pages."""
    pages = _load(testdata / folder / name)
    chunks = chunk_pages(pages, file=name, doc_id="d", meta=DocMeta(), max_tokens=480)
    real = [embedder.token_count(c.text) for c in chunks]
    assert max(real) <= E5_WINDOW
    assert all((c.source.last_page or c.source.page) - c.source.page <= 1 for c in chunks)
    assert _squash("".join(c.text for c in chunks)) == _squash("".join(p.text for p in pages))
    assert all(embedder.token_count(c.key) <= 80 for c in chunks)


def test_rio_tinto_chunks_cite_the_right_page(testdata):
    path = testdata / "esg_pdfs" / "climretrieve_rio_tinto_climate_change_report_2023.pdf"
    chunks = chunk_pages(_load(path), file=path.name, doc_id="d", meta=DocMeta(company="Rio Tinto", year=2023))
    hit = [c for c in chunks if "Scope 1 and 2 emissions were 32.6Mt CO2e in 2023" in c.text]
    assert len(hit) == 1 and hit[0].source.page == 12
    assert "32.6Mt CO2e" in hit[0].key and hit[0].key.startswith("Rio Tinto 2023 | ")
    assert "Decarbonising our operations" in hit[0].heading or "Scope 1 and 2" in hit[0].heading
