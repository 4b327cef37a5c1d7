"""UI text in English and Chinese, kept as data in ``ui/strings.json``; the language toggle switches between them.

Answers follow the question's language, not this setting. A key missing in one language falls back to English.
"""

from __future__ import annotations

import json
from pathlib import Path

STRINGS_PATH = Path(__file__).resolve().parent / "strings.json"
LANGS = ("en", "zh")


def _load(path: Path = STRINGS_PATH) -> tuple[dict[str, dict[str, str]], list[str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {lang: dict(data[lang]) for lang in LANGS}, list(data["examples"])


TEXT, EXAMPLES = _load()


def t(lang: str, key: str) -> str:
    """The UI text ``key`` in ``lang`` (``en`` or ``zh``), English when that language lacks it."""
    return TEXT.get(lang, TEXT["en"]).get(key) or TEXT["en"][key]


def has(key: str) -> bool:
    """True when ``key`` is a UI text (used for optional keys such as ``route_<name>``)."""
    return key in TEXT["en"]
