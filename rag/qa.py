"""QA sets for evaluation: JSON-lines files of questions with known answers, parsed into ``QAItem``s.

    items = load_qa(Path("qa.jsonl"))                 # ConfigError naming the file, line/row and bad value
    items = load_qa(SAMPLE_QA_PATH)                   # the bundled set over the sample documents in assets/

The four shared formats all load (see ``parse_qa_items``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import ConfigError
from rag.text import detect_language, only_states_absence
from rag.types import Scope

# The bundled QA set over the sample documents; it ships with the app (the Evaluation tab offers it), so it lives
# in assets/ beside them rather than in tests/.
SAMPLE_DOCS_DIR = Path(__file__).resolve().parent.parent / "assets"
SAMPLE_QA_PATH = SAMPLE_DOCS_DIR / "sample_qa.jsonl"


@dataclass(frozen=True)
class QAItem:
    """One evaluation question. ``pages`` are 1-based pages of ``doc``; ``evidence`` are gold passages."""

    id: str
    question: str
    answer: str | None = None  # the gold answer
    doc: str | None = None
    pages: tuple[int, ...] = ()
    evidence: tuple[str, ...] = ()
    answerable: bool = True
    lang: str = "en"
    doc_dir: str | None = None  # sub-folder of --docs holding ``doc`` (the shared QA sets name one)

    @property
    def scope(self) -> Scope:
        return Scope((self.doc,)) if self.doc else Scope()

    @property
    def has_gold_context(self) -> bool:
        return bool(self.pages or self.evidence)


@dataclass
class _Draft:
    """An item being assembled from the rows that ask its question (pages and evidence pooled)."""

    id: str
    question: str
    answer: str | None
    doc: str | None
    answerable: bool
    lang: str
    doc_dir: str | None
    pages: list[int] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)


def _pages(value: object, name: str, where: str) -> list[int]:
    """The 1-based page numbers in one field (a number, a list of them, or null)."""
    if value is None:
        return []
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    out = []
    for v in values:
        if v is None:
            continue
        if isinstance(v, int) and not isinstance(v, bool):
            page = v
        elif (isinstance(v, float) and v.is_integer()) or (isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v)):
            page = int(v)
        else:
            raise ConfigError(f"{where} has a page that is not a whole number: {name} = {v!r}")
        if page < 1:
            raise ConfigError(f"{where} has a page below 1 (pages are 1-based): {name} = {v!r}")
        out.append(page)
    return out


def _evidence(value: object) -> list[str]:
    if not value:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        # Climate Finance Bench joins several extracts with "\n---\n".
        out += [part.strip() for part in re.split(r"\n-{3,}\n", str(item)) if part.strip()]
    return out


def _optional_str(obj: dict[str, object], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where} has a '{key}' that is not text: {value!r}")
    return value


def _draft(obj: dict[str, object], question: str, no: int, where: str) -> _Draft:
    gold = obj.get("answer")
    answerable = obj.get("answerable")
    if answerable is not None and not isinstance(answerable, bool):
        raise ConfigError(f"{where} has an 'answerable' that is not true or false: {answerable!r}")
    if answerable is None:
        answerable = not (isinstance(gold, str) and only_states_absence(gold))
    qid = obj.get("qid") or obj.get("id")
    lang = _optional_str(obj, "lang", where) or detect_language(question)
    return _Draft(
        id=str(qid) if qid else f"row{no}",
        question=question.strip(),
        answer=gold if isinstance(gold, str) and gold.strip() else None,
        doc=_optional_str(obj, "doc", where),
        answerable=answerable,
        lang=lang,
        doc_dir=_optional_str(obj, "doc_dir", where),
    )


def parse_qa_items(objects: Iterable[object], source: str = "QA file") -> list[QAItem]:
    """Normalise QA rows of the shared formats into ``QAItem``s; a bad row raises ``ConfigError`` naming ``source``,
    the 1-based row and the bad value.

    Accepts ``question`` plus optional ``answer``, ``doc``, ``page``/``pages``/``evidence_pages_verified``,
    ``evidence`` (string, ``\\n---\\n``-joined string or list), ``answerable`` (true/false), ``lang``, ``doc_dir``,
    ``id``/``qid``. Rows asking the same question about the same document (ClimRetrieve has one row per evidence
    passage) are merged: their pages and evidence are pooled. A row without ``answerable`` is unanswerable when its
    gold answer is a "not available" statement.
    """
    drafts: dict[tuple[str | None, str], _Draft] = {}  # insertion-ordered: items keep the file's order
    for no, obj in enumerate(objects, 1):
        where = f"{source}: row {no}"
        if not isinstance(obj, dict):
            raise ConfigError(f"{where} is not a JSON object")
        question = obj.get("question")
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(f"{where} has no 'question'")
        pages = [p for key in ("pages", "page", "evidence_pages_verified") for p in _pages(obj.get(key), key, where)]
        draft = _draft(obj, question, no, where)
        key = (draft.doc, " ".join(question.split()))
        item = drafts.setdefault(key, draft)
        item.pages += [p for p in dict.fromkeys(pages) if p not in item.pages]
        item.evidence += [e for e in dict.fromkeys(_evidence(obj.get("evidence"))) if e not in item.evidence]
        if obj.get("answerable") is True:
            item.answerable = True
    items = []
    seen_ids: set[str] = set()
    for d in drafts.values():
        qid = d.id
        while qid in seen_ids:  # ids must be unique in the report
            qid += "'"
        seen_ids.add(qid)
        items.append(
            QAItem(
                id=qid,
                question=d.question,
                answer=d.answer,
                doc=d.doc,
                pages=tuple(sorted(d.pages)),
                evidence=tuple(d.evidence),
                answerable=d.answerable,
                lang=d.lang,
                doc_dir=d.doc_dir,
            )
        )
    return items


def parse_qa_text(text: str, source: str = "QA file") -> list[QAItem]:
    """Parse JSONL text (one JSON object per line, blank lines ignored); a bad line raises ``ConfigError`` naming
    ``source`` and the 1-based line number."""
    objects = []
    for no, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 may sit inside a string
        if not line.strip():
            continue
        try:
            objects.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}:{no}: not valid JSON ({exc.msg})") from None
    if not objects:
        raise ConfigError(f"QA file {source} has no rows")
    return parse_qa_items(objects, source)


def load_qa(path: Path, source: str | None = None) -> list[QAItem]:
    """Read a JSONL QA file (see ``parse_qa_items``); a bad line raises ``ConfigError`` naming it. ``source`` is the
    name used in messages (default: the path; the app passes the uploaded file's own name)."""
    path = Path(path)
    source = source or str(path)
    if not path.is_file():
        raise ConfigError(f"QA file not found: {source}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM from Windows editors
    except UnicodeDecodeError:
        raise ConfigError(f"QA file {source} is not UTF-8 text (expected JSON lines)") from None
    return parse_qa_text(text, source)


__all__ = ["SAMPLE_DOCS_DIR", "SAMPLE_QA_PATH", "QAItem", "load_qa", "parse_qa_items", "parse_qa_text"]
