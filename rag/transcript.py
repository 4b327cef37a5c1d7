"""Transcripts after speech recognition: timed passages for the index, subtitles, and a cache by file hash."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

from rag.chunk import key_line
from rag.errors import ConfigError
from rag.fsio import atomic_write
from rag.text import FULLWIDTH, HAN, ends_sentence
from rag.types import Chunk, DocMeta, Segment, Source
from rag.whisper import Progress, Transcriber, Transcript

log = logging.getLogger(__name__)

_WIDE = re.compile(f"[{HAN}{FULLWIDTH}]")  # no space between two of these when joining segments


# --- passages


def chunk_segments(
    segments: Sequence[Segment],
    *,
    file: str,
    doc_id: str,
    meta: DocMeta,
    min_s: float = 30.0,
    max_s: float = 60.0,
    pad_s: float = 0.5,
    duration_s: float | None = None,
) -> list[Chunk]:
    """Group timed segments into passages of about ``min_s``-``max_s`` seconds.

    A passage ends at the first segment that finishes a sentence once it is ``min_s`` long, or, when the next
    segment would take it past ``max_s``, at its last sentence end (else at a segment boundary). Each chunk's
    ``Source`` carries ``start_s``/``end_s`` in seconds, widened by up to ``pad_s`` into the silence around it
    (Whisper's segment times are off by a few tenths of a second, and a cited range must cover the words), but
    never past the neighbouring speech, 0 or ``duration_s``. Its ``id`` hashes doc_id, start and text.
    """
    segs = [s for s in segments if s.text.strip()]
    groups: list[list[Segment]] = []
    current: list[Segment] = []
    for seg in segs:
        if current and seg.end_s - current[0].start_s > max_s:
            cut = _last_sentence_end(current, min_s / 2)
            groups.append(current[:cut])
            current = current[cut:]
        current.append(seg)
        if current[-1].end_s - current[0].start_s >= min_s and ends_sentence(seg.text, colons=False):
            groups.append(current)
            current = []
    if current:
        # A short tail reads better joined to the passage before it, if that stays near the limit.
        short = current[-1].end_s - current[0].start_s < min_s / 2
        if groups and short and current[-1].end_s - groups[-1][0].start_s <= max_s + min_s / 2:
            groups[-1] = groups[-1] + current
        else:
            groups.append(current)
    groups = [g for g in groups if g]
    chunks = []
    for i, group in enumerate(groups):
        before = groups[i - 1][-1].end_s if i else 0.0
        after = groups[i + 1][0].start_s if i + 1 < len(groups) else duration_s
        start = max(before, group[0].start_s - pad_s, 0.0)
        end = group[-1].end_s + pad_s
        if after is not None:
            end = max(group[-1].end_s, min(end, after))
        chunks.append(_make_chunk(group, round(start, 2), round(end, 2), file=file, doc_id=doc_id, meta=meta))
    return chunks


def _last_sentence_end(group: list[Segment], min_len_s: float) -> int:
    """How many segments of ``group`` to keep: through its last sentence end at least ``min_len_s`` long."""
    for i in range(len(group) - 1, 0, -1):
        if ends_sentence(group[i - 1].text, colons=False) and group[i - 1].end_s - group[0].start_s >= min_len_s:
            return i
    return len(group)


def join_text(parts: Sequence[str]) -> str:
    """Join segment texts: a space between words, none between Chinese characters."""
    out = ""
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if out and not (_WIDE.match(out[-1]) and _WIDE.match(part[0])):
            out += " "
        out += part
    return out


def _make_chunk(group: list[Segment], start: float, end: float, *, file: str, doc_id: str, meta: DocMeta) -> Chunk:
    text = join_text([s.text for s in group])
    digest = hashlib.sha256(f"{doc_id}\x1f{start:.2f}\x1f{text}".encode()).hexdigest()[:16]
    return Chunk(
        id=digest,
        doc_id=doc_id,
        text=text,
        source=Source(file, start_s=start, end_s=end),
        meta=meta,
        heading="",
        key=key_line(text, "", meta),
    )


# --- subtitles


def _stamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms:03d}"


def _cue_text(text: str) -> str:
    # A blank line would end the cue early; keep each cue's text on one line.
    return " ".join(text.split())


def to_srt(segments: Sequence[Segment]) -> str:
    """SubRip subtitles: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``."""
    cues = []
    for n, seg in enumerate((s for s in segments if s.text.strip()), start=1):
        end = max(seg.end_s, seg.start_s)
        cues.append(f"{n}\n{_stamp(seg.start_s, ',')} --> {_stamp(end, ',')}\n{_cue_text(seg.text)}\n")
    return "\n".join(cues)


def to_vtt(segments: Sequence[Segment]) -> str:
    """WebVTT subtitles: a ``WEBVTT`` header, then ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues (text HTML-escaped)."""
    cues = ["WEBVTT\n"]
    for seg in segments:
        if not seg.text.strip():
            continue
        text = _cue_text(seg.text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        end = max(seg.end_s, seg.start_s)
        cues.append(f"{_stamp(seg.start_s, '.')} --> {_stamp(end, '.')}\n{text}\n")
    return "\n".join(cues)


# --- cache


_CACHE_FORMAT = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")


class TranscriptCache:
    """Transcripts as ``<directory>/<sha256>.json`` (written atomically), so a re-upload is not transcribed again."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ConfigError(f"transcript cache key must be a lowercase sha256 hex digest, got {sha256!r}")
        return self.directory / f"{sha256}.json"

    def get(self, sha256: str) -> Transcript | None:
        """The cached transcript, or None when absent or unreadable (a damaged entry is logged and ignored)."""
        path = self._path(sha256)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("ignoring unreadable transcript cache entry %s: %s", path, exc)
            return None
        try:
            return transcript_from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring malformed transcript cache entry %s: %s", path, exc)
            return None

    def put(self, sha256: str, transcript: Transcript) -> Path:
        path = self._path(sha256)
        payload = json.dumps(transcript_to_dict(transcript), ensure_ascii=False, separators=(",", ":"))
        atomic_write(path, payload)
        return path

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)


def transcript_to_dict(t: Transcript) -> dict:
    return {
        "format": _CACHE_FORMAT,
        "model": t.model,
        "language": t.language,
        "language_probability": t.language_probability,
        "duration_s": t.duration_s,
        "segments": [[s.start_s, s.end_s, s.text] for s in t.segments],
    }


def transcript_from_dict(data: dict) -> Transcript:
    if data.get("format") != _CACHE_FORMAT:
        raise ValueError(f"unknown format {data.get('format')!r}")
    return Transcript(
        language=str(data["language"]),
        language_probability=float(data["language_probability"]),
        duration_s=float(data["duration_s"]),
        segments=tuple(Segment(float(a), float(b), str(text)) for a, b, text in data["segments"]),
        model=str(data.get("model", "")),
    )


def transcribe_cached(
    transcriber: Transcriber,
    path: Path,
    sha256: str,
    cache: TranscriptCache,
    language: str | None = None,
    progress: Progress | None = None,
) -> tuple[Transcript, bool]:
    """The transcript of ``path`` from ``cache`` when present, else transcribe and store it.

    Returns ``(transcript, from_cache)``. A cached entry made by another model, or in another language than an
    explicitly requested one, is transcribed again.
    """
    from rag.whisper import normalize_language

    wanted = normalize_language(language)
    cached = cache.get(sha256)
    if cached is not None and cached.model == transcriber.name and wanted in (None, cached.language):
        if progress is not None:
            progress(cached.duration_s, cached.duration_s)
        return cached, True
    transcript = transcriber.transcribe(Path(path), language=wanted, progress=progress)
    cache.put(sha256, transcript)
    return transcript, False
