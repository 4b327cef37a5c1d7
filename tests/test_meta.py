"""Document metadata: company, reporting year and language, on constructed pages and on every shared PDF."""

from __future__ import annotations

import functools

import pytest

from rag.meta import detect_company, detect_meta, detect_year, short_name
from rag.pdf import load_pdf
from rag.types import Page

_load = functools.cache(load_pdf)  # each PDF parsed once per module, however many tests read it


# --- constructed text ------------------------------------------------------------------------------------------


def test_year_from_title_not_from_targets():
    pages = [
        Page(1, "Climate Change Report\n\n2023"),
        Page(2, "We aim for net zero by 2050 and a 50% cut by 2030 against 2018. In 2021 we set targets."),
    ]
    assert detect_year(pages, "upload.pdf") == 2023


def test_year_range_and_fiscal_year():
    pages = [Page(1, "SUSTAINABLE DEVELOPMENT AMBITIONS & COMMITMENTS 2023-2027\n\nPROGRESS REPORT 2023")]
    assert detect_year(pages, "x.pdf") == 2023
    pages = [Page(1, "Ulta Beauty Announces Fourth Quarter Fiscal 2022 Results\n\nCompared with 2021 and 2020.")]
    assert detect_year(pages, "x.pdf") == 2022


def test_year_not_invented():
    # Years in body text only, not on the cover, nowhere near a report title: nothing stated.
    body = "Nothing here. " * 300 + "In 2019 we planted trees; in 2017 we built a plant."
    pages = [Page(1, "Our approach"), Page(2, body)]
    assert detect_year(pages, "notes.pdf") is None
    assert detect_year([Page(1, "Guidance for issuers")], "guide.pdf") is None


def test_chinese_year():
    assert detect_year([Page(1, "如何編備環境、社會及管治報告\n\n2020年3月")], "guide.pdf") == 2020


def test_short_name_drops_legal_suffixes():
    assert short_name("BHP Group Limited") == "BHP"
    assert short_name("Samsung Electronics Co., Ltd.") == "Samsung Electronics"
    assert short_name("Rio Tinto plc") == "Rio Tinto"
    assert short_name("Siemens AG") == "Siemens"
    assert short_name("BEST BUY CO., INC.") == "BEST BUY"


def test_company_from_sec_cover():
    cover = (
        "UNITED STATES SECURITIES AND EXCHANGE COMMISSION\n\nFORM 10-K\n\nADOBE INC.\n\n"
        "(Exact name of registrant as specified in its charter)\n\nDelaware"
    )
    body = "Adobe is a software company. Adobe sells Creative Cloud. Adobe grew."
    assert detect_company([Page(1, cover), Page(2, body)], "10k.pdf") == "Adobe"


def test_company_from_file_name_needs_the_text_to_agree():
    pages = [Page(1, "Costco is committed to doing our part. Costco’s emissions fell. At Costco we act.")]
    assert detect_company(pages, "costco_climate_action_plan.pdf") == "Costco"
    # The file name says "acme" but the text never names it: no invention.
    assert detect_company([Page(1, "We report our emissions.")], "acme_report.pdf") is None
    # "China" in a file name is a place, not a company.
    china = [Page(1, "China is a large market. China grows. China China China.")]
    assert detect_company(china, "ESGDisclosure-in-China.pdf") is None


def test_company_from_legal_entity_and_copyright():
    pages = [
        Page(1, "Annual review"),
        Page(2, "Rio Tinto plc and Rio Tinto Limited operate as one group. Rio Tinto mines iron ore."),
    ]
    assert detect_company(pages, "upload.pdf") == "Rio Tinto"
    pages = [Page(1, "方法概览"), Page(2, "企业社会责任评估方法 V2.2 ZH© EcoVadis 2018\n\n由EcoVadis编制。")]
    assert detect_company(pages, "upload.pdf") == "EcoVadis"


def test_no_company_when_nothing_says_so():
    pages = [Page(1, "关键ESG指标建议\n\n中国的ESG数据披露"), Page(2, "本报告讨论信息披露。")]
    meta = detect_meta(pages, "ESGDisclosure-in-China.pdf")
    assert meta.company is None and meta.language == "zh"


# --- every shared PDF ------------------------------------------------------------------------------------------

ESG_EXPECTED = {
    "cfb_orange_2023_integrated_annual_report.pdf": ("Orange", 2023),
    "cfb_samsung_electronics_sustainability_report_2024.pdf": ("Samsung Electronics", 2024),
    "cfb_siemens_2024_sustainability_report.pdf": ("Siemens", 2024),
    "cfb_suez_sd_progress_report_2023.pdf": ("SUEZ", 2023),
    "climretrieve_bhp_climate_change_report_2020.pdf": ("BHP", 2020),
    "climretrieve_bhp_climate_transition_action_plan.pdf": ("BHP", 2021),
    "climretrieve_costco_climate_action_plan.pdf": ("Costco", 2023),
    "climretrieve_ct_reit_2022_esg_report.pdf": ("CT REIT", 2022),
    "climretrieve_rio_tinto_climate_change_report_2023.pdf": ("Rio Tinto", 2023),
}

# Chinese documents are guidance and research, mostly not company reports: the issuer where the document names
# it (as copyright holder or in its title), else nothing.
ZH_EXPECTED = {
    "A股上市公司ESG评级分析报告2020.pdf": (None, 2020),
    "Climate-Transition-Finance-Handbook-2020-Chinese.pdf": ("国际资本市场协会", 2020),
    "ESGDisclosure-in-China.pdf": (None, None),
    "SZSE-listed-company-reporting-regulation-2020-09-04.pdf": ("深圳证券交易所", 2020),
    "bkcfaesg_integration_chinafinal_chineseversion_535531.pdf": ("CFA Institute", 2019),
    "ecovadis_methodology__zh.pdf": ("EcoVadis", 2018),
    "hkex-esg-reporting-guide.pdf": (None, 2020),
}


@pytest.mark.parametrize("name", sorted(ESG_EXPECTED))
def test_english_reports(testdata, name):
    meta = detect_meta(_load(testdata / "esg_pdfs" / name), name)
    assert (meta.company, meta.year, meta.language) == (*ESG_EXPECTED[name], "en")


@pytest.mark.parametrize("name", sorted(ZH_EXPECTED))
def test_chinese_documents(testdata, name):
    meta = detect_meta(_load(testdata / "zh_pdfs" / name), name)
    assert (meta.company, meta.year, meta.language) == (*ZH_EXPECTED[name], "zh")


def test_most_companies_found_without_a_helpful_file_name(testdata):
    """An upload called "upload.pdf": the text alone still names most issuers, and never a wrong one."""
    found = 0
    for name, (company, _) in ESG_EXPECTED.items():
        got = detect_meta(_load(testdata / "esg_pdfs" / name), "upload.pdf").company
        assert got in (None, company), (name, got)
        found += got == company
    assert found >= 7


@pytest.mark.parametrize(
    ("name", "company", "year"),
    [
        ("financebench_ADOBE_2022_10K.pdf", "Adobe", 2022),
        ("financebench_JOHNSON_JOHNSON_2022Q4_EARNINGS.pdf", "Johnson & Johnson", 2022),
        ("financebench_PEPSICO_2023_8K_dated-2023-05-05.pdf", "PepsiCo", 2023),
        ("financebench_FOOTLOCKER_2022_8K_dated-2022-05-20.pdf", "Foot Locker", 2022),
    ],
)
def test_sec_filings(testdata, name, company, year):
    meta = detect_meta(_load(testdata / "finance_pdfs" / name), name)
    assert (meta.company, meta.year) == (company, year)


def test_a_video_takes_a_known_company_from_its_file_name_or_its_speech():
    from rag.meta import known_company

    known = ["Northwind Metals", "Qinghe Energy Co., Ltd.", "青禾能源股份有限公司"]
    # Whisper heard "Northwind Medals": the file name still names the company the knowledge base knows.
    assert known_company("northwind_metals_briefing_2023.mp4", "Northwind Medals had a good year", known) == (
        "Northwind Metals"
    )
    assert known_company("briefing.mp4", "Today Qinghe Energy reports its results", known) == "Qinghe Energy Co., Ltd."
    assert known_company("简报.mp4", "今天 青禾能源 发布了年度业绩", known) == "青禾能源股份有限公司"
    assert known_company("jfk.mp4", "ask not what your country can do for you", known) is None
    assert known_company("northwind.mp4", "nothing", []) is None


def test_the_sample_reports_are_ingested_before_the_sample_video():
    import app

    files = app.sample_files()
    kinds = [p.suffix.lower() == ".pdf" for p in files]
    assert any(kinds) and not all(kinds), files
    assert kinds == sorted(kinds, reverse=True), files  # every PDF comes before every video
