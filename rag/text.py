"""The text toolkit: the one place for CJK character classes, language detection, sentence splitting, tokens for word
overlap, stopwords, refusal detection, citation stripping and figure normalisation, in English and Chinese.

Pure functions on ``str``: no model, no I/O, only the standard library (importing it costs nothing).

Where two callers need different behaviour the variants sit side by side here, named for their job, and say how
they differ. They differ because scores and ranks were measured with them (docs/BENCHMARKS.md): the BM25 terms, the
citation-overlap units and the judge's content words each keep the stopwords and CJK handling they were tuned with.

Public API
----------
Character classes (regex class bodies, for ``f"[{HAN}]"``): ``HAN``, ``CJK_CHARS``, ``CJK_PUNCT``, ``FULLWIDTH``;
``CJK_PUNCT_SET``; ``has_cjk``, ``is_cjk_char``, ``count_han``.
Language: ``detect_language``.
Normalising: ``normalize``.
Sentences: ``split_sentences`` (document text), ``split_clauses``, ``split_statements`` (answers),
``first_sentence``, ``ends_sentence``.
Tokens and stopwords: ``cjk_bigrams``; ``search_tokens`` (BM25), ``overlap_units`` (citation support),
``content_tokens`` (the evaluation judge); ``STOPWORDS``, ``SEARCH_STOPWORDS``, ``OVERLAP_STOPWORDS``,
``KEY_TERM_STOPWORDS``, ``QUESTION_WORDS``.
Citations and refusals: ``CITATION``, ``strip_citations``; ``is_refusal`` (the app's), ``is_refusal_statement`` and
``only_states_absence`` (for reference answers and statement checks in the evaluation).
Figures: ``Figure``, ``extract_figures``, ``figure_matches``, ``figure_in``, ``chinese_number`` (the grounding check).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# --- character classes -------------------------------------------------------------------------------------------

# Chinese characters: CJK unified ideographs, extension A, compatibility ideographs. What language detection, the
# overlap tokenisers and "is this Chinese" checks count.
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Letters of CJK scripts: Han plus kana and Hangul syllables. For text layout (no spaces between them, one token
# each, sentence ends before them), where Japanese and Korean behave like Chinese.
CJK_CHARS = "\u3040-\u30ff" + HAN + "\uac00-\ud7af"
# Punctuation set in CJK text: CJK symbols and punctuation, full-width punctuation (not full-width letters or
# digits), curly quotes, ellipsis, em dash. For spacing rules (no space beside them inside CJK text).
CJK_PUNCT = "\u3000-\u303f\uff00-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65\u2018\u2019\u201c\u201d\u2026\u2014"
CJK_PUNCT_SET = frozenset("，。、；：！？（）《》「」『』“”‘’【】…—")
# CJK symbols and punctuation plus the whole half-/full-width forms block. ``f"[{HAN}{FULLWIDTH}]"`` is a character
# that takes a full column and about one token: the LLM token estimate and joining transcript segments use it.
FULLWIDTH = "\u3000-\u303f\uff00-\uffef"

_HAN_RE = re.compile(f"[{HAN}]")
_CJK_RE = re.compile(f"[{CJK_CHARS}]")


def has_cjk(text: str) -> bool:
    """True when ``text`` has a CJK letter (Han, kana or Hangul)."""
    return _CJK_RE.search(text) is not None


def is_cjk_char(ch: str) -> bool:
    """True when ``ch`` (or its first character) is a CJK letter; False for ``""``."""
    return bool(ch) and _CJK_RE.match(ch) is not None


def count_han(text: str) -> int:
    """Number of Chinese characters in ``text``."""
    return len(_HAN_RE.findall(text))


# --- language ----------------------------------------------------------------------------------------------------

_LATIN_WORD = re.compile(r"[A-Za-z]+")


def detect_language(text: str) -> str:
    """``"zh"`` when ``text`` has at least as many Chinese characters as Latin words, else ``"en"``.

    A Chinese word is 1–3 characters, so this leans Chinese for mixed questions ("Costco 的 ESG 目标是什么？" is
    ``zh``) and stays English for an English sentence quoting a name ("What does 碳中和 mean?" is ``en``). Used for
    questions, documents, transcripts and QA rows alike, so their languages compare.
    """
    cjk = count_han(text)
    return "zh" if cjk and cjk >= len(_LATIN_WORD.findall(text)) else "en"


def normalize(text: str) -> str:
    """NFKC (full-width digits and ``％`` become ASCII) with whitespace runs collapsed to one space."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


# --- sentences ---------------------------------------------------------------------------------------------------

_CLOSERS = "\"'”’」』）)］\\]"  # closing quotes/brackets that stay with the sentence they end
_CJK_END_RE = re.compile(f"[。！？；!?][{_CLOSERS}]*")
_EN_END_RE = re.compile(f"[.!?][{_CLOSERS}]*(?=\\s+[\"“‘'(\\[•A-Z0-9{CJK_CHARS}])")
_ABBREVIATIONS = frozenset(
    "e.g i.e etc vs approx mr mrs ms dr prof st no nos fig figs inc ltd co corp jr sr art sec p pp vol ref dept "
    "est min max jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k e.u cf al".split()
)
_CLAUSE_RE = re.compile("[，、；：,;:](?=\\s)|[，、；：]")


def split_sentences(text: str) -> list[str]:
    """Split document text (a paragraph) into sentences at Chinese (。！？；) and English (. ! ?) sentence ends.

    English ends need a following space and a capital, digit, quote or CJK letter, and skip abbreviations
    (``e.g.``, ``Fig.``, initials) and decimals. The pieces concatenate back to the text (whitespace aside).
    """
    cuts = {m.end() for m in _CJK_END_RE.finditer(text)}
    for m in _EN_END_RE.finditer(text):
        if text[m.start()] == "." and _is_abbreviation(text, m.start()):
            continue
        cuts.add(m.end())
    return _cut(text, cuts)


def _is_abbreviation(text: str, dot: int) -> bool:
    start = dot
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "."):
        start -= 1
    word = text[start:dot].lower()
    if not word:
        return False
    standalone = start == 0 or text[start - 1] in " \t\n(\"'“‘"  # "J." is an initial, "°C." ends a sentence
    return word in _ABBREVIATIONS or (standalone and len(word) == 1 and word.isalpha())


def split_clauses(text: str) -> list[str]:
    """Split a sentence at clause marks: ``，、；：`` and ``, ; :`` followed by a space."""
    return _cut(text, {m.end() for m in _CLAUSE_RE.finditer(text)})


def _cut(text: str, cuts: set[int]) -> list[str]:
    out, start = [], 0
    for end in sorted(cuts):
        piece = text[start:end].strip()
        if piece:
            out.append(piece)
        start = end
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


_END_RE = re.compile(f"[.!?。！？；;:：…][{_CLOSERS}]*$")
_FULL_STOP_END_RE = re.compile(f"[.!?。！？…][{_CLOSERS}]*$")


def ends_sentence(text: str, *, colons: bool = True) -> bool:
    """True when ``text`` ends a sentence: ``. ! ? 。！？…`` and, with ``colons``, also ``; ： ；:`` (a PDF line
    ending so closes its paragraph), closing quotes or brackets allowed after the mark.

    ``colons=False`` is for speech segments: a speaker's "three points:" goes on in the next segment.
    """
    return bool((_END_RE if colons else _FULL_STOP_END_RE).search(text.rstrip()))


def first_sentence(text: str) -> str:
    """The first sentence of an answer: up to the first ``. ! ? 。！？`` or line break (no abbreviation handling:
    it reads the model's opening words, e.g. for a refusal)."""
    text = text.strip()
    return re.split(r"(?<=[.!?。！？])\s*|\n", text, maxsplit=1)[0] if text else ""


# An answer statement ends at . ! ? (not inside "1.5", "e.g.", "p. 12", "Inc.") or at Chinese 。！？；, or at a line
# break.
_STATEMENT_ABBREV = (
    "e.g",
    "i.e",
    "etc",
    "p",
    "pp",
    "no",
    "inc",
    "co",
    "ltd",
    "vs",
    "fig",
    "approx",
    "st",
    "u.s",
    "dr",
    "mr",
    "ms",
)
_ABBREV_BEFORE_NUMBER = ("p", "pp", "no")  # "No. 3" is an abbreviation, "No. There were none" is a sentence
_STATEMENT_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=\S)|(?<=[。！？；;！？])\s*|\n+")
_BULLET = re.compile(r"^\s*(?:[-*•·]|\d{1,2}[.)、]|[（(]\d{1,2}[)）])\s+")


def split_statements(text: str) -> list[str]:
    """Split an answer into sentence-level statements: citation marks kept with their sentence, bullets and empty
    pieces dropped, whitespace collapsed (unlike ``split_sentences``, the pieces are not the text cut up)."""
    pieces: list[str] = []
    for line in text.replace("\r", "").split("\n"):
        line = " ".join(line.split())
        if not line:
            continue
        start = 0
        for m in _STATEMENT_END.finditer(line):
            before = line[start : m.start()].rstrip()
            last_word = re.findall(r"([A-Za-z.]+)\.$", before)
            word = last_word[0].lower().rstrip(".") if last_word else ""
            after = line[m.end() : m.end() + 1]
            if word in _STATEMENT_ABBREV and (word not in _ABBREV_BEFORE_NUMBER or after.isdigit()):
                continue  # "p. 12", "e.g. water" - not a sentence end
            pieces.append(line[start : m.start()])
            start = m.end()
        pieces.append(line[start:])
    out: list[str] = []
    for p in pieces:
        p = _BULLET.sub("", p).strip()
        # A piece that is only citation marks belongs to the statement before it.
        if out and not strip_citations(p).strip(" .。"):
            out[-1] = f"{out[-1]} {p}".strip()
            continue
        if strip_citations(p).strip(" .。:：-"):
            out.append(p)
    return out


# --- tokens for word overlap, and stopwords ----------------------------------------------------------------------

# English function words and report boilerplate: what the evaluation judge leaves out of its content words.
STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being it its this that these
    those has have had do does did not no yes than then so such which who whom whose what when where why how all any
    each both few more most other some own same can will would should could may might must shall our we us their they
    them his her he she you your i me my also into over under about above below up down out off again further once
    there here very just only per via within across during including include includes included company company's
    report reports reported reporting""".split()
)
# BM25 terms keep more words than the judge (ranks were measured with this list; "not", "company", "report" stay).
SEARCH_STOPWORDS = frozenset(
    """a an and are as at be by for from has have how in is it its of on or that the their this to was were what
    when which who why will with does did do our we""".split()
)
# Citation support (attributing and re-pointing marks) drops these from the answer's and the passages' words.
OVERLAP_STOPWORDS = frozenset(
    """a an the and or of to in on for by with is are was were be been its it this that these as at from has have
    had not no yes than which who will would can our their they we also into over per company""".split()
)
# Key terms of a passage are its repeated words of four letters or more, less these (chunk key lines).
KEY_TERM_STOPWORDS = frozenset(
    "this that these those with from have has been were which their there they them than then also into over "
    "under more most such other some each many much will would could should shall about across after before "
    "between during while where when what within without through based including include includes included "
    "year years report reports company group total other being well using used both only same further level "
    "levels part make made does done upon very into onto well our ours your yours its it's".split()
)
# Words of a question that are not names even when capitalised ("What", "Please"), for carrying context terms.
QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how does do did is are was were can could should will would has have "
    "had the a an and or in on of for to by with please tell give list describe explain compare".split()
)


def cjk_bigrams(run: str) -> list[str]:
    """Overlapping character pairs of a CJK run (``"温室气体"`` -> ``温室 室气 气体``); ``[]`` for fewer than two
    characters. Chinese has no spaces: pairs match a word wherever it sits, with no dictionary."""
    return [run[i : i + 2] for i in range(len(run) - 1)]


_SEARCH_TOKEN = re.compile(rf"[{HAN}]+|[a-z0-9]+(?:[.,][0-9]+)*", re.IGNORECASE)


def _stem(word: str) -> str:
    # A light English stemmer: enough to match emission/emissions, target/targets, reduce/reduced/reducing.
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def search_tokens(text: str) -> list[str]:
    """BM25 terms: lower-cased, lightly stemmed English words and numbers (``12.5`` whole) less
    ``SEARCH_STOPWORDS``; each Chinese run as bigrams (a one-character run as itself)."""
    out: list[str] = []
    for match in _SEARCH_TOKEN.finditer(text):
        tok = match.group(0)
        if "\u3400" <= tok[0] <= "\ufaff":
            out.extend(cjk_bigrams(tok) or [tok])
        else:
            tok = tok.lower()
            if tok in SEARCH_STOPWORDS:
                continue
            out.append(tok if tok[0].isdigit() else _stem(tok))
    return out


_OVERLAP_TOKEN = re.compile(r"[a-z]+|\d+(?:[.,]\d+)*")


def overlap_units(text: str) -> set[str]:
    """Units for citation support: English words longer than two letters (less ``OVERLAP_STOPWORDS``) and numbers,
    plus bigrams of all the Chinese characters read as one run (a lone character gives none)."""
    low = text.lower()
    words = {w for w in _OVERLAP_TOKEN.findall(low) if w not in OVERLAP_STOPWORDS and (len(w) > 2 or w.isdigit())}
    return words | set(cjk_bigrams("".join(_HAN_RE.findall(low))))


_CONTENT_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_HAN_RUN = re.compile(f"[{HAN}]+")


def content_tokens(text: str) -> list[str]:
    """The judge's content words: NFKC, lower-cased, crudely singularised, less ``STOPWORDS`` and one-letter words;
    plus each Chinese run's bigrams (a one-character run as itself)."""
    text = normalize(text).lower()
    words = [
        w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in _CONTENT_WORD.findall(text)
    ]
    tokens = [w for w in words if w not in STOPWORDS and len(w) > 1]
    for run in _HAN_RUN.findall(text):
        tokens += cjk_bigrams(run) or [run]
    return tokens


# --- citations ---------------------------------------------------------------------------------------------------

# A citation mark as the models write it: [1], [1, 2], [1-3], full-width 【1】. Group 1 is the numbers.
CITATION = re.compile(r"[\[【]\s*(\d+(?:\s*[,，、\-–]\s*\d+)*)\s*[\]】]")
_CITATION_AND_SPACE = re.compile(rf"[ \t]*(?:{CITATION.pattern})")


def strip_citations(text: str) -> str:
    """``text`` without citation marks (and the spaces before them), space runs collapsed, ends stripped:
    ``"Water use fell 12% [1][2]."`` -> ``"Water use fell 12%."``."""
    return re.sub(r"[ \t]{2,}", " ", _CITATION_AND_SPACE.sub("", text)).strip()


# --- refusals ----------------------------------------------------------------------------------------------------

# The app's refusal: the answer's first sentence says the documents don't hold the answer.
_REFUSAL_PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"documents? (?:do|does)(?: not|n['’]t) (?:answer|contain|mention|provide|include|disclose|say|state|specify)",
        r"passages? (?:do|does)(?: not|n['’]t) (?:answer|contain|mention|provide|include|disclose|say|state|specify)",
        r"(?:not|no) (?:mentioned|provided|disclosed|stated|found|available|information|data)"
        r" (?:in|within|from) the (?:passages|documents|provided)",
        r"there is no (?:information|mention|data)",
        r"无法回答",
        r"(?:没有|未)(?:提及|提到|披露|提供|包含|涉及)",
        r"(?:段落|文档|文件|资料)中(?:没有|并未|未)",
    )
]


def is_refusal(text: str) -> bool:
    """True when the first sentence of ``text`` says the documents don't hold the answer.

    The one refusal check of the app's answers: an answer shown as refused is the answer counted as refused by the
    evaluation. A partial answer ("Scope 1 was 388,500 t [1]. The report does not state Scope 3.") is not one.
    """
    first = first_sentence(text)
    return any(p.search(first) for p in _REFUSAL_PATTERNS)


# Any statement saying information is absent, in the many ways people write it (reference answers, hand labels).
_ABSENCE_EN = re.compile(
    r"\b(?:(?:does|do|did|is|are|was|were)\s?n[o']t\s+(?:\w+\s+){0,3}?"
    r"(?:mention|disclose|provide|state|specify|contain|include|say|report|cover|address|define|give|detail|"
    r"discuss|describe|indicate|identify|appear|answer|explicit|available)\w*"
    r"|not\s+(?:\w+\s+){0,2}?(?:mentioned|disclosed|provided|stated|specified|found|available|reported|covered|"
    r"included|given|addressed|discussed|defined|indicated)"
    r"|no\s+(?:specific\s+|relevant\s+|explicit\s+|such\s+)?(?:information|mention|data|details?|disclosure|evidence|"
    r"indication|answer)"
    r"|(?:cannot|can't|can not|unable to|could not|couldn't)\s+(?:find|answer|determine|locate|confirm|tell|identify)"
    r"|(?:documents?|reports?|passages?|sources?)\s+(?:do|does)\s?n[o']t\s+(?:\w+\s+){0,3}?\w+"
    r"|there is nothing)",
    re.IGNORECASE,
)
_ABSENCE_ZH = re.compile(
    r"(?:未|没有|并未|没|无)(?:\S{0,6}?)(?:提及|披露|提供|说明|找到|涉及|包含|记载|明确|给出|提到|相关信息|相关内容|相关数据)"
    r"|无法(?:回答|确定|找到|判断|确认)|找不到|不包含|不涉及|无相关|尚未披露"
)


def is_refusal_statement(statement: str) -> bool:
    """The statement says the information is absent ("The report does not disclose …", "报告未提及 …").

    For the evaluation's per-statement checks: such a statement is a claim about absence, not a fact to ground.
    Broader than ``is_refusal``, which reads only an answer's first sentence against the app's phrases.
    """
    s = normalize(strip_citations(statement))
    return bool(_ABSENCE_EN.search(s) or _ABSENCE_ZH.search(s))


def only_states_absence(text: str) -> bool:
    """True when every statement of ``text`` says the information is absent (or it is empty, or a bare "No" is all
    that is left), e.g. a reference answer "Not disclosed." that marks a QA row unanswerable.

    For texts people wrote (reference answers, hand-labelled answers); the app's answers are judged refused by
    ``is_refusal``.
    """
    statements = split_statements(text)
    if not statements:
        return True  # an empty answer answers nothing
    substantive = [s for s in statements if not is_refusal_statement(s)]
    if not substantive:
        return True
    # "No. The company does not define …": a bare polarity word left over from a refusal.
    return all(re.fullmatch(r"\W*(?:no|not really|否|没有)\W*", strip_citations(s), re.IGNORECASE) for s in substantive)


# --- Figures (number normalisation) ---

# Figures are what a small model most often gets wrong, so the grounding check (rag/ground.py) compares every figure
# an answer states with the figures of the passage it cites. Both sides are normalised first, so the same quantity
# matches across formats and languages: "4.26 million" = "426万", "37.4 %" = "37.4%", "1,117" = "1117",
# "FY2024" = "2024财年", "US$760 million" = "7.6亿美元", "2.8 billion m3" = "28亿立方米", "百分之三十七点四" = "37.4%".


@dataclass(frozen=True)
class Figure:
    """One figure found in a text.

    ``kind`` is ``number``, ``percent`` (``value`` in percent; percentage points too), ``year``, ``fiscal_year``
    or ``date`` (``value`` = year; ``month``/``day`` when stated). ``value`` is the normalised quantity (scale words
    applied: "4.26 million" -> 4260000.0; units converted to their base: "2.5 Mt" -> 2500000.0 t). ``mantissa`` is
    the number as written before the scale word and ``decimals`` its decimal places (for rounding). ``unit`` is a
    canonical unit (``t``, ``m3``, ``Wh``, ``J``, ``W``, ``km``, ``ha``, ``%``) or ``None``; ``currency`` an ISO code
    or ``None``. ``text`` is the matched text (NFKC-normalised).
    """

    kind: str
    value: float
    text: str
    unit: str | None = None
    currency: str | None = None
    mantissa: float = 0.0
    decimals: int = 0
    scaled: bool = False
    month: int | None = None
    day: int | None = None

    @property
    def year_like(self) -> bool:
        return self.kind in ("year", "fiscal_year", "date")


_CN_DIGITS = {"零": 0, "〇": 0, "○": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8}
_CN_DIGITS |= {"九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_BIG = {"万": 10_000, "亿": 100_000_000}
_CN_NUM = "零〇○一二两三四五六七八九十百千万亿"


def chinese_number(text: str) -> float | None:
    """The value of a Chinese numeral ("三十七点四" -> 37.4, "二〇二三" -> 2023, "一百二十万" -> 1200000), or
    ``None`` when ``text`` is not one."""
    if not text:
        return None
    whole, _, frac = text.partition("点")
    if frac and not all(c in _CN_DIGITS for c in frac):
        return None
    if whole and all(c in _CN_DIGITS for c in whole) and len(whole) > 1:  # digit by digit: 二〇二三
        value = float("".join(str(_CN_DIGITS[c]) for c in whole))
    else:
        total, section, digit = 0, 0, None
        for c in whole:
            if c in _CN_DIGITS:
                if digit is not None:
                    return None  # two digits in a row without a unit: not a numeral we read
                digit = _CN_DIGITS[c]
            elif c in _CN_UNITS:
                section += (1 if digit is None else digit) * _CN_UNITS[c]
                digit = None
            elif c in _CN_BIG:
                section += digit or 0
                total = (total + section) * _CN_BIG[c] if _CN_BIG[c] > total else total + section * _CN_BIG[c]
                section, digit = 0, None
            else:
                return None
        value = float(total + section + (digit or 0))
    if frac:
        value += float("0." + "".join(str(_CN_DIGITS[c]) for c in frac))
    return value


# Scale words after a number. English short forms ("m", "bn", "k") count only after a currency ("US$760m"):
# "100 m" is a length.
_SCALE_WORDS = {"thousand": 1e3, "million": 1e6, "millions": 1e6, "billion": 1e9, "billions": 1e9, "trillion": 1e12}
_SCALE_SHORT = {"k": 1e3, "m": 1e6, "mn": 1e6, "mln": 1e6, "bn": 1e9, "b": 1e9, "md": 1e9, "tn": 1e12}
_SCALE_CN = {"万亿": 1e12, "千亿": 1e11, "百亿": 1e10, "亿": 1e8, "千万": 1e7, "百万": 1e6, "十万": 1e5, "万": 1e4}
_SCALE_CN |= {"千": 1e3}
_SCALE_CN_RE = re.compile("|".join(sorted(_SCALE_CN, key=len, reverse=True)))

# Units: (pattern, canonical unit, factor to the canonical unit). Longest first; tested before the Chinese scales
# so "千瓦时" is a unit, not 千 + 瓦时. CO2e qualifiers are part of the mass unit: tonnes are tonnes.
_CO2 = r"(?:\s*(?:of\s+)?(?:CO2|CO₂|carbon dioxide)(?:[\s-]*(?:e|eq|equivalents?))?\b)?"
_UNIT_TABLE: list[tuple[str, str, float]] = [
    (r"percentage points?|个百分点|pp\b|p\.p\.", "%", 1),
    (r"%|percent\b|per cent\b", "%", 1),
    (r"Gt" + _CO2, "t", 1e9),
    (r"Mt" + _CO2, "t", 1e6),
    (r"kt" + _CO2, "t", 1e3),
    (r"(?:metric\s+)?(?:tonnes|tonne|tons|ton)" + _CO2, "t", 1),
    (r"MT" + _CO2, "t", 1),  # metric tons (Costco's "MT CO2e")
    (r"t" + _CO2 + r"(?![A-Za-z])", "t", 1),
    (r"吨(?:二氧化碳当量|标准煤|标煤)?", "t", 1),
    (r"kg\b|千克|公斤", "t", 1e-3),
    (r"m3\b|m³|cubic met(?:er|re)s?\b|立方米", "m3", 1),
    (r"megalit(?:er|re)s?\b|ML\b", "m3", 1e3),
    (r"gigalit(?:er|re)s?\b|GL\b", "m3", 1e6),
    (r"TWh\b|太瓦时", "Wh", 1e12),
    (r"GWh\b|吉瓦时", "Wh", 1e9),
    (r"MWh\b|兆瓦时", "Wh", 1e6),
    (r"kWh\b|千瓦时", "Wh", 1e3),
    (r"PJ\b", "J", 1e15),
    (r"TJ\b|太焦", "J", 1e12),
    (r"GJ\b|吉焦", "J", 1e9),
    (r"MJ\b|兆焦", "J", 1e6),
    (r"GWp?\b|吉瓦", "W", 1e9),
    (r"MWp?\b|兆瓦", "W", 1e6),
    (r"kWp?\b|千瓦", "W", 1e3),
    (r"km\b|kilomet(?:er|re)s?\b|公里|千米", "km", 1),
    (r"hectares?\b|ha\b|公顷", "ha", 1),
]
# One alternation (first alternative wins, as in the table's order): one match per number instead of one per unit.
_UNIT_RE = re.compile("|".join(f"(?P<u{i}>{p})" for i, (p, _, _) in enumerate(_UNIT_TABLE)))

_CURRENCY_BEFORE = [
    (r"US\$|USD|U\.S\.\s?\$", "USD"),
    (r"HK\$|HKD", "HKD"),
    (r"A\$|AUD", "AUD"),
    (r"C\$|CAD", "CAD"),
    (r"S\$|SGD", "SGD"),
    (r"RMB|CNY|人民币|¥|￥", "CNY"),
    (r"EUR|€", "EUR"),
    (r"GBP|£", "GBP"),
    (r"KRW|₩", "KRW"),
    (r"JPY", "JPY"),
    (r"CHF", "CHF"),
    (r"\$", "USD"),
]
_CURRENCY_PREFIX = re.compile(
    r"(?:" + "|".join(f"(?P<c{i}>{p})" for i, (p, _) in enumerate(_CURRENCY_BEFORE)) + r")\s?$"
)
_CURRENCY_AFTER = [
    (r"美元|USD\b|US dollars?\b|dollars?\b|\$", "USD"),
    (r"欧元|EUR\b|(?:of\s+)?euros?\b|€", "EUR"),
    (r"港元|港币|HKD\b", "HKD"),
    (r"日元|JPY\b|yen\b", "JPY"),
    (r"韩元|KRW\b|won\b", "KRW"),
    (r"英镑|GBP\b|pounds? sterling\b", "GBP"),
    (r"元人民币|人民币|元|RMB\b|CNY\b|yuan\b", "CNY"),
]
_CURRENCY_AFTER_RE = [(re.compile(p), code) for p, code in _CURRENCY_AFTER]

_MONTHS = {
    m: i
    for i, names in enumerate(
        (
            "january jan",
            "february feb",
            "march mar",
            "april apr",
            "may",
            "june jun",
            "july jul",
            "august aug",
            "september sep sept",
            "october oct",
            "november nov",
            "december dec",
        ),
        1,
    )
    for m in names.split()
}
_MONTH = r"(?P<mon>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DATE_PATTERNS = [
    re.compile(r"(?P<y>\d{4})\s*年\s*(?P<m>\d{1,2})\s*月(?:\s*(?P<d>\d{1,2})\s*日)?"),
    re.compile(r"(?<!\d)(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?!\d)"),
    re.compile(r"(?<![\w.])(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+" + _MONTH + r",?\s+(?P<y>\d{4})(?!\d)", re.I),
    re.compile(r"(?<![A-Za-z])" + _MONTH + r"\s+(?:(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s+)?(?P<y>\d{4})(?!\d)", re.I),
]
_FISCAL_PATTERNS = [
    re.compile(r"(?<![A-Za-z])FY\s?'?(?P<y>\d{4}|\d{2})(?:/\d{2,4})?(?![\d])", re.I),
    re.compile(r"(?<![A-Za-z])fiscal(?:\s+year)?\s+(?P<y>\d{4})(?!\d)", re.I),
    re.compile(r"(?P<y>\d{4})\s*(?:财年|财政年度|会计年度)"),
    re.compile(r"(?:财年|财政年度)\s*(?P<y>\d{4})(?!\d)"),
]
_CN_YEAR = re.compile(r"(?P<y>[零〇○一二三四五六七八九]{4})\s*年")
_CN_PERCENT = re.compile(r"百分之(?P<n>[零〇○一二两三四五六七八九十百千点]+)")
# Numbers that are labels, not figures: "Scope 3", "SDG 13", "ISO 14001", "Category 1", "第3页", "p. 12".
_LABEL_BEFORE = re.compile(
    r"(?:\b(?:scopes?|categor(?:y|ies)|sdgs?|goals?|iso|gri|tier|phase|articles?|sections?|chapters?|pages?|"
    r"p|pp|no|nos|item|principles?|level|step|part|tables?|figures?|fig|appendix|annex|version|rule|"
    r"paragraph|clause|question|q|cop)\.?\s*|范围|类别|第|附录|表|图)$",
    re.I,
)
_NUMBER_RE = re.compile(
    r"(?<![A-Za-z0-9_.])(?<![A-Za-z]-)(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{1,3}(?:\ue000\d{3})+(?:\.\d+)?"
    r"|\d+(?:\.\d+)?)"
)
_ALNUM_RE = re.compile(r"[A-Za-z0-9]")
_THIN_SPACES = ("\u00a0", "\u202f", "\u2009")
_RANGE_GAP = re.compile(r"\s*(?:-|–|—|~|～|至|到|to|and|或|和)\s*")
_LABEL_CHAIN = re.compile(r"\s*(?:,|，|、|and|&|/|-|–|or|to|和|及)\s*")


def _num(text: str) -> tuple[float, int]:
    digits = re.sub(r"[,\ue000]", "", text)
    decimals = len(digits.partition(".")[2])
    return float(digits), decimals


def _suffix(text: str, pos: int, has_currency: bool) -> tuple[int, float, str | None, float, str | None]:
    """The scale word, unit and currency after a number ending at ``pos``: (end, scale, unit, unit factor,
    currency). A unit and a currency do not stack here ("万元" is scale + currency; "万吨" scale + unit)."""
    scale = 1.0

    def skip_space(q: int) -> int:  # PDF text wraps lines between a number and its scale ("2.8\nbillion m3")
        while q < len(text) and text[q] in " \n\ue000":
            q += 1
        return q

    def unit_at(q: int) -> tuple[int, str, float] | None:
        m = _UNIT_RE.match(text, q)
        if m is None:
            return None
        _, unit, factor = _UNIT_TABLE[int(m.lastgroup[1:])]  # type: ignore[index]
        return m.end(), unit, factor

    p = pos
    # A Chinese scale follows without a space, unless it begins a unit ("千瓦时", "千米").
    if not (text[p : p + 1] in "千百" and unit_at(p)):
        m = _SCALE_CN_RE.match(text, p)
        if m:
            scale, p = _SCALE_CN[m.group(0)], m.end()
    if scale == 1.0:
        q = skip_space(p)
        m = _SCALE_WORD_RE.match(text, q)
        if m:
            scale, p = _SCALE_WORDS[m.group(1).lower()], m.end()
        else:
            # Short forms: after a currency ("US$760m", "€1.2 bn"), or attached in capitals ("174M", "2.5B", "5K").
            m = _SCALE_SHORT_RE.match(text, q) if has_currency else _SCALE_ATTACHED_RE.match(text, p)
            # or before a currency sign: "29 M€", "1.2 Md€" (French "milliard")
            if m or (m := _SCALE_BEFORE_CURRENCY_RE.match(text, q)):
                scale, p = _SCALE_SHORT[m.group(1).lower()], m.end()
    q = skip_space(p)
    hit = unit_at(q)
    if hit:
        return hit[0], scale, hit[1], hit[2], None
    for rx, code in _CURRENCY_AFTER_RE:
        m = rx.match(text, q)
        if m:
            return m.end(), scale, None, 1.0, code
    return p, scale, None, 1.0, None


_SCALE_WORD_RE = re.compile(r"(thousand|millions?|billions?|trillion)\b", re.I)
_SCALE_SHORT_RE = re.compile(r"(k|mn|mln|m|bn|b|tn)(?![A-Za-z0-9])", re.I)
_SCALE_ATTACHED_RE = re.compile(r"(K|M|B|bn|mn)(?![A-Za-z0-9])")
_SCALE_BEFORE_CURRENCY_RE = re.compile(r"(k|K|M|Md|bn|Bn)\s?(?=[€$£¥])")


def extract_figures(text: str) -> list[Figure]:
    """Every figure stated in ``text`` (English or Chinese): numbers, percentages, amounts with their scale, unit and
    currency, years, fiscal years and dates, normalised (see ``Figure``). Labels ("Scope 3", "ISO 14001", "第3页"),
    codes ("CO2", "PM2.5") and citation marks ("[2]") are not figures."""
    # NFKC makes full-width digits and "％" plain, but would turn no-break spaces (thousands separators in French-style
    # reports: "2 346") into plain ones: keep them apart as a private-use character.
    for space in _THIN_SPACES:
        text = text.replace(space, "\ue000")
    text = unicodedata.normalize("NFKC", text)
    figures: list[tuple[int, Figure]] = []
    taken = [False] * (len(text) + 1)

    def claim(start: int, end: int) -> bool:
        if any(taken[start:end]):
            return False
        for i in range(start, end):
            taken[i] = True
        return True

    for rx in _DATE_PATTERNS:
        for m in rx.finditer(text):
            month = int(m.group("m")) if "m" in m.groupdict() and m.group("m") else _MONTHS[m.group("mon").lower()]
            day = int(m.group("d")) if m.group("d") else None
            if not 1 <= month <= 12 or (day is not None and not 1 <= day <= 31) or not claim(m.start(), m.end()):
                continue
            y = int(m.group("y"))
            figures.append((m.start(), Figure("date", float(y), m.group(0), mantissa=float(y), month=month, day=day)))
    for rx in _FISCAL_PATTERNS:
        for m in rx.finditer(text):
            y = int(m.group("y"))
            y = y + 2000 if y < 100 else y
            if claim(m.start(), m.end()):
                figures.append((m.start(), Figure("fiscal_year", float(y), m.group(0), mantissa=float(y))))
    for m in _CN_YEAR.finditer(text):
        y = chinese_number(m.group("y"))
        if y and 1900 <= y <= 2100 and claim(m.start(), m.end()):
            figures.append((m.start(), Figure("year", y, m.group(0), mantissa=y)))
    for m in _CN_PERCENT.finditer(text):
        v = chinese_number(m.group("n"))
        if v is not None and claim(m.start(), m.end()):
            dec = len(m.group("n").partition("点")[2])
            figures.append((m.start(), Figure("percent", v, m.group(0), "%", mantissa=v, decimals=dec)))
    # Citation marks are not figures.
    for m in re.finditer(r"[\[【]\s*\d+(?:\s*[,，、\-–]\s*\d+)*\s*[\]】]", text):
        claim(m.start(), m.end())

    label_end = -1  # end of the last label number: "Scope 1 and 2", "SDGs 6, 7 and 13" are labels throughout
    for m in _NUMBER_RE.finditer(text):
        start, end = m.span(1)
        if taken[start]:
            continue
        if _LABEL_BEFORE.search(text[max(0, start - 14) : start]) or (
            label_end >= 0 and _LABEL_CHAIN.fullmatch(text[label_end:start])
        ):
            label_end = end
            continue
        mantissa, decimals = _num(m.group(1))
        window = max(0, start - 8)
        cm = _CURRENCY_PREFIX.search(text[window:start])
        currency = None
        first = start
        if cm:
            currency = next(_CURRENCY_BEFORE[int(k[1:])][1] for k, v in cm.groupdict().items() if v)
            first = window + cm.start()
        stop, scale, unit, factor, after_currency = _suffix(text, end, currency is not None)
        if stop == end and _ALNUM_RE.match(text, stop):
            continue  # "5G", "2nd", "3M": a code, an ordinal or a name
        currency = currency or after_currency
        if unit == "%":
            kind, value = "percent", mantissa * scale
        elif scale == 1.0 and unit is None and currency is None and len(m.group(1)) == 4 and m.group(1).isdigit():
            kind, value = ("year", mantissa) if 1900 <= mantissa <= 2100 else ("number", mantissa)
        else:
            kind, value = "number", mantissa * scale * factor
        if not claim(first, stop):
            continue
        scaled = scale != 1.0 or factor != 1.0
        fig = Figure(
            kind, value, text[first:stop].replace("\ue000", " ").strip(), unit, currency, mantissa, decimals, scaled
        )
        figures.append((first, fig))
    figures.sort(key=lambda f: f[0])
    out = [f for _, f in figures]
    # A range states its unit once: "10-15%", "2.5 to 3 million tonnes": the first number takes the second's.
    starts = [s for s, _ in figures]
    for i in range(len(out) - 1):
        a, b = out[i], out[i + 1]
        gap = text[starts[i] + len(a.text) : starts[i + 1]]
        if (
            a.kind == "number"
            and not a.scaled
            and a.unit is None
            and a.currency is None
            and b.kind in ("number", "percent")
            and (b.unit or b.scaled or b.currency)
            and b.mantissa
            and _RANGE_GAP.fullmatch(gap)
        ):
            ratio = b.value / b.mantissa
            out[i] = Figure(b.kind, a.mantissa * ratio, a.text, b.unit, b.currency, a.mantissa, a.decimals, b.scaled)
    return out


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)


def _rounds_to(claim: Figure, fact_value: float) -> bool:
    """``claim`` is ``fact_value`` rounded to the claim's precision ("4.3 million" for 4,263,000; "37%" for 37.4%),
    when the claim keeps at least two significant digits."""
    if claim.mantissa == 0:
        return False
    ratio = claim.value / claim.mantissa  # the claim's scale
    digits = len(f"{abs(claim.mantissa):.{claim.decimals}f}".replace(".", "").lstrip("0"))
    if digits < 2:
        return False
    step = 10.0**-claim.decimals * ratio
    return abs(fact_value - claim.value) <= step / 2 + 1e-9 * max(abs(fact_value), 1.0)


def figure_matches(claim: Figure, fact: Figure) -> bool:
    """Whether ``fact`` (from a passage) states the figure ``claim`` (from an answer), after normalisation.

    Years, fiscal years and dates match on their year (and on month and day when the claim states them);
    percentages and percentage points match each other; other figures match on the normalised value, when their
    units and currencies do not contradict each other, or rounded to the claim's precision, or as a table cell
    stated in thousands, millions or billions ("US$760 million" against "760" under "US$ million").
    """
    if claim.year_like:
        if not fact.year_like:
            return (
                fact.kind == "number" and not fact.scaled and _close(fact.value, claim.value) and claim.kind != "date"
            )
        if claim.kind == "date" and claim.month is not None:
            return (
                fact.kind == "date"
                and int(fact.value) == int(claim.value)
                and fact.month == claim.month
                and (claim.day is None or fact.day == claim.day)
            )
        return int(fact.value) == int(claim.value)
    if fact.year_like:
        return claim.kind == "number" and not claim.scaled and claim.unit is None and _close(claim.value, fact.value)
    if claim.kind == "percent" or fact.kind == "percent":
        if claim.kind != fact.kind and claim.unit is not None and fact.unit is not None:
            return False
        return _close(claim.value, fact.value) or _rounds_to(claim, fact.value)
    if claim.unit and fact.unit and claim.unit != fact.unit:
        return False
    if claim.currency and fact.currency and claim.currency != fact.currency:
        return False
    if _close(claim.value, fact.value) or _rounds_to(claim, fact.value):
        return True
    if (claim.scaled or claim.currency or claim.unit) and not fact.scaled and fact.unit is None:
        return any(_close(claim.value / s, fact.value) for s in (1e3, 1e6, 1e9))
    return False


def figure_in(claim: Figure, facts: list[Figure] | tuple[Figure, ...]) -> bool:
    """Whether any of ``facts`` states ``claim`` (``figure_matches``)."""
    return any(figure_matches(claim, f) for f in facts)
