"""Follow-up detection: does a question need the conversation to be understood?

A question that is complete on its own passes through unchanged (no LLM rewrite, no added words, no time spent).
Only a question that refers back ("its Scope 3?", "and in 2022?", "那范围3呢？", "该公司的目标是什么？") is
rewritten with the history. The test is lexical and deterministic, so a standalone question can never be turned into
another one by the model: a rewrite that changed "How much wastewater did SUEZ treat in 2023?" into a question about
SUEZ's targets is what this prevents.
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
    if _ZH_TRAILING_NE.search(question) and count_han(question) <= 12:
        return "is a fragment ending in 呢"
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
