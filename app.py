"""The Gradio web app: a thin layer over ``rag.assistant.Assistant``.

    python app.py            # settings from ESG_* environment variables (see rag/settings.py)

Importing this module loads no model and starts nothing: ``build_ui(assistant)`` builds the interface and ``main()``
prepares the sample knowledge base on first start and launches the server. The handlers live in ``Controller`` so
tests can call them directly. Model output and document text are untrusted: every piece is HTML-escaped and links
or images the model writes are never rendered as live content.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import gc
import hashlib
import hmac
import html
import itertools
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import urllib.parse
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __name__ != "__mp_main__":
    # The PDF parser's forkserver children re-run the main script as __mp_main__; they need no UI, and importing
    # Gradio costs seconds of CPU per parsed file.
    import gradio as gr

from rag.assistant import Assistant, Session
from rag.errors import RagError
from rag.settings import Settings
from rag.storage import Storage, deployment_settings
from rag.types import Answer, Citation, Document, Hit, IngestResult, Scope, Source, format_clock

log = logging.getLogger("app")

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
SAMPLE_SUFFIXES = (".pdf", ".mp4", ".m4a", ".mp3", ".wav", ".webm")
AUDIO_SUFFIXES = (".mp3", ".wav", ".m4a", ".flac")
HISTORY_TURNS = 3  # earlier exchanges handed to the assistant for follow-up questions
# An evaluation holds the shared LLM for seconds per question: in shared mode a visitor runs at most this many.
EVAL_MAX_QUESTIONS = 50
EVAL_JUDGES = ("same", "none")  # the app's own model or no model: never load another one in a shared app

# ----------------------------------------------------------------------------------------------------------- strings
# UI text in English and Chinese; the language toggle switches between them. Answers follow the question's language.
TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "ESG Document Assistant",
        "subtitle": "Ask questions about sustainability reports and briefings. Every answer cites its passage: "
        "<em>report.pdf, p. 12</em> or <em>briefing.mp4 ▶ 03:15–03:42</em>. Runs fully offline.",
        "tab_chat": "Chat",
        "tab_docs": "Documents",
        "chat_label": "Conversation",
        "placeholder": "Ask about emissions, targets, water, workforce or governance… (English or 中文)",
        "send": "Ask",
        "clear": "New conversation",
        "scope": "Search in",
        "scope_all": "All documents",
        "scope_docs": "Chosen documents",
        "scope_company": "One company",
        "scope_pick_docs": "Documents",
        "scope_pick_company": "Company",
        "upload": "Drop PDFs or videos here (several at once)",
        "upload_private": "Your uploads are private to this browser session and are gone when you close it.",
        "docs_table": "Knowledge base",
        "delete_pick": "Documents to delete",
        "delete": "Delete selected",
        "transcript_pick": "Video or audio transcript",
        "transcript": "Transcript",
        "srt": "Download SRT",
        "vtt": "Download VTT",
        "rebuild": "Rebuild the knowledge base",
        "admin": "Administrator",
        "admin_token": "Admin token",
        "admin_unlock": "Unlock",
        "examples": "Example questions",
        "sources": "Sources",
        "reading": "Reading",
        "thinking": "Searching the documents…",
        "passage": "Show passage",
        "no_docs": "No documents yet: drop PDFs or videos on the upload area.",
        "col_file": "File",
        "col_kind": "Type",
        "col_size": "Pages / duration",
        "col_chunks": "Passages",
        "col_company": "Company",
        "col_year": "Year",
        "col_where": "Visible to",
        "col_start": "Start",
        "col_end": "End",
        "col_text": "Text",
        "where_shared": "everyone",
        "where_private": "you only",
        "kind_pdf": "PDF",
        "kind_media": "video/audio",
        "pages": "pages",
        "route_faq": "FAQ",
        "route_chitchat": "chit-chat",
        "route_rag": "documents",
        "route_out_of_scope": "out of scope",
        "refused": "no answer found",
        "error": "Error",
        "kb_banner": "The knowledge base needs a rebuild",
        "footer": "Sample documents are fictional. Answers come from a small local model: check the cited passage.",
        "storage_persistent": "Storage: persistent (`{root}`): the knowledge base survives restarts.",
        "storage_ephemeral": "Storage: not persistent: documents added to the shared knowledge base are lost when "
        "the Space restarts.",
        "storage_local": "Storage: local folder `{kb}`.",
        "tab_eval": "Evaluation",
        "eval_intro": "Score the assistant on questions with known answers: retrieval (hit@k, MRR, nDCG), "
        "faithfulness to the cited passages, answer relevance, context precision, correctness and refusals. "
        "Questions are answered from the documents you see in the Documents tab, with the app's model. Upload a QA "
        "file in JSON lines, one object per line: `question`, and optionally `answer` (gold), `doc`, `page`, "
        "`evidence`, `answerable` (false when the documents hold no answer), or leave it empty to run the bundled "
        "sample set ({n} questions on the sample reports). Finished questions are kept: a stopped run continues "
        "where it stopped.",
        "eval_upload": "QA file (.jsonl); empty = the bundled sample set",
        "eval_mode": "Retrieval",
        "eval_mode_hybrid": "Hybrid (as in chat)",
        "eval_mode_dense": "Dense only",
        "eval_mode_bm25": "BM25 only",
        "eval_judge": "Judge",
        "eval_judge_same": "The app's model (all metrics)",
        "eval_judge_none": "Deterministic checks only (fast)",
        "eval_limit": "Questions to run (0 = all)",
        "eval_run": "Run evaluation",
        "eval_stop": "Stop",
        "eval_charts": "Charts",
        "eval_files": "Download (zip, report.md, charts)",
        "eval_done": "✓ {n} questions evaluated in {s:.0f} s ({reused} reused from an earlier run) · {source}",
        "eval_skipped": "Skipped {n} question(s) whose document is not in the knowledge base: {docs}",
        "eval_failed": "{n} question(s) failed: see the notes in the report",
        "eval_limited": "Only the first {n} of {total} questions were run.",
        "eval_stopped": "Stopped. Finished questions are kept: run again to continue where it stopped.",
    },
    "zh": {
        "title": "ESG 文档助手",
        "subtitle": "就可持续发展报告和简报提问。每个回答都注明出处：<em>report.pdf, p. 12</em> 或 "
        "<em>briefing.mp4 ▶ 03:15–03:42</em>。完全离线运行。",
        "tab_chat": "问答",
        "tab_docs": "文档",
        "chat_label": "对话",
        "placeholder": "询问排放、目标、水资源、员工或治理……（中文或 English）",
        "send": "提问",
        "clear": "新对话",
        "scope": "检索范围",
        "scope_all": "全部文档",
        "scope_docs": "选定文档",
        "scope_company": "某家公司",
        "scope_pick_docs": "文档",
        "scope_pick_company": "公司",
        "upload": "将 PDF 或视频拖放到此处（可多选）",
        "upload_private": "您上传的文件仅在本浏览器会话中可见，关闭页面后即删除。",
        "docs_table": "知识库",
        "delete_pick": "要删除的文档",
        "delete": "删除所选",
        "transcript_pick": "视频或音频转写稿",
        "transcript": "转写稿",
        "srt": "下载 SRT",
        "vtt": "下载 VTT",
        "rebuild": "重建知识库",
        "admin": "管理员",
        "admin_token": "管理员口令",
        "admin_unlock": "解锁",
        "examples": "示例问题",
        "sources": "来源",
        "reading": "正在阅读",
        "thinking": "正在检索文档……",
        "passage": "查看段落",
        "no_docs": "还没有文档：请将 PDF 或视频拖放到上传区域。",
        "col_file": "文件",
        "col_kind": "类型",
        "col_size": "页数 / 时长",
        "col_chunks": "段落数",
        "col_company": "公司",
        "col_year": "年份",
        "col_where": "可见范围",
        "col_start": "开始",
        "col_end": "结束",
        "col_text": "内容",
        "where_shared": "所有人",
        "where_private": "仅自己",
        "kind_pdf": "PDF",
        "kind_media": "视频/音频",
        "pages": "页",
        "route_faq": "常见问题",
        "route_chitchat": "闲聊",
        "route_rag": "文档",
        "route_out_of_scope": "超出范围",
        "refused": "文档中没有答案",
        "error": "出错",
        "kb_banner": "知识库需要重建",
        "footer": "示例文档均为虚构。回答由本地小模型生成，请核对所引用的段落。",
        "storage_persistent": "存储：持久（`{root}`），重启后知识库仍在。",
        "storage_ephemeral": "存储：非持久，Space 重启后共享知识库中新增的文档会丢失。",
        "storage_local": "存储：本地文件夹 `{kb}`。",
        "tab_eval": "评估",
        "eval_intro": "用已知答案的问题为助手打分：检索（hit@k、MRR、nDCG）、回答对所引段落的忠实度、"
        "回答相关性、上下文精确度、正确性和拒答。问题基于您在“文档”页看到的文档、使用应用的模型作答。"
        "上传 JSON lines 格式的问答文件，每行一个对象：`question`，可选 `answer`（标准答案）、`doc`、"
        "`page`、`evidence`、`answerable`（文档中没有答案时为 false）；不上传则运行内置示例集"
        "（针对示例报告的 {n} 个问题）。已完成的问题会保留：停止后再次运行会从停止处继续。",
        "eval_upload": "问答文件（.jsonl）；留空 = 内置示例集",
        "eval_mode": "检索方式",
        "eval_mode_hybrid": "混合（与问答相同）",
        "eval_mode_dense": "仅向量检索",
        "eval_mode_bm25": "仅 BM25",
        "eval_judge": "评判模型",
        "eval_judge_same": "应用的模型（全部指标）",
        "eval_judge_none": "仅确定性检查（快速）",
        "eval_limit": "运行的问题数（0 = 全部）",
        "eval_run": "开始评估",
        "eval_stop": "停止",
        "eval_charts": "图表",
        "eval_files": "下载（zip、report.md、图表）",
        "eval_done": "✓ 已评估 {n} 个问题，用时 {s:.0f} 秒（{reused} 个沿用之前的结果）· {source}",
        "eval_skipped": "跳过 {n} 个问题：知识库中没有 {docs}",
        "eval_failed": "{n} 个问题出错：见报告中的说明",
        "eval_limited": "只运行了 {total} 个问题中的前 {n} 个。",
        "eval_stopped": "已停止。已完成的问题会保留：再次运行即从停止处继续。",
    },
}

EXAMPLES = [
    "What were Northwind Metals' Scope 1 emissions in 2023?",
    "What is Northwind Metals' renewable electricity target?",
    "How much did direct emissions fall according to the briefing?",
    "青禾能源2023年的范围一排放是多少？",
    "青禾能源的碳中和目标是什么？",
    "What is Scope 3?",
]


def t(lang: str, key: str) -> str:
    return TEXT.get(lang, TEXT["en"]).get(key) or TEXT["en"][key]


# ------------------------------------------------------------------------------------------------------ session state
@dataclass
class UiSession:
    """One browser session: the assistant session (private uploads), chat history and UI language."""

    session: Session
    lang: str = "en"
    admin: bool = False
    history: list[tuple[str, str]] = field(default_factory=list)  # (question, answer) for follow-ups
    private_files: dict[str, Path] = field(default_factory=dict)  # private upload name -> uploaded file
    eval_stop: threading.Event = field(default_factory=threading.Event)  # set by the Stop button
    eval_out: Path | None = None  # folder of the last evaluation report
    key: str = field(default_factory=lambda: secrets.token_hex(16))  # names this session's files on disk

    def __deepcopy__(self, memo: dict) -> UiSession:
        # gr.State deep-copies its value; a session holds an index and locks, which must be shared, not copied.
        return self


# ------------------------------------------------------------------------------------------------------- memory
def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or ``None`` where the C library has none (macOS, musl)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _find_malloc_trim()

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MALLOC_THRESHOLD = 128 * 1024  # bytes; glibc's own starting value for both


def configure_malloc(threshold: int = MALLOC_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds at ``threshold`` bytes, so large blocks stay out of the threads' heaps.

    Why: glibc raises both thresholds by itself once a large block has been freed (up to 32 MB and 64 MB). From then
    on, blocks up to that size (llama.cpp's 1.8 MB per-token candidate list, large strings and arrays) are carved
    from the heaps (arenas) of the worker threads that Gradio runs each answer's steps on, instead of getting their
    own mapping. Under 20 users those arenas grew by free but resident memory that ``release_memory`` did not hand
    back, +24 MB over 50 answers, while memory in use stayed flat (``benchmarks/memory_probe.py --gradio``,
    docs/bench/reliability.md). With the thresholds set, glibc's adjustment is off: every block of ``threshold``
    bytes or more is its own mapping, unmapped when freed, and the arenas stayed flat. Call it before the server
    starts its threads. Returns True when glibc took both settings; False elsewhere (macOS, musl).
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1 and mallopt(M_TRIM_THRESHOLD, threshold) == 1


def release_memory() -> bool:
    """Free what the last answer left for Python's cycle collector, then return the C heap's free pages to the
    operating system (one full ``gc.collect()``, then glibc ``malloc_trim(0)``, 0.2 ms median).

    Why the collection: llama-cpp-python's samplers (one per generation; they reference themselves) and other
    garbage in reference cycles hold C memory that Python does not count, so its own full collections came rarely:
    a Gradio server answering 30 questions for 20 users without them kept 14 MB of such blocks that one
    ``gc.collect()`` freed (``benchmarks/memory_probe.py --gradio --no-gc``). Why the trim: an answer streams from
    Gradio's worker threads, each with its own glibc arena, and llama.cpp allocates and frees about 1.8 MB per
    generated token; glibc keeps freed memory in the arenas (with 2 users about 1 MB per answer without the trim).
    Returns True when glibc released memory; False elsewhere or when none was free.
    """
    gc.collect()
    return _MALLOC_TRIM is not None and bool(_MALLOC_TRIM(0))


# ------------------------------------------------------------------------------------------------------- rendering
_CITE_MARK = re.compile(r"\[(\d{1,3})\]")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[a-z][a-z\-]{2,}|\d[\d,.]*\d%?|\d%?")
_STOP = frozenset(
    "the and for with from that this are was were has have had its our their which who what when where how into "
    "per than also not but all any can will been being more most less very such these those them they there".split()
)


def esc(text: str) -> str:
    return html.escape(text or "", quote=True)


def _inline(text: str) -> str:
    """Escape untrusted text for HTML; keep only **bold** and line breaks. Links and images stay inert text."""
    out = esc(text)
    out = re.sub(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?m)^\s*[-*•]\s+", "• ", out)
    return out.replace("\r", "").replace("\n", "<br>")


def render_answer_text(text: str, numbers: dict[int, int] | None = None) -> str:
    """The answer (escaped) with ``[n]`` marks as small citation chips.

    ``numbers`` maps passage numbers to the numbers shown (sources are numbered 1, 2, ... in order of citation);
    marks not in it are dropped. Without it (while streaming) marks show as they are.
    """

    def chip(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if numbers is not None and n not in numbers:
            return ""
        return f'<sup class="esg-cite">{numbers[n] if numbers is not None else n}</sup>'

    return _CITE_MARK.sub(chip, re.sub(r"[ \t]+(?=\[\d{1,3}\])", "", _inline(text)))


_SENT_SPLIT = re.compile(r"(?<=[.!?;])\s+(?=[A-Z0-9\"'(“])|(?<=[。！？；])")


def _paragraphs(text: str) -> list[list[str]]:
    """Paragraphs (the loader puts one per line, blank lines between) split into sentences."""
    paragraphs = (p.strip() for p in re.split(r"\n+", text.replace("\r", "")))
    return [[s for s in _SENT_SPLIT.split(p) if s.strip()] for p in paragraphs if p]


_DISTINCTIVE = 6.0  # weight of a figure like 388,500 or 5.7
_MIN_SHARE = 0.3  # a highlighted sentence carries at least this share of the claim's weight


def _figure_weight(number: str) -> float:
    """A distinctive figure (388,500, 5.7 or 80%) identifies the supporting sentence; a year or a count barely."""
    year = len(number) == 4 and number[:2] in ("19", "20")
    if "." in number or number.endswith("%") or (len(number) >= 3 and not year):
        return _DISTINCTIVE
    return 1.5 if year else 1.0


def _features(text: str) -> dict[str, float]:
    """Weighted bag of a sentence's words, figures (weighted by how distinctive) and Chinese character pairs."""
    low = text.lower()
    feats: dict[str, float] = {}
    for w in _WORD.findall(low):
        if w[0].isdigit():
            number = w.replace(",", "").rstrip(".")
            feats["#" + number] = _figure_weight(number)
        elif w not in _STOP:
            feats[w] = 1.0
    cjk = "".join(_CJK.findall(text))
    for a, b in itertools.pairwise(cjk):
        feats[a + b] = 1.0
    return feats


def claims_for(answer_text: str, n: int) -> list[str]:
    """The answer's sentences that cite passage ``n`` (marks removed)."""
    parts = re.split(r"(?<=[.!?])\s+|(?<=[。！？])|\n+", answer_text)  # "16.4%" is not a sentence end
    return [re.sub(r"\s+(?=[.,;:!?。，；：！？])", "", _CITE_MARK.sub("", p)).strip() for p in parts if f"[{n}]" in p]


def highlight_passage(passage: str, claims: Sequence[str]) -> tuple[str, str | None]:
    """The passage as HTML with the sentence best supporting each claim in ``<mark>``; also the first such sentence.

    Overlap is counted in shared words, figures (a distinctive figure outweighs several words) and Chinese character
    pairs. A marked sentence must contain the claim's distinctive figures and carry at least 30% of its weight, so
    when the model cites the wrong passage nothing is highlighted rather than a look-alike heading.
    """
    paragraphs = _paragraphs(passage)
    sentences = [s for p in paragraphs for s in p]
    marked: set[int] = set()
    for claim in claims:
        want = _features(claim)
        if not want:
            continue
        figures = {k for k, w in want.items() if w >= _DISTINCTIVE}
        best, best_score = None, 0.0
        for i, sentence in enumerate(sentences):
            have = _features(sentence)
            if figures and not figures & have.keys():
                continue  # the claim's figure is not in this sentence: it cannot be what supports the claim
            score = sum(w for k, w in want.items() if k in have)
            if score > best_score:
                best, best_score = i, score
        if best is not None and best_score >= max(2.0, _MIN_SHARE * sum(want.values())):
            marked.add(best)
    out, first, i = [], None, 0
    for paragraph in paragraphs:
        parts = []
        for sentence in paragraph:
            if i in marked:
                first = first or sentence
                parts.append(f"<mark>{esc(sentence)}</mark>")
            else:
                parts.append(esc(sentence))
            i += 1
        out.append(("" if _CJK.search(" ".join(paragraph)[:200]) else " ").join(parts))
    return "<br>".join(out), first


def reading_summary(hits: Sequence[Hit]) -> str:
    """The passages being read, grouped by file: ``report.pdf p. 2, 3 · briefing.mp4 ▶ 00:15–00:45``."""
    by_file: dict[str, list[str]] = {}
    for h in hits:
        src = h.chunk.source
        if src.is_media:
            where = src.label().split(" ▶ ", 1)[-1]
        elif src.page is not None:
            where = str(src.page)
        else:
            where = ""
        spots = by_file.setdefault(src.file, [])
        if where and where not in spots:
            spots.append(where)
    parts = []
    for file, spots in by_file.items():
        if not spots:
            parts.append(file)
        elif spots[0][0].isdigit() and ":" not in spots[0]:
            parts.append(f"{file} p. {', '.join(sorted(spots, key=int))}")
        else:
            parts.append(f"{file} ▶ {', '.join(spots)}")
    return " · ".join(parts)


class Renderer:
    """Builds the HTML of an assistant message. ``media_url(source)`` gives a playable URL for media sources."""

    def __init__(self, media_url: Callable[[Source], str | None]) -> None:
        self.media_url = media_url

    def badge(self, route: str | None, lang: str, refused: bool = False) -> str:
        if not route:
            return ""
        label = t(lang, f"route_{route}") if f"route_{route}" in TEXT["en"] else route
        extra = f' <span class="esg-badge esg-refused">{esc(t(lang, "refused"))}</span>' if refused else ""
        return f'<span class="esg-badge esg-route-{esc(route)}" data-route="{esc(route)}">{esc(label)}</span>{extra}'

    def pending(self, route: str | None, hits: Sequence[Hit], text: str, lang: str) -> str:
        """While streaming: badge, the passages being read (not yet sources), and the text so far."""
        parts = ['<div class="esg-answer esg-streaming">', f'<div class="esg-meta">{self.badge(route, lang)}</div>']
        if hits:
            summary = esc(reading_summary(hits))
            parts.append(f'<div class="esg-reading">{esc(t(lang, "reading"))}: {summary}</div>')
        if text:
            parts.append(f'<div class="esg-text">{render_answer_text(text)}<span class="esg-caret"></span></div>')
        else:
            parts.append(f'<div class="esg-text esg-muted">{esc(t(lang, "thinking"))}</div>')
        parts.append("</div>")
        return "".join(parts)

    def final(self, answer: Answer, lang: str) -> str:
        """The finished answer: badge, text with citation chips, and the cited passages only."""
        numbers = {c.n: i for i, c in enumerate(answer.citations, 1)}
        parts = [
            f'<div class="esg-answer" data-route="{esc(answer.route)}">',
            f'<div class="esg-meta">{self.badge(answer.route, lang, answer.refused)}</div>',
            f'<div class="esg-text">{render_answer_text(answer.text, numbers)}</div>',
        ]
        if answer.citations:
            parts.append(f'<div class="esg-sources"><div class="esg-sources-title">{esc(t(lang, "sources"))}</div>')
            parts.extend(self.source_card(c, numbers[c.n], answer.text, lang) for c in answer.citations)
            parts.append("</div>")
        parts.append("</div>")
        return "".join(parts)

    def source_card(self, citation: Citation, shown: int, answer_text: str, lang: str) -> str:
        """One cited passage; ``shown`` is its number in the answer as displayed."""
        src = citation.source
        body, quote = highlight_passage(citation.hit.chunk.text, claims_for(answer_text, citation.n))
        head = (
            f'<div class="esg-source-head"><span class="esg-n">{shown}</span>'
            f'<span class="esg-label">{esc(src.label())}</span></div>'
        )
        player = ""
        if src.is_media:
            url = self.media_url(src)
            if url:
                end = f",{src.end_s:.2f}" if src.end_s is not None else ""
                tag = "audio" if Path(src.file).suffix.lower() in AUDIO_SUFFIXES else "video"
                player = (
                    f'<{tag} class="esg-player" controls preload="metadata" '
                    f'src="{esc(url)}#t={src.start_s:.2f}{end}"></{tag}>'
                )
        preview = f'<div class="esg-quote">“{esc(quote)}”</div>' if quote else ""
        details = (
            f'<details class="esg-passage"><summary>{esc(t(lang, "passage"))}</summary>'
            f'<div class="esg-passage-text">{body}</div></details>'
        )
        return f'<div class="esg-source" data-label="{esc(src.label())}">{head}{player}{preview}{details}</div>'

    def error(self, message: str, lang: str) -> str:
        return f'<div class="esg-answer esg-error"><strong>{esc(t(lang, "error"))}:</strong> {esc(message)}</div>'


# ------------------------------------------------------------------------------------------------------ evaluation
class EvalStopped(Exception):
    """The visitor pressed Stop; raised from the progress callback (not a RagError, so the runner doesn't record it
    as a failed question)."""


@dataclass(frozen=True)
class EvalRun:
    """A finished evaluation in the app: what to show and what to offer for download."""

    summary: str  # one or more lines for the status area (UI language)
    markdown: str  # the report, safe to display (see ``report_for_display``)
    report: Path  # report.md
    charts: list[Path]  # PNGs
    archive: Path  # zip of report.md and the charts
    warnings: list[str]  # skipped or failed questions, a limit the visitor didn't set; also in ``summary``


_MD_IMAGE_LINE = re.compile(r"(?m)^!\[[^\]\n]*\]\([^)\n]*\)[ \t]*\n?")


def report_for_display(markdown: str) -> str:
    """The report's Markdown made inert for display: its chart lines dropped (the charts are shown beside it), and
    the model's answers (untrusted, quoted in the tables) unable to form links, images or HTML."""
    text = _MD_IMAGE_LINE.sub("", markdown)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("[", "\\[").replace("]", "\\]")
    text = re.sub(r"(?i)\b(https?|ftp)://", r"\1\\://", text)  # no bare-URL autolinks
    return re.sub(r"(?i)\bwww\.", r"www\\.", text)


def _zip(archive: Path, files: Sequence[Path]) -> Path:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f.name)
    return archive


# ------------------------------------------------------------------------------------------------------ controller
def make_scope(mode: str, docs: Sequence[str] | None, company: str | None) -> Scope:
    """The retrieval scope chosen in the UI (``mode``: ``all``, ``docs`` or ``company``)."""
    if mode == "docs":
        if not docs:
            raise RagError("choose at least one document to search in, or search all documents")
        return Scope(docs=tuple(docs))
    if mode == "company":
        if not company:
            raise RagError("choose a company to search in, or search all documents")
        return Scope(company=company)
    return Scope()


def _size(doc: Document, lang: str) -> str:
    if doc.pages is not None:
        return f"{doc.pages} {t(lang, 'pages')}"
    if doc.duration_s is not None:
        return format_clock(doc.duration_s)
    return ""


class Controller:
    """The app's behaviour, independent of the widgets: every Gradio handler is a method here."""

    def __init__(self, assistant: Assistant, media_dir: Path | None = None) -> None:
        self.assistant = assistant
        self.settings: Settings = assistant.settings
        self.media_dir = Path(media_dir or tempfile.mkdtemp(prefix="esg-media-")).resolve()
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self.renderer = Renderer(lambda source: self.media_url(source.file, None))
        self._media_lock = threading.Lock()
        self._eval_root: Path | None = None

    # ------------------------------------------------------------------ sessions and permissions
    @property
    def shared_mode(self) -> bool:
        """With an admin token set, only the admin adds to (or deletes from) the shared knowledge base."""
        return bool(self.settings.admin_token)

    def new_session(self) -> UiSession:
        return UiSession(self.assistant.new_session())

    def unlock(self, token: str, ui: UiSession) -> str:
        if not self.shared_mode:
            return ""
        ui.admin = bool(token) and hmac.compare_digest(token.encode(), self.settings.admin_token.encode())
        if not ui.admin:
            raise RagError("wrong admin token")
        return "✓ admin: uploads and deletions now change the shared knowledge base"

    def can_write_shared(self, ui: UiSession) -> bool:
        return not self.shared_mode or ui.admin

    def is_private(self, name: str, ui: UiSession) -> bool:
        kb = ui.session.kb
        return kb is not None and kb.document(name) is not None

    # ------------------------------------------------------------------ documents
    def documents(self, ui: UiSession) -> list[Document]:
        return self.assistant.documents(ui.session)

    def docs_rows(self, ui: UiSession) -> list[list[object]]:
        rows = []
        for d in self.documents(ui):
            rows.append(
                [
                    d.name,
                    t(ui.lang, "kind_pdf" if d.kind == "pdf" else "kind_media"),
                    _size(d, ui.lang),
                    d.chunks,
                    d.meta.company or "",
                    d.meta.year or "",
                    t(ui.lang, "where_private" if self.is_private(d.name, ui) else "where_shared"),
                ]
            )
        return rows

    def docs_headers(self, lang: str) -> list[str]:
        keys = ("col_file", "col_kind", "col_size", "col_chunks", "col_company", "col_year", "col_where")
        return [t(lang, k) for k in keys]

    def deletable(self, ui: UiSession) -> list[str]:
        docs = self.documents(ui)
        if self.can_write_shared(ui):
            return [d.name for d in docs]
        return [d.name for d in docs if self.is_private(d.name, ui)]

    def companies(self, ui: UiSession) -> list[str]:
        return sorted({d.meta.company for d in self.documents(ui) if d.meta.company})

    def media_docs(self, ui: UiSession) -> list[str]:
        return [d.name for d in self.documents(ui) if d.kind == "media"]

    def ingest(
        self, paths: Sequence[str | Path], ui: UiSession, progress: Callable[[float, str], None] | None = None
    ) -> Iterator[IngestResult]:
        """Ingest uploaded files (one result per file, bad files never stop the others).

        In shared mode a visitor's uploads go to the session's private knowledge base; otherwise to the shared one.
        """
        files = [Path(p) for p in paths]
        private = not self.can_write_shared(ui)
        for path, result in zip(
            files,
            self.assistant.ingest(
                files, [p.name for p in files], session=ui.session, private=private, progress=progress
            ),
            strict=False,
        ):
            if private and result.ok:
                ui.private_files[result.file] = path
            yield result

    def delete(self, names: Sequence[str], ui: UiSession) -> list[str]:
        """Delete documents; returns one message line per name."""
        if not names:
            raise RagError("choose the documents to delete first")
        lines = []
        for name in names:
            if not self.is_private(name, ui) and not self.can_write_shared(ui):
                lines.append(f"✗ {name}: only the administrator can delete shared documents")
                continue
            if self.assistant.delete(name, ui.session):
                ui.private_files.pop(name, None)
                lines.append(f"✓ {name}: deleted")
            else:
                lines.append(f"✗ {name}: no such document")
        return lines

    # ------------------------------------------------------------------ media and transcripts
    def media_url(self, name: str, ui: UiSession | None) -> str | None:
        """A URL Gradio serves for a stored media file: a copy in ``media_dir`` (the knowledge base folder itself
        is never exposed)."""
        src = self.assistant.source_path(name)
        if src is None and ui is not None:
            src = ui.private_files.get(name)
        if src is None or not Path(src).is_file():
            return None
        src = Path(src)
        key = hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:16]
        dest = self.media_dir / key / src.name
        with self._media_lock:
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.tmp")
                try:
                    os.link(src, tmp)
                except OSError:  # another file system: copy instead
                    shutil.copyfile(src, tmp)
                os.replace(tmp, dest)
        return "gradio_api/file=" + urllib.parse.quote(str(dest))

    def renderer_for(self, ui: UiSession) -> Renderer:
        """A renderer that can also play the session's private media uploads."""
        return Renderer(lambda source: self.media_url(source.file, ui))

    def transcript(self, name: str | None, ui: UiSession) -> tuple[list[list[str]], str | None, str | None]:
        """Rows (start, end, text) of a media document's transcript, and paths of its SRT and VTT files."""
        if not name:
            return [], None, None
        from rag.transcript import to_srt, to_vtt

        segments = self.assistant.segments(name, ui.session)
        if not segments:
            raise RagError(f"no transcript for {name!r}")
        # Per session and unguessable: two visitors' private recordings may share a name, and the folder is served.
        folder = self.media_dir / "subtitles" / hashlib.sha256(f"{ui.key}:{name}".encode()).hexdigest()[:32]
        folder.mkdir(parents=True, exist_ok=True)
        stem = Path(name).stem
        srt, vtt = folder / f"{stem}.srt", folder / f"{stem}.vtt"
        srt.write_text(to_srt(segments), encoding="utf-8")
        vtt.write_text(to_vtt(segments), encoding="utf-8")
        rows = [[format_clock(s.start_s), format_clock(s.end_s), s.text.strip()] for s in segments]
        return rows, str(srt), str(vtt)

    # ------------------------------------------------------------------ chat
    def ask(self, question: str, ui: UiSession, scope: Scope) -> Iterator[tuple[str, Answer | None]]:
        """Stream one answer as HTML snapshots; the last item carries the final Answer."""
        route: str | None = None
        hits: tuple[Hit, ...] = ()
        text = ""
        history = ui.history[-HISTORY_TURNS:]
        renderer = self.renderer_for(ui)
        yield renderer.pending(None, (), "", ui.lang), None
        for event in self.assistant.ask(question, history, scope, ui.session):
            if event.kind == "route":
                route = event.route
                yield renderer.pending(route, hits, text, ui.lang), None
            elif event.kind == "sources":
                hits = event.hits
                yield renderer.pending(route, hits, text, ui.lang), None
            elif event.kind == "token":
                text += event.text
                yield renderer.pending(route, hits, text, ui.lang), None
            elif event.kind == "done" and event.answer is not None:
                answer = event.answer
                ui.history.append((question, answer.text))
                del ui.history[:-HISTORY_TURNS]  # only the last turns feed follow-ups; keep a session's memory bounded
                yield renderer.final(answer, ui.lang), answer

    def rebuild(self, progress: Callable[[float, str], None] | None = None) -> list[IngestResult]:
        return self.assistant.rebuild(progress=progress)

    # ------------------------------------------------------------------ evaluation
    @property
    def eval_root(self) -> Path:
        """Evaluation files: a private temporary folder, created on first use. Not under ``media_dir``, which Gradio
        serves by path: the answer cache may quote a visitor's private documents. Gradio copies the files a handler
        returns into its own cache, so reports are downloadable all the same."""
        with self._media_lock:
            if self._eval_root is None:
                self._eval_root = Path(tempfile.mkdtemp(prefix="esg-eval-"))
                atexit.register(shutil.rmtree, self._eval_root, True)
            return self._eval_root

    def evaluate(
        self,
        qa_file: str | Path | None,
        ui: UiSession,
        mode: str = "hybrid",
        judge: str = "same",
        limit: int | None = None,
        progress: Callable[[float, str], None] | None = None,
    ) -> EvalRun:
        """Evaluate the knowledge base this visitor sees (shared plus their private uploads) with the app's models.

        ``qa_file``: an uploaded JSONL file, or ``None`` for the bundled sample set; ``limit``: run only the first
        questions (0/None = all; a visitor in shared mode runs at most ``EVAL_MAX_QUESTIONS``). Finished questions
        are cached across runs, so a rerun after Stop (``stop_eval``) continues where it stopped. Raises ``RagError``
        for a bad file or an empty knowledge base, ``EvalStopped`` when stopped.
        """
        from rag.evaluate import SAMPLE_QA_PATH, EvalConfig, load_qa, run_eval, write_report

        if judge not in EVAL_JUDGES:
            raise RagError(f"judge must be one of {', '.join(EVAL_JUDGES)}, got {judge!r}")
        config = EvalConfig(mode)  # validates the mode
        if qa_file:
            path = Path(qa_file)
            source = path.name
        else:
            path, source = SAMPLE_QA_PATH, f"{SAMPLE_QA_PATH.name} (bundled sample)"
        rows = load_qa(path, source)
        known = {d.name for d in self.documents(ui)}
        if not known:
            raise RagError("the knowledge base is empty: add documents before evaluating")
        notes: list[str] = []  # for the status line
        warnings: list[str] = []  # also shown as pop-ups: what the visitor did not ask for
        cap = int(limit) if limit and int(limit) > 0 else None
        imposed = self.shared_mode and not ui.admin and (cap is None or cap > EVAL_MAX_QUESTIONS)
        if imposed:
            cap = EVAL_MAX_QUESTIONS
        if cap is not None and cap < len(rows):
            (warnings if imposed else notes).append(t(ui.lang, "eval_limited").format(n=cap, total=len(rows)))
            rows = rows[:cap]
        missing = sorted({r.doc for r in rows if r.doc and r.doc not in known})
        ui.eval_stop.clear()

        def report(fraction: float, message: str) -> None:
            if ui.eval_stop.is_set():
                raise EvalStopped
            if progress is not None:
                progress(fraction, message)

        # One answer cache for every visitor: its keys hold the documents' names, hashes and chunk ids, so a visitor
        # reuses only answers computed over exactly the documents they see.
        result = run_eval(
            self.assistant,
            rows,
            self.eval_root / "cache",
            report,
            config=config,
            judge_llm=judge,
            qa_source=source,
            session=ui.session,
        )
        out = self.eval_root / "runs" / uuid.uuid4().hex[:16]  # a fresh folder: no chart of an earlier run lingers
        if ui.eval_out is not None:  # Gradio already copied the visitor's previous report for download
            shutil.rmtree(ui.eval_out, ignore_errors=True)
        ui.eval_out = out
        report_md, charts = write_report(result, out)
        archive = _zip(out / "evaluation_report.zip", [report_md, *charts])
        if missing:
            shown = ", ".join(missing[:3]) + (f" (+{len(missing) - 3})" if len(missing) > 3 else "")
            warnings.append(t(ui.lang, "eval_skipped").format(n=len(result.skipped), docs=shown))
        failed = sum(1 for r in result.results if r.error)
        if failed:
            warnings.append(t(ui.lang, "eval_failed").format(n=failed))
        done = t(ui.lang, "eval_done").format(
            n=len(result.results), s=result.seconds, reused=result.reused, source=source
        )
        return EvalRun(
            summary="\n\n".join([done, *notes, *(f"⚠ {w}" for w in warnings)]),
            markdown=report_for_display(report_md.read_text(encoding="utf-8")),
            report=report_md,
            charts=charts,
            archive=archive,
            warnings=warnings,
        )

    def stop_eval(self, ui: UiSession) -> str:
        """Ask this visitor's running evaluation to stop after the current step."""
        ui.eval_stop.set()
        return t(ui.lang, "eval_stopped")


# ---------------------------------------------------------------------------------------------------------- styling
CSS = """
.gradio-container { max-width: 1320px !important; margin: 0 auto !important; }
#esg-header { display: flex; align-items: center; gap: 14px; padding: 6px 2px 2px; }
#esg-header .esg-logo { width: 44px; height: 44px; border-radius: 12px; display: grid; place-items: center;
  background: linear-gradient(135deg, #15803d, #0d9488); color: white; font-size: 24px; flex: none; }
#esg-header h1 { font-size: 1.55rem; margin: 0; line-height: 1.2; }
#esg-header p { margin: 2px 0 0; color: var(--body-text-color-subdued); font-size: 0.92rem; }
#esg-lang { max-width: 220px; margin-left: auto; }
#esg-banner { border: 1px solid #f59e0b; background: #fffbeb; border-radius: 10px; padding: 6px 10px; }
.dark #esg-banner { background: #3b2a06; }
.esg-answer { line-height: 1.55; }
.esg-meta { margin-bottom: 6px; }
.esg-badge { display: inline-block; font-size: 0.72rem; font-weight: 600; letter-spacing: .02em; padding: 1px 9px;
  border-radius: 999px; background: #e2e8f0; color: #334155; text-transform: uppercase; }
.esg-route-rag { background: #dcfce7; color: #166534; }
.esg-route-faq { background: #dbeafe; color: #1e40af; }
.esg-route-chitchat { background: #f3e8ff; color: #6b21a8; }
.esg-route-out_of_scope { background: #fee2e2; color: #991b1b; }
.esg-refused { background: #fef3c7; color: #92400e; margin-left: 4px; }
.esg-reading { font-size: 0.8rem; color: var(--body-text-color-subdued); margin-bottom: 6px; }
.esg-muted { color: var(--body-text-color-subdued); font-style: italic; }
.esg-caret { display: inline-block; width: 7px; height: 1em; margin-left: 2px; vertical-align: text-bottom;
  background: #16a34a; animation: esg-blink 1s steps(2) infinite; }
@keyframes esg-blink { 50% { opacity: 0; } }
sup.esg-cite { display: inline-block; min-width: 1.3em; padding: 0 4px; margin: 0 1px; border-radius: 6px;
  background: #dcfce7; color: #166534; font-size: 0.7rem; font-weight: 700; text-align: center; }
.esg-sources { margin-top: 10px; border-top: 1px dashed var(--border-color-primary); padding-top: 8px; }
.esg-sources-title { font-size: 0.75rem; font-weight: 700; text-transform: uppercase; letter-spacing: .05em;
  color: var(--body-text-color-subdued); margin-bottom: 6px; }
.esg-source { border: 1px solid var(--border-color-primary); border-left: 4px solid #16a34a; border-radius: 8px;
  padding: 7px 10px; margin: 6px 0; background: var(--background-fill-secondary); }
.esg-source-head { display: flex; align-items: center; gap: 8px; font-weight: 600; }
.esg-n { display: inline-grid; place-items: center; width: 1.45em; height: 1.45em; border-radius: 50%;
  background: #16a34a; color: white; font-size: 0.75rem; }
.esg-quote { margin: 5px 0 2px; font-size: 0.9rem; color: var(--body-text-color); }
.esg-passage summary { cursor: pointer; font-size: 0.8rem; color: #15803d; margin-top: 3px; }
.esg-passage-text { font-size: 0.85rem; max-height: 260px; overflow-y: auto; padding: 6px 2px 2px;
  color: var(--body-text-color-subdued); }
.esg-passage-text mark, .esg-quote mark { background: #fde68a; color: inherit; padding: 0 2px; border-radius: 3px; }
.esg-player { display: block; width: 100%; max-width: 420px; margin: 6px 0 2px; border-radius: 6px; background: #000; }
.esg-error { color: #b91c1c; }
.esg-results { font-size: 0.88rem; overflow-wrap: anywhere; }
.esg-results > div { padding: 6px 10px; margin: 4px 0; border-radius: 8px;
  border: 1px solid var(--border-color-primary); background: var(--background-fill-secondary); }
.esg-results .ok { color: #166534; border-left: 4px solid #16a34a; }
.esg-results .fail { color: #b91c1c; border-left: 4px solid #dc2626; }
#esg-docs-table *, #esg-transcript * { font-family: var(--font) !important; }
.esg-bottom { align-items: flex-end; }
#esg-eval-report table { font-size: 0.82rem; }
#esg-footer { text-align: center; font-size: 0.8rem; color: var(--body-text-color-subdued); }
"""


def _theme() -> gr.themes.Base:
    # System fonts only: nothing is fetched from the internet.
    return gr.themes.Soft(
        primary_hue="green",
        secondary_hue="teal",
        neutral_hue="slate",
        font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Noto Sans", "PingFang SC", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    )


LOGO = (
    '<svg viewBox="0 0 24 24" width="26" height="26" fill="none" stroke="white" stroke-width="2" '
    'stroke-linecap="round" stroke-linejoin="round"><path d="M11 20A7 7 0 0 1 9.8 6.1C15.5 5 17 4.48 19 2c1 2 2 '
    '4.18 2 8 0 5.5-4.78 10-10 10Z"/><path d="M2 21c0-3 1.85-5.36 5.08-6C9.5 14.52 12 13 13 12"/></svg>'
)


def _header(lang: str) -> str:
    return (
        f'<div id="esg-header"><div class="esg-logo">{LOGO}</div><div>'
        f"<h1>{esc(t(lang, 'title'))}</h1><p>{t(lang, 'subtitle')}</p></div></div>"
    )


def transcript_headers(lang: str) -> list[str]:
    return [t(lang, "col_start"), t(lang, "col_end"), t(lang, "col_text")]


def _results_html(results: Sequence[IngestResult]) -> str:
    lines = []
    for r in results:
        cls, mark = ("ok", "✓") if r.ok else ("fail", "✗")
        lines.append(f'<div class="{cls}">{mark}&nbsp;<strong>{esc(r.file)}</strong>: {esc(r.message)}</div>')
    return '<div class="esg-results">' + "".join(lines) + "</div>"


def _lines_html(lines: Sequence[str]) -> str:
    return '<div class="esg-results">' + "".join(f"<div>{esc(x)}</div>" for x in lines) + "</div>"


# ---------------------------------------------------------------------------------------------------------- the UI
def footer_text(lang: str, storage: Storage | None = None) -> str:
    """The footer: the sample/model caveat, then (when known) whether the knowledge base survives a restart."""
    text = t(lang, "footer")
    if storage is not None:
        note = t(lang, f"storage_{storage.kind}").format(root=storage.root, kb=storage.kb_dir)
        text = f"{text}\n\n{note}"
    return text


def eval_intro_text(lang: str) -> str:
    from rag.evaluate import SAMPLE_QA_PATH

    try:
        n = sum(1 for line in SAMPLE_QA_PATH.read_text(encoding="utf-8").splitlines() if line.strip())
    except OSError:
        n = 0
    return t(lang, "eval_intro").format(n=n)


def eval_mode_choices(lang: str) -> list[tuple[str, str]]:
    return [(t(lang, f"eval_mode_{m}"), m) for m in ("hybrid", "dense", "bm25")]


def eval_judge_choices(lang: str) -> list[tuple[str, str]]:
    return [(t(lang, f"eval_judge_{j}"), j) for j in EVAL_JUDGES]


def build_ui(assistant: Assistant, media_dir: Path | None = None, storage: Storage | None = None) -> gr.Blocks:
    """Build the interface over ``assistant`` (loads no model; the knowledge base is read when a page loads).
    ``storage`` (from ``rag.storage``) is described in the footer."""
    ctl = Controller(assistant, media_dir)
    lang0 = "en"

    def scope_choices(lang: str) -> list[tuple[str, str]]:
        return [(t(lang, "scope_all"), "all"), (t(lang, "scope_docs"), "docs"), (t(lang, "scope_company"), "company")]

    # Gradio keeps every upload in its cache until restart; private documents must not linger: hourly sweep, 1 day.
    with gr.Blocks(title="ESG Document Assistant", fill_width=False, delete_cache=(3600, 86400)) as demo:
        demo.controller = ctl  # for tests and main()

        def new_ui_session() -> UiSession:
            return ctl.new_session()

        ui_state = gr.State(new_ui_session)  # a plain function: gr.State deep-copies a bound method's object
        pending_question = gr.State("")

        with gr.Row(equal_height=True):
            header = gr.HTML(_header(lang0), elem_id="esg-header-box", js_on_load=None)
            lang_radio = gr.Radio(
                [("English", "en"), ("中文", "zh")],
                value=lang0,
                show_label=False,
                container=False,
                elem_id="esg-lang",
                scale=0,
                min_width=190,
            )
        with gr.Group(visible=False, elem_id="esg-banner") as banner:
            banner_text = gr.Markdown()
            rebuild_btn = gr.Button(t(lang0, "rebuild"), variant="primary", size="sm")

        with gr.Tabs():
            with gr.Tab(t(lang0, "tab_chat"), id="chat") as tab_chat, gr.Row():
                with gr.Column(scale=7):
                    chatbot = gr.Chatbot(
                        label=t(lang0, "chat_label"),
                        height=560,
                        layout="panel",
                        latex_delimiters=[],
                        feedback_options=None,
                        buttons=[],  # its copy buttons would copy our HTML markup, not the answer text
                        elem_id="esg-chat",
                        placeholder="<div style='text-align:center;opacity:.7'>"
                        "Ask a question about the documents · 请就文档提问</div>",
                    )
                    with gr.Row(equal_height=True):
                        msg = gr.Textbox(
                            placeholder=t(lang0, "placeholder"),
                            show_label=False,
                            scale=8,
                            lines=1,
                            max_lines=4,
                            autofocus=True,
                            elem_id="esg-question",
                        )
                        send_btn = gr.Button(t(lang0, "send"), variant="primary", scale=1, elem_id="esg-send")
                    gr.Examples(EXAMPLES, inputs=[msg], label="Examples · 示例问题", examples_per_page=6)
                    clear_btn = gr.Button(t(lang0, "clear"), size="sm", variant="secondary")
                with gr.Column(scale=3, min_width=280):
                    scope_mode = gr.Radio(
                        scope_choices(lang0), value="all", label=t(lang0, "scope"), elem_id="esg-scope"
                    )
                    scope_docs = gr.Dropdown(
                        [], multiselect=True, label=t(lang0, "scope_pick_docs"), visible=False, elem_id="esg-docs"
                    )
                    scope_company = gr.Dropdown(
                        [], label=t(lang0, "scope_pick_company"), visible=False, elem_id="esg-company"
                    )
                    upload = gr.File(file_count="multiple", label=t(lang0, "upload"), height=150, elem_id="esg-upload")
                    private_note = gr.Markdown(t(lang0, "upload_private"), visible=ctl.shared_mode)
                    results = gr.HTML("", elem_id="esg-results", min_height=64)
            with gr.Tab(t(lang0, "tab_docs"), id="docs") as tab_docs:
                docs_table = gr.Dataframe(
                    headers=ctl.docs_headers(lang0),
                    label=t(lang0, "docs_table"),
                    interactive=False,
                    wrap=True,
                    elem_id="esg-docs-table",
                )
                with gr.Row(equal_height=False, elem_classes="esg-bottom"):
                    delete_pick = gr.Dropdown([], multiselect=True, label=t(lang0, "delete_pick"), scale=4)
                    delete_btn = gr.Button(t(lang0, "delete"), variant="stop", scale=1, min_width=150)
                delete_out = gr.HTML("")
                with gr.Row():
                    transcript_pick = gr.Dropdown([], label=t(lang0, "transcript_pick"), scale=4)
                    srt_btn = gr.DownloadButton(t(lang0, "srt"), visible=False, scale=1)
                    vtt_btn = gr.DownloadButton(t(lang0, "vtt"), visible=False, scale=1)
                transcript_table = gr.Dataframe(
                    headers=transcript_headers(lang0),
                    label=t(lang0, "transcript"),
                    interactive=False,
                    wrap=True,
                    column_widths=["90px", "90px", "auto"],
                    elem_id="esg-transcript",
                )
                with gr.Accordion(t(lang0, "admin"), open=False, visible=ctl.shared_mode) as admin_box:
                    with gr.Row(equal_height=True):
                        admin_token = gr.Textbox(type="password", label=t(lang0, "admin_token"), scale=4)
                        admin_btn = gr.Button(t(lang0, "admin_unlock"), scale=1)
                    admin_out = gr.Markdown("")
            with gr.Tab(t(lang0, "tab_eval"), id="eval") as tab_eval:
                eval_intro = gr.Markdown(eval_intro_text(lang0))
                with gr.Row(equal_height=False):
                    eval_file = gr.File(
                        label=t(lang0, "eval_upload"),
                        file_types=[".jsonl", ".json", ".txt"],
                        height=120,
                        scale=3,
                        elem_id="esg-eval-file",
                    )
                    with gr.Column(scale=2, min_width=260):
                        eval_mode = gr.Radio(eval_mode_choices(lang0), value="hybrid", label=t(lang0, "eval_mode"))
                        eval_judge = gr.Radio(eval_judge_choices(lang0), value="same", label=t(lang0, "eval_judge"))
                    with gr.Column(scale=1, min_width=200):
                        eval_limit = gr.Number(0, precision=0, minimum=0, label=t(lang0, "eval_limit"))
                        eval_run_btn = gr.Button(t(lang0, "eval_run"), variant="primary", elem_id="esg-eval-run")
                        eval_stop_btn = gr.Button(t(lang0, "eval_stop"), variant="stop", size="sm")
                eval_status = gr.Markdown("", min_height=64, elem_id="esg-eval-status")  # the progress bar shows here
                # Results appear after a run: charts in a row (click to enlarge), downloads, then the full-width report
                # (its per-question table is wide).
                eval_charts = gr.Gallery(
                    label=t(lang0, "eval_charts"),
                    columns=3,
                    height="auto",
                    object_fit="contain",
                    format="png",
                    buttons=["fullscreen", "download"],
                    visible=False,
                    elem_id="esg-eval-charts",
                )
                eval_files = gr.File(
                    file_count="multiple", label=t(lang0, "eval_files"), interactive=False, visible=False
                )
                eval_report = gr.Markdown("", max_height=900, elem_id="esg-eval-report")
        footer = gr.Markdown(footer_text(lang0, storage), elem_id="esg-footer")

        # -------------------------------------------------------------- handlers
        doc_outputs = [docs_table, delete_pick, scope_docs, scope_company, transcript_pick]

        def refresh_docs(ui: UiSession):
            rows = ctl.docs_rows(ui)
            names = [str(r[0]) for r in rows]
            return (
                gr.Dataframe(value=rows or None, headers=ctl.docs_headers(ui.lang)),
                gr.Dropdown(choices=ctl.deletable(ui), value=[], multiselect=True),
                gr.Dropdown(choices=names),
                gr.Dropdown(choices=ctl.companies(ui)),
                gr.Dropdown(choices=ctl.media_docs(ui), value=None),
            )

        def on_load(ui: UiSession, request: gr.Request):
            accept = (request.headers.get("accept-language", "") if request else "").lower()
            ui.lang = "zh" if accept.startswith("zh") else "en"
            problem = ctl.assistant.kb_status()
            banner_update = gr.Group(visible=problem is not None)
            text = f"**⚠ {t(ui.lang, 'kb_banner')}:** {esc(problem or '')}"
            docs = refresh_docs(ui) if problem is None else (gr.Dataframe(),) + (gr.Dropdown(),) * 4
            return (ui.lang, banner_update, text, *docs)

        demo.load(on_load, [ui_state], [lang_radio, banner, banner_text, *doc_outputs])

        def on_lang(lang: str, ui: UiSession):
            ui.lang = lang
            return (
                _header(lang),
                gr.Tab(label=t(lang, "tab_chat")),
                gr.Tab(label=t(lang, "tab_docs")),
                gr.Chatbot(label=t(lang, "chat_label")),
                gr.Textbox(placeholder=t(lang, "placeholder")),
                gr.Button(value=t(lang, "send")),
                gr.Button(value=t(lang, "clear")),
                gr.Radio(choices=scope_choices(lang), label=t(lang, "scope")),
                gr.Dropdown(label=t(lang, "scope_pick_docs")),
                gr.Dropdown(label=t(lang, "scope_pick_company")),
                gr.File(label=t(lang, "upload")),
                gr.Markdown(t(lang, "upload_private")),
                gr.Button(value=t(lang, "delete")),
                gr.DownloadButton(label=t(lang, "srt")),
                gr.DownloadButton(label=t(lang, "vtt")),
                gr.Button(value=t(lang, "rebuild")),
                gr.Markdown(footer_text(lang, storage)),
                gr.Dataframe(
                    value=ctl.docs_rows(ui) or None, headers=ctl.docs_headers(lang), label=t(lang, "docs_table")
                ),
                gr.Dropdown(label=t(lang, "delete_pick")),
                gr.Dropdown(label=t(lang, "transcript_pick")),
                gr.Dataframe(label=t(lang, "transcript"), headers=transcript_headers(lang)),
                gr.Tab(label=t(lang, "tab_eval")),
                gr.Markdown(eval_intro_text(lang)),
                gr.File(label=t(lang, "eval_upload")),
                gr.Radio(choices=eval_mode_choices(lang), label=t(lang, "eval_mode")),
                gr.Radio(choices=eval_judge_choices(lang), label=t(lang, "eval_judge")),
                gr.Number(label=t(lang, "eval_limit")),
                gr.Button(value=t(lang, "eval_run")),
                gr.Button(value=t(lang, "eval_stop")),
                gr.Gallery(label=t(lang, "eval_charts")),
                gr.File(label=t(lang, "eval_files")),
            )

        lang_radio.change(
            on_lang,
            [lang_radio, ui_state],
            [
                header,
                tab_chat,
                tab_docs,
                chatbot,
                msg,
                send_btn,
                clear_btn,
                scope_mode,
                scope_docs,
                scope_company,
                upload,
                private_note,
                delete_btn,
                srt_btn,
                vtt_btn,
                rebuild_btn,
                footer,
                docs_table,
                delete_pick,
                transcript_pick,
                transcript_table,
                tab_eval,
                eval_intro,
                eval_file,
                eval_mode,
                eval_judge,
                eval_limit,
                eval_run_btn,
                eval_stop_btn,
                eval_charts,
                eval_files,
            ],
            queue=False,
        )

        def on_scope_mode(mode: str):
            return gr.Dropdown(visible=mode == "docs"), gr.Dropdown(visible=mode == "company")

        scope_mode.change(on_scope_mode, [scope_mode], [scope_docs, scope_company], queue=False)

        # --- chat: first take the question (clears the box at once), then stream the answer
        def take_question(message: str, chat: list):
            message = (message or "").strip()
            if not message:
                return gr.Textbox(), chat, ""
            return "", [*chat, {"role": "user", "content": esc(message)}], message

        def stream_answer(question: str, chat: list, ui: UiSession, mode: str, docs: list, company: str | None):
            if not question:
                return
            chat = list(chat)
            chat.append({"role": "assistant", "content": ctl.renderer.pending(None, (), "", ui.lang)})
            try:
                yield from _stream(question, chat, ui, mode, docs, company)
            finally:
                release_memory()  # after every answer, finished, failed or abandoned: freed heap back to the OS

        def _stream(question: str, chat: list, ui: UiSession, mode: str, docs: list, company: str | None):
            try:
                scope = make_scope(mode, docs, company)
                for html_text, _answer in ctl.ask(question, ui, scope):
                    chat[-1] = {"role": "assistant", "content": html_text}
                    yield chat
            except RagError as exc:
                chat[-1] = {"role": "assistant", "content": ctl.renderer.error(str(exc), ui.lang)}
                yield chat
                raise gr.Error(str(exc)) from exc
            except Exception as exc:  # the boundary: log the cause, tell the user, keep the chat usable
                log.exception("answering %r failed", question)
                message = f"internal error ({type(exc).__name__}); see the server log"
                chat[-1] = {"role": "assistant", "content": ctl.renderer.error(message, ui.lang)}
                yield chat
                raise gr.Error(message) from exc

        ask_inputs = [pending_question, chatbot, ui_state, scope_mode, scope_docs, scope_company]
        for trigger in (msg.submit, send_btn.click):
            trigger(take_question, [msg, chatbot], [msg, chatbot, pending_question], queue=False).then(
                stream_answer, ask_inputs, [chatbot], concurrency_id="chat"
            )

        def clear_chat(ui: UiSession):
            ui.history.clear()
            return []

        clear_btn.click(clear_chat, [ui_state], [chatbot], queue=False)
        chatbot.clear(clear_chat, [ui_state], [chatbot], queue=False)  # the chat's own trash button

        # --- upload: one result line per file, progress from the ingest callback
        def on_upload(files: list[str] | None, ui: UiSession, progress=gr.Progress()):  # noqa: B008 - Gradio's way to ask for a progress bar
            if not files:
                yield (gr.File(), gr.HTML(), *refresh_docs(ui))
                return
            done: list[IngestResult] = []

            def report(fraction: float, message: str) -> None:
                progress(max(0.0, min(1.0, fraction)), desc=message)

            try:
                for result in ctl.ingest(files, ui, progress=report):
                    done.append(result)
                    yield (gr.File(), _results_html(done), *refresh_docs(ui))
            except RagError as exc:
                raise gr.Error(str(exc)) from exc
            yield (None, _results_html(done), *refresh_docs(ui))

        upload.upload(
            on_upload,
            [upload, ui_state],
            [upload, results, *doc_outputs],
            concurrency_limit=1,
            concurrency_id="ingest",
            show_progress="full",
            show_progress_on=[results],  # one bar, under the upload box, not one per output
        )

        def on_delete(names: list[str], ui: UiSession):
            try:
                lines = ctl.delete(names or [], ui)
            except RagError as exc:
                raise gr.Error(str(exc)) from exc
            return (_lines_html(lines), *refresh_docs(ui))

        delete_btn.click(on_delete, [delete_pick, ui_state], [delete_out, *doc_outputs], concurrency_id="ingest")

        def on_transcript(name: str | None, ui: UiSession):
            if not name:
                return gr.Dataframe(value=None), gr.DownloadButton(visible=False), gr.DownloadButton(visible=False)
            try:
                rows, srt, vtt = ctl.transcript(name, ui)
            except RagError as exc:
                raise gr.Error(str(exc)) from exc
            return (
                gr.Dataframe(value=rows, headers=transcript_headers(ui.lang)),
                gr.DownloadButton(value=srt, visible=True),
                gr.DownloadButton(value=vtt, visible=True),
            )

        transcript_pick.change(on_transcript, [transcript_pick, ui_state], [transcript_table, srt_btn, vtt_btn])

        def on_rebuild(ui: UiSession, progress=gr.Progress()):  # noqa: B008 - Gradio's way to ask for a progress bar
            if not ctl.can_write_shared(ui):
                raise gr.Error("only the administrator can rebuild the shared knowledge base")
            try:
                done = ctl.rebuild(lambda f, m: progress(max(0.0, min(1.0, f)), desc=m))
            except RagError as exc:
                raise gr.Error(str(exc)) from exc
            problem = ctl.assistant.kb_status()
            return (gr.Group(visible=problem is not None), _results_html(done), *refresh_docs(ui))

        rebuild_btn.click(
            on_rebuild,
            [ui_state],
            [banner, results, *doc_outputs],
            concurrency_limit=1,
            concurrency_id="ingest",
            show_progress_on=[results],
        )

        def on_unlock(token: str, ui: UiSession):
            try:
                note = ctl.unlock(token, ui)
            except RagError as exc:
                raise gr.Error(str(exc)) from exc
            return ("", note, gr.Markdown(visible=False), *refresh_docs(ui))

        admin_btn.click(on_unlock, [admin_token, ui_state], [admin_token, admin_out, private_note, *doc_outputs])
        _ = admin_box

        # --- evaluation: one run at a time app-wide, in its own queue group, so chat is served beside it; the run
        # shares the app's models and contends with chat only for the LLM lock, one call at a time
        def on_eval(
            qa_file: str | None,
            mode: str,
            judge: str,
            limit: float | None,
            ui: UiSession,
            progress=gr.Progress(),  # noqa: B008 - Gradio's way to ask for a progress bar
        ):
            try:
                run = ctl.evaluate(
                    qa_file, ui, mode, judge, int(limit or 0), lambda f, m: progress(max(0.0, min(1.0, f)), desc=m)
                )
            except EvalStopped:
                return t(ui.lang, "eval_stopped"), gr.Markdown(), gr.Gallery(), gr.File()
            except RagError as exc:
                raise gr.Error(str(exc)) from exc
            for warning in run.warnings:
                gr.Warning(warning)
            return (
                run.summary,
                run.markdown,
                gr.Gallery(value=[str(p) for p in run.charts], visible=True),
                gr.File(value=[str(run.archive), str(run.report)] + [str(p) for p in run.charts], visible=True),
            )

        eval_event = eval_run_btn.click(
            on_eval,
            [eval_file, eval_mode, eval_judge, eval_limit, ui_state],
            [eval_status, eval_report, eval_charts, eval_files],
            concurrency_limit=1,
            concurrency_id="eval",
            show_progress="full",
            show_progress_on=[eval_status],
        )

        def on_eval_stop(ui: UiSession):
            return ctl.stop_eval(ui)

        # Stop: the flag ends a running evaluation after its current step; ``cancels`` drops one still queued.
        eval_stop_btn.click(on_eval_stop, [ui_state], [eval_status], queue=False, cancels=[eval_event])
    return demo


# -------------------------------------------------------------------------------------------------------- startup
def sample_files(folder: Path = ASSETS) -> list[Path]:
    """The shipped sample documents (fictional), in a stable order."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES)


def ensure_sample_kb(assistant: Assistant, folder: Path = ASSETS) -> list[IngestResult] | None:
    """On first start (no knowledge base saved yet) ingest the sample documents; later starts reuse what is there.

    Returns the results, or ``None`` when nothing was done. A knowledge base the user emptied stays empty.
    """
    if (assistant.settings.kb_dir / "manifest.json").exists() or assistant.kb_status() is not None:
        return None
    files = sample_files(folder)
    if not files:
        return None
    log.info("first start: building the sample knowledge base from %d files in %s", len(files), folder)
    results = list(assistant.ingest(files))
    for r in results:
        (log.info if r.ok else log.warning)("sample %s: %s", r.file, r.message)
    return results


def main() -> None:
    configure_malloc()  # first: before any thread, model or large block (see its docstring)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    settings, storage = deployment_settings()  # on a Space: host 0.0.0.0, knowledge base on /data when attached
    assistant = Assistant(settings)
    ensure_sample_kb(assistant)
    media_dir = Path(tempfile.mkdtemp(prefix="esg-media-"))  # playable copies of cited media, served by Gradio
    atexit.register(shutil.rmtree, media_dir, True)
    demo = build_ui(assistant, media_dir, storage)
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=settings.concurrency).launch(
        server_name=settings.host,
        server_port=settings.port,
        max_file_size=f"{settings.max_upload_mb}mb",
        allowed_paths=[str(media_dir)],
        blocked_paths=[str(settings.kb_dir.resolve())],
        show_error=True,
        theme=_theme(),
        css=CSS,
        footer_links=["gradio", "settings"],
    )


if __name__ == "__main__":
    main()
