"""Figures in English and Chinese text, normalised so the same quantity compares equal across formats and languages.

Part of the text toolkit (``rag/text.py`` holds the rest): the only place that reads numbers, percentages, amounts
(scale words, units, currencies), years, fiscal years and dates out of text. Pure functions, standard library only.

Public API: ``Figure``, ``extract_figures``, ``figure_matches``, ``figure_in``, ``chinese_number``, ``label_unit``,
``in_unit``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace

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
    (r"kt" + _CO2 + r"|kilo-?(?:tonnes|tonne|tons|ton)" + _CO2 + r"|千吨", "t", 1e3),
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


# A unit a table row states once, at the end of its label, for every cell: "Renewable energy (PJ)", "营业收入（亿元）",
# "Sales KRW 1 trillion", "Investment in EHS KRW 100 million".
_LABEL_PAREN = re.compile(r"[(（]([^()（）]{1,40})[)）]\s*$")


def label_unit(label: str) -> Figure | None:
    """The unit a table row's label ends with, as the figure of one cell unit ("(PJ)" -> 1 PJ, "(€ bn)" -> 10^9 EUR,
    "(1,000 tonnes)" -> 1,000 t, "KRW 100 million" -> 10^8 KRW), or ``None`` when the label ends with none. Only 1,
    10, 100 or 1,000 of a unit, scale or currency counts, and outside brackets only an amount of money: "Scope 1
    emissions" and "Sites over 1 million m3" state no unit."""
    label = unicodedata.normalize("NFKC", label).strip()
    m = _LABEL_PAREN.search(label)
    if m:
        inner = re.sub(r"^(?:in|unit|units|单位)\s*[:：]?\s*", "", m.group(1).strip(), flags=re.IGNORECASE)
        if inner[:1].isdigit():
            texts = [inner]
        else:
            texts = [("1 " if inner[:1].isascii() else "1") + inner]
            cur = re.match(r"([$€£¥]|[A-Z]{3}\b|US\$)\s*(.+)", inner)
            if cur:  # "€ bn": the currency before the number
                texts.insert(0, f"{cur.group(1)}1 {cur.group(2)}")
    else:
        texts = [label]
    for text in texts:
        figures = extract_figures(text)
        if not figures:
            continue
        unit = figures[-1]
        if unit.kind != "number" or unit.mantissa not in (1, 10, 100, 1000):
            continue
        if not (unit.scaled or unit.currency or unit.unit) or (not m and not unit.currency):
            continue
        if not text.rstrip(" .").endswith(unit.text.rstrip(" .")):
            continue  # a figure inside the text, not its unit
        return unit
    return None


def in_unit(cell: Figure, unit: Figure) -> Figure | None:
    """``cell`` (a bare number in a table row) read in its row's ``unit`` (``label_unit``): "156" under "(PJ)" is
    1.56e17 J. ``None`` when the cell states its own unit, scale or currency, or is not a plain number."""
    if cell.kind != "number" or cell.scaled or cell.unit or cell.currency:
        return None
    return replace(cell, value=cell.value * unit.value, unit=unit.unit, currency=unit.currency, scaled=True)
