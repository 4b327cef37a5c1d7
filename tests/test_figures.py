"""Figure extraction and normalisation (rag/text.py, Figures section): the same quantity written in different formats
and languages compares equal. English sides are sentences from the shared reports (page named), Chinese sides are
how an answer in Chinese states them; Chinese sentences are from the shared Chinese documents."""

from __future__ import annotations

import pytest

from rag.figures import chinese_number, extract_figures, figure_in, figure_matches, in_unit, label_unit

# (English text from a shared report, the same figure as a Chinese answer writes it)
CROSS_LINGUAL = [
    # SUEZ SD progress report 2023, p. 3 (pypdf wraps the line between the number and its scale)
    ("In 2023, we treated 2.8\nbillion m3 of wastewater", "2023年处理了28亿立方米污水"),
    ("we produced \n2.7 million tonnes of secondary raw materials", "生产了270万吨再生原料"),
    ("reduced its overall Scope 1 and 2 GHG emissions by 4.2%", "范围一和范围二排放减少了4.2 %"),
    ("emissions were reduced by 11.3%", "排放减少了百分之十一点三"),
    # SUEZ p. 10: "M€" after a number
    ("29 M€ From 2023 45 millions of euros", "2900万欧元"),
    # the examples
    ("4.26 million", "426万"),
    ("US$760 million", "7.6亿美元"),
    ("FY2024", "2024财年"),
    ("1,117 employees", "1117名员工"),
    ("31 December 2023", "2023年12月31日"),
    ("Costco's total emissions were 174M MT CO2e in FY22", "2022财年排放总量为1.74亿吨二氧化碳当量"),
]


@pytest.mark.parametrize(("english", "chinese"), CROSS_LINGUAL)
def test_a_figure_written_in_chinese_matches_the_english_report(english, chinese):
    en, zh = extract_figures(english), extract_figures(chinese)
    assert zh, chinese
    for claim in zh:
        assert figure_in(claim, en), (claim, en)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("37.4 %", "37.4%"),
        ("1,117", "1117"),
        ("FY2024", "fiscal year 2024"),
        ("FY24", "FY2024"),
        ("€1.2bn", "EUR 1,200 million"),
        ("2.5 Mt CO2e", "2,500,000 tonnes of CO2e"),
        ("100 GWh", "100,000 MWh"),
        ("2,346", "2 346"),  # narrow no-break space as thousands separator (French-style reports)
        ("１２％", "12%"),  # full-width digits and percent sign
        ("December 31, 2023", "31 December 2023"),
        ("5 percentage points", "5个百分点"),
    ],
)
def test_the_same_figure_in_two_formats_matches(a, b):
    fa, fb = extract_figures(a.replace("2 346", "2\u202f346")), extract_figures(b.replace("2 346", "2\u202f346"))
    assert len(fa) == 1 and len(fb) == 1, (fa, fb)
    assert figure_matches(fa[0], fb[0]) and figure_matches(fb[0], fa[0])


def test_chinese_sentences_from_the_shared_documents():
    # A股上市公司ESG评级分析报告2020, p. 5
    text = "环境指标的披露率从40.4%提升到49.2%；2020年约有27%的上市公司发布了ESG报告"
    figs = extract_figures(text)
    assert [(f.kind, f.value) for f in figs] == [("percent", 40.4), ("percent", 49.2), ("year", 2020), ("percent", 27)]
    # ESGDisclosure-in-China, p. 10: a footnote number glued after a percent is a separate number, not part of it
    figs = extract_figures("（中国的数据为53%和47%）17")
    assert [f.value for f in figs if f.kind == "percent"] == [53, 47]


@pytest.mark.parametrize(
    ("claim", "fact"),
    [
        ("1.2亿", "12 million"),  # off by ten
        ("37.4%", "37.4 million"),  # a percent is not an amount
        ("US$760 million", "€760 million"),  # another currency
        ("2.8 billion m3", "2.8 billion tonnes"),  # another unit
        ("FY2023", "FY2024"),
        ("40%", "37.4%"),  # not a rounding of it
        ("4 million", "4.4 million"),  # one significant digit: no rounding allowed
        ("2023年12月31日", "30 December 2023"),
    ],
)
def test_different_figures_do_not_match(claim, fact):
    (c,) = extract_figures(claim)
    (f,) = extract_figures(fact)
    assert not figure_matches(c, f), (c, f)


def test_rounding_to_the_claims_precision_matches():
    (fact,) = extract_figures("4,263,000 tonnes")
    assert figure_matches(extract_figures("4.3 million tonnes")[0], fact)
    assert figure_matches(extract_figures("426万吨")[0], fact)
    (pct,) = extract_figures("38.6%")
    assert figure_matches(extract_figures("39%")[0], pct)


def test_a_table_in_millions_matches_the_amount_it_states():
    # a table headed "(US$ million)" holds "760"
    (fact,) = extract_figures("760")
    assert figure_matches(extract_figures("US$760 million")[0], fact)
    assert figure_matches(extract_figures("7.6亿美元")[0], fact)
    assert not figure_matches(extract_figures("7.7亿美元")[0], fact)


def test_ranges_share_their_unit():
    figs = extract_figures("a 10-15% cut, 2.5 to 3 million tonnes")
    assert [(f.kind, f.value) for f in figs] == [("percent", 10), ("percent", 15), ("number", 2.5e6), ("number", 3e6)]


@pytest.mark.parametrize(
    "text",
    ["Scope 1 and 2 emissions", "SDGs 6, 7 and 13", "ISO 14001", "CO2 and PM2.5", "COVID-19", "5G", "第3页", "[2][3]"],
)
def test_labels_codes_and_citation_marks_are_not_figures(text):
    assert extract_figures(text) == []


def test_years_fiscal_years_and_dates():
    figs = extract_figures("By 2030, FY22 and fiscal 2023; 二〇二三年; 2023年12月; 2024-03-31")
    assert [(f.kind, f.value, f.month, f.day) for f in figs] == [
        ("year", 2030, None, None),
        ("fiscal_year", 2022, None, None),
        ("fiscal_year", 2023, None, None),
        ("year", 2023, None, None),
        ("date", 2023, 12, None),
        ("date", 2024, 3, 31),
    ]
    # a year matches a fiscal year or a date of that year, and a month-year matches a full date of that month
    (year,) = extract_figures("2023")
    (date,) = extract_figures("31 December 2023")
    assert figure_matches(year, date)
    assert figure_matches(extract_figures("2023年12月")[0], date)
    assert not figure_matches(date, year)  # a stated day needs a passage that states it


@pytest.mark.parametrize(
    ("text", "value"),
    [("三十七点四", 37.4), ("二〇二三", 2023), ("一百二十万", 1_200_000), ("十五", 15), ("两亿", 2e8), ("一些", None)],
)
def test_chinese_numerals(text, value):
    assert chinese_number(text) == value


def test_amounts_with_chinese_scales_and_units():
    figs = extract_figures("用电100千瓦时，排放1.2万吨，投资3.5亿元")
    assert [(f.value, f.unit, f.currency) for f in figs] == [
        (1e5, "Wh", None),
        (1.2e4, "t", None),
        (3.5e8, None, "CNY"),
    ]


@pytest.mark.parametrize(
    ("label", "cell", "claim"),
    [
        ("Renewable energy (PJ)", "156", "156 PJ"),  # Rio Tinto's data table
        ("Sales KRW 1 trillion", "258.9", "258.9万亿韩元"),  # Samsung's, asked in Chinese
        ("Investment in EHS KRW 100 million", "20,284", "KRW 2.03 trillion"),  # rounded
        ("营业收入（亿元）", "1,234.5", "1234.5亿元"),
        ("Revenue (€ bn)", "6.9", "69亿欧元"),
        ("Waste (1,000 tonnes)", "3,733", "3,733 thousand tonnes"),
        ("Scope 1 + Scope 2 (kilotons of CO2 eq.)", "1,069", "1,069千吨"),
    ],
)
def test_a_bare_cell_is_read_in_the_unit_its_row_label_ends_with(label, cell, claim):
    unit = label_unit(label)
    assert unit is not None, label
    (fact,) = extract_figures(cell)
    assert figure_matches(extract_figures(claim)[0], in_unit(fact, unit))


@pytest.mark.parametrize(
    "label", ["Scope 1 emissions", "Sites over 1 million m3", "Employees (number)", "Scope 1 (2)", "员工人数（人）"]
)
def test_a_label_without_a_unit_at_its_end_gives_none(label):
    assert label_unit(label) is None


def test_a_cell_in_its_row_unit_is_no_other_amount():
    unit = label_unit("Renewable energy (PJ)")
    (fact,) = extract_figures("156")
    assert not figure_matches(extract_figures("156 TJ")[0], in_unit(fact, unit))
    assert not figure_matches(extract_figures("156 million tonnes")[0], in_unit(fact, unit))
    assert in_unit(extract_figures("45%")[0], unit) is None  # a cell stating its own unit keeps it
