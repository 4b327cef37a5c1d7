"""The editable FAQ: question variants → a stored answer (English, optionally Chinese).

Defaults ship in ``assets/faq.json``; the user's editable copy lives in ``settings.kb_dir / "faq.json"`` and wins when
it exists. Entries have a ``kind``: ``faq`` (canonical answers, e.g. "What is Scope 3?"), ``chitchat`` (greeting,
thanks, "who are you", "what can you do") or ``out_of_scope`` (the polite scope message; its questions may be empty).

File format (UTF-8 JSON)::

    {"version": 1, "entries": [
      {"id": "scope_3", "kind": "faq", "questions": ["What is Scope 3?", "什么是范围三排放？"],
       "answer": "Scope 3 emissions are ...", "answer_zh": "范围三排放是……"}
    ]}

A bare list of entries is accepted too. ``load_faq`` / ``parse_faq`` / ``validate_faq`` raise ``FaqError`` naming the
bad entry; ``save_faq`` validates first and replaces the file atomically, so a failed save loses nothing.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ConfigError
from rag.fsio import atomic_write
from rag.settings import Settings

log = logging.getLogger(__name__)

KINDS = ("faq", "chitchat", "out_of_scope")
FORMAT_VERSION = 1
DEFAULT_FAQ_PATH = Path(__file__).resolve().parent.parent / "assets" / "faq.json"
MAX_QUESTION_CHARS = 300
MAX_ANSWER_CHARS = 4000
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEYS = {"id", "kind", "questions", "answer", "answer_zh"}


class FaqError(ConfigError):
    """The FAQ file or an entry is invalid; the message names the file or entry and what is wrong."""


@dataclass(frozen=True)
class FaqEntry:
    """One FAQ entry: question variants (any language) and the answer in English and, optionally, Chinese."""

    id: str
    questions: tuple[str, ...]
    answer: str
    answer_zh: str | None = None
    kind: str = "faq"  # "faq", "chitchat" or "out_of_scope"

    def reply(self, lang: str) -> str:
        """The answer in ``lang`` ("zh" or "en"); falls back to ``answer`` when there is no Chinese answer."""
        if lang == "zh" and self.answer_zh:
            return self.answer_zh
        return self.answer

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"id": self.id, "kind": self.kind, "questions": list(self.questions)}
        data["answer"] = self.answer
        if self.answer_zh:
            data["answer_zh"] = self.answer_zh
        return data


def normalize_question(text: str) -> str:
    """Case-, width- and punctuation-insensitive form used to spot duplicate questions."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[\s\W_]+", " ", text)
    return text.strip()


def user_faq_path(settings: Settings) -> Path:
    """Where the user's editable FAQ lives (it may not exist yet)."""
    return Path(settings.kb_dir) / "faq.json"


def ensure_user_faq(settings: Settings) -> Path:
    """The user's editable FAQ, created from the shipped defaults on first use (atomically)."""
    user = user_faq_path(settings)
    if not user.is_file():
        atomic_write(user, DEFAULT_FAQ_PATH.read_text(encoding="utf-8"))
        log.info("created the editable FAQ %s from the defaults", user)
    return user


def faq_path(settings: Settings) -> Path:
    """The FAQ in effect: the user's copy when it exists, else the shipped defaults."""
    user = user_faq_path(settings)
    return user if user.is_file() else DEFAULT_FAQ_PATH


def _where(index: int, raw: object) -> str:
    ident = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(ident, str) and ident.strip():
        return f"FAQ entry #{index + 1} (id {ident.strip()!r})"
    return f"FAQ entry #{index + 1}"


def _entry_from_json(index: int, raw: object) -> FaqEntry:
    where = _where(index, raw)
    if not isinstance(raw, dict):
        raise FaqError(f"{where} must be an object with id, questions and answer, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise FaqError(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(_KEYS))})")
    ident = raw.get("id")
    if not isinstance(ident, str) or not ident.strip():
        raise FaqError(f"{where}: 'id' must be a non-empty string")
    kind = raw.get("kind", "faq")
    questions = raw.get("questions", [])
    if isinstance(questions, str):  # a single variant written without a list is an easy slip; accept it
        questions = [questions]
    if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
        raise FaqError(f"{where}: 'questions' must be a list of strings")
    answer = raw.get("answer")
    if not isinstance(answer, str):
        raise FaqError(f"{where}: 'answer' must be a string")
    answer_zh = raw.get("answer_zh")
    if answer_zh is not None and not isinstance(answer_zh, str):
        raise FaqError(f"{where}: 'answer_zh' must be a string or null")
    if not isinstance(kind, str):
        raise FaqError(f"{where}: 'kind' must be one of {', '.join(KINDS)}")
    return FaqEntry(
        id=ident.strip(),
        questions=tuple(q.strip() for q in questions),
        answer=answer.strip(),
        answer_zh=answer_zh.strip() if answer_zh and answer_zh.strip() else None,
        kind=kind.strip(),
    )


def validate_faq(entries: Sequence[FaqEntry]) -> None:
    """Raise ``FaqError`` naming the first bad entry: bad id/kind, empty question or answer, duplicates."""
    seen_ids: dict[str, int] = {}
    seen_questions: dict[str, str] = {}
    for index, entry in enumerate(entries):
        where = f"FAQ entry #{index + 1} (id {entry.id!r})"
        if not _ID_RE.match(entry.id):
            raise FaqError(
                f"{where}: id must be 1-64 letters, digits, '_', '.' or '-' and start with a letter or digit"
            )
        if entry.id in seen_ids:
            raise FaqError(f"{where}: id {entry.id!r} is already used by entry #{seen_ids[entry.id] + 1}")
        seen_ids[entry.id] = index
        if entry.kind not in KINDS:
            raise FaqError(f"{where}: kind {entry.kind!r} is not one of {', '.join(KINDS)}")
        if not entry.questions and entry.kind != "out_of_scope":
            raise FaqError(f"{where}: needs at least one question")
        for question in entry.questions:
            if not question.strip():
                raise FaqError(f"{where}: has an empty question")
            if len(question) > MAX_QUESTION_CHARS:
                raise FaqError(f"{where}: question {question[:40]!r}... is longer than {MAX_QUESTION_CHARS} characters")
            key = normalize_question(question)
            if not key:
                raise FaqError(f"{where}: question {question!r} has no letters or digits")
            if key in seen_questions:
                other = seen_questions[key]
                detail = "twice" if other == entry.id else f"also in entry {other!r}"
                raise FaqError(f"{where}: question {question!r} appears {detail}")
            seen_questions[key] = entry.id
        if not entry.answer.strip():
            raise FaqError(f"{where}: 'answer' is empty")
        for field_name, text in (("answer", entry.answer), ("answer_zh", entry.answer_zh or "")):
            if len(text) > MAX_ANSWER_CHARS:
                raise FaqError(f"{where}: {field_name!r} is longer than {MAX_ANSWER_CHARS} characters")


def parse_faq(data: object, source: str = "FAQ") -> list[FaqEntry]:
    """Turn decoded JSON (``{"entries": [...]}`` or a list) into validated entries; ``source`` names it in errors."""
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"version", "entries"})
        if unknown:
            raise FaqError(f"{source}: unknown top-level field {unknown[0]!r} (expected 'version' and 'entries')")
        version = data.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise FaqError(f"{source}: version {version!r} is not supported (expected {FORMAT_VERSION})")
        raw_entries = data.get("entries")
    else:
        raw_entries = data
    if not isinstance(raw_entries, list):
        raise FaqError(f"{source}: expected a list of entries (or an object with 'entries')")
    try:
        entries = [_entry_from_json(i, raw) for i, raw in enumerate(raw_entries)]
        validate_faq(entries)
    except FaqError as exc:
        raise FaqError(f"{source}: {exc}") from None
    return entries


def loads_faq(text: str, source: str = "FAQ") -> list[FaqEntry]:
    """Parse FAQ JSON text (e.g. from an admin editor); errors give the line and column."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FaqError(f"{source} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return parse_faq(data, source)


def dumps_faq(entries: Sequence[FaqEntry]) -> str:
    """The file text for ``entries`` (validated), pretty-printed UTF-8 JSON."""
    validate_faq(entries)
    payload = {"version": FORMAT_VERSION, "entries": [e.to_json() for e in entries]}
    return json.dumps(payload, ensure_ascii=False, indent=2) + "\n"


def load_faq(path: Path | str) -> list[FaqEntry]:
    """Read and validate an FAQ file; raises ``FaqError`` naming the file and the bad entry."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FaqError(f"FAQ file {path} does not exist") from None
    except OSError as exc:
        raise FaqError(f"FAQ file {path} cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FaqError(f"FAQ file {path} is not UTF-8 text (byte {exc.start})") from None
    return loads_faq(text, source=str(path))


def save_faq(path: Path | str, entries: Sequence[FaqEntry]) -> None:
    """Validate ``entries`` and write them to ``path`` atomically (temp file + rename); bad input changes nothing."""
    path = Path(path)
    atomic_write(path, dumps_faq(entries))
    log.info("saved %d FAQ entries to %s", len(entries), path)
