"""The evaluation judge: deterministic checks first, an LLM (behind the ``LLM`` protocol) where words must be read.

Small local judges are noisy, so whatever can be checked mechanically is: every number, unit and year in an answer
must appear in the passages it cites (``unsupported_facts``), refusals are recognised by pattern (``rag.text``),
answers are split into statements by sentence (``split_statements``). The LLM is asked one short yes/no question
at a time, with the passages first so llama.cpp's prefix cache re-reads them only once per answer.

How well each check agrees with hand labels is measured by ``rag.agreement`` over ``tests/data/judge_labels.jsonl``
(``python -m rag eval --agreement``; see docs/bench/evaluation.md).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rag.errors import RagError
from rag.text import (
    content_tokens,
    detect_language,
    is_refusal,
    is_refusal_statement,
    normalize,
    only_states_absence,
    split_statements,
    strip_citations,
)

if TYPE_CHECKING:
    from rag.embed import Embedder
    from rag.llm import LLM

log = logging.getLogger(__name__)

# --- text helpers ------------------------------------------------------------------------------------------------

_CITE = re.compile(r"\s*\[(\d+(?:\s*[,，、]\s*\d+)*)\]")


def cited_numbers(text: str) -> list[int]:
    """The passage numbers an answer cites, in order of first mention (``[2][1, 3]`` -> ``[2, 1, 3]``)."""
    seen: list[int] = []
    for group in _CITE.findall(text):
        for n in re.split(r"\s*[,，、]\s*", group):
            if int(n) not in seen:
                seen.append(int(n))
    return seen


def lexical_support(statement: str, passages: Sequence[str]) -> float:
    """Share of the statement's content words and facts (numbers, years) found in the passages (1.0 if it has none).

    Digits count through their facts, so "5.7%" is one item found or not, not the fragments "5" and "7".
    """
    text = strip_citations(statement)
    facts = extract_facts(text)
    words = content_tokens(re.sub(r"\d[\d,.]*", " ", text))
    if not words and not facts:
        return 1.0
    joined = "\n".join(passages)
    pool = set(content_tokens(joined))
    found_facts = len(facts) - len(unsupported_facts(text, passages)) if facts else 0
    return (sum(w in pool for w in words) + found_facts) / (len(words) + len(facts))


# --- polarity ---------------------------------------------------------------------------------------------------

_POLAR_NO = re.compile(r"^\s*(?:\[\[no\]\]|no\b|not\b|否|不是|没有)", re.IGNORECASE)
_POLAR_YES = re.compile(r"^\s*(?:\[\[yes\]\]|yes\b|是的|是，|是。|有，|有。)", re.IGNORECASE)


def polarity(text: str) -> str | None:
    """``yes``/``no`` when the text opens with one (gold answers use ``[[YES]]``/``[[NO]]``), else ``None``."""
    t = normalize(text)
    if _POLAR_YES.search(t):
        return "yes"
    if _POLAR_NO.search(t):
        return "no"
    return None


# --- numbers, units, years ---------------------------------------------------------------------------------------

_SCALE = {
    "thousand": 1e3,
    "k": 1e3,
    "million": 1e6,
    "millions": 1e6,
    "mn": 1e6,
    "m": 1e6,
    "billion": 1e9,
    "billions": 1e9,
    "bn": 1e9,
    "b": 1e9,
    "trillion": 1e12,
    "千": 1e3,
    "万": 1e4,
    "百万": 1e6,
    "千万": 1e7,
    "亿": 1e8,
}
# Unit families: a number's unit in the answer must be mentioned somewhere in the cited passages.
UNITS: dict[str, str] = {
    "%": r"%|per\s?cent|percent|pct|百分之|个百分点|percentage points?",
    "tco2e": r"t\s?co2-?e?\b|tco2|tonnes?\s+(?:of\s+)?co2|tons?\s+(?:of\s+)?co2|co2\s?e|co2\s+equivalent|"
    r"吨二氧化碳|二氧化碳当量|ghg",
    "t": r"\btonnes?\b|\btons?\b|\bt\b|\bkt\b|\bmt\b|吨",
    "kwh": r"\bkwh\b|kilowatt[- ]hours?|千瓦时|度电",
    "mwh": r"\bmwh\b|megawatt[- ]hours?|兆瓦时",
    "gwh": r"\bgwh\b|gigawatt[- ]hours?|吉瓦时|亿千瓦时",
    "twh": r"\btwh\b|terawatt[- ]hours?|太瓦时",
    "kw": r"\bkwp?\b|kilowatts?\b|千瓦(?!时)",
    "mw": r"\bmwp?\b|megawatts?\b|兆瓦(?!时)",
    "gw": r"\bgwp?\b|gigawatts?\b|吉瓦(?!时)",
    "j": r"\b[gtpm]j\b|joules?|焦耳",
    "m3": r"\bm3\b|m³|cubic met|megalit|\bml\b|立方米|吨水",
    "gbp": r"£|gbp|pounds? sterling|英镑",
    "ha": r"\bha\b|hectares?|公顷|亩",
    "usd": r"\$|usd|us\s?dollars?|dollars?|美元",
    "eur": r"€|eur\b|euros?|欧元",
    "cny": r"¥|rmb|cny|yuan|元",
    "krw": r"₩|krw|won\b|韩元",
    "people": r"employees?|people|staff|workers?|persons?|员工|人",
    "h": r"\bhours?\b|\bhrs?\b|小时",
}
_UNIT_RES = {k: re.compile(v, re.IGNORECASE) for k, v in UNITS.items()}
_UNIT_AFTER = re.compile(
    r"^\s?(?P<u>%|per\s?cent|percent|percentage points?|t\s?co2-?e?|tco2|tonnes?|tons?|kt\b|mt\b|[kmgt]wh\b|"
    r"(?:kilo|mega|giga|tera)watt[- ]hours?|[kmg]wp?\b|kilowatts?|megawatts?|gigawatts?|[gtpm]j\b|m3|m³|"
    r"cubic met\w*|megalit\w*|hectares?|ha\b|usd|us\$|dollars?|euros?|eur\b|gbp|pounds?|"
    r"rmb|cny|yuan|krw|won\b|employees?|people|staff|workers?|hours?|"
    r"吨二氧化碳当量|吨二氧化碳|吨|千瓦时|兆瓦时|吉瓦时|度|千瓦|兆瓦|吉瓦|立方米|公顷|亩|美元|欧元|元|韩元|名|人|小时|个百分点)",
    re.IGNORECASE,
)
_UNIT_BEFORE = re.compile(r"(?P<u>US\$|\$|€|¥|£|RMB|CNY|USD|EUR|GBP|KRW|₩)\s?$", re.IGNORECASE)
_UNIT_FAMILY = [
    ("%", re.compile(r"^(?:%|per\s?cent|percent|percentage|个百分点)", re.I)),
    ("tco2e", re.compile(r"^(?:t\s?co2|tco2|吨二氧化碳)", re.I)),
    ("t", re.compile(r"^(?:tonne|ton|kt|mt|吨)", re.I)),
    ("kwh", re.compile(r"^(?:kwh|kilowatt[- ]hour|千瓦时|度)", re.I)),
    ("mwh", re.compile(r"^(?:mwh|megawatt[- ]hour|兆瓦时)", re.I)),
    ("gwh", re.compile(r"^(?:gwh|gigawatt[- ]hour|吉瓦时)", re.I)),
    ("twh", re.compile(r"^(?:twh|terawatt[- ]hour)", re.I)),
    ("kw", re.compile(r"^(?:kwp?\b|kilowatt|千瓦)", re.I)),
    ("mw", re.compile(r"^(?:mwp?\b|megawatt|兆瓦)", re.I)),
    ("gw", re.compile(r"^(?:gwp?\b|gigawatt|吉瓦)", re.I)),
    ("j", re.compile(r"^[gtpm]j", re.I)),
    ("m3", re.compile(r"^(?:m3|m³|cubic|megalit|立方米)", re.I)),
    ("gbp", re.compile(r"^(?:£|gbp|英镑)", re.I)),
    ("ha", re.compile(r"^(?:hectare|ha|公顷|亩)", re.I)),
    ("usd", re.compile(r"^(?:usd|us\$|\$|dollar|美元)", re.I)),
    ("eur", re.compile(r"^(?:€|eur|欧元)", re.I)),
    ("cny", re.compile(r"^(?:¥|rmb|cny|yuan|元)", re.I)),
    ("krw", re.compile(r"^(?:₩|krw|won|韩元)", re.I)),
    ("people", re.compile(r"^(?:employee|people|staff|worker|名|人)", re.I)),
    ("h", re.compile(r"^(?:hour|小时)", re.I)),
]

_NUMBER = re.compile(
    r"(?<![A-Za-z0-9_.])(?<!\d,)(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<dec>\d+))?(?![\d])"
    r"(?:\s?(?P<scale>thousand|millions?|billions?|trillion|mn|bn|k|m|b|千万|百万|千|万|亿)(?![a-z0-9³²]))?",
    re.IGNORECASE,
)
# Numbers that are labels, not facts: "Scope 1 and 2", "SDG 13", "GRI 305-1", "p. 12", "Tier 2", "S1", "CO2".
_LABEL = re.compile(
    r"\b(?:scopes?|tiers?|sdgs?|goals?|categor(?:y|ies)|phases?|principles?|gri|sasb|tcfd|pp?\.|pages?|no\.|steps?|"
    r"levels?|class|articles?|sections?|tables?|figures?|fig\.|chapters?|items?)\s*\d+(?:[-.]\d+)*"
    r"(?:\s*(?:,|and|or|&|/|\+|-|–)\s*\d+(?:[-.]\d+)*)*|(?:范围|第)\s*\d+",
    re.IGNORECASE,
)
_LABEL_BEFORE = re.compile(r"[A-Za-z]$")
_HEDGE = re.compile(
    r"(?:about|approximately|approx\.?|around|roughly|nearly|almost|some|over|more than|~|约|近|超过|逾)\s*$"
)
_FY = re.compile(r"\b(?:FY|财年)\s?'?(\d{2}|\d{4})\b", re.IGNORECASE)
_YEAR_RANGE = re.compile(r"\b((?:19|20)\d\d)\s?[/–-]\s?(\d\d)\b(?![\d%])")


@dataclass(frozen=True)
class Fact:
    """A number or year stated in a text. ``value`` includes the scale word (``1.2 million`` -> 1.2e6)."""

    kind: str  # "number" or "year"
    text: str
    value: float
    mantissa: float  # the digits without the scale word
    tolerance: float  # half a unit of the last digit given (wider when hedged: "about 1,200")
    unit: str | None = None  # a UNITS family


def _unit_family(raw: str) -> str | None:
    for name, rx in _UNIT_FAMILY:
        if rx.search(raw):
            return name
    return None


def extract_facts(text: str) -> list[Fact]:
    """Numbers (with scale and unit) and years stated in ``text``; labels like "Scope 3" or "[2]" are skipped."""
    text = unicodedata.normalize("NFKC", text)
    text = _CITE.sub(" ", text)
    text = _LABEL.sub(lambda m: " " * len(m.group(0)), text)
    facts: list[Fact] = []
    for m in _FY.finditer(text):
        y = int(m.group(1))
        y = y + 2000 if y < 100 else y
        facts.append(Fact("year", m.group(0), float(y), float(y), 0.0))
    for m in _YEAR_RANGE.finditer(text):
        a, b = int(m.group(1)), int(m.group(1)[:2] + m.group(2))
        if b == a + 1:
            facts.append(Fact("year", m.group(0), float(b), float(b), 0.0))
            # Keep "2022" as a year, drop the "/23" so it is not read as the number 23.
            text = text[: m.start(2)] + "  " + text[m.end(2) :]
    fy_spans = [m.span() for m in _FY.finditer(text)]
    for m in _NUMBER.finditer(text):
        if any(s <= m.start() < e for s, e in fy_spans):
            continue
        before = text[max(0, m.start() - 12) : m.start()]
        if _LABEL_BEFORE.search(before):
            continue
        raw_int, dec, scale_word = m.group("int"), m.group("dec"), m.group("scale")
        mantissa = float(raw_int.replace(",", "") + (f".{dec}" if dec else ""))
        after = text[m.end() : m.end() + 40]
        # "2023年" and bare 19xx/20xx integers are years; "2,030" or "2030 tonnes" are not.
        is_year = (
            not dec
            and not scale_word
            and "," not in raw_int
            and 1900 <= mantissa <= 2100
            and not _UNIT_AFTER.match(after.replace("年", "", 1) if after.startswith("年") else after)
        )
        if is_year:
            facts.append(Fact("year", m.group(0), mantissa, mantissa, 0.0))
            continue
        scale_key = (scale_word or "").lower()
        if scale_key in {"m", "b", "k"} and not re.match(r"\s*(?:tonnes?|tons?|t\b|usd|eur|[^\w\s]|$)", after):
            scale_key = ""  # "5 m high" is metres, not millions; only trust m/b/k before a unit or punctuation
        scale = _SCALE.get(scale_key, 1.0)
        unit_m = _UNIT_AFTER.match(after)
        unit_raw = unit_m.group("u") if unit_m else None
        if unit_raw is None:
            before_unit = _UNIT_BEFORE.search(text[max(0, m.start() - 5) : m.start()])
            unit_raw = before_unit.group("u") if before_unit else None
        if scale_key == "m" and unit_raw and unit_raw.lower() in {"t", "tonnes", "tonne", "tons", "ton"}:
            pass  # "1.2 m tonnes": millions of tonnes
        step = 10.0 ** -len(dec) if dec else 1.0
        tolerance = 0.5 * step * scale
        if _HEDGE.search(text[max(0, m.start() - 20) : m.start()]):
            tolerance = max(tolerance, 0.05 * mantissa * scale)
        facts.append(
            Fact(
                "number",
                m.group(0).strip(),
                mantissa * scale,
                mantissa,
                tolerance,
                _unit_family(unit_raw) if unit_raw else None,
            )
        )
    return facts


# Units that may stand for each other: "388,500 tonnes" of CO2e is "388,500 tCO2e".
_COMPATIBLE = {frozenset({"t", "tco2e"})}


def _units_agree(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b or frozenset({a, b}) in _COMPATIBLE


def _fact_found(fact: Fact, pool: Sequence[Fact], units_text: str, symmetric: bool = False) -> bool:
    """Is ``fact`` among the passage facts ``pool``: the same value (within the answer's rounding) with an agreeing
    unit? A passage number without a unit (a table cell) matches if the unit appears somewhere in the passages."""
    if fact.kind == "year":
        return any(f.value == fact.value for f in pool if f.kind == "year") or any(
            f.kind == "number" and f.value == fact.value and f.unit is None for f in pool
        )
    tol_mantissa = fact.tolerance / (fact.value / fact.mantissa) if fact.mantissa and fact.value else fact.tolerance
    for f in pool:
        if f.kind != "number":
            continue
        tol = max(fact.tolerance, f.tolerance) if symmetric else fact.tolerance
        # Strictly inside half a unit of the last digit: "2°C" is not a rounding of "1.5°C".
        same = abs(f.value - fact.value) < tol or abs(f.value - fact.value) <= 1e-9 * max(1.0, abs(fact.value))
        # A table headed "(million m3)" states 5.8 bare; the answer says "5.8 million cubic metres".
        diff = abs(f.mantissa - fact.mantissa)
        bare = f.value == f.mantissa and (diff < tol_mantissa or diff <= 1e-9 * max(1.0, fact.mantissa))
        if not (same or bare) or not _units_agree(fact.unit, f.unit):
            continue
        if fact.unit and f.unit is None and fact.unit in _UNIT_RES and not _UNIT_RES[fact.unit].search(units_text):
            continue
        return True
    return False


def unsupported_facts(statement: str, passages: Sequence[str]) -> list[Fact]:
    """Numbers, units and years in ``statement`` that none of ``passages`` states (deterministic)."""
    facts = extract_facts(statement)
    if not facts:
        return []
    joined = "\n".join(unicodedata.normalize("NFKC", p) for p in passages)
    pool = extract_facts(joined)
    return [f for f in facts if not _fact_found(f, pool, joined)]


# --- the judge ----------------------------------------------------------------------------------------------------

SUPPORT_SYSTEM = (
    "You are a strict fact checker for ESG reports. You are given numbered source passages and one statement. "
    "Reply with one word: yes if the passages state or directly imply everything in the statement "
    "(numbers, years, names, claims), otherwise no."
)
QUESTIONS_SYSTEM = (
    "You write questions. Given an answer taken from an ESG report, write {n} different short questions that this "
    "answer answers, one per line, without numbering. Write them in the language of the answer."
)
RELEVANCE_SYSTEM = (
    "You judge search results for ESG report questions. Reply with one word: yes if the passage contains "
    "information that helps answer the question, otherwise no."
)
CORRECT_SYSTEM = (
    "You grade answers about ESG reports against a reference answer. Reply with one word: correct if the candidate "
    "gives the same key facts as the reference, partial if it gives some of them, wrong if it contradicts the "
    "reference or misses its point."
)


@dataclass(frozen=True)
class Verdict:
    """Whether one statement is supported by the cited passages, and which check decided it."""

    statement: str
    supported: bool
    method: str  # "facts" (a number/unit/year is missing), "llm", "lexical"
    missing: tuple[str, ...] = ()  # the facts not found in the passages


@dataclass(frozen=True)
class Faithfulness:
    score: float | None  # supported / total; None for an answer without statements (a refusal)
    verdicts: tuple[Verdict, ...] = ()


@dataclass(frozen=True)
class Relevance:
    score: float | None  # mean cosine between the question and questions the answer answers
    questions: tuple[str, ...] = ()


# The judge's metrics that can ask an LLM. For each model, the ones where its verdicts agreed with the hand labels
# better than the deterministic check (tests/test_judge.py::test_llm_judge_agreement, docs/bench/evaluation.md);
# every other metric uses the deterministic check. The bundled 0.5B model is worse on all four (statements: 0.62 vs
# 0.87 accuracy; answer relevance AUC 0.58 vs 0.72; context relevance 0.69 vs 0.85; correctness 0.83 vs 0.92), so with
# it the judge is deterministic; a stronger configured model can be given ``llm_metrics`` explicitly.
LLM_METRICS = frozenset({"faithfulness", "answer_relevance", "context_relevance", "correctness"})
VALIDATED_LLM_METRICS: dict[str, frozenset[str]] = {}


@dataclass
class Judge:
    """Scores one answer at a time. ``llm`` None means deterministic checks only (faster, no reading).

    ``lexical_threshold``: without an LLM, a statement whose facts all check out is supported when at least this
    share of its content words appear in the passages.
    """

    llm: LLM | None = None
    embedder: Embedder | None = None
    lexical_threshold: float = 0.6
    n_questions: int = 3
    llm_metrics: frozenset[str] | None = None
    relevance_threshold: float = 0.85
    calls: int = field(default=0, init=False)

    @property
    def name(self) -> str:
        return self.llm.name if self.llm is not None else "deterministic"

    def uses_llm(self, metric: str) -> bool:
        """Whether ``metric`` (one of ``LLM_METRICS``) asks the LLM: ``llm_metrics`` if given, else the metrics where
        this model was measured to beat the deterministic check (``VALIDATED_LLM_METRICS``)."""
        if self.llm is None:
            return False
        metrics = (
            self.llm_metrics if self.llm_metrics is not None else VALIDATED_LLM_METRICS.get(self.name, frozenset())
        )
        return metric in metrics

    # -- LLM plumbing
    def _ask(self, system: str, user: str, max_tokens: int) -> str:
        from rag.llm import ChatMessage

        assert self.llm is not None
        self.calls += 1
        messages = [ChatMessage("system", system), ChatMessage("user", user)]
        try:
            return "".join(self.llm.stream(messages, max_tokens=max_tokens)).strip()
        except RagError:
            raise
        except (RuntimeError, ValueError, OSError) as exc:
            raise RagError(f"judge model {self.name} failed: {exc}") from exc

    @staticmethod
    def _yes_no(reply: str) -> bool | None:
        first = re.sub(r"^[\W_]+", "", reply.lower())
        if first.startswith(("yes", "是", "支持", "有")):
            return True
        if first.startswith(("no", "否", "不")):
            return False
        return None

    @staticmethod
    def _passages_block(passages: Sequence[str], limit: int = 900) -> str:
        return "\n\n".join(f"[{i}] {normalize(p)[:limit]}" for i, p in enumerate(passages, 1))

    # -- faithfulness
    def support(self, statement: str, passages: Sequence[str], *, use_llm: bool = True) -> Verdict:
        """Is ``statement`` supported by ``passages``? A missing number/unit/year decides it without the LLM."""
        missing = unsupported_facts(statement, passages)
        if missing:
            return Verdict(statement, False, "facts", tuple(f.text for f in missing))
        if use_llm and self.uses_llm("faithfulness"):
            verdict = self.llm_support(statement, passages)
            if verdict is not None:
                return Verdict(statement, verdict, "llm")
        return self.fallback_support(statement, passages)

    def llm_support(self, statement: str, passages: Sequence[str]) -> bool | None:
        """The LLM's yes/no on one statement (``None`` when its reply is neither)."""
        user = (
            f"Passages:\n{self._passages_block(passages)}\n\nStatement: {strip_citations(statement)}\n\n"
            "Is the statement supported by the passages? Answer yes or no."
        )
        return self._yes_no(self._ask(SUPPORT_SYSTEM, user, 3))

    def fallback_support(self, statement: str, passages: Sequence[str]) -> Verdict:
        """Without an LLM verdict: word overlap (same language), or the facts alone (across languages)."""
        if detect_language(strip_citations(statement)) != detect_language(" ".join(passages)):
            # Word overlap means nothing across languages: the facts (checked first) are all there is to go on.
            return Verdict(statement, True, "facts" if extract_facts(statement) else "unchecked")
        return Verdict(statement, lexical_support(statement, passages) >= self.lexical_threshold, "lexical")

    def faithfulness(self, answer: str, passages: Sequence[str], *, use_llm: bool = True) -> Faithfulness:
        """Supported statements / all statements; "not disclosed" statements are claims about absence and skipped."""
        statements = [s for s in split_statements(answer) if not is_refusal_statement(s)]
        if not statements:
            return Faithfulness(None)
        if not passages:
            verdicts = tuple(Verdict(s, False, "facts", ("no passage cited",)) for s in statements)
            return Faithfulness(0.0, verdicts)
        verdicts = tuple(self.support(s, passages, use_llm=use_llm) for s in statements)
        return Faithfulness(sum(v.supported for v in verdicts) / len(verdicts), verdicts)

    # -- answer relevance
    def generated_questions(self, answer: str) -> list[str]:
        if not self.uses_llm("answer_relevance"):
            return []
        reply = self._ask(QUESTIONS_SYSTEM.format(n=self.n_questions), f"Answer: {strip_citations(answer)}", 120)
        out = []
        for line in reply.splitlines():
            line = re.sub(r"^\s*(?:[-*•]|\d+[.)、]|Q\d*[:：])\s*", "", line).strip()
            if len(line) > 5 and line not in out:
                out.append(line)
        return out[: self.n_questions]

    def answer_relevance(self, question: str, answer: str, *, refused: bool | None = None) -> Relevance:
        """RAGAS answer relevance: mean cosine (real embedder) between ``question`` and questions the answer answers.

        Without an LLM, the cosine between the question and the answer itself. ``None`` for a refusal: ``refused``
        when the caller knows (the app's ``Answer.refused``), else ``is_refusal`` of the text.
        """
        embedder = self.embedder
        if embedder is None or (is_refusal(answer) if refused is None else refused):
            return Relevance(None)
        q = embedder.query(question)
        generated = self.generated_questions(answer)
        if generated:
            sims = [float(np.dot(q, embedder.query(g))) for g in generated]
            return Relevance(sum(sims) / len(sims), tuple(generated))
        a = embedder.passages([strip_citations(answer)])[0]
        return Relevance(float(np.dot(q, a)))

    def direct_relevance(self, question: str, answer: str) -> float | None:
        """Cosine between the question and the answer (no LLM); ``None`` for a refusal."""
        embedder = self.embedder
        if embedder is None or is_refusal(answer):
            return None
        q = embedder.query(question)
        return float(np.dot(q, embedder.passages([strip_citations(answer)])[0]))

    # -- context relevance
    def passage_relevant(self, question: str, passage: str) -> bool | None:
        """Does ``passage`` help answer ``question``? The LLM's yes/no where it is used, else the embedder's cosine
        against ``relevance_threshold`` (``None`` with neither, or when the LLM's reply is neither yes nor no)."""
        if not self.uses_llm("context_relevance"):
            embedder = self.embedder
            if embedder is None:
                return None
            q = embedder.query(question)
            p = embedder.passages([normalize(passage)])[0]
            return float(np.dot(q, p)) >= self.relevance_threshold
        user = (
            f"Question: {question}\n\nPassage: {normalize(passage)[:1200]}\n\n"
            "Does the passage help answer the question?"
        )
        return self._yes_no(self._ask(RELEVANCE_SYSTEM, user, 3))

    # -- correctness
    def correctness(
        self, question: str, answer: str, gold: str, *, use_llm: bool = True, refused: bool | None = None
    ) -> float:
        """0..1 agreement of ``answer`` with the ``gold`` answer (``refused``: whether the app showed the answer as a
        refusal, when the caller knows; else ``is_refusal`` of the text).

        Checked mechanically: polarity (a yes/no question answered the other way scores 0) and the gold answer's
        numbers (or, without numbers, its years), whose share found in the answer caps the score. The LLM grades
        the meaning (correct 1, partial 0.5, wrong 0). Without an LLM, that share is the score; a gold answer with
        neither numbers nor years falls back to the share of its content words in the answer.
        """
        gold_pol = polarity(gold)
        refused = is_refusal(answer) if refused is None else refused
        ans_pol = "no" if refused and gold_pol else polarity(answer)
        if gold_pol and ans_pol and gold_pol != ans_pol:
            return 0.0
        if refused:
            # Declining is right only when the gold answer is itself "no / not disclosed".
            return 1.0 if gold_pol == "no" or only_states_absence(strip_gold(gold)) else 0.0
        facts = extract_facts(strip_gold(gold))
        key = [f for f in facts if f.kind == "number"] or [f for f in facts if f.kind == "year"]
        recall = None
        if key:
            pool = extract_facts(answer)
            recall = sum(_fact_found(f, pool, answer, symmetric=True) for f in key) / len(key)
        grade = None
        if use_llm and self.uses_llm("correctness"):
            user = (
                f"Question: {question}\n\nReference answer: {normalize(strip_gold(gold))[:1500]}\n\n"
                f"Candidate answer: {normalize(strip_citations(answer))[:1500]}\n\nGrade: correct, partial or wrong?"
            )
            reply = re.sub(r"^[\W_]+", "", self._ask(CORRECT_SYSTEM, user, 3).lower())
            if reply.startswith(("correct", "正确", "yes")):
                grade = 1.0
            elif reply.startswith(("partial", "部分")):
                grade = 0.5
            elif reply.startswith(("wrong", "incorrect", "错误", "no")):
                grade = 0.0
        if grade is not None:
            return grade if recall is None else min(grade, recall)
        if recall is not None:
            return recall
        return min(1.0, lexical_support(strip_gold(gold), [answer]) / 0.8)


def strip_gold(text: str) -> str:
    return re.sub(r"^\s*\[\[(?:yes|no)\]\]\s*", "", text, flags=re.IGNORECASE)
