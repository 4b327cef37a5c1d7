"""PDF loading: real pypdf on the shared PDFs, plus fast tests of the pure cleaning functions."""

from __future__ import annotations

import io
import json
import logging
import re
from collections import Counter
from pathlib import Path

import pypdf
import pytest

from rag.chunk import chunk_pages
from rag.errors import DamagedFile, EncryptedPdf, NoText, RagError, TooLarge
from rag.pdf import (
    clean_text,
    fix_cjk_spacing,
    fix_inline_hyphens,
    header_key,
    is_page_number,
    join_lines,
    load_pdf,
    strip_running_lines,
)
from rag.types import DocMeta

RIO = "climretrieve_rio_tinto_climate_change_report_2023.pdf"
SIEMENS = "cfb_siemens_2024_sustainability_report.pdf"
SUEZ = "cfb_suez_sd_progress_report_2023.pdf"


def _grams(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def _overlap(evidence: str, text: str) -> float:
    g = _grams(evidence)
    return len(g & _grams(text)) / len(g) if g else 0.0


_cache: dict[Path, list] = {}


def _load(path: Path):
    if path not in _cache:
        _cache[path] = load_pdf(path)
    return _cache[path]


# --- pure text functions -----------------------------------------------------------------------------------------


def test_join_lines_undoes_end_of_line_hyphenation():
    assert join_lines(["severe natu-", "ral disasters"]) == "severe natural disasters"
    # pypdf sometimes keeps a space before the hyphen (kerning): "every -" + "one".
    assert join_lines(["to transform the everyday, for every -", "one."]) == "to transform the everyday, for everyone."
    # A capitalised next line is a new word, not the rest of a split one.
    assert join_lines(["Scope 1 -", "Emissions"]) == "Scope 1 - Emissions"


def test_join_lines_keeps_compound_hyphen_the_document_uses():
    vocab = Counter({"long-term": 5, "world-leading": 2})
    assert join_lines(["our long-", "term targets"], vocab) == "our long-term targets"
    assert join_lines(["our long-", "term targets"]) == "our longterm targets"  # no evidence: a syllable break


def test_join_lines_cjk_without_space_and_latin_with_space():
    assert join_lines(["推动更可持续发展全", "球金融体系的建设。"]) == "推动更可持续发展全球金融体系的建设。"
    assert join_lines(["reduce our emissions", "by 15% by 2025"]) == "reduce our emissions by 15% by 2025"


def test_fix_inline_hyphens_uses_document_vocabulary():
    vocab = Counter({"world-leading": 3, "wellbeing": 2})
    assert fix_inline_hyphens("a world- leading company", vocab) == "a world-leading company"
    assert fix_inline_hyphens("the well- being of staff", vocab) == "the wellbeing of staff"
    assert fix_inline_hyphens("mid- and long-term needs", vocab) == "mid- and long-term needs"


def test_cjk_spacing_artefacts_removed():
    assert fix_cjk_spacing("中 国 的 ESG 整 合 ：实践") == "中国的 ESG 整合：实践"
    assert fix_cjk_spacing("上年12 月31 日前") == "上年12月31日前"
    assert fix_cjk_spacing("共计管理约 80万亿美元") == "共计管理约80万亿美元"
    # A wide gap separates a number from a title: it stays as one space (after clean_text collapses it).
    assert clean_text("第一章  总则") == "第一章 总则"


def test_clean_text_normalises_ligatures_spaces_and_invisible_marks():
    raw = "e\ufb00orts to re\ufb02ect\xa0our quali\ufb01ed\u200b long\xadterm team\ue000  now"
    assert clean_text(raw) == "efforts to reflect our qualified long-term team now"
    assert join_lines([clean_text("our long\xad"), "term view"], Counter({"long-term": 1})) == "our long-term view"


def test_page_numbers_recognised_but_not_years():
    for s in ["12", "- 12 -", "— 1 —", "Page 3 of 9", "iv", "3/14"]:
        assert is_page_number(s, n_pages=20), s
    for s in ["2024", "Scope 3", "15.5%", "327,000"]:
        assert not is_page_number(s, n_pages=20), s


def test_running_headers_and_footers_removed_body_kept():
    topics = ["water", "energy", "waste", "safety", "land", "air", "people", "tax"]
    pages = []
    for n, topic in enumerate(topics, start=1):
        pages.append(
            [
                f"Climate Change Report 2023 | riotinto.com {n}",
                f"This page is about {topic}.",
                f"Our {topic} programme grew in {2015 + n}.",
                "Scope 1 and 2 emissions fell." if n == 3 else f"The {topic} team met targets.",
                f"{n}",
                "2024" if n == 1 else "Appendix",
            ]
        )
    out = strip_running_lines(pages)
    for n, (page, topic) in enumerate(zip(out, topics, strict=True), start=1):
        assert not any("riotinto.com" in line for line in page)
        assert str(n) not in page  # page number
        assert f"This page is about {topic}." in page
        assert f"Our {topic} programme grew in {2015 + n}." in page
    assert "Scope 1 and 2 emissions fell." in out[2]
    assert "2024" in out[0]  # a year is not a page number
    # "Appendix" ends 7 of 8 pages: a running footer.
    assert all("Appendix" not in page for page in out)
    assert header_key("SIEMENS SUSTAINABILITY REPORT 2024  12") == header_key("Siemens Sustainability Report 2024 3")


# --- real PDFs ---------------------------------------------------------------------------------------------------


def test_rio_tinto_known_passage_on_its_page(testdata):
    pages = _load(testdata / "esg_pdfs" / RIO)
    assert len(pages) == 46
    assert [p.number for p in pages] == list(range(1, 47))
    hit = [p.number for p in pages if "reduce our Scope 1 and 2 emissions by 15% by 2025" in p.text]
    assert hit == [11]
    # The running footer "Climate Change Report 2023 | riotinto.com <n>" is gone from the body pages.
    assert not any("Climate Change Report 2023 | riotinto.com" in p.text for p in pages)
    assert "visit our website www.riotinto.com" in pages[1].text  # a mention in the body stays
    # Paragraphs are separated by blank lines and contain no line breaks.
    page = pages[10].text
    assert "\n\n" in page and all("\n" not in para for para in page.split("\n\n"))


def test_siemens_hyphenation_and_footer_cleaned(testdata):
    pages = _load(testdata / "esg_pdfs" / SIEMENS)
    p4 = pages[3].text
    assert "severe natural disasters" in p4
    assert "for everyone" in p4 and "touching people" in p4
    assert "natu-" not in p4 and "every -" not in p4
    assert sum("SIEMENS SUSTAINABILITY REPORT 2024" in p.text.upper() for p in pages) < 10


@pytest.mark.parametrize("index", range(0, 60, 6))
def test_gold_evidence_found_on_gold_page(testdata, index):
    items = [json.loads(line) for line in (testdata / "qa" / "esg_qa_en.jsonl").read_text().splitlines()]
    items = [i for i in items if i.get("page") and i.get("evidence") and len(_grams(i["evidence"])) >= 3]
    item = items[index]
    pages = _load(testdata / item["doc_dir"] / item["doc"])
    evidence = item["evidence"].split("\n---\n")[0]
    best = max(pages, key=lambda p: _overlap(evidence, p.text))
    gold = {item["page"], *(item.get("evidence_pages_verified") or [])}
    assert best.number in gold, (item["id"], best.number, gold)
    assert _overlap(evidence, best.text) >= 0.5


def test_aes_encrypted_pdf_with_empty_password_opens(testdata):
    path = testdata / "finance_pdfs" / "financebench_ADOBE_2022_10K.pdf"
    reader = pypdf.PdfReader(path)
    assert reader.is_encrypted  # the point of this test
    assert "/AESV" in str(reader.trailer["/Encrypt"].get_object())
    pages = load_pdf(path)
    assert len(pages) == len(reader.pages)
    assert "SECURITIES AND EXCHANGE COMMISSION" in pages[0].text.upper()


def test_password_protected_pdf_is_refused_clearly(testdata):
    with pytest.raises(EncryptedPdf, match=r"^encrypted: password required$"):
        load_pdf(testdata / "bad_pdfs" / "pypdf" / "encryption_r4-aes-user-password.pdf")
    # Only an owner password (empty user password): it opens.
    pages = load_pdf(testdata / "bad_pdfs" / "pypdf" / "encryption_r4-owner-password.pdf")
    assert pages and pages[0].text


def test_damaged_and_non_pdf_files_are_reported(testdata, tmp_path):
    with pytest.raises(DamagedFile, match=r"^damaged PDF: .*startxref"):
        load_pdf(testdata / "bad_pdfs" / "qpdf" / "append-page-content-damaged.pdf")
    fake = tmp_path / "notes.pdf"
    fake.write_bytes(b"just some text, not a PDF")
    with pytest.raises(DamagedFile, match=r"^damaged PDF: "):
        load_pdf(fake)


def test_every_bad_pdf_loads_or_fails_with_a_clear_error(testdata, caplog):
    """The whole adversarial set: each file gives pages or one of our errors, never a raw exception."""
    caplog.set_level(logging.ERROR)
    outcomes: Counter[str] = Counter()
    for line in (testdata / "bad_pdfs" / "MANIFEST.jsonl").read_text().splitlines():
        entry = json.loads(line)
        path = testdata / "bad_pdfs" / entry["file"]
        if path.stat().st_size > 1_000_000:
            continue  # the big valid controls (a 117-page book) only cost time here
        probe = entry["pypdf_7_1_1_probe"]
        try:
            pages = load_pdf(path)
        except RagError as err:
            message = str(err)
            assert message and "\n" not in message and len(message) <= 240
            outcomes[type(err).__name__] += 1
            # What pypdf itself could read, we read too; what it could not decrypt is reported as encrypted.
            assert not (probe["result"] == "ok" and probe.get("chars_first50", 0) > 0), (entry["file"], message)
            if "FileNotDecryptedError" in probe.get("error", ""):
                assert isinstance(err, EncryptedPdf), (entry["file"], message)
            continue
        assert all(p.number == i for i, p in enumerate(pages, start=1))
        outcomes["ok"] += 1
    assert outcomes["ok"] >= 40 and outcomes["DamagedFile"] >= 30 and outcomes["EncryptedPdf"] >= 5
    assert outcomes["NoText"] >= 5


def _blank_pdf(pages: int = 1) -> bytes:
    writer = pypdf.PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def test_image_only_pdf_is_no_text(tmp_path):
    path = tmp_path / "scan.pdf"
    path.write_bytes(_blank_pdf(3))
    with pytest.raises(NoText, match=r"^no text layer$"):
        load_pdf(path)


def test_image_only_page_inside_a_text_pdf_gives_empty_page_and_no_chunks(testdata, tmp_path):
    writer = pypdf.PdfWriter()
    writer.append(pypdf.PdfReader(testdata / "esg_pdfs" / SUEZ), pages=(1, 3))  # two text pages
    writer.add_blank_page(width=595, height=842)
    path = tmp_path / "mixed.pdf"
    with path.open("wb") as fh:
        writer.write(fh)
    pages = load_pdf(path)
    assert [p.number for p in pages] == [1, 2, 3]
    assert pages[0].text and pages[1].text and pages[2].text == ""
    chunks = chunk_pages(pages, file="mixed.pdf", doc_id="d", meta=DocMeta())
    assert chunks
    assert all(c.source.page in (1, 2) and (c.source.last_page or 1) in (1, 2) for c in chunks)


def test_page_limit(testdata):
    with pytest.raises(TooLarge, match="11 pages"):
        load_pdf(testdata / "esg_pdfs" / SUEZ, max_pages=5)


def test_chinese_pdf_lines_joined_without_spaces(testdata):
    pages = _load(testdata / "zh_pdfs" / "SZSE-listed-company-reporting-regulation-2020-09-04.pdf")
    text = "\n\n".join(p.text for p in pages)
    assert "督促上市公司及相关信息披露义务人加强信息披露工作" in text  # was broken over two lines
    assert "上年12月31日前" in text
    # No space left between two Han characters, except the one after an article/chapter number ("第一条 为了").
    body = re.sub("第[一二三四五六七八九十百零]+[章条] ", "", text)
    assert not re.search("[\u4e00-\u9fff] [\u4e00-\u9fff]", body)
    assert "第一章 总则" in text and "第一条 为了加强" in text
