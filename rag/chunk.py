"""Paragraph chunking of cleaned pages, and the short "key information" line of each chunk.

Paragraphs are merged in reading order up to a token budget. A paragraph too long for the budget is cut at
sentence ends (Chinese 。！？； and English . ! ?), a sentence too long at clause marks (，, ; : 、), and only as a
last resort at a token boundary. Chunks never overlap, never span more than two pages, and never exceed the
embedder's 512-token window (``"passage: "`` prefix and special tokens included).

Token counts follow ``E5Embedder.token_count``: tokens the model sees for a passage, prefix and specials included.
The default counter, :func:`approx_tokens`, is a fast estimate calibrated to over-estimate that tokenizer.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from rag.table import open_header
from rag.text import (
    CJK_CHARS,
    CJK_PUNCT_SET,
    KEY_TERM_STOPWORDS,
    ends_sentence,
    has_cjk,
    is_cjk_char,
    split_clauses,
    split_sentences,
)
from rag.types import Chunk, DocMeta, Page, Source

TokenCounter = Callable[[str], int]

E5_WINDOW = 512  # tokens the embedder reads at once, prefix and specials included
# Worst cases seen when calibrating approx_tokens against the real tokenizer: up to 1.19x the estimate for real
# paragraphs of chemical formulas or drug names in the shared PDFs, 1.33x for a constructed paragraph made only of
# them ("hydrofluorocarbons (HFCs), perfluorocarbons (PFCs)..."). When the estimate is used, the 512 window is
# enforced with this margin (chunks of at most 379 estimated tokens), so even such text stays inside the window.
APPROX_SAFETY = 1.35

# --- token estimate ---------------------------------------------------------------------------------------------

_TOKEN_PIECES = re.compile(f"([{CJK_CHARS}])|([A-Za-z]+)|([0-9]+)|(\\S)")


def approx_tokens(text: str) -> int:
    """Fast estimate of ``E5Embedder.token_count(text)`` (``"passage: "`` prefix and specials included).

    A per-piece cost model fitted on the shared English, Chinese and finance PDFs and scaled by 1.2, so that it
    over-estimates the real count for about 99% of paragraph-sized texts; on average the real count is ~0.82x the
    estimate. Several MB of text per second (the real tokenizer: ~0.2-0.6 MB/s).
    """
    cost = 0.0
    for cjk, word, number, other in _TOKEN_PIECES.findall(text):
        if cjk:
            cost += 0.72
        elif word:
            n = len(word)
            if n > 1 and not word[1:].islower():  # acronyms, ALL-CAPS and mixed case split into short pieces
                cost += 1.2 + 0.2 * n
            elif word[0].isupper():
                cost += 0.62 + 0.16 * n
            else:
                cost += 0.79 + 0.085 * n + (0.32 if n > 8 else 0.0)
        elif number:
            cost += 0.23 + 0.43 * len(number)
        elif other.isalpha():  # other scripts: at most one token per character
            cost += 1.0
        else:
            cost += 0.63
    return 5 + math.ceil(cost * 1.2)


# --- joining pieces (sentences and clauses are split by rag.text) -----------------------------------------------


def _join(left: str, right: str) -> str:
    """Join two pieces of one paragraph: no space inside CJK text."""
    if not left:
        return right
    if (is_cjk_char(left[-1]) or left[-1] in CJK_PUNCT_SET) and (is_cjk_char(right[:1]) or right[:1] in CJK_PUNCT_SET):
        return left + right
    return f"{left} {right}"


def split_to_fit(text: str, limit: int, count: TokenCounter, first_limit: int | None = None) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` tokens (the first piece: ``first_limit``, when it must share
    a chunk with a heading): at sentence ends, then clause marks, then words or (CJK) characters. Pieces are
    packed greedily, so a cut falls at the last boundary that fits."""
    return [p for p, _ in _split_counted(text, limit, count, count(""), first_limit)]


def _split_counted(
    text: str, limit: int, count: TokenCounter, overhead: int, first_limit: int | None = None, tokens: int | None = None
) -> list[tuple[str, int]]:
    """``split_to_fit`` with each piece's token count. Every piece of text is counted once; merged pieces are
    summed (see ``_joined``), which is exact or an over-count for the e5 tokenizer and the estimate."""
    first = limit if first_limit is None else min(first_limit, limit)
    tokens = count(text) if tokens is None else tokens
    if tokens <= first:
        return [(text, tokens)]
    return _pack(_atoms(text, first, count, tokens), first, limit, overhead)


def _joined(left: str, left_tokens: int, right: str, right_tokens: int, overhead: int) -> int:
    """Tokens of two pieces joined into one text, from their separate counts.

    Measured with the e5 tokenizer: a join at a space or line break costs exactly one token more than the two
    counts minus one prefix (``count("")`` includes a lone "▁" that a non-empty text absorbs); a join inside CJK
    text (no space) costs 0 to 2, so it is charged 2.
    """
    cjk_join = bool(left) and _join(left, right) == left + right
    return left_tokens + right_tokens - overhead + (2 if cjk_join else 1)


def _atoms(text: str, limit: int, count: TokenCounter, tokens: int) -> list[tuple[str, int]]:
    """The smallest natural pieces that fit: sentences, else clauses, else words/characters."""
    if tokens <= limit:
        return [(text, tokens)]
    for splitter in (split_sentences, split_clauses):
        parts = splitter(text)
        if len(parts) > 1:
            return [a for part in parts for a in _atoms(part, limit, count, count(part))]
    return [(p, count(p)) for p in _hard_split(text, limit, count)]


def _pack(parts: list[tuple[str, int]], first: int, limit: int, overhead: int) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for part, tokens in parts:
        if out:
            merged = _joined(out[-1][0], out[-1][1], part, tokens, overhead)
            if merged <= (first if len(out) == 1 else limit):
                out[-1] = (_join(out[-1][0], part), merged)
                continue
        out.append((part, tokens))
    return out


def _hard_split(text: str, limit: int, count: TokenCounter) -> list[str]:
    """Last resort: the longest prefix that fits, cut between words (or between characters in CJK runs)."""
    # Cut points: after each whitespace run, and between two CJK characters.
    points = [m.end() for m in re.finditer(r"\s+", text)]
    points += [i for i in range(1, len(text)) if is_cjk_char(text[i - 1]) and is_cjk_char(text[i])]
    points = sorted(set(points))
    out: list[str] = []
    start = 0
    while start < len(text):
        rest = text[start:]
        if count(rest) <= limit:
            out.append(rest.strip())
            break
        cands = [p for p in points if p > start]
        lo, hi, best = 0, len(cands) - 1, None
        while lo <= hi:  # largest cut point whose prefix fits
            mid = (lo + hi) // 2
            if count(text[start : cands[mid]]) <= limit:
                best, lo = cands[mid], mid + 1
            else:
                hi = mid - 1
        if best is None:  # a single "word" longer than the limit (e.g. a URL or a table row without spaces)
            best = start + _longest_prefix(rest, limit, count)
        out.append(text[start:best].strip())
        start = best
    return [p for p in out if p]


def _longest_prefix(text: str, limit: int, count: TokenCounter) -> int:
    lo, hi = 1, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


# --- headings ---------------------------------------------------------------------------------------------------

_CJK_HEADING_RE = re.compile(
    r"^(第[一二三四五六七八九十百零\d]+[章节篇部分]|[一二三四五六七八九十]+[、．.]|[（(][一二三四五六七八九十]+[）)])"
)
_NUMBERED_RE = re.compile(r"^(\d{1,2}(\.\d{1,2}){0,3}\.?|[A-Z]\.|[IVX]{1,4}\.)\s+\S")
_NOT_HEADING_START = re.compile(
    r"^(figure|fig\.|table|source|sources|note|notes|©|copyright|图|表|资料来源|数据来源|注)", re.IGNORECASE
)
_SENTENCE_PUNCT = re.compile(r"[.!?;,:。！？；，：、]$")


_DANGLING = frozenset("a an the and or of to in on for with by from at as that which our its their is are was".split())


def is_heading(paragraph: str) -> bool:
    """Heuristic: does this paragraph look like a section heading?

    A short line that is title case / numbered / without a final period (``Scope 2 reporting changes``,
    ``4.1 Climate action``), or a CJK heading (``一、总则``, ``第二章 考核内容``, ``（一）信息披露``).
    """
    p = paragraph.strip()
    if not p or len(p) > 120 or "\n" in p or p.startswith("•"):
        return False
    if _NOT_HEADING_START.match(p):
        return False
    chars = [ch for ch in p if not ch.isspace()]
    digits = sum(ch.isdigit() for ch in chars)
    letters = sum(ch.isalpha() for ch in chars)
    if letters < 2 or digits > 0.3 * len(chars):
        return False
    if has_cjk(p):
        if _CJK_HEADING_RE.match(p):  # "（一）是否……，……；" is a list item, not a heading
            return len(p) <= 40 and not re.search("[。，；！？]", p) and not _SENTENCE_PUNCT.search(p)
        cjk = sum(is_cjk_char(ch) for ch in p)
        return cjk >= 2 and len(p) <= 25 and not re.search("[。，；！？]", p) and not _SENTENCE_PUNCT.search(p)
    if _SENTENCE_PUNCT.search(p):
        return False
    words = p.split()
    if len(words) > 12 or ("," in p and len(words) > 6):  # long or comma-separated: a caption or a phrase
        return False
    if words[-1].lower() in _DANGLING:  # "... forty sites and": a sentence cut off, not a title
        return False
    if _NUMBERED_RE.match(p):
        return True
    first = next((ch for ch in p if ch.isalpha()), "")
    return first.isupper()


# --- key information line ---------------------------------------------------------------------------------------

_UNITS = (
    r"(?:%|per ?cent|percent|billion|million|thousand|trillion|bn|mn|[kMG]t(?:pa)?|Mtpa|tonnes?|tons?|t|"
    r"[kMGT]Wh?|MWp|°C|ha|hectares|km|m3|m³|ML|GL|GJ|PJ|TJ|"
    r"万亿|亿元|万元|元|亿|万|吨|千瓦时|兆瓦|家|名|个|项|倍)"
)
_FIGURE_RE = re.compile(
    r"(?:[$€£¥]|US\$|A\$|C\$)\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:billion|million|thousand|trillion|bn|mn|m|k)\b)?"
    rf"|\d[\d,]*(?:\.\d+)?\s?{_UNITS}(?:\s?CO2-?e|\s?CO₂-?e)?(?![A-Za-z])"
    r"|\bFY\s?\d{2,4}\b|(?<![\d.])(?:19|20)\d\d(?![\d.])"
)
_ACRONYM_RE = re.compile(r"\b[A-Z][A-Z0-9&]{1,6}s?\b")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z-]{3,}")


def figures(text: str, limit: int = 6) -> list[str]:
    """Numbers that carry facts: amounts with units or currency, percentages, years, in order of appearance."""
    seen: dict[str, None] = {}
    for m in _FIGURE_RE.finditer(text):
        fig = " ".join(m.group(0).split())
        if fig not in seen:
            seen[fig] = None
    # Years say less than amounts; keep them last.
    ordered = [f for f in seen if not re.fullmatch(r"(?:19|20)\d\d", f)] + [
        f for f in seen if re.fullmatch(r"(?:19|20)\d\d", f)
    ]
    return ordered[:limit]


_URL_RE = re.compile(r"\S*(?:www\.|https?://|@)\S*|\S+\.(?:com|org|net|gov|edu|int)\S*", re.IGNORECASE)


def key_terms(text: str, limit: int = 5, exclude: str = "") -> list[str]:
    """Salient terms of a passage: acronyms and the most repeated content words."""
    low_ex = exclude.lower()
    text = _URL_RE.sub(" ", text)  # "WWW", "ORG" are not terms
    terms: dict[str, None] = {}
    for m in _ACRONYM_RE.finditer(text):
        t = m.group(0)
        if t.lower() not in low_ex and not t.isdigit():
            terms[t] = None
    counts: Counter[str] = Counter(w.lower() for w in _WORD_RE.findall(text))
    for word, n in counts.most_common():
        if n < 2 or len(terms) >= limit:
            break
        if word not in KEY_TERM_STOPWORDS and word not in low_ex and word.upper() not in terms:
            terms[word] = None
    # No CJK words: without a segmenter, repeated n-grams are mostly fragments ("市公", "否主动披"); the heading
    # and first sentence carry a Chinese chunk's key information.
    return list(terms)[:limit]


def key_line(
    text: str, heading: str, meta: DocMeta, max_tokens: int = 64, count_tokens: TokenCounter | None = None
) -> str:
    """A short "key information" line for a chunk, embedded instead of the full text by the two-level index.

    ``company year | heading | first sentence | key terms | figures``, at most ``max_tokens`` tokens (same unit as
    ``E5Embedder.token_count``). The first sentence is shortened to fit; the rest is kept short by construction.
    """
    count = count_tokens or approx_tokens
    zh = meta.language == "zh" or has_cjk(text[:200])
    lead = " ".join(x for x in (meta.company or "", str(meta.year) if meta.year else "") if x)
    body = _first_sentence(text, heading)
    figs = figures(text, 4)
    terms = key_terms(text, 3, exclude=f"{heading} {body} {meta.company or ''}")
    words = _pieces(body, zh)

    def build(head: str, n_words: int, n_terms: int, n_figs: int) -> str:
        sentence = _rejoin(words[:n_words], zh, n_words < len(words))
        parts = [lead, head, sentence, ", ".join(terms[:n_terms]), ", ".join(figs[:n_figs])]
        return " | ".join(p for p in parts if p)

    # Plan with the fast estimate, scaled to the given counter by one real count of the longest line; then
    # check the result with the real counter (a real tokenizer is ~50x slower than the estimate).
    budget = float(max_tokens)
    if count_tokens is not None:
        longest = build(heading.strip(), len(words), len(terms), len(figs))
        budget = max_tokens * approx_tokens(longest) / max(1, count(longest))

    def fit(head: str, n_terms: int, n_figs: int) -> int:
        lo, hi = 0, len(words)
        while lo < hi:  # the longest start of the first sentence that fits
            mid = (lo + hi + 1) // 2
            if approx_tokens(build(head, mid, n_terms, n_figs)) <= budget:
                lo = mid
            else:
                hi = mid - 1
        return lo

    # Give up extras, most expendable first, until the first sentence keeps a useful length.
    want = min(len(words), 24 if zh else 12)
    attempts = [(10, 3, 4), (10, 2, 3), (6, 1, 3), (6, 0, 2), (4, 0, 1), (3, 0, 0)]
    for n_head, n_terms, n_figs in attempts:
        head = _shorten(heading.strip(), n_head * (2 if zh else 1), zh)
        n = fit(head, n_terms, n_figs)
        if n >= want:
            break
    line = build(head, n, n_terms, n_figs)
    while n > 0 and count(line) > max_tokens:  # the estimate was optimistic for this text
        n = max(0, n - max(1, n // 6))
        line = build(head, n, n_terms, n_figs)
    if count(line) > max_tokens:  # pathological inputs (very long unbroken tokens): cut the line itself
        line = line[: _longest_prefix(line, max_tokens, count)]
    return line


def _first_sentence(text: str, heading: str) -> str:
    """The first real sentence of the body: headings skipped, and fragments like ``6.1`` or ``A`` passed over."""
    first = ""
    for para in text.split("\n"):
        p = para.strip()
        if not p or p == heading.strip() or is_heading(p):
            continue
        for sentence in split_sentences(p):
            sentence = sentence.lstrip("• ")
            first = first or sentence
            if len(sentence) >= (10 if has_cjk(sentence) else 25):
                return sentence
    return first or text.strip().split("\n", 1)[0]


_PIECE_RE = re.compile(f"[{CJK_CHARS}]\\s*|[^\\s{CJK_CHARS}]+\\s*")


def _pieces(text: str, zh: bool = False) -> list[str]:
    """Words (with their trailing space) and single CJK characters; they concatenate back to ``text``."""
    return _PIECE_RE.findall(text.strip())


def _rejoin(pieces: list[str], zh: bool, cut: bool) -> str:
    s = "".join(pieces).strip()
    return s + "…" if cut and s else s


def _shorten(text: str, n: int, zh: bool) -> str:
    pieces = _pieces(text, zh)
    return text if len(pieces) <= n else _rejoin(pieces[:n], zh, True)


# --- chunking ---------------------------------------------------------------------------------------------------


@dataclass
class _Unit:
    page: int
    text: str
    tokens: int
    heading: bool = False
    continues: bool = False  # a later piece of the same paragraph (joined without a line break)
    para_end: bool = True  # the paragraph ends with this piece


def _classify(pages: list[Page]) -> list[tuple[int, str, bool]]:
    """Paragraphs in reading order as (page, text, is_heading).

    Heading-like lines count as headings only in runs of at most two directly followed by body text: longer runs
    are chart labels or table cells, not section titles.
    """
    paras = [(p.number, t.strip()) for p in pages for t in p.text.split("\n\n") if t.strip()]
    like = [is_heading(t) for _, t in paras]
    out = []
    i = 0
    while i < len(paras):
        if not like[i]:
            out.append((*paras[i], False))
            i += 1
            continue
        j = i
        while j < len(paras) and like[j]:
            j += 1
        run_is_heading = j - i <= 2 and j < len(paras)
        out.extend((*paras[k], run_is_heading) for k in range(i, j))
        i = j
    return out


def chunk_pages(
    pages: list[Page],
    *,
    file: str,
    doc_id: str,
    meta: DocMeta,
    max_tokens: int = 256,
    count_tokens: TokenCounter | None = None,
) -> list[Chunk]:
    """Merge the paragraphs of ``pages`` into chunks of at most ``max_tokens`` tokens (never above the 512-token
    embedder window), each with its source pages (at most two), nearest heading, key line and the header of a table
    it continues (``Chunk.table_header``).

    ``count_tokens`` counts like ``E5Embedder.token_count``; the default is the over-estimating
    :func:`approx_tokens`. Chunk ids hash ``doc_id``, page and text, so re-ingesting gives the same ids.
    """
    count = count_tokens or approx_tokens
    overhead = count("")  # prefix + special tokens, counted once per chunk
    hard = E5_WINDOW if count_tokens is not None else int(E5_WINDOW / APPROX_SAFETY)
    budget = max(overhead + 8, min(max_tokens, hard))

    units: list[_Unit] = []
    for page, text, heading in _classify(pages):
        if heading:
            units.append(_Unit(page, text, count(text), heading=True))
            continue
        # A paragraph cut by a page break goes on without a line break.
        prev = units[-1] if units else None
        carry_on = (
            prev is not None
            and not prev.heading
            and prev.page == page - 1
            and not ends_sentence(prev.text)
            and (text[:1].islower() or is_cjk_char(text[:1]))
        )
        # The text under a heading shares its chunk: leave room for the heading in the first piece.
        heads = 0
        for u in reversed(units):
            if not u.heading or u.page < page - 1:
                break
            heads += u.tokens - overhead + 1  # +1 per join, as in _group
        pieces = _split_counted(text, budget, count, overhead, first_limit=max(budget - heads, budget // 2))
        for k, (piece, tokens) in enumerate(pieces):
            units.append(_Unit(page, piece, tokens, continues=k > 0 or carry_on, para_end=k == len(pieces) - 1))

    groups = _group(units, budget, overhead, count)
    chunks: list[Chunk] = []
    seen_ids: Counter[str] = Counter()
    heading = ""  # the heading in force: the last heading line seen so far
    for group in groups:
        lead = _leading_headings(group)
        chunk_heading = lead[-1].text if lead else heading
        for u in group:
            if u.heading:
                heading = u.text
        for part in _enforce_limit(group, budget, count, overhead):
            text, page_starts = _render_pages(part)
            if not text:
                continue
            first, last = part[0].page, part[-1].page
            cid = _chunk_id(doc_id, first, text, seen_ids)
            chunks.append(
                Chunk(
                    id=cid,
                    doc_id=doc_id,
                    text=text,
                    source=Source(file=file, page=first, last_page=last if last != first else None),
                    meta=meta,
                    heading=chunk_heading[:200],
                    key=key_line(text, chunk_heading, meta, count_tokens=count_tokens),
                    page_starts=page_starts,
                )
            )
    # A table cut by a chunk boundary: the rows after it are read with its header (never indexed or cited).
    header = ""
    for i, chunk in enumerate(chunks):
        if header:
            chunks[i] = replace(chunk, table_header=header)
        header = open_header(chunk.text, header)
    return chunks


def _leading_headings(group: list[_Unit]) -> list[_Unit]:
    lead = []
    for u in group:
        if not u.heading:
            break
        lead.append(u)
    return lead


def _group(units: list[_Unit], budget: int, overhead: int, count: TokenCounter) -> list[list[_Unit]]:
    """Greedy merge in reading order.

    A new chunk starts when the next piece would exceed the budget, would make the chunk span a third page, or
    at a heading once the current chunk is a quarter full (or the heading opens a new page); at a page break once
    it is half full and its last paragraph has ended. A piece that doesn't fit into a chunk less than 60% full
    gives it its first sentences (no tiny chunks); the rest of the paragraph opens the next chunk. Headings at the
    end of a chunk move on with the text they introduce.
    """
    groups: list[list[_Unit]] = []
    cur: list[_Unit] = []
    tokens = 0
    queue = deque(units)

    def flush() -> None:
        nonlocal cur, tokens
        # Headings never end a chunk: carry them over to the next one.
        carry = []
        while cur and cur[-1].heading:
            carry.insert(0, cur.pop())
        if cur:
            groups.append(cur)
        cur = carry
        tokens = _size(cur, overhead)

    while queue:
        u = queue.popleft()
        if cur:
            size = tokens + u.tokens - overhead + _join_cost(cur[-1], u)
            body = any(not c.heading for c in cur)
            boundary = (
                u.page > cur[0].page + 1
                or (u.heading and body and not cur[-1].heading and (tokens >= budget / 4 or u.page != cur[-1].page))
                or (
                    u.page != cur[-1].page
                    and tokens >= budget / 2
                    and body
                    and cur[-1].para_end
                    and ends_sentence(cur[-1].text)
                )
            )
            room = budget - tokens + overhead - 2  # what a piece may count (with its own prefix) to still fit
            if size > budget and not boundary and not u.heading and tokens < 0.6 * budget and room >= overhead + 32:
                split = _fill_split(u.text, room, count, overhead)
                if split:
                    (head, head_tokens), (rest, rest_tokens) = split
                    queue.appendleft(_Unit(u.page, rest, rest_tokens, continues=True, para_end=u.para_end))
                    u = _Unit(u.page, head, head_tokens, continues=u.continues, para_end=False)
                    size = tokens + u.tokens - overhead + _join_cost(cur[-1], u)
            if size > budget or boundary:
                flush()
                if cur and (_size([*cur, u], overhead) > budget or u.page > cur[0].page + 1):
                    groups.append(cur)  # carried headings that cannot join the next piece stand alone
                    cur, tokens = [], 0
        tokens = tokens + u.tokens - overhead + _join_cost(cur[-1], u) if cur else u.tokens
        cur.append(u)
    if cur:
        groups.append(cur)
    return _merge_small(groups, budget, overhead)


def _join_cost(prev: _Unit, unit: _Unit) -> int:
    """Tokens a join adds beyond the two counts minus one prefix (see ``_joined``)."""
    return 2 if unit.continues and _join(prev.text, unit.text) == prev.text + unit.text else 1


def _size(units: list[_Unit], overhead: int) -> int:
    """Tokens of the rendered chunk, from the pieces' counts: exact or an over-count (see ``_joined``)."""
    total = 0
    for i, u in enumerate(units):
        total = u.tokens if i == 0 else total + u.tokens - overhead + _join_cost(units[i - 1], u)
    return total


def _merge_small(groups: list[list[_Unit]], budget: int, overhead: int) -> list[list[_Unit]]:
    """A leftover under a quarter of the budget (a caption or the tail of a page) joins the chunk before it when
    that chunk ends on the same page and has room."""
    out: list[list[_Unit]] = []
    for group in groups:
        small = _size(group, overhead) < budget / 4 and group[0].page == group[-1].page and not group[0].heading
        if out and small and out[-1][-1].page == group[0].page and _size(out[-1] + group, overhead) <= budget:
            out[-1] = out[-1] + group
            continue
        out.append(group)
    return out


def _fill_split(text: str, room: int, count: TokenCounter, overhead: int) -> tuple[tuple[str, int], ...] | None:
    """The longest run of whole sentences at the start of ``text`` that fits ``room``, and the rest, each with
    its token count; None when not even the first sentence fits."""
    sentences = [(s, count(s)) for s in split_sentences(text)]
    if len(sentences) < 2:
        return None
    head, head_tokens, used = "", 0, 0
    for sentence, tokens in sentences[:-1]:
        total = tokens if not head else _joined(head, head_tokens, sentence, tokens, overhead)
        if total > room:
            break
        head, head_tokens, used = _join(head, sentence), total, used + 1
    if not used:
        return None
    rest, rest_tokens = sentences[used]
    for sentence, tokens in sentences[used + 1 :]:
        rest_tokens = _joined(rest, rest_tokens, sentence, tokens, overhead)
        rest = _join(rest, sentence)
    return (head, head_tokens), (rest, rest_tokens)


def _render(units: list[_Unit]) -> str:
    return _render_pages(units)[0]


def _render_pages(units: list[_Unit]) -> tuple[str, tuple[int, ...]]:
    """The chunk text and the offsets where each later page starts (see ``Chunk.page_starts``)."""
    text = ""
    starts: list[int] = []
    page = units[0].page if units else 0
    for u in units:
        if not text:
            text = u.text.lstrip()
        else:
            text = _join(text, u.text) if u.continues else text + "\n" + u.text
            if u.page > page:
                # The unit's text is the tail of ``text`` now; a page with no text of its own starts there too.
                starts.extend([len(text) - len(u.text)] * (u.page - page))
        page = max(page, u.page)
    stripped = text.rstrip()
    return stripped, tuple(min(s, len(stripped)) for s in starts)


def _enforce_limit(group: list[_Unit], limit: int, count: TokenCounter, overhead: int) -> list[list[_Unit]]:
    """Guarantee ``limit`` with the counter itself for a chunk whose summed count comes near it (the sums are exact
    or over-counts for e5 and the estimate; this guards any other counter). Trailing pieces move to a following
    chunk; each piece alone always fits."""
    if _size(group, overhead) <= limit - 8:
        return [group]
    out: list[list[_Unit]] = []
    rest = group
    while rest:
        cut = len(rest)
        while cut > 1 and count(_render(rest[:cut])) > limit:
            cut -= 1
        out.append(rest[:cut])
        rest = rest[cut:]
    return out


def _chunk_id(doc_id: str, page: int, text: str, seen: Counter[str]) -> str:
    digest = hashlib.sha256(f"{doc_id}\x00{page}\x00{text}".encode()).hexdigest()[:32]
    seen[digest] += 1
    if seen[digest] > 1:  # identical text twice on one page: keep ids unique, still deterministic
        digest = hashlib.sha256(f"{digest}\x00{seen[digest]}".encode()).hexdigest()[:32]
    return digest
