"""Table rows as pypdf extracts them, rewritten so that every cell carries its row and column headers.

pypdf gives a data table as plain words and numbers: a header line ``Water Management 2021 2022 2023`` and rows
``Wastewater discharge 1,000 tonnes 130,955 136,118 142,995`` (the loader often joins several rows on one line). A
small model reading that text picks the wrong column (issue 18: the 2021 and 2023 values swapped).
``label_cells`` rewrites each row whose cells match the header one to one, a row a line::

    Wastewater discharge 1,000 tonnes — 2021: 130,955 | 2022: 136,118 | 2023: 142,995

Two layouts are recognised, both seen in the shared reports:

- a year header: two or more years in a row, rising or falling (``2021 2022 2023``, ``FY 2024 FY 2023``,
  ``FY2021 FY2020``), optionally followed by a change column (``+/–``); then rows of a label and exactly one cell
  per column (numbers such as ``1,023``, ``37.4%``, ``(12)``, ``<0.1``, or ``–``/``n/a`` for an empty cell);
- a target table: ``… 2021 PRO FORMA OBJECTIVE RESULTS 2023`` with rows ``1,023 By 2030 - 39% 1,069 or +4%``
  (baseline, target, result), the row label on the line before.

A row whose cell count does not match is left as it is: the detector never guesses which column a cell belongs to.
Only rows below their header in the same text are labelled: a passage cut from its table's header stays as it is.
Pure functions over strings, deterministic, no model. Used for the text the LLM reads (``rag.prompt``) and, through
``table_parts``, for the year column of each cell when grounding figures (``rag.ground``); the index and retrieval
keep the original passage text.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

_N = r"[-+−–]?[<>]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?"
# One table cell: a number (1,023 / 37.4% / −10.4% / <0.1), a bracketed one ((12), also a footnote mark), or empty.
_CELL = re.compile(rf"(?:{_N}|\({_N}\)|[-–—]|n/a|N/A|n\.a\.)")
_FOOTNOTE = re.compile(r"\(\d{1,2}\)")  # "(5)" after a row label: a footnote mark, or a negative five
# A number inside a row label ("Scope 1", "KRW 1 trillion", "1,000 tonnes", "CT REIT – Controlled"), not a cell.
_LABEL_NUMBER = re.compile(r"\d{1,3}|1(?:,000)+|[-–—]")
_BARE_YEAR = re.compile(r"(?:19|20)\d\d")
# A number split by the layout ("0. 1", "5 , 4 7 9"): the cells next to it cannot be trusted.
_BROKEN_NUMBER = re.compile(r"\d\.$|^[,.]+$")
_STANDARDS = re.compile(r"\d-\d|\b(?:GRI|SASB|WEF|TCFD|ESRS|UNGC)\b")  # reporting-standard references
_NUMBERED_LABEL = {"scope", "level", "category", "tier", "phase", "type"}  # "Scope 1 9.5 9.7": 1 is the label's

_YEAR = r"(?:FY\s?)?(?:19|20)\d\d"
_CHANGE = r"\+/[-–−]|[Cc]hange|Δ"
_YEAR_HEADER = re.compile(rf"(?<!\S)((?:{_YEAR}\s+)+{_YEAR})(?:\s+({_CHANGE}))?(?!\S)")
_TARGET_HEADER = re.compile(
    r"(?<!\S)((?:19|20)\d\d(?:\s+[A-Z][A-Z-]+)*)\s+(OBJECTIVES?|TARGETS?|GOALS?)\s+((?:[A-Z][A-Z-]+\s+)*(?:19|20)\d\d)\s*$"
)
_TARGET_ROW = re.compile(
    rf"^(?P<base>{_CELL.pattern})\s+(?P<goal>(?:[Bb]y|[Ii]n)\s+(?:19|20)\d\d\b.*?)\s+"
    rf"(?P<result>{_CELL.pattern}(?:\s+or\s+{_CELL.pattern})?)$"
)
_FOOTNOTE_LINE = re.compile(r"^\s*(?:\(?\d{1,2}\)|\d{1,2}\)(?:,\s*\d{1,2}\))*)")
_PROSE = 100  # characters: a line this long with no table row ends the table (a paragraph follows it)
_CARRY = 400  # characters: the most of a table header (and the row label after it) carried to the next chunk
_GROUP = 80  # characters: a shorter line without table values names the rows of the next line ("Water intake")
SEP = " — "  # between a row label and its cells


@dataclass(frozen=True)
class Row:
    """One table row: its label and ``(column header, cell)`` pairs in column order."""

    label: str
    cells: tuple[tuple[str, str], ...]

    def render(self) -> str:
        """``label — column: cell | column: cell``."""
        return self.label + SEP + " | ".join(f"{column}: {cell}" for column, cell in self.cells)


def _is_cell(token: str) -> bool:
    # A bare year ("2018 emissions target baseline") starts a label; table values of that size print a comma.
    return _CELL.fullmatch(token) is not None and not _BARE_YEAR.fullmatch(token)


def _years(header: str) -> list[str]:
    return re.findall(_YEAR, header)


def _year_columns(match: re.Match[str]) -> list[str] | None:
    """The column labels of a year header, or ``None`` when the years are not a strictly rising or falling run."""
    years = _years(match.group(1))
    values = [int(y[-4:]) for y in years]
    steps = {(b > a) - (b < a) for a, b in itertools.pairwise(values)}
    if len(steps) != 1 or 0 in steps:
        return None
    columns = [re.sub(r"\s+", " ", y) for y in years]
    return [*columns, match.group(2)] if match.group(2) else columns


def parse_rows(text: str, columns: list[str], group: str = "") -> list[str | Row]:
    """``text`` (one line) split into table rows and the plain text between them, in order.

    A row is a label (words, and numbers that belong to it: "Scope 1", "1,000 tonnes", a footnote "(5)") followed by
    exactly ``len(columns)`` cells. Anything else stays plain text. ``group`` (the line before, when it names the
    rows) is put before each row label.
    """
    tokens = text.split()
    n = len(columns)
    out: list[str | Row] = []
    label: list[str] = []

    def plain(words: list[str]) -> None:
        if words:
            if out and isinstance(out[-1], str):
                out[-1] += " " + " ".join(words)
            else:
                out.append(" ".join(words))

    def row(words: list[str], cells: list[str]) -> None:
        name = " ".join(words)
        if group and not name.lower().startswith(group.lower()):
            # a label starting in lower case continues the line before ("Allegations of bribery / related to …")
            name = f"{group} {name}" if name[:1].islower() else f"{group}: {name}"
        out.append(Row(name, tuple(zip(columns, cells, strict=True))))

    i = 0
    doubt = False  # after a run that did not fit, where the next label starts is unknown
    while i < len(tokens):
        if not _is_cell(tokens[i]):
            label.append(tokens[i])
            i += 1
            continue
        j = i
        while j < len(tokens) and _is_cell(tokens[j]):
            j += 1
        run, at_end = tokens[i:j], j == len(tokens)
        i = j
        neighbours = label[-1:] + tokens[j : j + 1]
        if len(run) == 1 and not at_end and _LABEL_NUMBER.fullmatch(run[0]):
            label.extend(run)  # e.g. the unit "1,000 tonnes"
            continue
        # "Scope 1 9.5 9.7": with one cell per column "1" would be a cell; with one more it is the label's
        numbered = bool(label and label[-1].lower().rstrip(":") in _NUMBERED_LABEL and re.fullmatch(r"\d", run[0]))
        if len(run) == n and label and not _FOOTNOTE.fullmatch(run[0]) and not numbered:
            cells, words = run, label
        elif len(run) == n + 1 and label and (_FOOTNOTE.fullmatch(run[0]) or numbered):
            cells, words = run[1:], [*label, run[0]]
        else:
            cells, words = [], label
        broken = any(_BROKEN_NUMBER.search(t) for t in neighbours)
        if cells and not doubt and not broken:
            row(words, cells)
        else:  # a count that does not match the header, a broken number, or an unsure label: left as it is
            plain(label + run)
        doubt = not cells or broken
        label = []
    plain(label)
    return out


def _group(line: str) -> str:
    """``line`` when it can name the rows of the next line ("Water intake", "Scope 1", "CO2 emissions from gas"):
    short, not a footnote, and holding no table value (at most one small number)."""
    line = line.strip()
    if not line or len(line) >= _GROUP or _FOOTNOTE_LINE.match(line) or _YEAR_HEADER.search(line):
        return ""
    if _STANDARDS.search(line) or line.endswith(("-", "–")):  # a standards column ("GRI 205-3, WEF"), a cut word
        return ""
    numbers = [t for t in line.split() if _is_cell(t) and not _FOOTNOTE.fullmatch(t)]
    if len(numbers) > 1 or any(not re.fullmatch(r"\d{1,2}", t) for t in numbers):
        return ""
    return line


def label_cells(text: str, header: str = "") -> str:
    """``text`` with every recognised table row rewritten to carry its row label and column headers, one row a line
    (module docstring). Lines that are not table rows, and all text when no header is found, are returned unchanged;
    the numbers themselves are never changed. ``header``: the table header in force before ``text`` starts (a
    passage cut from its table's header: ``open_header`` of the text before it); it is read, not returned."""
    return "".join(p.render() if isinstance(p, Row) else p for p in table_parts(text, header))


def open_header(text: str, header: str = "") -> str:
    """The table context still open at the end of ``text``, for the text that follows (the next chunk): the last
    table header line, and the lines after its last row (a row label waiting for its cells), when that is short
    (``_CARRY`` characters) and no paragraph of prose follows the header; else ``header`` (the one in force before
    ``text``) when ``text`` holds no header and no prose; else "". A paragraph of prose is a line of ``_PROSE``
    characters or more that ends a sentence."""
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        year_headers = [h for h in _YEAR_HEADER.finditer(line) if _year_columns(h)]
        if _TARGET_HEADER.search(line) or year_headers:
            if year_headers:  # rows after the header on its own line ("Asset Class 2020 2021 2022 Stores 14.7 …")
                line = line[: year_headers[-1].end()]
            tail = lines[i + 1 :]
            if any(_is_prose(t) for t in tail):
                return ""
            # rows already given stay behind; a label after the last of them waits for its cells
            label = list(itertools.takewhile(lambda t: not any(_is_cell(w) for w in t.split()), reversed(tail)))
            carried = "\n".join([line, *reversed(label)])
            return carried if len(carried) <= _CARRY else ""
    if header and not any(_is_prose(t) for t in lines):
        return header.strip().split("\n")[0]
    return ""


def _is_prose(line: str) -> bool:
    return len(line) >= _PROSE and line.rstrip().endswith((".", "!", "?", "。", "！", "？"))


def table_parts(text: str, header: str = "") -> list[str | Row]:
    """``text`` as the recognised table rows and the text around them (line breaks included), in order: rendering
    the rows and joining everything gives ``label_cells(text, header)``."""
    header = header.strip()
    skip = len(re.split(r"\n+", header)) * 2 if header else 0  # the header's lines and the break after each
    lead = text[: len(text) - len(text.lstrip("\n"))]
    parts: list[str | list[str | Row]] = list(
        re.split(r"(\n+)", f"{header}\n{text.lstrip(chr(10))}" if header else text)
    )
    columns: list[str] | None = None  # the year header in force
    target: list[str] | None = None  # the target-table header in force
    previous = ""  # the last non-empty, non-footnote line
    for k in range(0, len(parts), 2):
        line = parts[k]
        stripped = line.strip()
        if not stripped:
            continue
        if m := _TARGET_HEADER.search(stripped):
            target, columns = [m.group(1), m.group(2), m.group(3)], None
            previous = stripped
            continue
        if target and (r := _TARGET_ROW.match(stripped)) and previous:
            cells = (r.group("base"), r.group("goal"), r.group("result"))
            parts[k] = [Row(previous, tuple(zip(target, cells, strict=True)))]
            previous = stripped
            continue
        pieces: list[str | Row] = []
        rest = stripped
        group = _group(previous)
        while rest:
            header = next((h for h in _YEAR_HEADER.finditer(rest) if _year_columns(h)), None)
            before = rest[: header.start()] if header else rest
            if columns:
                pieces.extend(parse_rows(before, columns, group))
            elif before.strip():
                pieces.append(before.strip())
            if header and pieces and isinstance(pieces[-1], str):
                pieces[-1] += " " + header.group(0).strip()  # "Asset Class 2020 2021 2022" stays one line
            elif header:
                pieces.append(header.group(0).strip())
            if not header:
                break
            columns, target = _year_columns(header), None
            rest = rest[header.end() :]
        if any(isinstance(p, Row) for p in pieces):
            parts[k] = [x for i, p in enumerate(pieces) for x in (["\n"] if i else []) + [p]]
        elif len(stripped) >= _PROSE and not _YEAR_HEADER.search(stripped):
            columns = target = None  # a paragraph: the table has ended
        if not _FOOTNOTE_LINE.match(stripped) or len(stripped) > 4:
            # what follows the line's last row or header ("… 14.4 Sales by division (percentage)") names the next
            previous = pieces[-1] if pieces and isinstance(pieces[-1], str) else ""
    out: list[str | Row] = [lead] if skip and lead else []
    for part in parts[skip:]:
        out.extend(part if isinstance(part, list) else [part])
    return out
