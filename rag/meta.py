"""Document-level metadata detected at ingest: issuing company (or publisher), reporting year, language.

Only what the document (or its file name, confirmed by the text) states: when nothing is clear, the field stays
``None`` rather than a guess. Company names are returned without legal suffixes (``BHP Group Limited`` -> ``BHP``),
so that a question naming the company matches.
"""

from __future__ import annotations

import datetime
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import PurePath

from rag.text import CJK_CHARS, detect_language, has_cjk
from rag.types import DocMeta, Page


def detect_meta(pages: list[Page], filename: str) -> DocMeta:
    """Company, reporting year and language of a document from its first pages and its file name."""
    texts = [p.text for p in pages]
    head = "\n\n".join(texts[:12])
    language = detect_language(head[:20000]) if head.strip() else "en"
    return DocMeta(company=detect_company(pages, filename), year=detect_year(pages, filename), language=language)


# --- year ---------------------------------------------------------------------------------------------------------

_YEAR_RE = re.compile(r"(?<![\d.,/])((?:19|20)\d\d)(?![\d.,]\d)")
_REPORT_WORDS = re.compile(
    r"\b(?:reports?|review|plan|statements?|accounts|form 10-?[kq]|fiscal|financial year|FY|handbook|guide)\b|"
    r"报告|報告|年报|年度|指南|手册|办法|修订|年\s*\d{1,2}\s*月",
    re.IGNORECASE,
)


def detect_year(pages: list[Page], filename: str) -> int | None:
    """The reporting year the document states, e.g. ``Climate Change Report 2023`` -> 2023.

    Evidence per year, each kind counted once or twice so that a year merely repeated often doesn't win: the
    file name, the top of the cover (page 1), "fiscal (year ended ...) YYYY", closeness to report words (report,
    plan, 报告, 年 X 月...) on the first pages, a copyright line. Future years (targets such as 2030) never count;
    ties go to the later year.
    """
    latest = datetime.date.today().year + 1
    stem = PurePath(filename).stem
    score: Counter[int] = Counter()

    def ok(y: int) -> bool:
        return 1990 <= y <= latest

    for y in {int(m.group(1)) for m in re.finditer(r"(?<!\d)((?:19|20)\d\d)(?!\d)", stem)}:
        if ok(y):
            score[y] += 4
    cover: set[int] = set()
    fiscal: set[int] = set()
    near: Counter[int] = Counter()
    copyright_years: set[int] = set()
    for i, page in enumerate(pages[:4]):
        text = page.text[:6000]
        for m in _YEAR_RE.finditer(text):
            y = int(m.group(1))
            before, after = text[max(0, m.start() - 60) : m.start()], text[m.end() : m.end() + 60]
            if not ok(y) or _is_range_end(text, m):
                continue
            if i == 0 and m.start() < 1500:
                cover.add(y)
            if i < 2 and re.search(r"(?:fiscal|FY)\W{0,2}(?:year)?[^\d\n]{0,30}$", before, re.IGNORECASE):
                fiscal.add(y)
            if _REPORT_WORDS.search(before[-40:] + " " + after[:40]):
                near[y] += 2 if i < 2 else 1
            if re.search(r"(©|copyright)\s*$", before[-15:], re.IGNORECASE):
                copyright_years.add(y)
    for y in cover:
        score[y] += 3
    for y in fiscal:
        score[y] += 3
    for y, n in near.items():
        score[y] += min(n, 4)
    for y in copyright_years:
        score[y] += 2
    if not score:
        return None
    best, points = max(score.items(), key=lambda kv: (kv[1], kv[0]))
    return best if points >= 2 else None


def _is_range_end(text: str, m: re.Match[str]) -> bool:
    """The second year of a range like ``2023-2027`` (a commitment period): only the first one counts."""
    return bool(re.search(r"(?:19|20)\d\d\s*[-–/]\s*$", text[max(0, m.start() - 7) : m.start()]))


# --- company ------------------------------------------------------------------------------------------------------

_SUFFIXES = (
    r"Co\.,?\s*Ltd\.?|Co\.|Company,?\s+Limited|Pty\.?\s+Ltd\.?|Private\s+Limited|Incorporated|Inc\.?|Corporation|Corp\.?|"
    r"Limited|Ltd\.?|PLC|plc|AG|SE|S\.A\.|SA|N\.V\.|NV|GmbH|LLC|L\.P\.|Group|Holdings"
)
_NAME = r"(?:[A-Z][\w&'’.-]*|&)(?:[ \t]+(?:[A-Z][\w&'’.-]*|&|and|of|de|du|la))*?"
_ENTITY_RE = re.compile(rf"\b({_NAME}),?[ \t]+(?:(?:Group|Holdings)[ \t]+)?({_SUFFIXES})(?![\w])")
_SUFFIX_TAIL_RE = re.compile(rf"(?:,?\s+(?:{_SUFFIXES}))+\.?$", re.IGNORECASE)
_COPYRIGHT_RE = re.compile(
    r"(?:©|\([cC]\)|[Cc]opyright|COPYRIGHT)\s*(?:\d{4}\s*)?(?:by\s+)?"
    rf"((?:[A-Z][\w&'’.-]*|&)(?:[ \t]+(?:[A-Z][\w&'’.-]*|&|and|of))*|[{CJK_CHARS}]{{2,20}})"
)
_REGISTRANT_RE = re.compile(r"([^\n]{2,80}?)\s*\(?\s*Exact name of (?:the )?registrant", re.IGNORECASE)
_ZH_ORG_RE = re.compile(
    f"([{CJK_CHARS}]{{2,16}}?(?:股份有限公司|集团有限公司|有限责任公司|有限公司|证券交易所|交易所|协会|研究院|基金会))"
)

# File-name words that never name a company: document types, topics, places, dataset prefixes.
_GENERIC = frozenset(
    """
    report reports sustainability sustainable climate change changes esg csr annual integrated progress action plan
    transition sd cfb climretrieve financebench mmesgbench dated earnings eng en zh cn chinese english final version
    draft the of and for on in to a an pdf doc fy q1 q2 q3 q4 h1 h2 10k 10q 8k 20f k q ar ir iar review statement
    environmental social governance responsibility impact tcfd disclosure disclosures guide guidance handbook
    methodology overview summary update data fact book factbook highlights net zero emissions carbon energy green
    finance financial results presentation investor letter roadmap strategy policy standard standards framework
    china global world europe asia america americas us usa uk hk international national public listed company
    companies corporate rating ratings analysis research regulation rules listing share shares a-share market
    reporting chinaf chinafinal chineseversion integration case cases studies study practice practices web
    """.split()
)
_BAD_NAMES = frozenset(
    "the our we this these company group board annual report sustainability all rights reserved division reit "
    "trust".split()
)


def detect_company(pages: list[Page], filename: str) -> str | None:
    """The issuing company (or the publisher of a non-company document), or ``None`` when the document doesn't say.

    In order: an SEC cover's registrant name; a name from the file name that the text uses repeatedly; the
    cover's "<Name> Sustainability Report" title; the legal entity (``X plc``, ``X AG``, ``X有限公司``) on the first
    or last pages that the text names most; the copyright holder.
    """
    if not pages:
        return None
    full = "\n\n".join(p.text for p in pages)
    first = "\n\n".join(p.text for p in pages[:3])
    edges = "\n\n".join(p.text for p in pages[:3] + pages[-3:])
    for finder in (
        lambda: _registrant(first),
        lambda: _from_filename(filename, full),
        lambda: _from_title(pages[0].text + "\n\n" + (pages[1].text[:2000] if len(pages) > 1 else ""), full),
        lambda: _from_entities(edges, full),
        lambda: _from_copyright(full),
        lambda: _from_possessive(full),
        lambda: _zh_org(pages[0].text[:1000]),
    ):
        name = finder()
        if name:
            return _usual_spelling(name, full)
    return None


def known_company(filename: str, text: str, known: Sequence[str]) -> str | None:
    """The company among ``known`` (those of documents already in the knowledge base) whose name the file name or
    the text states: every word of its short name appears among the file-name words or in the text. For media,
    where speech recognition misspells names ("Northwind Medals") and the file name is often the only clue; the
    longest match wins, so "Northwind Metals Group" beats "Northwind"."""
    words = set(_filename_tokens(filename))
    low = text.lower()
    best: str | None = None
    for company in known:
        short = re.sub(r"(?:股份有限公司|有限责任公司|有限公司|集团)$", "", short_name(company)) or company
        parts = [w for w in re.split(r"[\W_]+", short.lower()) if w]
        if not parts:
            continue
        in_name = all(w in words for w in parts)
        if has_cjk(company):  # Chinese has no spaces to mark a word's edges
            in_text = "".join(parts) in re.sub(r"\s+", "", low)
        else:
            in_text = re.search(r"\b" + r"\W+".join(map(re.escape, parts)) + r"\b", low) is not None
        if (in_name or in_text) and (best is None or len(company) > len(best)):
            best = company
    return best


def short_name(name: str) -> str:
    """Drop legal suffixes: ``BHP Group Limited`` -> ``BHP``, ``Samsung Electronics Co., Ltd.`` -> ``Samsung
    Electronics``, ``ADOBE INC.`` -> ``ADOBE``."""
    name = " ".join(name.replace("\n", " ").split()).strip(" ,.;:-–")
    return _SUFFIX_TAIL_RE.sub("", name).strip(" ,.") or name


def _usual_spelling(name: str, text: str) -> str:
    """The text's most frequent spelling of ``name``, preferring one that is not all capitals (``ADOBE`` ->
    ``Adobe``, but ``BHP`` stays)."""
    if has_cjk(name):
        return name
    pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", re.IGNORECASE)
    forms = Counter(" ".join(m.group(0).split()) for m in pattern.finditer(text))
    mixed = [f for f in forms if not f.isupper() and f[:1].isupper()]
    if mixed:
        return max(mixed, key=lambda f: forms[f])
    return name


def _mentions(name: str, text: str) -> int:
    if has_cjk(name):  # no word boundaries in CJK text
        return text.count(name)
    return len(re.findall(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", text, re.IGNORECASE))


def _registrant(text: str) -> str | None:
    m = _REGISTRANT_RE.search(text)
    if not m:
        return None
    # The name is the end of the paragraph/line before the "(Exact name of registrant...)" label.
    line = re.split(r"\n|\)|Commission [Ff]ile [Nn]umber:?\s*[\d-]+", m.group(1))[-1]
    line = re.sub(r"^.*\b\d{3}-\d{5}\b", "", line).strip(" ,.:")
    name = short_name(line)
    return name if 2 <= len(name) <= 60 and name.lower() not in _BAD_NAMES else None


def _filename_tokens(filename: str) -> list[str]:
    stem = PurePath(filename).stem
    stem = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem)
    return [t for t in re.split(r"[\W_]+", stem.lower()) if t]


def _from_filename(filename: str, text: str) -> str | None:
    tokens = _filename_tokens(filename)
    runs: list[list[str]] = [[]]
    for t in tokens:
        if t in _GENERIC or t.isdigit() or re.fullmatch(r"(?:19|20)\d\d\w*|\d+\w{0,2}|q\d", t) or len(t) < 2:
            runs.append([])
        else:
            runs[-1].append(t)
    found: list[tuple[int, int, str]] = []  # (words, mentions, spelling)
    for run in runs:
        for n in range(len(run), 0, -1):
            for i in range(len(run) - n + 1):
                hit = _find_name(run[i : i + n], text)
                if hit:
                    found.append((n, *hit))
    if not found:
        return None
    most = max(m for _, m, _ in found)
    # The longest name wins if the text uses it a fair share of the times it uses its parts.
    return max(found, key=lambda f: (f[1] * 4 >= most, f[0], f[1]))[2]


def _find_name(gram: list[str], text: str) -> tuple[int, str] | None:
    """How often the text spells the file-name words ``gram`` as a capitalised name, and its usual spelling."""
    parts = []
    for t in gram:
        if len(t) >= 6:  # "mgmresorts" -> "MGM Resorts", "bestbuy" -> "Best Buy"
            parts.append(r"[\s&.]?".join(re.escape(ch) for ch in t))
        else:
            parts.append(re.escape(t))
    pattern = re.compile(r"(?<![\w])" + r"(?:\s*(?:&|and)\s*|[\s-]+)".join(parts) + r"(?![\w])", re.IGNORECASE)
    forms = Counter(m.group(0) for m in pattern.finditer(text))
    total = sum(forms.values())
    if total < 3:
        return None
    capitalised = sum(n for f, n in forms.items() if f[:1].isupper())
    if capitalised * 2 < total:  # mostly lower case: an ordinary word, not a name
        return None
    form = max((f for f in forms if f[:1].isupper()), key=lambda f: (forms[f], f != f.upper()))
    form = " ".join(form.split())
    if all(w.lower() in _GENERIC for w in re.findall(r"[A-Za-z]+", form)):
        return None
    return total, form


_TITLE_RE = re.compile(
    r"(?:^|\n)\s*((?:[A-Z][\w&'’.-]*\s+){0,3}[A-Z][\w&'’.-]*)\s+(?:(?:19|20)\d\d\s+)?"
    r"(?:Sustainability|Annual|Integrated|ESG|Environmental|Climate|CSR|Impact|Responsibility|"
    r"Corporate Responsibility|TCFD)\b[^\n]{0,40}\b(?:Report|Review|Plan)",
)


def _from_title(cover: str, text: str) -> str | None:
    for m in _TITLE_RE.finditer(cover):
        name = short_name(m.group(1))
        if name.lower() in _BAD_NAMES or all(w.lower() in _GENERIC | _BAD_NAMES for w in name.split()):
            continue
        if _mentions(name, text) >= 3:
            return name
    return None


def _from_entities(edges: str, text: str) -> str | None:
    names: Counter[str] = Counter()
    for m in _ENTITY_RE.finditer(edges):
        name = short_name(m.group(1))
        if name.lower() in _BAD_NAMES or len(name) < 2 or all(w.lower() in _GENERIC for w in name.split()):
            continue
        names[name] += 1
    for m in re.finditer(f"[{CJK_CHARS}]{{2,16}}?(?:股份有限公司|集团有限公司|有限责任公司)", edges):
        names[m.group(0)] += 1
    scored = [(_mentions(n, text), n) for n in names]
    scored = [(k, n) for k, n in scored if k >= 3]
    return max(scored)[1] if scored else None


def _from_copyright(text: str) -> str | None:
    holders: Counter[str] = Counter()
    for m in _COPYRIGHT_RE.finditer(text):
        raw = re.split(r"\s*(?:[,/|.(（]|all rights|\s\d{4})", m.group(1), maxsplit=1, flags=re.IGNORECASE)[0]
        name = short_name(raw)
        if len(name) >= 2 and name.lower() not in _BAD_NAMES:
            holders[name] += 1
    if not holders:
        return None
    name, _ = holders.most_common(1)[0]
    return name if _mentions(name, text) >= 2 or holders[name] >= 2 else None


_POSSESSIVE_RE = re.compile(r"(?<![\w&.-])([A-Z][\w&.-]*(?: [A-Z][\w&.-]*){0,2})['’]s\b")


def _from_possessive(text: str) -> str | None:
    """The name the document speaks of as an owner (``Orange’s``, ``CT REIT’s``) far more than any other."""
    counts: Counter[str] = Counter()
    for m in _POSSESSIVE_RE.finditer(text):
        name = re.sub(r"^(?:The|A|An|Our|At|In|For|With|And) ", "", m.group(1))
        if not all(w.lower() in _GENERIC | _BAD_NAMES for w in name.split()):
            counts[name] += 1
    ranked = counts.most_common(2)
    if not ranked:
        return None
    name, n = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0
    return name if n >= 5 and n >= 2 * runner_up and _mentions(name, text) >= 10 else None


def _zh_org(cover: str) -> str | None:
    """An organisation that opens a short title line of the cover, e.g. 深圳证券交易所 in its own rules."""
    for para in cover.split("\n\n"):
        m = _ZH_ORG_RE.match(para.strip())
        if m and len(para.strip()) <= 40:
            return m.group(1)
    return None
