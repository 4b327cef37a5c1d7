"""Intent routing: every message goes to ``faq``, ``chitchat``, ``rag`` or ``out_of_scope`` before any LLM runs.

How a message is classified (no LLM; one query embedding at most):

1. Rules for the obvious cases: a bare greeting / thanks / goodbye / "ok" is chit-chat without embedding anything;
   a leading greeting before a real question ("hi, what were Costco's emissions?") is stripped and the rest is
   classified; a request to write code is out of scope.
2. The message is embedded once (the vector travels on the ``Query`` to retrieval) and compared with every FAQ
   question variant. A close match (cosine ≥ ``faq_min`` and ahead of the nearest example of any other label by
   ``faq_margin``) returns the stored answer —
   unless the message is a follow-up ("and what about scope 3?") or names a company, year or quantity the entry
   doesn't mention, which only the documents can answer. Other tasks (translate, book, play, arithmetic) are out
   of scope.
3. Otherwise nearest neighbours over labelled examples (``assets/intents.jsonl`` plus the FAQ variants) decide
   between ``rag``, ``chitchat`` and ``out_of_scope``. Leaving RAG needs a margin, and a message with ESG / finance
   vocabulary in question form never leaves it: a knowledge question sent to chit-chat is the costly mistake.
4. The knowledge bases the question will be asked of (``kbs``: the shared one plus the session's uploads) decide the
   rest (``rag.kb_evidence``): rare words shared with a passage, or a best cosine far above what unrelated messages
   reach on that knowledge base, send a chit-chat or out-of-scope verdict to ``rag`` (``kb:lexical``, ``kb:dense``);
   a message the neighbours put in ``rag`` only weakly, with no ESG vocabulary and no sign of the knowledge base at
   all (or an empty one), is world knowledge and goes to its nearest other label (``kb:none``).

Every Route carries ``reason`` (which step decided) and ``detail`` (the evidence, one line for logs and
``route_reason``).

Thresholds were calibrated on ``tests/data/routing.jsonl`` by ``benchmarks/routing.py`` (see docs/bench/routing.md).
The FAQ file is re-read when it changes on disk; only question variants not seen before are embedded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import threading
import time
import unicodedata
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.embed import Embedder
from rag.errors import ConfigError
from rag.faq import DEFAULT_FAQ_PATH, FaqEntry, FaqError, load_faq, user_faq_path, validate_faq
from rag.fsio import atomic_file
from rag.kb_evidence import Background, EvidenceScorer, KbEvidence, SearchableKb
from rag.settings import Settings
from rag.text import HAN, detect_language, is_cjk_char
from rag.types import Query

log = logging.getLogger(__name__)

LABELS = ("chitchat", "faq", "rag", "out_of_scope")
DEFAULT_INTENTS_PATH = Path(__file__).resolve().parent.parent / "assets" / "intents.jsonl"
_KNN_LABELS = ("rag", "chitchat", "out_of_scope")

# Replies used when the FAQ file lacks the entry a rule points at (the user may have deleted it).
_FALLBACK = {
    "greeting": (
        "Hello! Ask me anything about the reports in your knowledge base.",
        "你好！请问关于知识库中报告的任何问题。",
    ),
    "thanks": ("You're welcome!", "不客气！"),
    "goodbye": ("Goodbye!", "再见！"),
    "smalltalk": (
        "I'm here to help with questions about the documents in your knowledge base.",
        "我可以回答关于知识库中文档的问题。",
    ),
    "out_of_scope": (
        "Sorry, that's outside what I can help with: I answer questions about the ESG documents in the knowledge base.",
        "抱歉，这超出了我的服务范围：我只回答关于本知识库中ESG文档的问题。",
    ),
    "empty": ("Please type a question about your documents.", "请输入关于文档的问题。"),
}


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds on the e5 cosine scale (calibrated by ``benchmarks/routing.py``)."""

    faq_min: float = 0.88  # cosine to the nearest FAQ variant needed to answer from the FAQ
    faq_exact: float = 0.985  # near-verbatim FAQ match: answer even if the message names a company or year
    faq_margin: float = 0.02  # FAQ variant must beat the nearest knowledge-question example by this much
    away_margin: float = 0.015  # chit-chat / out-of-scope neighbours must beat knowledge neighbours by this much
    k: int = 3  # neighbours averaged per label
    # Knowledge-base evidence (rag.kb_evidence), relative to what unrelated messages score on the same base.
    kb_lexical: float = 0.9  # rarity weight of the message's words in one passage (1.0 = one unseen word) ...
    kb_lexical_margin: float = 0.3  # ... beating unrelated messages' 95th percentile by this ...
    kb_coverage: float = 0.25  # ... and holding this share of the message's weight: "about the documents"
    kb_dense_z: float = 3.0  # best cosine this many standard deviations above unrelated messages: about them
    kb_none_z: float = 1.0  # below this, with no lexical evidence: nothing in the knowledge base is near
    kb_none_lead: float = 0.03  # "no evidence" overrules a rag verdict by neighbours only when rag leads by less


@dataclass(frozen=True)
class Route:
    """Where a message goes. ``reply`` is set for ``faq``, ``chitchat`` and ``out_of_scope`` (no LLM needed).

    ``score`` is the evidence behind the decision (a cosine, or 1.0 for a rule); ``reason`` says which step decided
    (``rule:greeting``, ``faq``, ``knn``, ``vocabulary``, ``kb:lexical``, ``kb:dense``, ``kb:none``...) and
    ``detail`` the evidence in words; ``lang`` is the reply language. ``query`` is the message as retrieval should
    see it (greeting removed, language, and the query embedding when one was computed).
    """

    label: str
    score: float
    reply: str | None = None
    entry_id: str | None = None
    lang: str = "en"
    reason: str = ""
    detail: str = ""
    query: Query | None = None

    @property
    def explanation(self) -> str:
        """``reason: detail`` (``route_reason`` in answers and ``ask --json``)."""
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass(frozen=True)
class Example:
    """A labelled example message for the nearest-neighbour classifier."""

    text: str
    label: str
    lang: str = "en"


@dataclass(frozen=True)
class Features:
    """Everything the decision looks at for one message (kept separate so the benchmark can calibrate thresholds)."""

    text: str  # the message after stripping a leading greeting or thanks
    lang: str
    rule: str | None = None  # a bare chit-chat rule that fired: greeting, thanks, goodbye, smalltalk, empty
    code: bool = False  # asks to write or fix code
    task: bool = False  # another task outside the app: translate, book, play, draw, arithmetic
    followup: bool = False  # depends on the conversation ("and what about ...", "那……呢")
    specific: bool = False  # names a year, period, quantity, or a company the matched FAQ entry doesn't mention
    knowledge: bool = False  # ESG / finance vocabulary in question or instruction form
    entry_sim: float = 0.0  # cosine to the closest FAQ question variant
    entry_id: str | None = None
    entry_kind: str | None = None
    chat_entry_id: str | None = None  # closest chit-chat FAQ entry, for replies to chit-chat found by neighbours
    class_sims: dict[str, float] = field(default_factory=dict)  # mean of the top-k cosines per label
    class_max: dict[str, float] = field(default_factory=dict)  # the single closest example per label
    kb: KbEvidence | None = None  # evidence from the knowledge bases in view (None: none were given)
    kb_beyond_faq: bool = False  # the words matched in the knowledge base include some the matched FAQ entry lacks


# --------------------------------------------------------------------------- text rules


detect_lang = detect_language  # the one language detector (rag.text); the name routing code and tests use


def _clean(text: str) -> str:
    """NFKC, lower case, punctuation and symbols to spaces, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s'’]", " ", text).replace("_", " ")
    return re.sub(r"\s+", " ", text).strip()


_GREET_EN = (
    r"(?:hi|hello|hey|hiya|howdy|yo|hallo|hola|greetings|good (?:morning|afternoon|evening|day)|morning|evening)"
    r"(?: (?:there|all|everyone|everybody|team|friend|bot|assistant))?"
)
_THANKS_EN = (
    r"(?:(?:ok|okay|great|perfect|cool|nice) )?(?:thanks|thank you|thank u|thx|ty|tks|many thanks|cheers|"
    r"much appreciated|appreciate it)(?: (?:a lot|so much|very much|again|a million|for (?:your|the) help))?"
)
_BYE_EN = r"(?:bye|bye bye|goodbye|good bye|see you|see ya|see you later|later|good night|goodnight|take care|cya)"
_ACK_EN = (
    r"(?:ok|okay|k|kk|cool|nice|great|awesome|got it|i see|alright|all right|sure|lol|haha+|hmm+|yes|no|yep|nope|"
    r"fine|perfect|good|wow)"
)
_GREET_ZH = (
    r"(?:你好|您好|你们好|大家好|嗨|哈喽|哈啰|嘿|早上好|早安|上午好|中午好|下午好|晚上好|在吗|在不在)(?:呀|啊|哇|哦)?"
)
_THANKS_ZH = r"(?:好的|好)?\s?(?:谢谢|多谢|感谢|谢了|非常感谢|太感谢了|辛苦了)(?:你|您|啦|了|哈|呀)?"
_BYE_ZH = r"(?:再见|拜拜|回头见|下次见|晚安)(?:啦|了|呀)?"
_ACK_ZH = r"(?:好|好的|嗯|嗯嗯|哦|噢|行|可以|明白|明白了|知道了|收到|了解|哈哈+|好吧)(?:的|啦|了)?"

_BARE_RULES = (
    ("greeting", re.compile(rf"^(?:{_GREET_EN}|{_GREET_ZH})$")),
    ("thanks", re.compile(rf"^(?:{_THANKS_EN}|{_THANKS_ZH})$")),
    ("goodbye", re.compile(rf"^(?:{_BYE_EN}|{_BYE_ZH})$")),
    ("smalltalk", re.compile(rf"^(?:{_ACK_EN}|{_ACK_ZH})$")),
)
# A greeting or thanks in front of the real message; English needs a word boundary, Chinese does not.
_PREFIX = re.compile(rf"^(?:(?:{_GREET_EN}|{_THANKS_EN})(?:\s+|$)|(?:{_GREET_ZH}|{_THANKS_ZH})\s*)+")

# Other tasks an ESG document assistant doesn't do: translation, bookings, games, arithmetic, drawing.
_TASK = re.compile(
    r"^(?:please |can you |could you |help me )?(?:translate|book|order|reserve|play|draw|sing|paint)\b|"
    r"\btranslat\w*\b.{0,40}\b(?:into|to) (?:english|chinese|french|german|spanish|japanese|korean|russian)\b|"
    r"\d+(?:\.\d+)? ?(?:[+*/×÷^]|-|times|plus|minus|divided by|multiplied by|乘以|乘|加上|加|减去|减|除以) ?\d+|"
    r"翻译|订(?:一?[张间个份])?(?:票|机票|车票|酒店|餐厅|位子|座位)|玩.{0,3}游戏|画(?:一|个|张)|唱(?:一?首)?歌",
)
_CODE = re.compile(
    r"\b(?:write|writing|give|generate|create|debug|fix|show|implement|code up|refactor)\b.{0,40}"
    r"\b(?:code|script|program|function|class|regex|sql|query in|python|javascript|java|c\+\+|html|css|api)\b"
    r"|\b(?:python|javascript|java|c\+\+|sql|bash|rust|golang)\b.{0,30}\b(?:code|script|function|bug|error)\b"
    r"|(?:写|生成|编写|实现|帮我写|调试|修复).{0,12}(?:代码|程序|脚本|函数|正则|SQL|sql)"
    r"|(?:代码|程序)(?:为什么|怎么)?(?:报错|出错|有bug)",
)
_FOLLOWUP = re.compile(
    r"^(?:and|also|plus|what about|how about|and what about|and how about|what of|same for|and for|"
    r"and in|then what about|so what about)\b|^(?:那|那么|那么对于|还有|另外|再问|以及|此外)|呢\s*$",
)
_QUESTION_EN = re.compile(
    r"\?|^(?:what|what's|whats|which|how|why|when|where|who|whom|whose|does|do|did|is|are|was|were|has|have|had|"
    r"can|could|should|would|will|list|describe|summari[sz]e|explain|compare|give|show|tell|find|provide|"
    r"calculate|outline|identify|according|based on|in the|from the|define)\b"
    r"|\b(?:summari[sz]e|list|describe|explain|compare|calculate|outline|identify|highlight|detail|tell me|"
    r"difference|differences|meaning|mean|means|definition)\b",
)
_QUESTION_ZH = re.compile(
    r"[?？]|什么|哪|怎么|怎样|如何|为什么|为何|多少|几|是否|有没有|吗|呢|请问|介绍|说明|列出|列举|总结|概括|"
    r"比较|分析|解释|描述|简述|根据|区别|差别|不同|含义|意思|定义|指的是",
)
_VOCAB_EN = re.compile(
    r"\b(?:esg|emission|emissions|emitted|emit|carbon|co2|co2e|tco2e|ghg|greenhouse|methane|scope ?[123]|scopes|"
    r"climate|sustainab\w*|net[ -]?zero|decarboni[sz]\w*|renewable\w*|energy|electricity|fuel|water|waste|"
    r"recycl\w*|biodiversity|nature|deforestation|pollution|tcfd|issb|ifrs|sasb|gri|csrd|esrs|sbti|cdp|tnfd|"
    r"taxonomy|materiality|material topics?|governance|board|directors?|executives?|ceo|cfo|chair\w*|management|"
    r"remuneration|compensation|"
    r"diversity|gender|women|inclusion|human rights|labou?r|employees?|workforce|workers?|safety|injur\w*|"
    r"fatalit\w*|health|supply chain|suppliers?|disclos\w*|reports?|reporting|targets?|goals?|transition|"
    r"offsets?|credits?|intensity|footprint|circular|packaging|plastics?|social|communit\w*|stakeholders?|"
    r"ethics?|corruption|bribery|compliance|audit\w*|risks?|scenarios?|warming|paris agreement|revenue|income|profit|"
    r"margins?|ebitda|ebit|cash ?flow|capex|capital expenditure|"
    r"working capital|capital allocation|dividends?|debt|liabilit\w*|assets?|earnings|eps|sales|"
    r"expenses?|inventor\w*|acquisitions?|segments?|fiscal|fy\d*|quarter\w*|10-k|10-q|8-k|filing|company|"
    # amounts (not currency names: an exchange rate is world knowledge) and corporate transactions
    r"million|billion|spin[- ]?offs?|divest\w*|mergers?|ipo|"
    r"companies|investors?|financ\w*|green bonds?|rating|ratings|regulation|standards?|framework|guidelines?|"
    r"hydrogen|solar|wind|coal|oil|steel|cement|mining|aluminium|aluminum|copper|shipping|aviation|"
    r"vehicles?|battery|batteries|adaptation|resilience|physical risks?|document|documents|pdf|video|page|stores?|"
    r"operations?|facilities|facility|sites?|plants?|mines?|properties|buildings?|products?|customers?|headcount)\b",
)
_VOCAB_ZH = re.compile(
    r"ESG|esg|排放|碳|温室|气候|可持续|净零|中和|达峰|减排|能源|能耗|电力|用电|可再生|光伏|风电|水资源|用水|"
    r"废弃物|废物|回收|污染|生物多样性|环境|社会|治理|董事|高管|薪酬|多元|女性|员工|雇员|安全|健康|供应链|"
    r"供应商|披露|报告|目标|转型|抵消|碳汇|强度|足迹|利益相关|道德|腐败|合规|审计|风险|情景|温升|营收|收入|"
    r"利润|现金流|资本|分红|股东|负债|资产|财务|融资|绿色|债券|贷款|评级|指数|政策|监管|准则|标准|框架|指引|"
    r"上市|公司|企业|交易所|责任|实质性|重要性|范围[一二三123]|文档|文件|视频|页|经理|董事长|总裁|门店|工厂|产品|客户|"
    r"万元|亿元",
)
# Markers of a question about particular documents: years, fiscal periods, "the company", quantities asked for.
_SPECIFIC_EN = re.compile(
    r"\b(?:19|20)\d{2}\b|\bfy ?\d{2,4}\b|\b[qh][1-4]\b|\bcompany's\b|\b(?:the|this|that|their|its|our|your) "
    r"(?:company|company's|firm|group|report|filing|plan|organi[sz]ation)\b|\bwhat year\b|\bwhen (?:was|did)\b|"
    # quantities and details asked for
    r"\bhow (?:much|many|far|long|often)\b|\bwhat (?:percentage|percent|share|proportion|amount|was|were)\b|"
    r"\bdid\b|\btotal\b|\bnumber of\b|\bminimum\b|\bmaximum\b|\bthreshold\b|"
    r"\bwhich (?:country|countries|company|companies|region|regions|sector|sectors|year)\b|"
    r"\b\d+(?:\.\d+)? ?(?:%|percent|tons?|tonnes?|mt|kt|gw|mw|mwh|gwh|twh|million|billion)(?!\w)",
)
# A reference to a document or an answer format: a question about the documents even without ESG vocabulary.
# Uploaded talks and recordings count: "the speaker", "the clip", 录音 (a recording), 这段讲话 (this speech).
_DOCREF = re.compile(
    r"\baccording to\b|\bmentioned\b|\bstated\b|\b(?:list|float|integer|string) format\b|"
    r"\b(?:the|this|that) (?:document|text|figure|table|chart|study|survey|video|briefing|recording|pdf|clip|audio|"
    r"speech|speaker|talk|transcript|interview|podcast|guide|handbook|methodology)\b|"
    r"\b(?:the|this|that) [\w-]+ (?:guide|handbook|methodology|clip|recording|speech|transcript|interview)\b|"
    r"\bin the (?:report|documents?|pdf|file|video|clip|recording|audio|speech|transcript|guide)\b|"
    r"根据|文中|(?:文件|报告|文档|视频|录音|音频|讲话|演讲|发言|指引|手册)(?:中|里)|提到|所述|第.{1,3}页|"
    r"录音|音频|这段(?:话|讲话|演讲|发言|视频|录音)|演讲者|讲话人|发言人|说话人",
)
_SPECIFIC_ZH = re.compile(
    r"\d{4} ?年|(?:该|这家|这个|这份|此|其)(?:公司|企业|集团|报告|文件)|公司的|年报|财报|多少|几(?:个|家|项|年|次)|"
    r"比例|百分比|占比|总(?:量|额|计|数)|最(?:高|低|大|小|多|少)|哪(?:个|些)?(?:国家|地区|行业|公司|年)|"
    r"多久|多长时间|何时|什么时候",
)
_ZH_ENTITY = re.compile(r"公司|企业|集团")
# A leading Chinese name before a possessive or verb: 腾讯如何…, 阿里巴巴的…, 三星2023年…
_ZH_LEAD = re.compile(
    rf"^(?:请问|请|那么|那|关于)?([{HAN}]{{2,6}}?)(?=的|如何|怎么|怎样|是否|有没有|有哪些|有什么|在|对|将|和|与|今年|去年|\d|[A-Za-z])"
)
_ZH_NOT_NAMES = re.compile(
    r"^(?:什么|怎么|怎样|如何|为什么|为何|哪|我|你|您|他|她|它|这|那|此|该|其|可以|能|会|是|有|中国|全球|国际|目前|现在|"
    r"解释|介绍|说明|告诉|讲|谈|说|问|列|总结|概括|比较|分析|描述|简述|根据|关于|帮)"
)
_POSSESSIVE = re.compile(r"\b([a-z][\w&.-]*)['’]s\b")
_PROPER = re.compile(r"(?<![A-Za-z0-9'’])([A-Z][A-Za-z0-9&-]*[A-Za-z0-9])(?![A-Za-z0-9])")
# Capitalised words and possessives that are not company names.
_COMMON_NAMES = frozenset(
    """i i'm i've ok what what's that that's it it's there there's who who's how how's let let's he she where where's
    here here's when why one today esg ghg co2 co2e tco2e scope scopes protocol net zero tcfd issb ifrs s1 s2 sasb gri
    csrd esrs sbti cdp tnfd eu un us usa uk ipcc iea wri wbcsd wwf paris agreement china china's chinese english
    hong kong hkex sse szse bse star pdf pdfs mp4 mp3 wav ai llm chatgpt gpt csr ets leap a-share a esg's
    carbon greenhouse gas gases emissions emission climate standards standard board""".split()
)


def _markers(raw: str, clean: str) -> tuple[str, ...]:
    """What makes a message about particular documents (lower case): years, "the company", quantities, names."""
    names = [m.group(0) for pattern in (_SPECIFIC_EN, _SPECIFIC_ZH, _DOCREF) for m in pattern.finditer(clean)]
    names += [m.group(1) for m in _POSSESSIVE.finditer(clean) if m.group(1) not in _COMMON_NAMES]
    # A capitalised word that isn't the first word of a sentence and isn't common vocabulary is a name.
    for match in _PROPER.finditer(raw):
        before = raw[: match.start()].rstrip()
        if not before or before[-1] in ".?!。？！:：":
            continue
        word = match.group(1).casefold()
        if word not in _COMMON_NAMES and not word.isdigit():
            names.append(word)
    names += _ZH_ENTITY.findall(clean)
    lead = _ZH_LEAD.match(raw.strip())
    if lead and not _ZH_NOT_NAMES.match(lead.group(1)) and not _VOCAB_ZH.search(lead.group(1)):
        names.append(lead.group(1))
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class TextSignals:
    """What the rules see in a message (no embedding needed)."""

    text: str  # stripped of a leading greeting/thanks when a real message follows
    lang: str
    rule: str | None
    code: bool
    task: bool
    followup: bool
    # Years, fiscal periods, "the company", quantities asked for, company names: the message is about particular
    # documents, unless the matched FAQ entry itself contains the marker (a user's own "What is our travel policy?").
    markers: tuple[str, ...]
    knowledge: bool


def text_signals(message: str, lang: str | None = None) -> TextSignals:
    """Apply the rule layer to ``message`` (``lang``: its language when already detected)."""
    raw = unicodedata.normalize("NFKC", message).strip()
    lang = lang or detect_lang(raw)
    clean = _clean(raw)
    if not clean:
        rule = "empty" if not raw else "smalltalk"  # only emoji or punctuation: treat as small talk
        return TextSignals(raw, lang, rule, False, False, False, (), False)
    for name, pattern in _BARE_RULES:
        if pattern.match(clean):
            return TextSignals(raw, lang, name, False, False, False, (), False)
    text = raw
    prefix = _PREFIX.match(clean)
    if prefix and prefix.end() < len(clean):
        rest = clean[prefix.end() :].strip()
        # Strip only when what follows is a real request; "thanks for the answer" stays whole.
        if rest and (_QUESTION_EN.search(rest) or _QUESTION_ZH.search(rest) or _VOCAB_EN.search(rest)):
            text = _strip_prefix(raw, prefix.end(), clean)
            clean = _clean(text)
    question = bool(_QUESTION_EN.search(clean) or _QUESTION_ZH.search(clean))
    vocab = bool(_VOCAB_EN.search(clean) or _VOCAB_ZH.search(text))
    markers = _markers(text, clean)
    return TextSignals(
        text=text,
        lang=lang,
        rule=None,
        code=bool(_CODE.search(clean) or _CODE.search(text)),
        task=bool(_TASK.search(clean)),
        followup=bool(_FOLLOWUP.search(clean)),
        markers=markers,
        knowledge=(vocab and (question or bool(markers))) or bool(_DOCREF.search(clean)),
    )


def _strip_prefix(raw: str, clean_end: int, clean: str) -> str:
    """Cut the greeting from the raw text: drop as many leading raw characters as cover ``clean_end`` clean chars."""
    target = _clean(clean[:clean_end])
    for cut in range(1, len(raw) + 1):
        if _clean(raw[:cut]) == target and (cut == len(raw) or not raw[cut].isalnum() or is_cjk_char(raw[cut])):
            rest = raw[cut:].lstrip(" ,，!！.。~～:：;；-—")
            if rest:
                return rest
    return raw


# --------------------------------------------------------------------------- decision


def kb_strong(e: KbEvidence | None, t: Thresholds) -> str | None:
    """``lexical`` or ``dense`` when the knowledge base alone shows the message is about the documents, else None."""
    if e is None or not e.chunks:
        return None
    if (
        e.lexical >= t.kb_lexical
        and e.lexical - e.lexical_typical >= t.kb_lexical_margin
        and e.coverage >= t.kb_coverage
    ):
        return "lexical"
    if e.dense_z is not None and e.dense_z >= t.kb_dense_z:
        return "dense"
    return None


def kb_absent(e: KbEvidence | None, t: Thresholds) -> bool:
    """True when nothing in the knowledge bases is near the message (always, for an empty one); False without them."""
    if e is None:
        return False
    if not e.chunks:
        return True
    # One common word in a passage ("world", 国家) is no sign: the words must stand out as for strong evidence.
    lexical = e.lexical - e.lexical_typical >= t.kb_lexical_margin and e.coverage >= t.kb_coverage
    return not lexical and (e.dense_z is None or e.dense_z < t.kb_none_z)


def decide(f: Features, t: Thresholds) -> tuple[str, float, str | None, str]:
    """Pure decision on precomputed features: ``(label, score, entry_id, reason)``."""
    if f.rule:
        return "chitchat", 1.0, f.rule, f"rule:{f.rule}"
    sims = f.class_sims
    rag_sim = sims.get("rag", 0.0)
    exact = f.entry_id is not None and f.entry_sim >= t.faq_exact
    if f.code and not exact:
        return "out_of_scope", 1.0, "out_of_scope", "rule:code"
    strong = kb_strong(f.kb, t)
    if f.task and not f.knowledge and not exact and strong != "lexical":
        return "out_of_scope", 1.0, "out_of_scope", "rule:task"
    if f.entry_id is not None and f.entry_kind is not None:
        # The FAQ variant must be closer than any example of another label (chit-chat variants count as chit-chat).
        rival = max((v for label, v in f.class_max.items() if label != f.entry_kind), default=0.0)
        close = f.entry_sim >= t.faq_min and f.entry_sim - rival >= t.faq_margin
        if exact or (close and not f.followup and not f.specific):
            # "What can you do?" wording, or an FAQ topic, but about what the documents say and the entry doesn't.
            if strong and not exact and (f.entry_kind != "faq" or (strong == "lexical" and f.kb_beyond_faq)):
                return "rag", rag_sim, None, f"kb:{strong}"
            return f.entry_kind, f.entry_sim, f.entry_id, "faq"
    if f.knowledge or f.followup:
        return "rag", rag_sim, None, "vocabulary" if f.knowledge else "followup"
    other = max(("chitchat", "out_of_scope"), key=lambda label: sims.get(label, 0.0))
    entry = f.chat_entry_id if other == "chitchat" else "out_of_scope"
    if sims.get(other, 0.0) - rag_sim >= t.away_margin:
        if strong:
            return "rag", rag_sim, None, f"kb:{strong}"
        return other, sims[other], entry, "knn"
    # Nothing in the knowledge bases is near: world knowledge (unless the neighbours are sure it is a knowledge
    # question), or nothing to ask at all (an empty knowledge base).
    if f.kb is not None and kb_absent(f.kb, t) and (not f.kb.chunks or rag_sim - sims.get(other, 0.0) < t.kb_none_lead):
        return other, sims.get(other, 0.0), entry, "kb:none"
    return "rag", rag_sim, None, "knn"


# --------------------------------------------------------------------------- examples and vectors


def load_examples(path: Path | str = DEFAULT_INTENTS_PATH) -> list[Example]:
    """Read labelled examples (JSONL ``{"text", "label", "lang"}``); raises ``ConfigError`` naming the bad line."""
    path = Path(path)
    examples = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"intent examples {path} cannot be read: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, label = row["text"], row["label"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"{path}:{number}: expected a JSON object with 'text' and 'label'") from None
        if label not in _KNN_LABELS or not isinstance(text, str) or not text.strip():
            allowed = ", ".join(_KNN_LABELS)
            raise ConfigError(f"{path}:{number}: label {label!r} must be one of {allowed} and text non-empty")
        examples.append(Example(text.strip(), label, row.get("lang") or detect_lang(text)))
    return examples


# Query vectors per embedder object, shared by all routers in the process (tests build many).
_MEMORY: weakref.WeakKeyDictionary[object, dict[str, np.ndarray]] = weakref.WeakKeyDictionary()
_MEMORY_LOCK = threading.Lock()


class _VectorCache:
    """Query embeddings of example texts: in memory per embedder, and on disk in ``model_cache`` across restarts."""

    def __init__(self, embedder: Embedder, directory: Path | None) -> None:
        self.embedder = embedder
        with _MEMORY_LOCK:
            try:
                self.memory = _MEMORY.setdefault(embedder, {})
            except TypeError:  # an embedder that can't be weakly referenced keeps a private cache
                self.memory = {}
        tag = hashlib.sha256(f"{embedder.name}|{embedder.dim}|query".encode()).hexdigest()[:16]
        self.file = directory / f"route-vectors-{tag}.npz" if directory else None
        self._disk_loaded = False

    def _load_disk(self) -> None:
        self._disk_loaded = True
        if not self.file or not self.file.is_file():
            return
        try:
            with np.load(self.file, allow_pickle=False) as data:
                keys, vecs = data["keys"], data["vecs"]
            if vecs.ndim == 2 and vecs.shape[1] == self.embedder.dim and len(keys) == len(vecs):
                for key, vec in zip(keys.tolist(), vecs, strict=True):
                    self.memory.setdefault(key, np.asarray(vec, dtype=np.float32))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable routing vector cache %s: %s", self.file, exc)

    def vectors(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """Vectors for ``texts`` (shape ``(n, dim)``) and how many had to be embedded now."""
        if not self._disk_loaded:
            self._load_disk()
        missing = [t for t in dict.fromkeys(texts) if t not in self.memory]
        for text in missing:
            self.memory[text] = np.asarray(self.embedder.query(text), dtype=np.float32)
        if missing:
            self._save_disk(texts)
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32), 0
        return np.vstack([self.memory[t] for t in texts]).astype(np.float32, copy=False), len(missing)

    def _save_disk(self, texts: Sequence[str]) -> None:
        """Store the vectors of the current bank (not every text ever seen, so edits don't grow the file)."""
        if not self.file:
            return
        try:
            keys = list(dict.fromkeys(texts))
            with atomic_file(self.file, "wb") as fh:
                np.savez(fh, keys=np.array(keys, dtype=str), vecs=np.vstack([self.memory[k] for k in keys]))
        except OSError as exc:  # a read-only cache only costs start-up time
            log.warning("cannot write routing vector cache %s: %s", self.file, exc)


@dataclass(frozen=True)
class _Bank:
    """Everything classification needs, swapped atomically on reload."""

    entries: tuple[FaqEntry, ...]
    by_id: dict[str, FaqEntry]
    entry_vecs: np.ndarray  # one row per FAQ question variant
    entry_rows: tuple[int, ...]  # entry index of each row
    chat_rows: np.ndarray  # rows whose entry is chit-chat
    blobs: dict[str, str]  # entry id -> its questions and answers, case-folded (to check names against)
    knn_vecs: dict[str, np.ndarray]  # label -> example vectors (FAQ chit-chat variants count as chit-chat examples)
    background: Background | None = None  # word rarity and unrelated messages, for knowledge-base evidence
    fingerprint: tuple = ()


# --------------------------------------------------------------------------- router


class Router:
    """Classifies messages into routes and returns FAQ / chit-chat / scope replies without an LLM.

    ``faq`` is a path to an FAQ file, a sequence of entries, or ``None`` for the user's copy in ``settings.kb_dir``
    (falling back to the shipped defaults). A file is re-read when it changes (checked at most every
    ``check_interval_s`` seconds during ``classify``). ``classify(..., kbs=...)`` judges the message against the
    knowledge bases it will be asked of (statistics cached per knowledge base until it changes).
    """

    def __init__(
        self,
        embedder: Embedder,
        faq: Path | str | Sequence[FaqEntry] | None = None,
        settings: Settings | None = None,
        *,
        examples: Sequence[Example] | Path | str | None = None,
        thresholds: Thresholds | None = None,
        check_interval_s: float = 1.0,
    ) -> None:
        self.settings = settings or Settings()
        self.embedder = embedder
        self.evidence = EvidenceScorer()
        self.thresholds = thresholds or Thresholds()
        self.check_interval_s = check_interval_s
        if faq is None:
            self._faq_paths: tuple[Path, ...] = (user_faq_path(self.settings), DEFAULT_FAQ_PATH)
            self._fixed: tuple[FaqEntry, ...] | None = None
        elif isinstance(faq, str | Path):
            self._faq_paths, self._fixed = (Path(faq),), None
        else:
            self._fixed = tuple(faq)
            validate_faq(self._fixed)
            self._faq_paths = ()
        if examples is None or isinstance(examples, str | Path):
            self._examples_path: Path | None = Path(examples) if examples else DEFAULT_INTENTS_PATH
            self._examples: tuple[Example, ...] | None = None
        else:
            self._examples_path, self._examples = None, tuple(examples)
        self._cache = _VectorCache(embedder, Path(self.settings.model_cache) if settings else None)
        self._bank: _Bank | None = None
        self._lock = threading.Lock()
        self._checked = 0.0
        self.faq_error: str | None = None  # why the last reload failed (the previous FAQ stays in use)
        self.embedded_last_reload = 0  # texts embedded by the last (re)load, for tests and logs

    # ---- FAQ state

    @property
    def entries(self) -> tuple[FaqEntry, ...]:
        """The FAQ entries in use."""
        return self._ensure().entries

    @property
    def faq_file(self) -> Path | None:
        """The FAQ file in effect (the user's copy if it exists), or ``None`` for entries given in code."""
        return next((p for p in self._faq_paths if p.is_file()), self._faq_paths[0] if self._faq_paths else None)

    def _fingerprint(self) -> tuple:
        """Which FAQ file is in effect and a hash of its bytes (a few KB: cheap, and immune to mtime granularity)."""
        if self._fixed is not None:
            return ("fixed",)
        for path in self._faq_paths:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                return (str(path), f"unreadable: {exc.strerror}")
            return (str(path), hashlib.sha256(data).hexdigest())
        return ("missing",)

    def warm(self) -> None:
        """Load the FAQ and embed the examples now rather than on the first message."""
        self._ensure()

    def reload(self) -> bool:
        """Re-read the FAQ file if it changed; returns whether it was reloaded. A bad file keeps the previous FAQ
        (``faq_error`` says why). Only question variants not embedded before are embedded."""
        with self._lock:
            return self._reload_locked(force=False)

    def _ensure(self) -> _Bank:
        bank = self._bank
        if bank is None:
            with self._lock:
                if self._bank is None:
                    self._reload_locked(force=True)
                bank = self._bank
        assert bank is not None
        return bank

    def _maybe_reload(self) -> None:
        if self._fixed is not None or time.monotonic() - self._checked < self.check_interval_s:
            return
        self.reload()

    def _reload_locked(self, force: bool) -> bool:
        self._checked = time.monotonic()
        fingerprint = self._fingerprint()
        if not force and self._bank is not None and fingerprint == self._bank.fingerprint:
            return False
        if self._fixed is not None:
            entries = self._fixed
        else:
            path = next((p for p in self._faq_paths if p.is_file()), None)
            try:
                if path is None:
                    raise FaqError(f"no FAQ file at {', '.join(str(p) for p in self._faq_paths)}")
                entries = tuple(load_faq(path))
                self.faq_error = None
            except FaqError as exc:
                self.faq_error = str(exc)
                if self._bank is not None:
                    log.error("FAQ not reloaded, keeping the previous one: %s", exc)
                    # Remember the bad file so it isn't re-parsed on every message.
                    self._bank = _replace_fingerprint(self._bank, fingerprint)
                    return False
                log.error("FAQ unavailable, routing without it: %s", exc)
                entries = ()
        self._bank = self._build(entries, fingerprint)
        log.info("router loaded %d FAQ entries (%d texts embedded)", len(entries), self.embedded_last_reload)
        return True

    def _build(self, entries: tuple[FaqEntry, ...], fingerprint: tuple) -> _Bank:
        if self._examples is None:
            self._examples = tuple(load_examples(self._examples_path or DEFAULT_INTENTS_PATH))
        rows = [(i, q) for i, e in enumerate(entries) for q in e.questions]
        entry_texts = [q for _, q in rows]
        example_texts = [ex.text for ex in self._examples]
        vecs, embedded = self._cache.vectors(entry_texts + example_texts)
        self.embedded_last_reload = embedded
        entry_vecs, example_vecs = vecs[: len(entry_texts)], vecs[len(entry_texts) :]
        knn: dict[str, list[np.ndarray]] = {label: [] for label in _KNN_LABELS}
        null: list[tuple[str, str, np.ndarray]] = []  # unrelated messages: (text, language, vector)
        for ex, vec in zip(self._examples, example_vecs, strict=True):
            knn[ex.label].append(vec)
            if ex.label != "rag":
                null.append((ex.text, ex.lang, vec))
        for (i, q), vec in zip(rows, entry_vecs, strict=True):
            if entries[i].kind in ("chitchat", "out_of_scope"):
                knn[entries[i].kind].append(vec)
                null.append((q, detect_lang(q), vec))
        dim = self.embedder.dim
        background = Background.build(
            entry_texts + example_texts,
            [t for t, _, _ in null],
            np.vstack([v for _, _, v in null]) if null else np.zeros((0, dim), np.float32),
            [lang for _, lang, _ in null],
        )
        return _Bank(
            entries=entries,
            by_id={e.id: e for e in entries},
            entry_vecs=entry_vecs,
            entry_rows=tuple(i for i, _ in rows),
            chat_rows=np.array([r for r, (i, _) in enumerate(rows) if entries[i].kind == "chitchat"], dtype=np.int64),
            blobs={e.id: _clean(" ".join((*e.questions, e.answer, e.answer_zh or ""))) for e in entries},
            knn_vecs={k: np.vstack(v) if v else np.zeros((0, dim), np.float32) for k, v in knn.items()},
            background=background,
            fingerprint=fingerprint,
        )

    # ---- classification

    def query(self, message: str | Query) -> Query:
        """The message as routing and retrieval see it: a leading greeting removed, its language, and its query
        embedding (computed here, once; reused when ``message`` already carries it for the same text). A message a
        rule decides (a bare greeting, thanks, "ok") gets no embedding."""
        given = message if isinstance(message, Query) else None
        text = given.text if given else message
        sig = text_signals(text, given.language if given else None)
        vector = given.vector if given is not None and given.text == sig.text else None
        if vector is None and not sig.rule:
            vector = np.asarray(self.embedder.query(sig.text), dtype=np.float32)
        return Query(sig.text, sig.lang, vector)

    def features(
        self, message: str | Query, kbs: Sequence[SearchableKb] | None = None, query: Query | None = None
    ) -> Features:
        """Rule signals, embedding similarities and (with ``kbs``) knowledge-base evidence for ``message``.

        ``query``: the message's ``Query`` from ``self.query`` (built when not given: one query embedding unless a
        rule decides)."""
        self._maybe_reload()
        bank = self._ensure()
        text = message.text if isinstance(message, Query) else message
        sig = text_signals(text, message.language if isinstance(message, Query) else None)
        if sig.rule:
            return Features(sig.text, sig.lang, rule=sig.rule)
        query = query or self.query(message)
        q = query.vector
        assert q is not None
        k = max(1, self.thresholds.k)
        class_sims, class_max = {}, {}
        for label, mat in bank.knn_vecs.items():
            if len(mat):
                sims = mat @ q
                top = np.partition(sims, len(sims) - min(k, len(sims)))[-k:]
                class_sims[label] = float(top.mean())
                class_max[label] = float(top.max())
        entry_id = entry_kind = chat_entry = None
        entry_sim = 0.0
        if len(bank.entry_vecs):
            sims = bank.entry_vecs @ q
            best = int(np.argmax(sims))
            entry = bank.entries[bank.entry_rows[best]]
            entry_sim, entry_id, entry_kind = float(sims[best]), entry.id, entry.kind
            if len(bank.chat_rows):
                row = int(bank.chat_rows[int(np.argmax(sims[bank.chat_rows]))])
                chat_entry = bank.entries[bank.entry_rows[row]].id
        # A marker the matched entry never mentions (Costco, 2023, 公司) means the message is about the documents.
        blob = bank.blobs.get(entry_id or "", "")
        specific = any(marker not in blob for marker in sig.markers)
        evidence = None
        if kbs is not None and bank.background is not None:
            evidence = self.evidence.evidence(kbs, sig.text, q, sig.lang, bank.background)
        beyond = evidence is not None and any(term not in blob for term in evidence.terms)
        return Features(
            text=sig.text,
            lang=sig.lang,
            code=sig.code,
            task=sig.task,
            followup=sig.followup,
            specific=specific,
            knowledge=sig.knowledge,
            entry_sim=entry_sim,
            entry_id=entry_id,
            entry_kind=entry_kind,
            chat_entry_id=chat_entry,
            class_sims=class_sims,
            class_max=class_max,
            kb=evidence,
            kb_beyond_faq=beyond,
        )

    def classify(self, message: str | Query, kbs: Sequence[SearchableKb] | None = None) -> Route:
        """Route one message (a string, or a ``Query`` whose embedding is reused). Never calls an LLM.

        ``kbs``: the knowledge bases the question would be asked of (the shared one and the session's uploads);
        without them the decision uses the message alone. ``Route.query`` carries the message's text, language and
        query embedding on to retrieval.
        """
        query = self.query(message)
        f = self.features(query, kbs, query)
        label, score, entry_id, reason = decide(f, self.thresholds)
        detail = _detail(reason, f)
        log.info("route %s (%s) for %r: %s", label, reason, query.text[:80], detail)
        if label == "rag":
            return Route("rag", score, lang=f.lang, reason=reason, detail=detail, query=query)
        reply = self._reply(entry_id, label, f.lang)
        return Route(label, score, reply, entry_id, f.lang, reason, detail, query)

    def _reply(self, entry_id: str | None, label: str, lang: str) -> str:
        bank = self._ensure()
        entry = None if entry_id == "empty" else bank.by_id.get(entry_id or "")
        if entry is None and label == "out_of_scope":
            entry = next((e for e in bank.entries if e.kind == "out_of_scope"), None)
        if entry is None and label == "chitchat" and entry_id != "empty":
            entry = bank.by_id.get("smalltalk")
        if entry is not None:
            return entry.reply(lang)
        key = entry_id if entry_id in _FALLBACK else ("out_of_scope" if label == "out_of_scope" else "smalltalk")
        en, zh = _FALLBACK[key]
        return zh if lang == "zh" else en


_RULES = {
    "greeting": "a greeting",
    "thanks": "thanks",
    "goodbye": "a goodbye",
    "smalltalk": "a short acknowledgement",
    "empty": "an empty message",
    "code": "asks for code",
    "task": "asks for another task (translate, book, play, draw, arithmetic)",
}


def _detail(reason: str, f: Features) -> str:
    """The evidence behind ``reason`` in one line."""
    if reason.startswith("rule:"):
        return _RULES.get(reason[5:], reason[5:])
    sims = ", ".join(f"{k} {v:.3f}" for k, v in sorted(f.class_sims.items()))
    evidence = f"; knowledge base: {f.kb.describe()}" if f.kb is not None else ""
    if reason == "faq":
        return f"close to the FAQ entry {f.entry_id!r} (cosine {f.entry_sim:.3f}){evidence}"
    if reason == "vocabulary":
        return f"ESG / finance vocabulary or a reference to a document{evidence}"
    if reason == "followup":
        return f"a follow-up to the conversation{evidence}"
    if reason == "kb:lexical":
        return f"shares rare words with the knowledge base, {f.kb.describe() if f.kb else ''}"
    if reason == "kb:dense":
        return f"much closer to the knowledge base than unrelated messages, {f.kb.describe() if f.kb else ''}"
    if reason == "kb:none":
        return f"no ESG vocabulary and nothing near it in the knowledge base ({f.kb.describe() if f.kb else ''})"
    return f"nearest examples by label: {sims}{evidence}"


def _replace_fingerprint(bank: _Bank, fingerprint: tuple) -> _Bank:
    return dataclasses.replace(bank, fingerprint=fingerprint)
