"""The editable FAQ file: shipped defaults, validation errors that name the entry, atomic save, user copy."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from rag.errors import ConfigError, RagError
from rag.faq import (
    DEFAULT_FAQ_PATH,
    FaqEntry,
    FaqError,
    dumps_faq,
    ensure_user_faq,
    faq_path,
    load_faq,
    loads_faq,
    save_faq,
    user_faq_path,
    validate_faq,
)
from rag.settings import Settings

CJK = re.compile(r"[\u4e00-\u9fff]")


def _entry(**over) -> dict:
    base = {"id": "scope_3", "kind": "faq", "questions": ["What is Scope 3?"], "answer": "Value-chain emissions."}
    base.update(over)
    return base


def _text(*entries: dict) -> str:
    return json.dumps({"version": 1, "entries": list(entries)}, ensure_ascii=False)


# ---------------------------------------------------------------- shipped defaults


def test_default_faq_is_valid_bilingual_and_covers_the_required_topics():
    entries = load_faq(DEFAULT_FAQ_PATH)
    by_id = {e.id: e for e in entries}
    # Chit-chat replies the router's rules point at, and the scope message.
    for ident in ("greeting", "thanks", "goodbye", "who_are_you", "capabilities", "smalltalk"):
        assert by_id[ident].kind == "chitchat"
    assert by_id["out_of_scope"].kind == "out_of_scope"
    # Domain questions users expect a canonical answer to.
    for ident in ("esg", "scope_1", "scope_2", "scope_3", "ghg_protocol", "tcfd", "issb", "materiality", "net_zero"):
        assert by_id[ident].kind == "faq"
    for entry in entries:
        assert entry.answer_zh and CJK.search(entry.answer_zh), f"{entry.id} lacks a Chinese answer"
        assert not CJK.search(entry.answer), f"{entry.id}: the English answer contains Chinese"
        if entry.kind != "out_of_scope":
            langs = {bool(CJK.search(q)) for q in entry.questions}
            assert langs == {True, False}, f"{entry.id} needs question variants in Chinese and English"
        assert len(entry.answer) < 700, f"{entry.id}: answers should be short"


def test_default_answers_state_the_key_facts():
    by_id = {e.id: e for e in load_faq(DEFAULT_FAQ_PATH)}
    assert "value chain" in by_id["scope_3"].answer and "15 categories" in by_id["scope_3"].answer
    assert "WRI" in by_id["ghg_protocol"].answer and "WBCSD" in by_id["ghg_protocol"].answer
    assert "Financial Stability Board" in by_id["tcfd"].answer
    assert "IFRS S1" in by_id["issb"].answer and "IFRS S2" in by_id["issb"].answer
    assert "2030" in by_id["carbon_neutrality"].answer and "2060" in by_id["carbon_neutrality"].answer
    assert "环境" in by_id["esg"].answer_zh and "治理" in by_id["esg"].answer_zh


def test_reply_uses_the_message_language_and_falls_back_to_english():
    entry = FaqEntry("x", ("q",), "Hello", "你好")
    assert entry.reply("zh") == "你好" and entry.reply("en") == "Hello"
    assert FaqEntry("y", ("q",), "Hello").reply("zh") == "Hello"


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([_entry(), _entry(questions=["other"])], r"entry #2 \(id 'scope_3'\): id 'scope_3' is already used"),
        ([_entry(kind="faqs")], r"entry #1 \(id 'scope_3'\): kind 'faqs' is not one of faq, chitchat, out_of_scope"),
        ([_entry(questions=[])], r"entry #1 \(id 'scope_3'\): needs at least one question"),
        ([_entry(questions=["ok", "  "])], r"entry #1 \(id 'scope_3'\): has an empty question"),
        ([_entry(answer="  ")], r"entry #1 \(id 'scope_3'\): 'answer' is empty"),
        ([_entry(answer=None)], r"entry #1 \(id 'scope_3'\): 'answer' must be a string"),
        ([_entry(anwser="typo")], r"entry #1 \(id 'scope_3'\): unknown field 'anwser'"),
        ([_entry(id="")], r"entry #1: 'id' must be a non-empty string"),
        ([_entry(id="has space")], r"entry #1 \(id 'has space'\): id must be"),
        ([_entry(questions="What is Scope 3?", answer_zh=3)], r"'answer_zh' must be a string or null"),
        ([_entry(questions=[1, 2])], r"entry #1 \(id 'scope_3'\): 'questions' must be a list of strings"),
        (
            [_entry(), _entry(id="s3", questions=["what is scope 3"])],
            r"entry #2 \(id 's3'\): question 'what is scope 3' appears also in entry 'scope_3'",
        ),
        ([_entry(questions=["What is Scope 3?", "what is SCOPE 3"])], r"appears twice"),
        (["just a string"], r"entry #1 must be an object"),
        ([_entry(questions=["x" * 400])], r"longer than 300 characters"),
    ],
)
def test_validation_errors_name_the_bad_entry(entries, expected):
    with pytest.raises(FaqError, match=expected) as info:
        loads_faq(_text(*entries) if all(isinstance(e, dict) for e in entries) else json.dumps(entries), "faq.json")
    message = str(info.value)
    assert "\n" not in message and message.startswith("faq.json")
    assert isinstance(info.value, ConfigError) and isinstance(info.value, RagError)


def test_out_of_scope_entries_may_have_no_questions_and_bare_lists_are_accepted():
    entries = loads_faq(json.dumps([_entry(id="oos", kind="out_of_scope", questions=[]), _entry()]))
    assert [e.id for e in entries] == ["oos", "scope_3"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"version": 1, "entries": [', r"faq.json is not valid JSON: line 1 column \d+"),
        ('{"version": 2, "entries": []}', r"version 2 is not supported"),
        ('{"entries": [], "extra": 1}', r"unknown top-level field 'extra'"),
        ('{"entries": {}}', r"expected a list of entries"),
        ('"hello"', r"expected a list of entries"),
    ],
)
def test_file_level_errors(text, expected):
    with pytest.raises(FaqError, match=expected):
        loads_faq(text, "faq.json")


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(FaqError, match="does not exist"):
        load_faq(missing)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(_text(_entry(answer="café")).encode("latin-1"))
    with pytest.raises(FaqError, match=r"latin1.json is not UTF-8"):
        load_faq(latin1)
    bad = tmp_path / "bad.json"
    bad.write_text(_text(_entry(), _entry()), encoding="utf-8")
    with pytest.raises(FaqError, match=r"bad.json: FAQ entry #2 \(id 'scope_3'\)"):
        load_faq(bad)


# ---------------------------------------------------------------- save


def test_save_and_load_round_trip(tmp_path):
    entries = load_faq(DEFAULT_FAQ_PATH)
    path = tmp_path / "sub" / "faq.json"
    save_faq(path, entries)
    assert load_faq(path) == entries
    assert "范围三" in path.read_text(encoding="utf-8")  # readable UTF-8, not \u escapes
    assert dumps_faq(entries) == path.read_text(encoding="utf-8")


def test_invalid_save_changes_nothing(tmp_path):
    path = tmp_path / "faq.json"
    save_faq(path, [FaqEntry("a", ("hello",), "hi")])
    before = path.read_bytes()
    with pytest.raises(FaqError, match=r"entry #2 \(id 'a'\)"):
        save_faq(path, [FaqEntry("a", ("hello",), "hi"), FaqEntry("a", ("bye",), "bye")])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faq.json"]


def test_save_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "faq.json"
    save_faq(path, [FaqEntry("a", ("hello",), "hi")])
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space left"):
        save_faq(path, [FaqEntry("a", ("hello",), "a new answer")])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faq.json"]  # the temp file is cleaned up


def test_validate_accepts_the_defaults_and_rejects_bad_entries():
    validate_faq(load_faq(DEFAULT_FAQ_PATH))
    with pytest.raises(FaqError, match="kind 'weird'"):
        validate_faq([FaqEntry("a", ("q",), "x", kind="weird")])


# ---------------------------------------------------------------- the user's copy


def test_user_copy_is_created_once_and_then_preferred(tmp_path):
    settings = Settings(kb_dir=tmp_path / "kb")
    assert faq_path(settings) == DEFAULT_FAQ_PATH
    user = ensure_user_faq(settings)
    assert user == user_faq_path(settings) == tmp_path / "kb" / "faq.json"
    assert load_faq(user) == load_faq(DEFAULT_FAQ_PATH)
    assert faq_path(settings) == user
    edited = [FaqEntry("only", ("What is our travel policy?",), "Take the train.")]
    save_faq(user, edited)
    assert ensure_user_faq(settings) == user
    assert load_faq(user) == edited  # an edited copy is never overwritten by the defaults


def test_no_temp_files_left_by_ensure(tmp_path):
    ensure_user_faq(Settings(kb_dir=tmp_path))
    assert [p.name for p in Path(tmp_path).iterdir()] == ["faq.json"]
