"""The grounding contract, checked on the model's reply before it is shown as final.

A small model cannot be trusted to cite, or to refuse, so the pipeline enforces grounding instead of asking for it:

- every sentence that states a figure (number, percentage, amount, year, date) or a proper name must cite a passage
  that contains it: figures compared after normalisation (``rag.text.extract_figures``: "426万" = "4.26 million"),
  names case-insensitively (Latin-script names, checked against passages in a Latin-script language: transliteration
  is not attempted);
- a sentence that fails is re-cited to passages that do contain what it states, or removed, with the reason;
- an answer left without any citation is not an answer: it becomes a refusal saying what the passages do not state.

Years the question itself names ("in 2023") are context, not claims. Pure Python, no model: it runs in
milliseconds (benchmarks/answers.py measures it).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.text import CITATION, HAN, Figure, extract_figures, figure_in, is_refusal_statement, overlap_units
from rag.types import Checked, Hit, Removed

# Capitalised words that are not names: sentence starters, months, and the ESG vocabulary answers capitalise.
_NOT_NAMES = frozenset(
    """a an the this that these those it its in on at by for from to of with as and but or nor yes no not however
    overall additionally also furthermore moreover therefore thus hence according based regarding since while although
    both each all some most many several total our we they their there here what which who when where why how if after
    before during between under over about above below within across per via than then so such other another
    first second third finally currently notably specifically meanwhile instead similarly likewise note source
    answer question passage passages document documents report reports page pages table figure scope scopes
    category categories net zero esg ghg co2 co2e kpi kpis sdg sdgs un eu us usa uk ceo cfo board company group
    climate carbon emissions emission energy water waste sustainability sustainable environmental social governance
    fy january february march april may june july august september october november december monday tuesday
    wednesday thursday friday saturday sunday i ii iii iv v mt t kg km ha mwh gwh kwh twh gj tj usd eur rmb cny
    dollar dollars euro euros million billion thousand percent""".split()
)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9&'’\-]*[A-Za-z0-9]|[A-Z]")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n\s*(?:[-*•·]\s*|\d{1,2}[.)]\s*)?|[(\"“])$")
_LATIN = re.compile(r"[A-Za-z]")
# Sentence boundaries of an answer: a full stop before white space (marks sit before it: tidy_marks), a CJK stop,
# or a line break. Not after a single capital ("U.S.") or a common abbreviation.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+|(?<=[。！？；])|\n+")
_ABBREV = re.compile(r"(?:\b[A-Z]|\be\.g|\bi\.e|\betc|\bapprox|\bvs|\bno|\bInc|\bCo|\bLtd|\bp|\bpp|\bFig)\.$", re.I)


@dataclass(frozen=True)
class Grounding:
    """The checked answer: ``text`` with unsupported sentences removed and marks re-pointed, one ``Checked`` per
    sentence kept, the ``removed`` sentences with their reasons, and ``verified`` passage numbers (a kept sentence
    states something that passage was checked to contain). ``refusal`` is the reason to refuse instead (nothing
    cited is left), else ``None``. ``recited``: sentences whose marks were changed or added."""

    text: str
    checks: tuple[Checked, ...] = ()
    removed: tuple[Removed, ...] = ()
    verified: frozenset[int] = field(default_factory=frozenset)
    refusal: str | None = None
    recited: int = 0


@dataclass(frozen=True)
class _Passage:
    figures: tuple[Figure, ...]
    haystack: str  # lower-cased text, heading, file name and company: where a name may be found
    latin: bool  # a passage in a Latin-script language: names can be checked against it
    units: frozenset[str]


def _passage(hit: Hit) -> _Passage:
    chunk = hit.chunk
    return _passage_of(
        chunk.text, chunk.heading, chunk.source.file, chunk.meta.company or "", chunk.meta.year, chunk.meta.language
    )


@functools.lru_cache(maxsize=1024)
def _passage_of(text: str, heading: str, file: str, company: str, year: int | None, language: str) -> _Passage:
    """A passage's figures, names and words, cached: the same pages come back for related questions."""
    figures = extract_figures(text + "\n" + heading)
    # The report's own year and the years in its file name hold for every passage of it.
    figures += extract_figures(f"{year or ''} {file}")
    latin = language != "zh" and len(_LATIN.findall(text)) > len(text) / 4
    haystack = " ".join([text, heading, file, company]).lower()
    return _Passage(tuple(figures), haystack, latin, frozenset(overlap_units(text)))


def split_answer(text: str) -> list[tuple[str, str]]:
    """The answer's sentences, each with the white space that follows it (so joining them gives back ``text``)."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _BOUNDARY.finditer(text):
        if m.start() == pos or _ABBREV.search(text[pos : m.start()]):
            continue
        out.append((text[pos : m.start()], m.group(0)))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], ""))
    merged: list[tuple[str, str]] = []
    for sentence, sep in out:
        if merged and not sentence.strip():
            merged[-1] = (merged[-1][0], merged[-1][1] + sentence + sep)
        elif merged and re.fullmatch(r"\s*(?:[\[【]\s*\d+[^\]】]*[\]】]\s*)+[.。]?\s*", sentence):
            merged[-1] = (merged[-1][0] + merged[-1][1] + sentence, sep)  # a mark left alone belongs before it
        else:
            merged.append((sentence, sep))
    return merged


def names_in(sentence: str) -> list[str]:
    """Proper names a sentence states: capitalised Latin words and acronyms that are not common words. The first word
    of a sentence counts only when it is not a common word or followed by a comma ("Overall, …")."""
    names: list[str] = []
    for m in _WORD.finditer(sentence):
        word = re.sub(r"(?:['’]s?)$", "", m.group(0))
        if len(word) < 2 or not (word[0].isupper() or any(c.isupper() for c in word[1:])):
            continue
        if word.lower() in _NOT_NAMES or any(c.isdigit() for c in word):  # "FY2023", "CO2e": figures or codes
            continue
        initial = _SENTENCE_START.search(sentence[: m.start()]) is not None
        if initial and (sentence[m.end() : m.end() + 1] == "," or word.lower().endswith(("ly", "ing", "ed"))):
            continue
        names.append(word)
    return list(dict.fromkeys(names))


def _marks(sentence: str) -> list[int]:
    out: list[int] = []
    for m in CITATION.finditer(sentence):
        out += [int(x) for x in re.findall(r"\d+", m.group(1))]
    return list(dict.fromkeys(out))


def _has_name(name: str, p: _Passage) -> bool | None:
    """``True``/``False`` whether passage ``p`` names it; ``None`` when it cannot tell (a Chinese passage)."""
    if re.search(r"(?<![a-z0-9])" + re.escape(name.lower()) + r"(?![a-z0-9])", p.haystack):
        return True
    return False if p.latin else None


def _question_years(question: str) -> set[int]:
    return {int(f.value) for f in extract_figures(question) if f.year_like}


def _describe(figs: Sequence[str], names: Sequence[str]) -> str:
    return ", ".join([*figs, *names])


def _reason(language: str, figs: Sequence[str], names: Sequence[str]) -> str:
    what = _describe(figs, names)
    if language == "zh":
        return f"找到的段落没有说明{what}" if what else "这句话没有引用任何段落"
    if figs and names:
        return f"no passage found states {_describe(figs, ())} or names {_describe((), names)}"
    if names:
        return f"no passage found names {what}"
    return f"no passage found states {what}" if what else "it cites no passage"


def refusal_reason(language: str, removed: Sequence[Removed], missing: Sequence[str]) -> str:
    """Why an answer with nothing verifiable left is refused: what the passages found do not state."""
    what = "、".join(dict.fromkeys(missing)) if language == "zh" else ", ".join(dict.fromkeys(missing))
    if language == "zh":
        return f"找到的段落没有说明{what}" if what else "找到的段落没有说明这个问题的答案"
    return f"the passages found do not state {what}" if what else "the passages found do not state the answer"


def check(text: str, hits: Sequence[Hit], language: str = "en", question: str = "") -> Grounding:
    """Check an answer whose ``[n]`` marks point at ``hits[n-1]`` (``rag.prompt.extract_citations`` output).

    Every sentence stating figures or names must have each one in a passage it cites; otherwise it is re-cited to
    the passages that hold them (the one sharing most words first) or removed. A sentence saying something is not
    disclosed is not checked (it claims an absence). When no cited sentence is left, the result carries a
    ``refusal`` reason in ``language``.
    """
    passages = [_passage(h) for h in hits]
    any_latin = any(p.latin for p in passages)
    context_years = _question_years(question)
    kept: list[str] = []
    checks: list[Checked] = []
    removed: list[Removed] = []
    verified: set[int] = set()
    missing_all: list[str] = []
    recited = 0

    def holds(n: int, claim: Figure | str) -> bool | None:
        p = passages[n - 1]
        return figure_in(claim, p.figures) if isinstance(claim, Figure) else _has_name(claim, p)

    def covered(ns: Sequence[int], claim: Figure | str) -> bool:
        """A passage among ``ns`` holds it; a name only Chinese passages are cited for is left unchecked."""
        results = [holds(n, claim) for n in ns]
        return any(r is True for r in results) or (bool(results) and all(r is None for r in results))

    for sentence, sep in split_answer(text):
        marks = [n for n in _marks(sentence) if 1 <= n <= len(passages)]
        body = CITATION.sub("", sentence)
        figs = [f for f in extract_figures(body) if not (f.year_like and int(f.value) in context_years)]
        # Names are checked only when some passage is in a Latin-script language (no transliteration).
        names = names_in(body) if any_latin else []
        claims: list[Figure | str] = [*figs, *names]
        if not claims or is_refusal_statement(body):
            kept.append(sentence + sep)
            checks.append(Checked(sentence.strip(), tuple(marks)))
            continue
        new_marks: list[int] | None = marks
        if not (marks and all(covered(marks, c) for c in claims)):
            units = set(overlap_units(body))
            shared = [len(units & p.units) for p in passages]
            new_marks = _recite(claims, marks, len(passages), holds, covered, lambda n, shared=shared: shared[n - 1])
        if new_marks is None:
            lost = [c for c in claims if not any(holds(n, c) is True for n in range(1, len(passages) + 1))]
            lost_figs = [c.text for c in lost if isinstance(c, Figure)]
            lost_names = [c for c in lost if isinstance(c, str)]
            removed.append(Removed(sentence.strip(), _reason(language, lost_figs, lost_names)))
            missing_all += lost_figs + lost_names
            continue
        if new_marks != marks:
            recited += 1
            sentence = _set_marks(sentence, new_marks)
        ok = [n for n in new_marks if any(holds(n, c) is True for c in claims)]
        verified.update(ok)
        kept.append(sentence + sep)
        checks.append(
            Checked(sentence.strip(), tuple(new_marks), tuple(f.text for f in figs), tuple(names), verified=bool(ok))
        )
    out = "".join(kept).strip()
    refusal = None if any(_marks(s) for s in kept) else refusal_reason(language, removed, missing_all)
    return Grounding(out, tuple(checks), tuple(removed), frozenset(verified), refusal, recited)


def _recite(claims, marks, n_passages: int, holds, covered, overlap) -> list[int] | None:
    """Passage numbers that together hold every claim: the one passage that holds them all (cited first, then
    sharing most words with the sentence, then ranked first), else the cited ones that hold any plus the fewest
    others (greedily); ``None`` when some claim is in no passage."""
    every = list(range(1, n_passages + 1))
    if not every or not all(covered(every, c) for c in claims):
        return None
    whole = [n for n in every if all(covered([n], c) for c in claims)]
    if whole:  # one passage holds everything the sentence states: cite it alone
        return [max(whole, key=lambda n: (n in marks, overlap(n), -n))]
    keep = [n for n in marks if any(holds(n, c) is True for c in claims)]
    todo = [c for c in claims if not (keep and covered(keep, c))]
    extra: list[int] = []
    while todo:
        best = max(every, key=lambda n: (sum(holds(n, c) is True for c in todo), overlap(n), -n))
        if not any(holds(best, c) is True for c in todo):
            return None
        extra.append(best)
        todo = [c for c in todo if not covered(keep + extra, c)]
    return keep + extra or None


def _set_marks(sentence: str, marks: Sequence[int]) -> str:
    """``sentence`` with its marks replaced by ``marks``, placed before its closing full stop."""
    body = CITATION.sub("", sentence)
    body = re.sub(r"[ \t]+([.,;:!?。，；：！？])", r"\1", body).rstrip()
    end = len(body.rstrip(".!?。！？"))
    tail = body[end:]
    space = "" if re.search(f"[{HAN}，。]$", body[:end]) else " "
    return body[:end] + space + "".join(f"[{n}]" for n in marks) + tail
