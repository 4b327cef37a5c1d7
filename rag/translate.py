"""Cross-lingual retrieval: the question translated into the documents' other language (Chinese <-> English) with
the bundled LLM, both queries retrieved, the two rankings fused.

BM25 cannot match a Chinese question against an English report at all, and the company a Chinese question names
("西门子") is not the name the report uses ("Siemens"). One short LLM call (at most ``MAX_TOKENS`` tokens, after the
cached system message) gives the retriever the document-language query; translations are cached per question.
The answer is still written from the original question, so it comes back in the question's language.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import replace

from rag.figures import extract_figures, figure_in
from rag.llm import LLM, ChatMessage
from rag.prompt import SYSTEM_PROMPT, sanitize
from rag.text import detect_language
from rag.types import Hit, Retrieval

log = logging.getLogger(__name__)

MAX_TOKENS = 48
# The examples name a company in no knowledge base: a small model copies an example's name into translations of
# names it does not know (with "西门子 -> Siemens" as the example, "苏伊士…" came back as "What was Siemens' …").
_EXAMPLE_NAMES = {"en": ("Bluebay", "蓝湾"), "zh": ("蓝湾", "Bluebay")}
_ASK = {
    "en": (
        "Translate the question below into English, to search a company's ESG report with it. Do not answer it. Keep "
        "company names (in their usual English form), figures and years.\n"
        "Example: 蓝湾集团2023年的范围1排放是多少？ -> What were Bluebay Group's Scope 1 emissions in 2023?\n\n"
        "Question: {question}\nEnglish question:"
    ),
    "zh": (
        "把下面的问题翻译成中文，用于检索企业的ESG报告。不要回答问题。保留公司名称、数字和年份。\n"
        "例：What were Bluebay Group's Scope 1 emissions in 2023? -> 蓝湾集团2023年的范围1排放是多少？\n\n"
        "问题：{question}\n中文问题："
    ),
}


def translate_messages(question: str, target: str) -> tuple[ChatMessage, ...]:
    """The translation request. The system message is the answer prompt's, so llama.cpp keeps it cached."""
    ask = _ASK[target].format(question=sanitize(question).strip())
    return (ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", ask))


_LABEL = re.compile(r"^(?:english|chinese|translation|中文|英文|译文)(?:\s*question|问题)?\s*[:：]\s*", re.I)


def clean_translation(raw: str, question: str, target: str) -> str | None:
    """The translated question from the model's reply, less any figure the question does not state, or ``None``
    when it is unusable (empty, not in ``target``, far longer than the question)."""
    line = raw.strip().splitlines()[0].strip() if raw.strip() else ""
    line = _LABEL.sub("", line)
    line = line.strip().strip("\"'“”‘’「」").strip()
    if not line or len(line) > 3 * len(question) + 80 or detect_language(line) != target:
        return None
    copied, source_name = _EXAMPLE_NAMES[target]
    if copied.lower() in line.lower() and source_name.lower() not in question.lower():
        return None  # the example's company, copied in place of the question's
    # A translation keeps the question's figures; a figure it adds is the model answering instead (e.g. "SUEZ
    # processed 1,000 tons of wastewater in 2023."), and would steer retrieval to pages stating that number.
    asked = extract_figures(question)
    for figure in reversed(extract_figures(line)):
        if not figure_in(figure, asked):
            line = line.replace(figure.text, " ")
    return re.sub(r"\s{2,}", " ", line).strip() or None


class QueryTranslator:
    """Translates questions with ``llm``, caching the last ``max_entries`` (question, target language) pairs.
    Thread-safe; shared by every question of an Assistant."""

    def __init__(self, llm: LLM, max_entries: int = 512) -> None:
        self.llm = llm
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, str], str | None] = OrderedDict()
        self._lock = threading.Lock()

    def translate(self, question: str, target: str) -> str | None:
        """``question`` in ``target`` (``en`` or ``zh``), or ``None`` when the model gave nothing usable."""
        key = (question.strip(), target)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        start = time.perf_counter()
        raw = "".join(self.llm.stream(translate_messages(question, target), max_tokens=MAX_TOKENS, stop=("\n",)))
        result = clean_translation(raw, question, target)
        log.info("translated %r -> %r (%s) in %.2f s", question, result, target, time.perf_counter() - start)
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return result


def _page_key(hit: Hit) -> tuple:
    s = hit.chunk.source
    return (hit.chunk.doc_id, s.page, s.start_s) if (s.page is not None or s.start_s is not None) else (hit.chunk.id,)


def fuse(first: Retrieval, second: Retrieval, k: int, rrf_k: int = 60) -> Retrieval:
    """The two retrievals' passages merged by reciprocal rank (one passage per page: the better ranked copy, ``first``
    on a tie), best ``k`` kept; ties go to the higher dense score, and a page keeps the higher of its two dense scores.
    Keeps ``first``'s query and scope; ``missing`` only when neither found anything."""
    scores: dict[tuple, float] = {}
    best: dict[tuple, tuple[int, Hit]] = {}  # page -> (rank of the copy kept, 0-based; the copy)
    for retrieval in (first, second):
        for rank, hit in enumerate(retrieval.hits):
            key = _page_key(hit)
            scores[key] = scores.get(key, 0.0) + 1.0 / (rrf_k + rank + 1)
            held = best.get(key)
            # Each query's copy of a page holds the chunks that query matched: the Chinese question's copy of an
            # English page can be a neighbouring paragraph that the translation, ranking the page first, did not
            # pick (SUEZ p. 3: "diversity and inclusion" instead of the recycling figures), so keep the copy of the
            # query that ranked the page higher.
            keep = hit if held is None or rank < held[0] else held[1]
            # The page's relevance is its best cosine under either query: the relevance floor (``min_dense_score``)
            # must see how well the translated question matched the English page.
            dense = max((h.dense for h in (hit, held[1] if held else None) if h and h.dense is not None), default=None)
            best[key] = (min(rank, held[0]) if held else rank, replace(keep, dense=dense))
    order = sorted(scores, key=lambda key: (-scores[key], -(best[key][1].dense or 0.0)))
    hits = tuple(best[key][1] for key in order[:k])
    missing = first.missing if not hits else None
    return Retrieval(first.query, hits, first.scope, missing)
