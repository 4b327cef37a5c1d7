"""Load a PDF into cleaned per-page text (pages are 1-based).

pypdf extracts the text; a text visitor records where each line sits and in which font size/weight, so that
paragraphs can be rebuilt from layout (vertical gaps, indents, style changes) rather than guessed from line breaks.
Cleaning then removes what hurts retrieval: running headers/footers and page numbers, words hyphenated at line
ends, CJK text broken by spaces or line breaks, ligatures and invisible characters.

``Page.text`` holds one paragraph per line-free block, paragraphs separated by a blank line (``"\\n\\n"``).
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pypdf
from pypdf.errors import DependencyError

from rag.errors import DamagedFile, EncryptedPdf, NoText, TooLarge
from rag.text import CJK_CHARS, CJK_PUNCT, CJK_PUNCT_SET, ends_sentence, has_cjk, is_cjk_char
from rag.types import Page

log = logging.getLogger(__name__)

# --- character classes -------------------------------------------------------------------------------------------

# CJK letters and punctuation come from the text toolkit (rag.text); these are the PDF clean-up rules built on them.
_CJK_RE = re.compile(f"[{CJK_CHARS}]")
_CJK_GAP_RE = re.compile(f"(?<=[{CJK_CHARS}{CJK_PUNCT}]) (?=[{CJK_CHARS}{CJK_PUNCT}])")
_CJK_DIGIT_GAP_RE = re.compile(f"(?<=[{CJK_CHARS}]) (?=[0-9])|(?<=[0-9]) (?=[{CJK_CHARS}])")
_CJK_PUNCT_SPACE_RE = re.compile("[ \t]+(?=[\u3000-\u303f\uff01\uff09\uff0c\uff1a\uff1b\uff1f\uff3d\uff5d])")
_SPACE_AFTER_CJK_PUNCT_RE = re.compile("(?<=[\u3001\u3002\uff08\uff0c\uff1a\uff1b\uff01\uff1f\u300a\u300c])[ \t]+")

_LIGATURES = {
    "\ufb00": "ff",
    "\ufb01": "fi",
    "\ufb02": "fl",
    "\ufb03": "ffi",
    "\ufb04": "ffl",
    "\ufb05": "st",
    "\ufb06": "st",
}
# Spaces pypdf passes through (no-break, thin, figure...) become plain spaces; invisible marks go.
_SPACE_TRANSLATE = {
    **{
        ord(c): " "
        for c in "\xa0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\t\r\f\v"
    },
    **{ord(c): None for c in "\u200b\u200c\u200d\u2060\ufeff\ufffd"},
    # PDFs draw the soft hyphen as a visible hyphen ("long\xadterm"); at a line end it is hyphenation, undone later.
    ord("\xad"): "-",
    **{ord(k): v for k, v in _LIGATURES.items()},
}
_PRIVATE_USE_RE = re.compile("[\ue000-\uf8ff\x00-\x08\x0e-\x1f\x7f]")
_MULTI_SPACE_RE = re.compile(" {2,}")

# A line that starts a list item: bullet glyphs (incl. symbol-font bullets in the private use area) or numbering.
_BULLET_RE = re.compile(r"^\s*([•·▪■□●○◦‣∙➢➤►▶✓✔\-–*]|[\ue000-\uf8ff])\s+")
_ENUM_RE = re.compile(
    r"^\s*(\(?\d{1,2}[.)](?!\d)|\(?[a-z][.)]\s|\(?[ivx]{1,4}\)\s|[一二三四五六七八九十]+[、.．]|"
    r"[（(][一二三四五六七八九十\d]+[）)]|第[一二三四五六七八九十百零\d]+[章节條条款部分篇])"
)
_HYPHEN_END_RE = re.compile(r"([A-Za-z]+)\s?-\s*$")
_WORD_START_RE = re.compile(r"^\s*([a-z]+)")
_JOIN_WORDS = frozenset(
    "a an the and or of to in on for with by from at as that which who whose than into over under per its our their "
    "is are was were be been has have had will would can could may might should must not".split()
)
_WORD_RE = re.compile(r"[a-z]+(?:-[a-z]+)*")


_NOT_LETTER_RE = re.compile(r"[\W\d_]+")


def _letters(text: str) -> int:
    """Number of letters (any script) in ``text``."""
    return len(_NOT_LETTER_RE.sub("", text))


def display_width(text: str) -> int:
    """Width in half-width columns: CJK characters count 2 (they are set twice as wide as Latin letters)."""
    return len(text) + len(_CJK_RE.findall(text))


# --- pure text cleaning (unit-tested on constructed text) ----------------------------------------------------------


def clean_text(text: str) -> str:
    """Normalise one paragraph: odd spaces, ligatures, invisible and private-use characters, CJK spacing."""
    text = text.translate(_SPACE_TRANSLATE)
    text = _PRIVATE_USE_RE.sub("", text)
    text = text.replace("\n", " ")
    if has_cjk(text):
        text = fix_cjk_spacing(text)
    return _MULTI_SPACE_RE.sub(" ", text).strip()


def fix_cjk_spacing(text: str) -> str:
    """Remove spaces that break CJK text: between CJK characters and around full-width punctuation.

    A single space between CJK characters (or between CJK and a number) is an extraction artefact and goes; a
    wider gap (``第一章  总则``) separates a number from a title and becomes one space. Spaces between CJK and
    Latin words are kept (normal typography, harmless to tokenizers).
    """
    text = _CJK_GAP_RE.sub("", text)
    text = _CJK_DIGIT_GAP_RE.sub("", text)
    text = _CJK_PUNCT_SPACE_RE.sub("", text)
    return _SPACE_AFTER_CJK_PUNCT_RE.sub("", text)


def join_lines(lines: list[str], vocab: Counter[str] | None = None) -> str:
    """Join the lines of one paragraph: undo end-of-line hyphenation, no space between CJK lines.

    A word split as ``natu-`` + ``ral`` is joined to ``natural``; a compound like ``long-`` + ``term`` keeps its
    hyphen when ``vocab`` (lower-case word counts of the whole document) has seen ``long-term`` but not
    ``longterm``.
    """
    out = ""
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if not out:
            out = line
            continue
        hyph = _HYPHEN_END_RE.search(out)
        nxt = _WORD_START_RE.match(line)
        if hyph and nxt:
            left, right = hyph.group(1), nxt.group(1)
            joined = (left + right).lower()
            keep = vocab is not None and vocab.get(f"{left}-{right}".lower(), 0) > vocab.get(joined, 0)
            out = out[: hyph.start(1)] + left + ("-" if keep else "") + line.lstrip()
        elif is_cjk_char(out[-1]) or (out[-1] in CJK_PUNCT_SET and has_cjk(line[:1])):
            out += line if (is_cjk_char(line[0]) or line[0] in CJK_PUNCT_SET) else " " + line
        else:
            out += " " + line
    return out


_INLINE_HYPHEN_RE = re.compile(r"\b([A-Za-z]{2,})- ([a-z]{2,})\b")


def fix_inline_hyphens(text: str, vocab: Counter[str]) -> str:
    """Rejoin ``world- leading`` (a line-end hyphen the PDF kept inside a line) when the document spells the word
    whole elsewhere; suspended hyphens like ``mid- and long-term`` stay."""

    def repl(m: re.Match[str]) -> str:
        left, right = m.group(1), m.group(2)
        hyph, solid = vocab.get(f"{left}-{right}".lower(), 0), vocab.get((left + right).lower(), 0)
        if hyph == solid == 0:
            return m.group(0)
        return f"{left}-{right}" if hyph >= solid else left + right

    return _INLINE_HYPHEN_RE.sub(repl, text)


def header_key(line: str) -> str:
    """Key under which a running header/footer repeats: case, spacing and numbers (page numbers) ignored."""
    return re.sub(r"\d+", "#", " ".join(line.lower().split()))


_PAGE_NUMBER_RE = re.compile(r"^[\W_]*(?:page|p\.|第)?\s*(\d{1,4})\s*(?:(?:/|of|页|頁)\s*\d{1,4})?[\W_页頁]*$", re.I)
_ROMAN_RE = re.compile(r"^[ivxlc]{1,6}$", re.I)


def is_page_number(line: str, n_pages: int) -> bool:
    """A line that is just a page number: ``12``, ``- 12 -``, ``Page 3 of 9``, ``iv`` (not a year like 2024)."""
    s = line.strip()
    if not s:
        return False
    m = _PAGE_NUMBER_RE.match(s)
    if m:
        return int(m.group(1)) <= n_pages + 20
    return bool(_ROMAN_RE.match(s)) and len(s) <= 5


def strip_running_lines(pages: list[list[str]], edge: int = 3, min_share: float = 0.3) -> list[list[str]]:
    """Remove running headers/footers and page numbers from pages given as lists of lines.

    A line near the top or bottom of a page (within ``edge`` non-blank lines, or in the top/bottom 7% of the page
    when positions are known) is dropped when, with numbers ignored, it recurs near the edge of at least
    ``min_share`` of the pages (and at least 3 pages), or when it is a bare page number. A line of words recurring
    anywhere on half the pages (navigation bars) goes too. If that would leave no text at all, nothing is dropped.
    """
    lines = [[_Line(t) for t in page] for page in pages]
    _strip_running(lines, edge=edge, min_share=min_share, heights=None)
    return [[ln.text for ln in page if not ln.dropped] for page in lines]


# --- layout-aware extraction -------------------------------------------------------------------------------------


@dataclass
class _Line:
    text: str
    x: float = math.nan
    y: float = math.nan
    size: float = 0.0
    bold: bool = False
    upright: bool = False
    dropped: bool = False
    _styles: Counter = field(default_factory=Counter, repr=False)

    @property
    def positioned(self) -> bool:
        return self.upright and not math.isnan(self.y)


def _edge_indexes(page: list[_Line], edge: int, height: tuple[float, float] | None) -> set[int]:
    nonblank = [i for i, ln in enumerate(page) if ln.text.strip()]
    idx = set(nonblank[:edge]) | set(nonblank[-edge:])
    if height is not None:
        bottom, top = height
        band = (top - bottom) * 0.07
        for i in nonblank:
            ln = page[i]
            if ln.positioned and (ln.y > top - band or ln.y < bottom + band):
                idx.add(i)
    return idx


def _strip_running(
    pages: list[list[_Line]], edge: int, min_share: float, heights: list[tuple[float, float] | None] | None
) -> None:
    n_pages = len(pages)
    with_text = sum(1 for p in pages if any(ln.text.strip() for ln in p))
    edges = [_edge_indexes(p, edge, heights[i] if heights else None) for i, p in enumerate(pages)]
    seen: Counter[str] = Counter()
    for page, idx in zip(pages, edges, strict=True):
        keys = {header_key(page[i].text) for i in idx}
        # Bare numbers are judged by is_page_number, not by repetition (all numbers share the key "#").
        seen.update(k for k in keys if len(k) <= 120 and _letters(k) >= 2)
    # Navigation bars and side tabs can sit anywhere in the extraction order: a line of words recurring on half
    # the pages is page furniture, not content.
    anywhere: Counter[str] = Counter()
    for page in pages:
        keys = {header_key(ln.text) for ln in page}
        anywhere.update(k for k in keys if len(k) <= 200 and _letters(k) >= 4)
    threshold = max(3, math.ceil(min_share * with_text))
    threshold_any = max(4, math.ceil(0.5 * with_text))
    for page, idx in zip(pages, edges, strict=True):
        for i, ln in enumerate(page):
            key = header_key(ln.text)
            if anywhere.get(key, 0) >= threshold_any or (
                i in idx and (seen.get(key, 0) >= threshold or is_page_number(ln.text, n_pages))
            ):
                ln.dropped = True


def _font_is_bold(font: object, cache: dict[int, bool]) -> bool:
    if font is None:
        return False
    key = id(font)
    if key not in cache:
        try:
            name = str(font.get("/BaseFont", "")).lower()  # type: ignore[attr-defined]
        except AttributeError:
            name = ""
        cache[key] = any(w in name for w in ("bold", "black", "heavy", "semibold", "demi"))
    return cache[key]


def _page_lines(page: object) -> list[_Line]:
    """Lines of one page in pypdf's reading order, each with position (PDF units), font size and weight."""
    lines: list[_Line] = []
    current = _Line("")
    bold_cache: dict[int, bool] = {}

    def visit(text: str, cm: list[float], tm: list[float], font: object, font_size: float) -> None:
        nonlocal current
        if not text:
            return
        pieces = text.split("\n")
        a = tm[0] * cm[0] + tm[1] * cm[2]
        b = tm[0] * cm[1] + tm[1] * cm[3]
        c = tm[2] * cm[0] + tm[3] * cm[2]
        d = tm[2] * cm[1] + tm[3] * cm[3]
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        size = round(float(font_size) * math.hypot(c, d), 1)
        upright = a > 0 and d > 0 and abs(b) <= 1e-3 * a
        bold = _font_is_bold(font, bold_cache)
        for k, piece in enumerate(pieces):
            if k:
                lines.append(current)
                current = _Line("")
            if not piece:
                continue
            if piece.strip() and math.isnan(current.y):
                current.x, current.y, current.upright = x, y, upright
            current.text += piece
            n = len(piece.strip())
            if n:
                current._styles[(size, bold)] += n

    page.extract_text(visitor_text=visit)  # type: ignore[attr-defined]
    if current.text:
        lines.append(current)
    for ln in lines:
        if ln._styles:
            (ln.size, ln.bold), _ = ln._styles.most_common(1)[0]
    return lines


def _page_box(page: object) -> tuple[float, float] | None:
    try:
        if int(page.get("/Rotate", 0) or 0) % 360:  # type: ignore[attr-defined]
            return None
        box = page.cropbox  # type: ignore[attr-defined]
        return float(box.bottom), float(box.top)
    except (AttributeError, TypeError, ValueError, KeyError):
        return None


def _typical_leading(lines: list[_Line]) -> dict[float, float]:
    """Median baseline distance between consecutive lines of the same size and column, per font size."""
    gaps: dict[float, list[float]] = {}
    for a, b in itertools.pairwise(lines):
        if a.positioned and b.positioned and a.size == b.size and a.size > 0 and abs(a.x - b.x) < 2:
            gap = a.y - b.y
            if 0.5 * a.size < gap < 2.5 * a.size:
                gaps.setdefault(a.size, []).append(gap)
    return {s: sorted(g)[len(g) // 2] for s, g in gaps.items() if len(g) >= 2}


def _is_list_start(text: str) -> bool:
    return bool(_BULLET_RE.match(text) or _ENUM_RE.match(text))


def _breaks(a: _Line, b: _Line, width: float, leading: dict[float, float]) -> bool:
    """Does a new paragraph start between consecutive lines ``a`` and ``b``?"""
    at, bt = a.text.strip(), b.text.strip()
    if _is_list_start(bt):
        return True
    terminal = ends_sentence(at)
    if not terminal and display_width(at) >= 0.8 * width and _continues(at, bt, width):
        # A full line whose sentence clearly goes on: style and position noise (superscripts, pypdf reporting
        # one font size for a mixed run) must not split it.
        return False
    if a.size and b.size and (abs(a.size - b.size) > 0.1 * max(a.size, b.size) or a.bold != b.bold):
        return True
    short = display_width(at) < 0.7 * width
    if terminal and short:
        return True
    if a.positioned and b.positioned:
        gap = a.y - b.y
        lead = leading.get(a.size) or 1.2 * max(a.size, 1.0)
        same_column = abs(a.x - b.x) < max(a.size, 1.0) * 4
        if 0 < gap <= 1.9 * lead and (same_column or b.x > a.x):
            if gap > 1.35 * lead + 0.5:
                return True
            # First-line indent after a finished sentence.
            return terminal and b.x > a.x + 0.8 * a.size
        # The text jumped (new column, text box or region): continue only if the sentence clearly goes on.
        return not _continues(at, bt, width)
    return False


def _continues(at: str, bt: str, width: float) -> bool:
    if ends_sentence(at):
        return False
    if bt[:1].islower() or at[-1:] in ",-–(/&":
        return True
    last = at.rsplit(" ", 1)[-1].lower()
    if last in _JOIN_WORDS:
        return True
    return (
        is_cjk_char(at[-1:]) and (is_cjk_char(bt[:1]) or bt[:1] in CJK_PUNCT_SET) and display_width(at) >= 0.8 * width
    )


def _paragraphs(lines: list[_Line], vocab: Counter[str]) -> list[str]:
    kept = [ln for ln in lines if not ln.dropped]
    widths = sorted(display_width(ln.text.strip()) for ln in kept if ln.text.strip())
    # Typical full line width: a high percentile, so the last lines of paragraphs don't drag it down.
    width = float(widths[int(len(widths) * 0.8)]) if widths else 80.0
    leading = _typical_leading(kept)
    paragraphs: list[str] = []
    block: list[str] = []
    prev: _Line | None = None
    for ln in kept:
        if not ln.text.strip():
            if block:
                paragraphs.append(join_lines(block, vocab))
                block = []
            prev = None
            continue
        if prev is not None and _breaks(prev, ln, width, leading):
            paragraphs.append(join_lines(block, vocab))
            block = []
        block.append(_normalise_bullet(ln.text))
        prev = ln
    if block:
        paragraphs.append(join_lines(block, vocab))
    out = []
    for p in paragraphs:
        p = clean_text(fix_inline_hyphens(p, vocab))
        if p and not _is_noise(p):
            out.append(p)
    return out


def _normalise_bullet(text: str) -> str:
    m = _BULLET_RE.match(text)
    if m and m.group(1) not in "-–":
        return "• " + text[m.end() :]
    return text


def _is_noise(paragraph: str) -> bool:
    """Paragraphs with nothing to retrieve: only punctuation/bullets, or a lone symbol."""
    return not any(ch.isalnum() for ch in paragraph)


# --- public API --------------------------------------------------------------------------------------------------


def load_pdf(path: Path, max_pages: int = 2000) -> list[Page]:
    """Cleaned text of every page of a PDF (``Page.number`` is 1-based; image-only pages have empty text).

    Raises ``EncryptedPdf`` when a password is needed (an empty user password is tried), ``DamagedFile`` when
    pypdf cannot read the file, ``TooLarge`` above ``max_pages`` pages and ``NoText`` when no page has a text layer.
    """
    reader = _open(Path(path))
    try:
        n_pages = len(reader.pages)
    except Exception as exc:  # pypdf raises many exception types on damaged page trees
        raise DamagedFile(f"damaged PDF: {_reason(exc)}") from exc
    if n_pages == 0:
        raise DamagedFile("damaged PDF: no pages")
    if n_pages > max_pages:
        raise TooLarge(f"PDF has {n_pages} pages, more than the limit of {max_pages}")

    raw: list[list[_Line]] = []
    boxes: list[tuple[float, float] | None] = []
    failures: list[str] = []
    for number in range(1, n_pages + 1):
        try:
            page = reader.pages[number - 1]
            raw.append(_page_lines(page))
            boxes.append(_page_box(page))
        except Exception as exc:  # one broken page must not lose the rest of the document
            log.warning("%s: page %d could not be read: %s", Path(path).name, number, _reason(exc))
            failures.append(_reason(exc))
            raw.append([])
            boxes.append(None)
    if len(failures) == n_pages:
        raise DamagedFile(f"damaged PDF: no page could be read ({failures[0]})")

    pages = _clean_pages(raw, boxes)
    if sum(_letters(p.text) for p in pages) < 3:
        raise NoText("no text layer")
    return pages


def _clean_pages(raw: list[list[_Line]], boxes: list[tuple[float, float] | None] | None = None) -> list[Page]:
    """Turn extracted lines into cleaned pages: running lines removed, paragraphs rebuilt and normalised."""
    for page in raw:
        for ln in page:
            ln.text = ln.text.translate(_SPACE_TRANSLATE)
    _strip_running(raw, edge=3, min_share=0.3, heights=boxes)
    if not any(_letters(ln.text) for page in raw for ln in page if not ln.dropped):
        # Every line "repeats" (the same words on each page and nothing else): that is the content, keep it.
        for page in raw:
            for ln in page:
                ln.dropped = False
    vocab = _vocabulary(ln.text for page in raw for ln in page if not ln.dropped)
    return [Page(number=i + 1, text="\n\n".join(_paragraphs(lines, vocab))) for i, lines in enumerate(raw)]


def _vocabulary(lines: Iterable[str]) -> Counter[str]:
    vocab: Counter[str] = Counter()
    for line in lines:
        # The last word of a line may be a hyphenation fragment; don't let it vote.
        vocab.update(_WORD_RE.findall(re.sub(r"\S+-\s*$", "", line.lower())))
    return vocab


def _open(path: Path) -> pypdf.PdfReader:
    try:
        reader = pypdf.PdfReader(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pypdf raises many exception types on damaged files
        raise DamagedFile(f"damaged PDF: {_reason(exc)}") from exc
    if reader.is_encrypted:
        try:
            ok = reader.decrypt("")
        except DependencyError as exc:
            raise EncryptedPdf(f"encrypted: cannot decrypt ({exc})") from exc
        except Exception as exc:  # broken encryption dictionaries
            raise DamagedFile(f"damaged PDF: bad encryption data ({_reason(exc)})") from exc
        if not ok:
            raise EncryptedPdf("encrypted: password required")
    return reader


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]
