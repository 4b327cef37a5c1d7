"""Cross-lingual retrieval (rag/translate.py): cleaning the model's translation, fusing two rankings, and the chain
retrieving with both queries (scripted LLM, fake retriever: fast). The real model is exercised by
tests/test_ground.py's Chinese question about an English report."""

from __future__ import annotations

from rag.answer import RagChain
from rag.llm import ScriptedLLM
from rag.settings import Settings
from rag.translate import QueryTranslator, clean_translation, fuse
from rag.types import Chunk, DocMeta, Hit, Retrieval, Scope, Source

SETTINGS = Settings.from_env(environ={})


def hit(name: str, page: int, dense: float = 0.85) -> Hit:
    chunk = Chunk(f"{name}{page}", name, f"text of {name} p. {page}", Source(name, page=page), DocMeta())
    return Hit(chunk, 0.1, dense)


def test_clean_translation_keeps_the_question_and_drops_what_the_model_added():
    assert clean_translation("English question: What was the FY2023 revenue?", "2023财年收入是多少？", "en") == (
        "What was the FY2023 revenue?"
    )
    # the model answered instead of translating: its invented figure must not steer retrieval
    got = clean_translation("SUEZ processed 1,000 tons of wastewater in 2023.", "SUEZ在2023年处理了多少废水？", "en")
    assert got == "SUEZ processed of wastewater in 2023."  # "1,000 tons" is one figure
    assert clean_translation("苏伊士2023年处理了多少废水？", "How much wastewater did SUEZ treat in 2023?", "zh")
    assert clean_translation("", "问题？", "en") is None
    assert clean_translation("还是中文", "问题是什么？", "en") is None  # not translated


def test_fuse_interleaves_both_rankings_one_passage_per_page():
    a = Retrieval("q", (hit("zh.pdf", 1, 0.84), hit("zh.pdf", 2), hit("en.pdf", 3)))
    b = Retrieval("t", (hit("en.pdf", 3, 0.9), hit("en.pdf", 7, 0.8)))
    fused = fuse(a, b, k=4)
    assert [(h.chunk.source.file, h.chunk.source.page) for h in fused.hits] == [
        ("en.pdf", 3),  # ranked by both
        ("zh.pdf", 1),
        ("zh.pdf", 2),  # ties on rank go to the higher dense score
        ("en.pdf", 7),
    ]
    assert fused.query == "q"


def test_a_page_both_queries_find_keeps_its_better_dense_score():
    # The Chinese question matches the English page weakly (0.76, under the 0.79 relevance floor), its translation
    # strongly (0.88): the fused retrieval must not be refused as "nothing relevant retrieved".
    a = Retrieval("q", (hit("en.pdf", 3, 0.76), hit("en.pdf", 4, 0.75)))
    b = Retrieval("t", (hit("en.pdf", 3, 0.88),))
    fused = fuse(a, b, k=2)
    assert fused.hits[0].chunk.source.page == 3 and fused.hits[0].dense == 0.88
    assert fused.best_dense == 0.88 > SETTINGS.min_dense_score
    assert fuse(b, a, k=2).hits[0].dense == 0.88


def test_a_page_both_queries_find_keeps_the_text_of_the_query_that_ranked_it_higher():
    # SUEZ p. 3 (session 10): the Chinese question ranked the page 5th through a paragraph on diversity, its
    # translation 1st through the recycling figures; the reader must get the recycling paragraph.
    def on_p3(text: str, dense: float) -> Hit:
        chunk = Chunk(f"p3-{dense}", "en.pdf", text, Source("en.pdf", page=3), DocMeta())
        return Hit(chunk, 0.1, dense)

    asked = Retrieval("q", (*(hit("en.pdf", p) for p in (11, 2, 8, 9)), on_p3("diversity and inclusion", 0.80)))
    translated = Retrieval("t", (on_p3("2.7 million tonnes of secondary raw materials", 0.87), hit("en.pdf", 7)))
    for fused in (fuse(asked, translated, k=5), fuse(translated, asked, k=5)):
        (page3,) = [h for h in fused.hits if h.chunk.source.page == 3]
        assert page3.chunk.text == "2.7 million tonnes of secondary raw materials" and page3.dense == 0.87
    # equal ranks: the first retrieval's copy, with the better dense score of the two
    tie = fuse(Retrieval("q", (on_p3("asked", 0.80),)), Retrieval("t", (on_p3("translated", 0.87),)), k=1)
    assert tie.hits[0].chunk.text == "asked" and tie.hits[0].dense == 0.87


class RecordingRetriever:
    def __init__(self) -> None:
        self.queries: list[str] = []

    def retrieve(self, query: str, scope: Scope = Scope(), k: int | None = None, **_: object) -> Retrieval:
        self.queries.append(query)
        page = 3 if query.startswith("How much") else 9
        return Retrieval(query, (hit("suez.pdf", page),), scope)


def test_a_chinese_question_is_also_retrieved_in_english_and_translations_are_cached():
    def reply(messages):
        if "English question:" in messages[-1].content:
            return "How much wastewater did SUEZ treat in 2023?"
        return "2023年处理了污水【1】。"

    llm = ScriptedLLM(reply)
    translator = QueryTranslator(llm)
    retriever = RecordingRetriever()
    chain = RagChain(retriever, llm, SETTINGS, ground=False, translator=translator, languages=lambda s: {"en", "zh"})
    events = list(chain.stream("SUEZ 2023年处理了多少污水？"))
    assert retriever.queries == ["SUEZ 2023年处理了多少污水？", "How much wastewater did SUEZ treat in 2023?"]
    assert {h.chunk.source.page for h in events[0].hits} == {3, 9}  # both rankings reach the prompt
    assert "请用中文回答" in llm.calls[-1][-1].content  # the answer is asked for in the question's language
    chain.ask("SUEZ 2023年处理了多少污水？")
    assert sum("English question:" in c[-1].content for c in llm.calls) == 1  # cached


def test_no_translation_when_no_document_in_the_other_language_is_in_scope():
    llm = ScriptedLLM(["Answer [1]."])
    retriever = RecordingRetriever()
    chain = RagChain(retriever, llm, SETTINGS, translator=QueryTranslator(llm), languages=lambda s: {"en"})
    chain.ask("How much wastewater did SUEZ treat?")
    assert retriever.queries == ["How much wastewater did SUEZ treat?"] and len(llm.calls) == 1


def test_a_translation_that_copies_the_examples_company_is_dropped():
    # With "西门子 -> Siemens" as the example, "苏伊士…" came back as "What was Siemens' …": the prompt's example now
    # names a company in no knowledge base, and a translation naming it is not used.
    assert (
        clean_translation("What was Bluebay Group's water use in 2023?", "苏伊士2023年的用水量是多少？", "en") is None
    )
    assert clean_translation("蓝湾集团2023年的用水量是多少？", "What was SUEZ's water use in 2023?", "zh") is None
    assert clean_translation("What was Bluebay Group's revenue?", "蓝湾集团的收入是多少？", "en") == (
        "What was Bluebay Group's revenue?"
    )
