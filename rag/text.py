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
Figures (numbers, amounts, years compared across formats and languages) are in the sibling ``rag/figures.py``.
"""

from __future__ import annotations

import re
import unicodedata

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
