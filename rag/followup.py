"""Follow-up detection: does a question need the conversation to be understood?

A question that is complete on its own passes through unchanged (no LLM rewrite, no added words, no time spent).
Only a question that refers back ("its Scope 3?", "and in 2022?", "那范围3呢？", "该公司的目标是什么？") is
rewritten with the history. The test is lexical and deterministic, so a standalone question can never be turned into
another one by the model: a rewrite that changed "How much wastewater did SUEZ treat in 2023?" into a question about
SUEZ's targets is what this prevents.

``resolve_relative_years`` then makes a follow-up's relative years concrete ("the previous fiscal year" after a turn
about fiscal 2024 -> "fiscal year 2023"; 上一财年 -> 2023财年) before the LLM rewrite, which does not do the arithmetic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.text import count_han

# Words that point back to something said before. Personal pronouns count only when no name precedes them in the
# question itself ("How does Siemens measure its emissions?" is standalone).
_PRONOUNS = frozenset("it its it's they their theirs them he his she her".split())
# Demonstratives count when they point at a thing ("that figure", "this company"), not as conjunctions
# ("products that are aligned") or in fixed phrases ("this year").
_PERSONAL = frozenset("he his she her".split())
_SUBJECTS = frozenset("it they he she".split())
_AUXILIARIES = frozenset("is are was were has have had does do did will would can could should".split())
_DEMONSTRATIVES = frozenset("this that these those such same".split())
_REFERENT_NOUNS = frozenset(
    "figure figures number numbers value values amount amounts target targets goal goals company companies firm group "
    "one ones metric metrics data result results report's period plan plans commitment commitments measure measures "
    "initiative initiatives programme program project projects emissions share percentage ratio change increase "
    "decrease reduction trend level levels document statement answer policy policies".split()
)
_DEFINITE_REFERENTS = re.compile(
    r"\b(?:the|said)\s+(?:company|firm|group|same|former|latter|above|aforementioned)\b", re.IGNORECASE
)
# An English question opening like this continues the previous one.
_CONTINUATION = re.compile(
    r"^\s*(?:and|or|but|also|then|so|what about|how about|what of|same for|and what about|as for|"
    r"compared (?:to|with) (?:that|this|the previous|last))\b",
    re.IGNORECASE,
)
# Words that make a few words a question of their own ("What is CO2?"); without one, "In 2022?" is a fragment.
# Unlike rag.text.QUESTION_WORDS (terms to drop from a question), prepositions do not count here.
_ASKING_WORDS = frozenset(
    "what which who whom whose when where why how does do did is are was were can could should will would has have "
    "had list describe explain compare give tell show summarize summarise".split()
)

# Chinese: pronouns and demonstratives that refer back, and openings that continue the previous question.
_ZH_REFERENCE = re.compile(
    r"它们|它的|它|该公司|该集团|该企业|该机构|该报告|该指标|该目标|这家公司|那家公司|这家|那家|此公司|"
    r"这个|那个|这些|那些|这一|那一|上述|^以上|以上(?=提到|所述|内容)|前者|后者|同期|其中|上一|前一|"
    r"(?<![尤及极])其(?![他它余次实中])"
)
_ZH_CONTINUATION = re.compile(r"^\s*(?:那么|那|还有|另外|以及|和|与|再|同样|相比之下|对比)")
_ZH_TRAILING_NE = re.compile(r"呢\s*[？?]?\s*$")
# A question word makes "…是多少呢？" a question of its own; without one, "X呢？" is "and what about X?".
_ZH_ASKING = re.compile(r"多少|什么|哪|几|如何|怎么|怎样|为什么|为何|吗|是否|谁|何")
# A Chinese question with no subject of its own (ellipsis): it opens with a passive or a yes/no verb ("被评为D的情形
# 有哪些？"), opens with a bare time ("2009年的时候有多少份？"), or counts with the noun left out ("需要披露哪几项？").
_ZH_NO_SUBJECT = re.compile(
    r"^\s*(?:被|是否|有没有|是不是|能否|有无)"
    r"|^\s*(?:19|20)\d{2}年(?:的时候|时|那时)"
    r"|(?:多少|几|哪几)[份家项个次条种类位名只]\s*[？?]?\s*$"
)
# …unless it names one: a Latin-letter name (SUEZ, EcoVadis, ESG), a title 《…》, an index (沪深300, 中证800) or an
# organisation (…集团, …银行, 深交所).
_ZH_NAMED = re.compile(
    r"[A-Za-z]{2,}|《|[\u4e00-\u9fff]\d{2,}(?![\d年])|集团|银行|交易所|交所|证监会|协会|委员会|电子|股份"
)

_WORD = re.compile(r"[A-Za-z][A-Za-z'’\-]*|\d[\d.,%]*")


@dataclass(frozen=True)
class FollowUp:
    """Whether a question needs the history, and the cue that says so (``""`` for a standalone question)."""

    needs_history: bool
    cue: str = ""


def _english_cue(question: str, fragments: bool = True) -> str:
    if _CONTINUATION.search(question):
        return "continues the previous question"
    words = _WORD.findall(question)
    lowered = [w.lower().replace("’", "'") for w in words]
    named = False
    definite = ""  # "the target" in a question that names nobody: whose target is left to the conversation
    person = False  # "the speaker … his": a person named by a definite noun phrase in the question itself
    for i, (word, low) in enumerate(zip(words, lowered, strict=True)):
        acronym = len(word) > 1 and word.isupper()  # "IT services" is not "it"
        if low in _PRONOUNS and not acronym:
            after_auxiliary = i > 0 and lowered[i - 1] in _AUXILIARIES and low in _SUBJECTS
            if after_auxiliary or (not named and not (person and low in _PERSONAL)):
                # "Which reports has it submitted?": a subject pronoun after the verb is never the question's own name.
                return f"refers back with {word!r}"
        if i > 0 and lowered[i - 1] == "the" and low in _REFERENT_NOUNS and not definite:
            definite = f"the {word}"
        if i > 0 and lowered[i - 1] == "the" and low not in _DEMONSTRATIVES:
            person = True
        if low in _DEMONSTRATIVES:
            nxt = lowered[i + 1] if i + 1 < len(lowered) else ""
            if nxt in _REFERENT_NOUNS or (not nxt and low in {"that", "this", "those", "these"}):
                return f"refers back with {word!r}"
        # A capitalised word after the first, or an acronym, names something ("Siemens", "SUEZ", "CO2").
        if i > 0 and (word[:1].isupper() or (len(word) > 1 and word.isupper())):
            named = True
    match = _DEFINITE_REFERENTS.search(question)
    if match:
        return f"refers back with {match.group(0)!r}"
    if definite and not named:
        return f"asks about {definite!r} without saying whose"
    # A fragment: a few words and no question word or verb ("Scope 3?", "In 2022?", "For Samsung?").
    if fragments and len(words) <= 3 and not (set(lowered) & _ASKING_WORDS):
        return "is a fragment"
    return ""


def _chinese_cue(question: str) -> str:
    if _ZH_CONTINUATION.search(question):
        return "continues the previous question"
    match = _ZH_REFERENCE.search(question)
    if match:
        return f"refers back with {match.group(0)!r}"
    if _ZH_TRAILING_NE.search(question) and (count_han(question) <= 12 or not _ZH_ASKING.search(question)):
        return "is a fragment ending in 呢"
    if _ZH_NO_SUBJECT.search(question) and not _ZH_NAMED.search(question):
        return "has no subject of its own"
    return ""


def follow_up(question: str, history: Sequence[tuple[str, str]] = ()) -> FollowUp:
    """Decide whether ``question`` needs the earlier turns; never true without history."""
    question = (question or "").strip()
    if not history or not question:
        return FollowUp(False)
    # A Chinese question may name a company in Latin letters ("SUEZ 2023年…"): only English pronouns count there.
    chinese = count_han(question) >= 2
    cue = (_chinese_cue(question) or _english_cue(question, fragments=False)) if chinese else _english_cue(question)
    return FollowUp(bool(cue), cue)


# --- relative years -------------------------------------------------------------------------------------------------
# "the previous fiscal year" after a turn about fiscal 2024 means fiscal 2023. The small rewrite model does not do
# this arithmetic (it kept "the previous fiscal year" or dropped the year), so it is done here, before the rewrite.

# A year as reports write it: 2023, FY2023, FY23, FY 2023, fiscal (year) 2023, 2023财年. Not part of a longer number.
_YEAR = re.compile(
    r"(?<![\d.,])(?:(?P<fy>FY\s?'?)(?P<short>\d{2}|\d{4})|(?P<fiscal>fiscal\s+(?:year\s+)?)?(?P<year>(?:19|20)\d{2}))"
    r"(?![\d]|[.,]\d)(?P<cai>\s*财年)?",
    re.IGNORECASE,
)
_EN_COUNT = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_ZH_COUNT = {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5}
_NOT_A_YEAR_NEXT = r"(?!\s*(?:\d|FY|fiscal))"  # "the year before 2023" names its year already
_FISCAL_WORD = r"(?P<kind>fiscal|financial|reporting)\s+"
# English phrases, each with the offset from the anchor year (or a group giving it).
_EN_RELATIVE = re.compile(
    r"\b(?:"
    r"(?P<before_last>(?:the\s+)?year\s+before\s+last)"
    rf"|(?P<prev>(?:the\s+)?(?:previous|prior|preceding)\s+(?:{_FISCAL_WORD})?year)"
    rf"|(?P<next>(?:the\s+)?(?:following|subsequent)\s+(?:{_FISCAL_WORD.replace('kind', 'kind2')})?year"
    r"|the\s+next\s+year)"
    rf"|(?P<same>(?:the\s+)?same\s+(?:{_FISCAL_WORD.replace('kind', 'kind3')})?year|that\s+year)"
    r"|(?P<n>a|one|two|three|four|five|[1-5])\s+(?:fiscal\s+)?years?\s+(?P<dir>earlier|before|prior|later|after)"
    r"|(?P<the_year>the\s+year\s+(?P<dir2>before|after))"
    rf")\b{_NOT_A_YEAR_NEXT}(?P<poss>['’]s\b)?",
    re.IGNORECASE,
)
# Chinese: 上一财年, 上一年(度), 前一年, 次年, 下一年, 同年, 两年前, 三年后 …
_ZH_RELATIVE = re.compile(
    r"(?P<prev_fy>上一个?财年|上个财年|上财年|前一财年|上一(?:财政|会计)年度)"
    r"|(?P<next_fy>下一个?财年|下个财年|次一财年)"
    r"|(?P<same_fy>同一财年|该财年|当财年)"
    r"|(?<!以)(?P<prev>上一年度?|上年度?|前一年度?)"  # not 以上年份 ("the years above")
    r"|(?P<next>次年|下一年度?|后一年|翌年)"
    r"|(?P<same>同一年|同年|当年|那一年|该年)"
    r"|(?<![\d〇零一二两三四五六七八九十百])(?P<n>[一两二三四五1-5])年(?P<dir>之前|以前|前|之后|以后|后)"
)
# After these words an English year needs no "in" ("compared with 2022", "how about fiscal year 2023").
_PLAIN_AFTER = frozenset(
    "in for of from during than to since until by with about on at versus vs between before after".split()
)


@dataclass(frozen=True)
class _Anchor:
    """The year a relative phrase counts from, and how it was written (``"FY"``, ``"fiscal"``, ``"财年"`` or ``""``)."""

    year: int
    style: str = ""


def _years(text: str) -> list[_Anchor]:
    out = []
    for m in _YEAR.finditer(text):
        if m.group("short"):
            digits = m.group("short")
            out.append(_Anchor(int(digits) + (2000 if len(digits) == 2 else 0), "FY"))
        else:
            style = "财年" if m.group("cai") else "fiscal" if m.group("fiscal") else ""
            out.append(_Anchor(int(m.group("year")), style))
    return out


def _history_anchor(history: Sequence[tuple[str, str]]) -> _Anchor | None:
    """The last year of the latest question that names one, else of its answer, going back turn by turn."""
    for question, answer in reversed(list(history)):
        for text in (question, answer or ""):
            years = _years(text)
            if years:
                return years[-1]
    return None


def _english_year(anchor: _Anchor, year: int, kind: str) -> str:
    if kind:
        return f"{kind.lower()} year {year}"
    if anchor.style == "FY":
        return f"FY{year}"
    if anchor.style in {"fiscal", "财年"}:
        return f"fiscal {year}"
    return str(year)


def _english_offset(m: re.Match[str]) -> int:
    if m.group("before_last"):
        return -2
    if m.group("prev"):
        return -1
    if m.group("next"):
        return 1
    if m.group("same"):
        return 0
    if m.group("n"):
        n = _EN_COUNT.get(m.group("n").lower()) or int(m.group("n"))
        return -n if m.group("dir").lower() in {"earlier", "before", "prior"} else n
    return -1 if m.group("dir2").lower() == "before" else 1


def _chinese_offset(m: re.Match[str]) -> tuple[int, bool]:
    """The offset and whether the phrase itself says 财年."""
    for name, offset, fiscal in (
        ("prev_fy", -1, True),
        ("next_fy", 1, True),
        ("same_fy", 0, True),
        ("prev", -1, False),
        ("next", 1, False),
        ("same", 0, False),
    ):
        if m.group(name):
            return offset, fiscal
    n = _ZH_COUNT.get(m.group("n")) or int(m.group("n"))
    return (-n if "前" in m.group("dir") else n), False


def resolve_relative_years(question: str, history: Sequence[tuple[str, str]] = ()) -> str:
    """``question`` with relative years ("the previous fiscal year", "two years earlier", 上一财年, 次年) replaced by
    the concrete year they mean, counted from a year written earlier in the question itself or, failing that, the
    last year of the latest turn that names one ("fiscal 2024" -> "fiscal year 2023"). Unchanged when no year is
    known. Only for follow-ups: a standalone question is never rewritten."""
    history_anchor = _history_anchor(history)

    def anchor_before(pos: int) -> _Anchor | None:
        own = _years(question[:pos])
        return own[-1] if own else history_anchor

    def english(m: re.Match[str]) -> str:
        anchor = anchor_before(m.start())
        if anchor is None:
            return m.group(0)
        kind = m.group("kind") or m.group("kind2") or m.group("kind3") or ""
        text = _english_year(anchor, anchor.year + _english_offset(m), kind)
        if m.group("poss"):  # "that year's output" -> "the 2023 output"
            return f"the {text}"
        previous = re.findall(r"[A-Za-z]+", question[: m.start()])
        if previous and previous[-1].lower() not in _PLAIN_AFTER:
            return f"in {text}"  # "What was it the year before?" -> "What was it in 2022?"
        return text

    def chinese(m: re.Match[str]) -> str:
        anchor = anchor_before(m.start())
        if anchor is None:
            return m.group(0)
        offset, fiscal = _chinese_offset(m)
        year = anchor.year + offset
        return f"{year}财年" if fiscal or anchor.style in {"fiscal", "财年", "FY"} else f"{year}年"

    return _ZH_RELATIVE.sub(chinese, _EN_RELATIVE.sub(english, question))
