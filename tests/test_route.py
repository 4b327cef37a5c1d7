"""Intent routing with the real embedder: clear cases in both languages, hard cases, the safety net, FAQ reload.

Accuracy on the labelled set is a quality number and lives in benchmarks/routing.py; these tests check behaviour.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from rag.faq import DEFAULT_FAQ_PATH, FaqEntry, FaqError, load_faq, normalize_question, save_faq
from rag.kb_evidence import KbEvidence
from rag.route import (
    DEFAULT_INTENTS_PATH,
    LABELS,
    Router,
    decide,
    detect_lang,
    load_examples,
    text_signals,
)
from rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
LABELLED = ROOT / "tests" / "data" / "routing.jsonl"
CJK = re.compile(r"[\u4e00-\u9fff]")


class CountingEmbedder:
    """The real embedder, counting query calls (same name: its vectors are the real model's)."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim, self.queries = inner, inner.name, inner.dim, []

    def query(self, text: str) -> np.ndarray:
        self.queries.append(text)
        return self.inner.query(text)

    def passages(self, texts):
        return self.inner.passages(texts)

    def token_count(self, text: str) -> int:
        return self.inner.token_count(text)


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    # The shared model cache keeps the example vectors across runs; the knowledge base folder is empty.
    return Settings(kb_dir=tmp_path_factory.mktemp("route_kb"), model_cache=Settings().model_cache)


@pytest.fixture(scope="module")
def router(embedder, settings) -> Router:
    r = Router(embedder, settings=settings)
    r.warm()
    return r


def _reply_lang_ok(reply: str, lang: str) -> bool:
    return bool(CJK.search(reply)) == (lang == "zh")


# ---------------------------------------------------------------- clear cases, both languages


@pytest.mark.parametrize(
    ("message", "label", "entry"),
    [
        ("hey there", "chitchat", "greeting"),
        ("您好！", "chitchat", "greeting"),
        ("thanks a lot!", "chitchat", "thanks"),
        ("谢谢您", "chitchat", "thanks"),
        ("bye bye", "chitchat", "goodbye"),
        ("who am I chatting with?", "chitchat", "who_are_you"),
        ("你到底是谁", "chitchat", "who_are_you"),
        ("what kinds of things can you help with?", "chitchat", "capabilities"),
        ("你能帮我干什么", "chitchat", "capabilities"),
        ("tell me what scope 3 emissions are", "faq", "scope_3"),
        ("ESG这个词是什么意思", "faq", "esg"),
        ("what is meant by net-zero emissions?", "faq", "net_zero"),
        ("碳中和指的是什么", "faq", "carbon_neutrality"),
        ("What were Costco's Scope 1 emissions in 2022?", "rag", None),
        ("How does CT REIT manage flood risk at its properties?", "rag", None),
        ("报告中提到了哪些转型风险？", "rag", None),
        ("力拓在2023年的范围二排放是多少", "rag", None),
        ("明天上海天气如何", "out_of_scope", "out_of_scope"),
        ("write a python function that adds two numbers", "out_of_scope", "out_of_scope"),
        ("recommend a good pizza place nearby", "out_of_scope", "out_of_scope"),
        ("帮我写一首关于大海的诗", "out_of_scope", "out_of_scope"),
    ],
)
def test_clear_cases(router, message, label, entry):
    route = router.classify(message)
    assert route.label == label, route
    assert route.label in LABELS
    assert route.lang == detect_lang(message)
    if label == "rag":
        assert route.reply is None and route.entry_id is None
    else:
        assert route.entry_id == entry, route
        assert route.reply and _reply_lang_ok(route.reply, route.lang), route.reply
    if label in ("faq", "chitchat") and entry in {e.id for e in router.entries}:
        stored = next(e for e in router.entries if e.id == entry)
        assert route.reply == stored.reply(route.lang)


@pytest.mark.parametrize(
    ("message", "label"),
    [
        ("hi, what were Costco's emissions?", "rag"),
        ("thanks! and what about scope 3?", "rag"),
        ("Hello, which climate scenarios does Rio Tinto use?", "rag"),
        ("你好，请问三星的碳排放是多少？", "rag"),
        ("谢谢！那苏伊士呢？", "rag"),
        ("What is Scope 3 for Costco?", "rag"),  # a company turns a definition into a document question
        ("What is the company's net zero target?", "rag"),
        ("What can you tell me about Samsung's water use?", "rag"),  # "what can you" is not a capabilities question
        ("hello! what is scope 2?", "faq"),
        ("hi, who are you?", "chitchat"),
        ("你好，帮我写一段Java代码", "out_of_scope"),
    ],
)
def test_hard_cases(router, message, label):
    assert router.classify(message).label == label


def test_a_company_name_blocks_an_faq_answer_that_would_otherwise_match(router):
    f = router.features("What is Scope 3 for Costco?")
    assert f.entry_id == "scope_3" and f.entry_sim >= router.thresholds.faq_min  # the FAQ alone would answer
    assert f.specific
    assert router.classify("What is Scope 3 for Costco?").label == "rag"


def test_empty_and_emoji_messages_get_a_short_reply(router):
    for message in ("", "   "):
        route = router.classify(message)
        assert route.label == "chitchat" and "question" in route.reply
    assert router.classify("👍").label == "chitchat"


def test_greeting_rules_need_no_embedding(embedder, settings):
    counting = CountingEmbedder(embedder)
    r = Router(counting, settings=settings)
    r.warm()
    counting.queries.clear()
    for message in ("hello", "你好", "thanks!", "谢谢", "bye", "ok", "好的"):
        assert r.classify(message).label == "chitchat"
    assert counting.queries == []
    r.classify("What is Scope 3?")
    assert counting.queries == ["What is Scope 3?"]  # exactly one query embedding per message


# ---------------------------------------------------------------- the knowledge base in view (decision logic)
# Real knowledge bases and a real upload are in tests/test_routing_kb.py; these check the decision on given evidence.


def _evidence(lexical=0.0, typical=0.0, coverage=0.0, z=None, chunks=10) -> KbEvidence:
    return KbEvidence(
        chunks,
        lexical,
        typical,
        coverage,
        ("word",) if lexical else (),
        0.8 if z is not None else None,
        0.78 if z is not None else None,
        z,
    )


def test_knowledge_base_evidence_sends_chitchat_about_the_documents_to_rag(router):
    message = "how is your day going so far"
    f = router.features(message)
    assert decide(f, router.thresholds)[0] == "chitchat"
    t = router.thresholds
    lexical = dataclasses.replace(f, kb=_evidence(t.kb_lexical + 0.5, 0.0, 0.6, z=0.0))
    assert decide(lexical, t)[0] == "rag" and decide(lexical, t)[3] == "kb:lexical"
    dense = dataclasses.replace(f, kb=_evidence(z=t.kb_dense_z + 0.1))
    assert decide(dense, t)[3] == "kb:dense"
    # Rare words that beat unrelated messages by too little, or make up too little of the message, are not enough.
    assert (
        decide(dataclasses.replace(f, kb=_evidence(t.kb_lexical + 0.5, t.kb_lexical + 0.4, 0.6, z=0.0)), t)[0]
        == "chitchat"
    )
    assert (
        decide(dataclasses.replace(f, kb=_evidence(t.kb_lexical + 0.5, 0.0, t.kb_coverage / 2, z=0.0)), t)[0]
        == "chitchat"
    )
    assert decide(dataclasses.replace(f, kb=_evidence(z=t.kb_dense_z - 0.5)), t)[0] == "chitchat"


def test_knowledge_base_evidence_never_overrides_rules_exact_faq_or_vocabulary(router):
    t = router.thresholds
    strong = _evidence(5.0, 0.0, 1.0, z=9.0)
    for message, label in (
        ("hello", "chitchat"),
        ("write me a bash script", "out_of_scope"),
        ("What is Scope 3?", "faq"),
    ):
        f = dataclasses.replace(router.features(message), kb=strong)
        assert decide(f, t)[0] == label, message
    # ... and no evidence never sends an ESG question away, even from an empty knowledge base.
    f = router.features("What is Costco's 2030 target?")
    for kb in (_evidence(z=-3.0), _evidence(chunks=0)):
        assert decide(dataclasses.replace(f, kb=kb), t)[0] == "rag"


def test_no_evidence_sends_world_knowledge_away_only_when_the_neighbours_are_unsure(router):
    t = router.thresholds
    f = router.features("Who won the football World Cup in 2022?")
    assert decide(f, t)[0] == "rag"  # the message alone: the neighbours lean to rag
    label, _, _, reason = decide(dataclasses.replace(f, kb=_evidence(z=-1.5)), t)
    assert (label, reason) == ("out_of_scope", "kb:none")
    assert decide(dataclasses.replace(f, kb=_evidence(chunks=0)), t)[0] == "out_of_scope"  # empty knowledge base
    assert decide(dataclasses.replace(f, kb=_evidence(z=t.kb_none_z + 0.5)), t)[0] == "rag"  # something is near
    sure = dataclasses.replace(f, class_sims={**f.class_sims, "rag": max(f.class_sims.values()) + t.kb_none_lead})
    assert decide(dataclasses.replace(sure, kb=_evidence(z=-1.5)), t)[0] == "rag"


def test_route_explains_itself(router):
    route = router.classify("hello")
    assert route.reason == "rule:greeting" and route.explanation == "rule:greeting: a greeting"
    route = router.classify("What were Costco's emissions in 2022?")
    assert route.label == "rag" and route.explanation.startswith("vocabulary: ")
    assert route.query is not None and route.query.vector is not None and route.query.language == "en"


# ---------------------------------------------------------------- FAQ reload and editing


def test_faq_reload_after_an_edit_embeds_only_new_questions(embedder, settings, tmp_path):
    path = tmp_path / "faq.json"
    entries = load_faq(DEFAULT_FAQ_PATH)
    save_faq(path, entries)
    counting = CountingEmbedder(embedder)
    r = Router(counting, path, settings, check_interval_s=0)
    assert r.classify("What is Scope 3?").reply == next(e for e in entries if e.id == "scope_3").answer

    edited = [dataclasses.replace(e, answer="EDITED scope 3 answer.") if e.id == "scope_3" else e for e in entries]
    # A fresh token keeps the new variants out of the shared vector cache, so they really are new to the router.
    token = uuid.uuid4().hex[:6]
    travel = (f"What is our business travel policy {token}?", f"差旅政策{token}是什么？")
    edited.append(FaqEntry("travel", travel, "Take the train.", "坐火车。"))
    save_faq(path, edited)
    counting.queries.clear()
    route = r.classify("What is Scope 3?")  # picked up without a restart
    assert route.reply == "EDITED scope 3 answer."
    assert r.embedded_last_reload == 2  # only the two new question variants
    assert sorted(counting.queries) == sorted(["What is Scope 3?", *travel])
    route = r.classify(f"what's the business travel policy {token} here?")
    assert (route.label, route.entry_id, route.reply) == ("faq", "travel", "Take the train.")
    assert r.classify(f"我们的差旅政策{token}是怎样的").reply == "坐火车。"

    # Unchanged file: nothing is re-read into the bank or re-embedded.
    assert r.reload() is False

    # A broken edit keeps the last good FAQ and says why.
    path.write_text('{"version": 1, "entries": [{"id": "x"}]}', encoding="utf-8")
    assert r.reload() is False
    assert r.classify("What is Scope 3?").reply == "EDITED scope 3 answer."
    assert r.faq_error and "FAQ entry #1 (id 'x')" in r.faq_error


def test_router_follows_the_user_copy_once_it_exists(embedder, tmp_path):
    settings = Settings(kb_dir=tmp_path / "kb", model_cache=Settings().model_cache)
    r = Router(embedder, settings=settings, check_interval_s=0)
    assert r.faq_file == DEFAULT_FAQ_PATH
    default_answer = r.classify("What is TCFD?").reply
    entries = [
        dataclasses.replace(e, answer_zh=None, answer="Our own TCFD note.") if e.id == "tcfd" else e
        for e in load_faq(DEFAULT_FAQ_PATH)
    ]
    save_faq(settings.kb_dir / "faq.json", entries)
    route = r.classify("What is TCFD?")
    assert r.faq_file == settings.kb_dir / "faq.json"
    assert route.reply == "Our own TCFD note." != default_answer
    assert r.classify("什么是TCFD？").reply == "Our own TCFD note."  # no Chinese answer: English fallback


def test_entries_given_in_code_are_validated(embedder):
    r = Router(embedder, [FaqEntry("hq", ("Where is the head office?",), "In Shenzhen.")])
    route = r.classify("where's the head office?")
    assert (route.label, route.reply) == ("faq", "In Shenzhen.")
    assert r.classify("you there?").label in LABELS
    # Without the default chit-chat entries, rule replies fall back to built-in text in the message's language.
    assert CJK.search(r.classify("你好").reply)
    with pytest.raises(FaqError, match="id 'a' is already used"):
        Router(embedder, [FaqEntry("a", ("x",), "y"), FaqEntry("a", ("z",), "w")])


# ---------------------------------------------------------------- no LLM on the FAQ path


def test_an_faq_hit_never_touches_an_llm(settings):
    """In a fresh interpreter: classify FAQ and chit-chat messages, then check no LLM code was ever imported."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from rag.embed import E5Embedder
        from rag.route import Router
        from rag.settings import Settings
        r = Router(E5Embedder(threads=2), settings=Settings(kb_dir=Path({str(settings.kb_dir)!r}),
                   model_cache=Path({str(settings.model_cache)!r})))
        labels = [r.classify(m).label for m in ("What is Scope 3?", "什么是ESG？", "hello", "who are you?")]
        assert labels == ["faq", "faq", "chitchat", "chitchat"], labels
        loaded = [m for m in sys.modules if m.split(".")[0] in ("llama_cpp", "openai", "langchain", "langchain_core")
                  or m in ("rag.llm", "rag.answer", "rag.prompt")]
        print(loaded)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------- data hygiene


def test_labelled_set_is_big_bilingual_and_disjoint_from_the_example_bank():
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 200
    assert {r["label"] for r in rows} == set(LABELS)
    for label in LABELS:
        assert {r["lang"] for r in rows if r["label"] == label} == {"en", "zh"}, label
    for r in rows:
        assert r["lang"] == detect_lang(r["text"]), r
    bank = {normalize_question(e.text) for e in load_examples(DEFAULT_INTENTS_PATH)}
    variants = {normalize_question(q) for e in load_faq(DEFAULT_FAQ_PATH) for q in e.questions}
    texts = [normalize_question(r["text"]) for r in rows]
    assert len(set(texts)) == len(texts), "duplicate messages in the labelled set"
    assert not set(texts) & bank, f"benchmark messages in the example bank: {set(texts) & bank}"
    assert not set(texts) & variants, f"benchmark messages copied from FAQ variants: {set(texts) & variants}"
    hard = {r["text"] for r in rows}
    assert {"hi, what were Costco's emissions?", "thanks! and what about scope 3?"} <= hard


def test_example_bank_loads_and_names_bad_lines(tmp_path):
    examples = load_examples(DEFAULT_INTENTS_PATH)
    assert {e.label for e in examples} == {"rag", "chitchat", "out_of_scope"}
    assert {e.lang for e in examples} == {"en", "zh"}
    bad = tmp_path / "intents.jsonl"
    bad.write_text('{"text": "hi", "label": "chitchat"}\n{"text": "x", "label": "weather"}\n', encoding="utf-8")
    with pytest.raises(Exception, match=r"intents.jsonl:2: label 'weather'"):
        load_examples(bad)


# ---------------------------------------------------------------- rules (no embedding)


@pytest.mark.parametrize(
    ("message", "rule", "text"),
    [
        ("Hello!!", "greeting", "Hello!!"),
        ("早上好呀", "greeting", "早上好呀"),
        ("Thank you very much.", "thanks", "Thank you very much."),
        ("hi, what were Costco's emissions?", None, "what were Costco's emissions?"),
        ("你好，请问力拓的目标是什么", None, "请问力拓的目标是什么"),
        ("thanks! and what about scope 3?", None, "and what about scope 3?"),
        ("thanks for the answer", None, "thanks for the answer"),
        ("hickory smoked", None, "hickory smoked"),
    ],
)
def test_text_rules(message, rule, text):
    sig = text_signals(message)
    assert (sig.rule, sig.text) == (rule, text)


def test_signals():
    assert text_signals("and what about scope 3?").followup
    assert text_signals("那范围三呢？").followup
    assert set(text_signals("What was the revenue in FY2022?").markers) == {"fy2022", "what was"}
    assert "costco" in text_signals("what does Costco report?").markers
    assert "腾讯" in text_signals("腾讯如何定义碳中和？").markers
    assert text_signals("write a SQL query that joins two tables").code
    assert text_signals("把这段话翻译成英文").task
    assert text_signals("公司的用水量是多少？").knowledge
    assert not text_signals("what's the weather in Paris?").knowledge
