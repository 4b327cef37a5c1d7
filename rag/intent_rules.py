"""The rule layer of intent routing (``rag.route``): what a message says before anything is embedded.

Bare greetings, thanks, goodbyes and acknowledgements; a leading greeting to strip; requests for code and other tasks;
follow-ups; ESG / finance vocabulary and references to documents (reports, guides, videos, recordings); and the
markers of a question about particular documents (years, quantities, company names). English and Chinese.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from rag.text import HAN, detect_language, is_cjk_char

detect_lang = detect_language  # the one language detector (rag.text); the name routing code and tests use


def clean_message(text: str) -> str:
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
    clean = clean_message(raw)
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
            clean = clean_message(text)
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
    target = clean_message(clean[:clean_end])
    for cut in range(1, len(raw) + 1):
        if clean_message(raw[:cut]) == target and (cut == len(raw) or not raw[cut].isalnum() or is_cjk_char(raw[cut])):
            rest = raw[cut:].lstrip(" ,，!！.。~～:：;；-—")
            if rest:
                return rest
    return raw
