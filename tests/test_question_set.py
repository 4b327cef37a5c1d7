"""The verified question sets (benchmarks/data/questions_*.jsonl) hold against the real documents, and their
validator (benchmarks/data/check_questions.py) rejects items that do not."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "benchmarks" / "data"
SUEZ = "cfb_suez_sd_progress_report_2023.pdf"
ENGLISH_REPORTS = 9


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_questions", DATA / "check_questions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def checker():
    return _load_checker()


@pytest.fixture(autouse=True)
def _testdata_env(testdata, monkeypatch):
    monkeypatch.setenv("ESG_TESTDATA", str(testdata))


def _items(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_every_question_file_validates_against_the_real_pdfs(checker, capsys):
    assert checker.main([]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "split lang  kind" in out and "total:" in out


def test_english_report_set_covers_what_the_issues_ask_for():
    items = _items("questions_en_reports.jsonl")
    assert len(items) >= 110
    assert sum(not i["answerable"] for i in items) >= 30
    assert sum(i["kind"] == "table" and i["answerable"] for i in items) >= 15
    assert {i["lang_pair"] for i in items} == {"en-en", "zh-en"}
    assert set(Counter(i["unanswerable_kind"] for i in items if not i["answerable"])) == {
        "not_disclosed",
        "other_company",
        "wrong_year",
        "absent_company",
    }
    docs = {i["doc"] for i in items if i["doc"]}
    assert len(docs) == ENGLISH_REPORTS
    for doc in docs:  # every report is asked about on both sides of the split, in both languages
        splits = {(i["split"], i["lang_pair"]) for i in items if i["doc"] == doc}
        assert {"dev", "test"} <= {s for s, _ in splits}, doc
        assert {"en-en", "zh-en"} <= {lang for _, lang in splits}, doc
    dev_share = sum(i["split"] == "dev" for i in items) / len(items)
    assert 0.35 <= dev_share <= 0.45


GOOD = {
    "id": "t-001",
    "split": "dev",
    "lang_pair": "en-en",
    "question": "What volume of wastewater did SUEZ treat in 2023?",
    "answer": "2.8 billion m3",
    "doc": SUEZ,
    "pages": [3],
    "evidence": "In 2023, we treated 2.8 billion m3 of wastewater",
    "figures": ["2.8 billion"],
    "kind": "figure",
    "table_cell": None,
    "answerable": True,
    "unanswerable_kind": None,
    "absent_terms": [],
    "company": "SUEZ",
    "year": 2023,
}
UNANSWERABLE = GOOD | {
    "id": "t-002",
    "answer": "Not disclosed",
    "pages": [],
    "evidence": "",
    "figures": [],
    "answerable": False,
    "unanswerable_kind": "not_disclosed",
    "absent_terms": ["carbon price"],
}


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        ([GOOD | {"pages": [4]}], "evidence not found"),  # right quote, wrong page
        ([GOOD | {"evidence": "In 2023, we treated 3.8 billion m3 of wastewater"}], "evidence not found"),
        ([GOOD | {"figures": ["2.9 billion"]}], "not in evidence"),
        ([GOOD | {"pages": [99]}], "beyond the document"),
        ([UNANSWERABLE | {"absent_terms": ["wastewater"]}], "occurs in"),  # the term is in the report
        ([UNANSWERABLE | {"absent_terms": []}], "needs doc and absent_terms"),
        ([GOOD, GOOD], "duplicate id"),
        ([GOOD | {"kind": "table"}], "table_cell"),
        ([GOOD | {"split": "train"}], "split"),
        ([GOOD | {"year": "2023"}], "year"),
    ],
)
def test_validator_rejects_a_broken_item(checker, tmp_path, capsys, items, reason):
    path = tmp_path / "questions_broken.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    assert checker.main([str(path)]) == 1
    assert reason in capsys.readouterr().err


def test_validator_accepts_the_same_items_unbroken(checker, tmp_path):
    path = tmp_path / "questions_ok.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(UNANSWERABLE) + "\n", encoding="utf-8")
    assert checker.main([str(path)]) == 0


def test_matching_ignores_line_breaks_hyphenation_and_case(checker):
    page = checker.normalise("we produced\n2.7 mil-\nlion Tonnes of second\xadary raw materials")
    assert checker.normalise("2.7 million tonnes of secondary raw materials") in page
    assert checker.normalise("2.7 billion tonnes") not in page
