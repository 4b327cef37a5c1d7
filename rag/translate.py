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

from rag.llm import LLM, ChatMessage
from rag.prompt import SYSTEM_PROMPT, sanitize
from rag.text import detect_language
from rag.types import Hit, Retrieval

log = logging.getLogger(__name__)

MAX_TOKENS = 48
_ASK = {
    "en": (
        "Translate this question about a company's ESG report into English, for searching the report. Keep company "
        "names (in their usual English form), figures and years. Reply with the English question only.\n\n"
        "Question: {question}\nEnglish:"
    ),
    "zh": (
        "把这个关于企业ESG报告的问题翻译成中文，用于检索报告。保留公司名称、数字和年份。只回复中文问题。\n\n"
        "问题：{question}\n中文："
    ),
}


def translate_messages(question: str, target: str) -> tuple[ChatMessage, ...]:
    """The translation request. The system message is the answer prompt's, so llama.cpp keeps it cached."""
    ask = _ASK[target].format(question=sanitize(question).strip())
    return (ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", ask))


def clean_translation(raw: str, question: str, target: str) -> str | None:
    """The translated question from the model's reply, or ``None`` when it is unusable (empty, not in ``target``,
    far longer than the question)."""
    line = raw.strip().splitlines()[0].strip() if raw.strip() else ""
    line = re.sub(r"^(?:english|chinese|translation|中文|英文|译文)\s*[:：]\s*", "", line, flags=re.I)
    line = line.strip().strip("\"'“”‘’「」").strip()
    if not line or len(line) > 3 * len(question) + 80 or detect_language(line) != target:
        return None
    return line


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
    """The two retrievals' passages merged by reciprocal rank (one passage per page: the better ranked copy), best
    ``k`` kept; ties go to the higher dense score. Keeps ``first``'s query and scope; ``missing`` only when neither
    found anything."""
    scores: dict[tuple, float] = {}
    best: dict[tuple, Hit] = {}
    for retrieval in (first, second):
        for rank, hit in enumerate(retrieval.hits):
            key = _page_key(hit)
            scores[key] = scores.get(key, 0.0) + 1.0 / (rrf_k + rank + 1)
            if key not in best:
                best[key] = hit
    order = sorted(scores, key=lambda key: (-scores[key], -(best[key].dense or 0.0)))
    hits = tuple(best[key] for key in order[:k])
    missing = first.missing if not hits else None
    return Retrieval(first.query, hits, first.scope, missing)
