"""QA sets: parsing of all four shared formats and the bundled sample, and messages that name the bad line, row and
value (real files on disk, as the CLI and the app's upload read them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import ConfigError
from rag.qa import SAMPLE_QA_PATH, QAItem, load_qa, parse_qa_items, parse_qa_text

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
NW = "northwind_metals_sustainability_report_2023.pdf"


def test_rows_of_one_question_are_merged_and_fields_normalised():
    items = parse_qa_items(
        [
            {"id": "a", "qid": "q1", "question": "Q one?", "doc": "r.pdf", "page": 9, "evidence": "first"},
            {"id": "b", "qid": "q1", "question": "Q one?", "doc": "r.pdf", "page": 8, "evidence": "second"},
            {"question": "Q two?", "doc": "r.pdf", "evidence_pages_verified": [14, 15, None], "page": 14,
             "evidence": "x one\n---\nx two", "answer": "Yes.", "answerable": True},
            {"question": "Q three?", "answer": "Not available in the retrieved information."},
            {"question": "Q four?", "pages": [2, "3"], "answer": "42 t", "doc_dir": "esg_pdfs"},
            {"question": "公司2023年的范围一排放是多少？"},
        ]
    )  # fmt: skip
    assert [i.id for i in items] == ["q1", "row3", "row4", "row5", "row6"]
    assert items[0].pages == (8, 9) and items[0].evidence == ("first", "second")
    assert items[1].pages == (14, 15) and items[1].evidence == ("x one", "x two")
    assert items[2].answerable is False  # inferred from the "not available" gold answer
    assert items[3].answerable is True and items[3].doc is None and items[3].doc_dir == "esg_pdfs"
    assert items[3].pages == (2, 3)
    assert items[0].scope.docs == ("r.pdf",) and items[3].scope.unrestricted
    assert [i.lang for i in items] == ["en", "en", "en", "en", "zh"]
    assert isinstance(items[0], QAItem) and items[0].has_gold_context and not items[4].has_gold_context


def test_a_partial_gold_answer_is_answerable():
    """Only a gold answer that does nothing but state absence marks a row unanswerable."""
    items = parse_qa_items(
        [
            {"question": "Scope 3?", "answer": "Not disclosed."},
            {"question": "Scope 1?", "answer": "388,500 tCO2e. The report does not state Scope 3."},
        ]
    )
    assert [i.answerable for i in items] == [False, True]


def test_duplicate_ids_are_made_unique():
    items = parse_qa_items([{"id": "x", "question": "A?"}, {"id": "x", "question": "B?"}])
    assert [i.id for i in items] == ["x", "x'"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"answer": "x"}], r"^qa.jsonl: row 1 has no 'question'$"),
        ([{"question": "q", "page": 0}], r"^qa.jsonl: row 1 has a page below 1 \(pages are 1-based\): page = 0$"),
        ([{"question": "q", "page": "two"}], r"^qa.jsonl: row 1 has a page that is not a whole number: page = 'two'$"),
        ([{"question": "q"}, {"question": "r", "pages": [3, 4.5]}], r"row 2 .* not a whole number: pages = 4.5$"),
        ([{"question": "q", "evidence_pages_verified": [True]}], r"evidence_pages_verified = True$"),
        ([{"question": "q", "answerable": "no"}], r"row 1 has an 'answerable' that is not true or false: 'no'$"),
        ([{"question": "q", "doc": 7}], r"^qa.jsonl: row 1 has a 'doc' that is not text: 7$"),
        (["text"], r"^qa.jsonl: row 1 is not a JSON object$"),
    ],
)  # fmt: skip
def test_bad_rows_name_the_row_and_the_value(rows, message):
    with pytest.raises(ConfigError, match=message):
        parse_qa_items(rows, "qa.jsonl")


def test_bad_file_line_is_named(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "ok?"}\n{"question": \n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"qa.jsonl:2: not valid JSON"):
        load_qa(path)
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="has no rows"):
        load_qa(path)
    with pytest.raises(ConfigError, match="QA file not found"):
        load_qa(tmp_path / "missing.jsonl")
    # Messages can name the file as the user knows it (the app's uploads sit at temporary paths).
    path.write_text('{"question": "ok?"}\n\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^mine.jsonl: row 2 is not a JSON object$"):
        load_qa(path, "mine.jsonl")
    path.write_text('{"question": "ok?"}\n{"question": "q?", "page": -3}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^mine.jsonl: row 2 has a page below 1 \(pages are 1-based\): page = -3$"):
        load_qa(path, "mine.jsonl")
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(ConfigError, match=r"^QA file mine.jsonl is not UTF-8 text"):
        load_qa(path, "mine.jsonl")
    # A byte-order mark (Windows editors) and CRLF line ends are fine; a U+2028 inside a string is not a line end.
    path.write_bytes('\ufeff{"question": "ok\u2028 still one?"}\r\n{"question": "two?"}\r\n'.encode())
    assert [i.question for i in load_qa(path)] == ["ok\u2028 still one?", "two?"]


def test_text_is_parsed_like_a_file():
    assert parse_qa_text('{"question": "A?", "pages": [3]}\n\n{"question": "B?"}\n', "up.jsonl")[0].pages == (3,)
    with pytest.raises(ConfigError, match=r"^up.jsonl:3: not valid JSON"):
        parse_qa_text('{"question": "A?"}\n\n{oops}\n', "up.jsonl")


def test_all_shared_qa_files_load(testdata):
    qa = testdata / "qa"
    counts = {p.name: load_qa(p) for p in sorted(qa.glob("*.jsonl"))}
    assert len(counts) == 4
    # ClimRetrieve has one row per evidence passage: 37 rows, 14 questions.
    climretrieve = counts["climretrieve_en.jsonl"]
    assert len(climretrieve) == 14
    q03 = next(i for i in climretrieve if i.id == "climretrieve-q03")
    assert q03.pages == (7, 8, 9, 10) and len(q03.evidence) == 5
    cfb = counts["climate_finance_bench_en.jsonl"]
    assert len(cfb) == 40 and sum(not i.answerable for i in cfb) == 14
    orange_q6 = next(i for i in cfb if i.id == "cfb-orange-q6")
    assert orange_q6.pages == (14, 15, 17, 30, 45) and len(orange_q6.evidence) > 1
    fin = counts["financebench_subset_en.jsonl"]
    assert len(fin) == 37 and all(i.answerable and i.pages for i in fin)
    assert len(counts["esg_qa_en.jsonl"]) == len(climretrieve) + len(cfb)
    assert all(i.doc_dir for items in counts.values() for i in items)


def test_sample_qa_covers_both_sample_documents():
    items = load_qa(SAMPLE_QA_PATH)
    assert {i.doc for i in items} == {NW, "qinghe_energy_esg_report_2023_zh.pdf"}
    assert all((ASSETS / i.doc).is_file() for i in items if i.doc)
    assert sum(not i.answerable for i in items) >= 2 and sum(i.lang == "zh" for i in items) >= 4
