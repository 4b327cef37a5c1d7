"""Audio and video files: check what a file is, and decode its audio with PyAV (bundled FFmpeg; no ffmpeg binary).

The container type is taken from the file's first bytes, never from its name alone, and FFmpeg is only ever given
that one demuxer and the ``file`` protocol: a playlist, concat script or text file renamed ``.mp4`` is refused
before FFmpeg can follow anything it points to. Decoding is bounded by the duration cap, a packet budget and a
wall-clock deadline, so a damaged file ends in a clear error instead of a hang.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.errors import DamagedFile, NoText, TooLarge, UnsupportedFile
from rag.types import format_clock

log = logging.getLogger(__name__)

MEDIA_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".mp3", ".wav", ".m4a", ".flac"})
SAMPLE_RATE = 16_000  # Whisper's input rate (Hz)

_OPEN_OPTIONS = {"protocol_whitelist": "file"}
_OPEN_TIMEOUT_S = 30.0  # FFmpeg I/O interrupt: a read that blocks this long fails instead of hanging
_MOV_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"}


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found. ``duration_s`` in seconds; ``container`` is the demuxer used (e.g. ``mov``)."""

    duration_s: float
    has_audio: bool
    has_video: bool
    container: str
    audio_codec: str = ""


def is_media(path: Path) -> bool:
    """True when the file name has one of :data:`MEDIA_EXTENSIONS` (content is checked by :func:`probe`)."""
    return Path(path).suffix.lower() in MEDIA_EXTENSIONS


def sniff_container(path: Path) -> str | None:
    """The FFmpeg demuxer for the file's magic bytes (``mov``, ``matroska``, ``avi``, ``wav``, ``flac``, ``mp3``).

    None when the content is none of the accepted media types.
    """
    with open(path, "rb") as fh:
        head = fh.read(64)
        offset = 0
        if head[:3] == b"ID3" and len(head) >= 10:
            # An ID3v2 tag (syncsafe size) precedes MP3 and, rarely, FLAC audio; look past it.
            size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
            offset = 10 + size + (10 if head[5] & 0x10 else 0)
            fh.seek(offset)
            head = fh.read(64)
    if len(head) < 4:
        return None
    if head[:4] == b"fLaC":
        return "flac"
    if offset:
        return "mp3" if _mp3_sync(head) or head[:4] == b"\0\0\0\0" else None
    if len(head) >= 8 and head[4:8] in _MOV_BOXES:
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if _mp3_sync(head):
        return "mp3"
    return None


def _mp3_sync(head: bytes) -> bool:
    # MPEG audio frame header: 11 sync bits, then a layer field that is not 00 (00 would be ADTS AAC).
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 != 0


def _open(path: Path):
    """Open with the sniffed demuxer only; raises UnsupportedFile / DamagedFile with one-line messages."""
    import av

    path = Path(path)
    name = path.name
    if path.suffix.lower() not in MEDIA_EXTENSIONS:
        accepted = ", ".join(sorted(e.lstrip(".") for e in MEDIA_EXTENSIONS))
        raise UnsupportedFile(f"{name}: unsupported media type {path.suffix or '(none)'!r} (accepted: {accepted})")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UnsupportedFile(f"{name}: cannot read the file ({exc.strerror or exc})") from exc
    if size == 0:
        raise UnsupportedFile(f"{name}: empty file")
    fmt = sniff_container(path)
    if fmt is None:
        raise UnsupportedFile(f"{name}: not a media file")
    try:
        container = av.open(
            # An absolute path can never be read as a protocol URL such as "concat:" or "http:".
            str(path.resolve()),
            format=fmt,
            options=_OPEN_OPTIONS,
            metadata_errors="ignore",
            timeout=_OPEN_TIMEOUT_S,
        )
    except av.error.FFmpegError as exc:
        raise DamagedFile(f"{name}: damaged or incomplete media file ({_reason(exc)})") from exc
    return container, fmt


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())[:120]


def _is_cover_art(stream) -> bool:
    import av

    disposition = getattr(stream, "disposition", 0)
    return bool(disposition & (av.stream.Disposition.attached_pic | av.stream.Disposition.timed_thumbnails))


def probe(path: Path, max_s: float) -> MediaInfo:
    """Check that ``path`` is a readable media file with an audio track no longer than ``max_s`` seconds.

    Raises UnsupportedFile (wrong type, not media), DamagedFile (unreadable), NoText (no audio track) or TooLarge.
    """
    import av

    path = Path(path)
    container, fmt = _open(path)
    with container:
        audio = list(container.streams.audio)
        has_video = any(not _is_cover_art(s) for s in container.streams.video)
        if not audio:
            raise NoText(f"{path.name}: no audio track")
        stream = audio[0]
        codec = stream.codec_context.name if stream.codec_context is not None else ""
        if not codec:
            raise UnsupportedFile(f"{path.name}: the audio codec is not supported")
        duration = _declared_duration(container, stream)
        if duration is None:
            # WebM from browser recorders often declares no duration: read packet times (no decoding).
            try:
                duration = _scan_duration(container, stream, max_s)
            except av.error.FFmpegError as exc:
                raise DamagedFile(f"{path.name}: damaged or incomplete media file ({_reason(exc)})") from exc
    if duration > max_s:
        raise TooLarge(
            f"{path.name}: {format_clock(duration)} long; the limit is {format_clock(max_s)} (ESG_MAX_MEDIA_S)"
        )
    return MediaInfo(duration_s=duration, has_audio=True, has_video=has_video, container=fmt, audio_codec=codec)


def _declared_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE is microseconds
    return None


def _scan_duration(container, stream, max_s: float) -> float:
    end = 0.0
    tb = stream.time_base
    for packet in container.demux(stream):
        if packet.pts is None or tb is None:
            continue
        end = max(end, float((packet.pts + (packet.duration or 0)) * tb))
        if end > max_s:
            break
    return end


def load_audio(path: Path, max_s: float, deadline_s: float | None = None) -> np.ndarray:
    """Decode the first audio track to 16 kHz mono int16 PCM (:data:`SAMPLE_RATE` samples per second).

    Stops with TooLarge past ``max_s`` seconds whatever the header claimed, and with DamagedFile when the data is
    mostly undecodable or decoding outlasts ``deadline_s`` (default: 60 s + 5 % of ``max_s``).
    int16 halves the memory of float32: two hours are 230 MB.
    """
    import av

    path = Path(path)
    name = path.name
    deadline = time.monotonic() + (deadline_s if deadline_s is not None else 60.0 + 0.05 * max_s)
    limit = int(max_s * SAMPLE_RATE) + SAMPLE_RATE  # one second of slack for rounding in headers
    container, _ = _open(path)
    # Every demuxed packet consumes bytes of the file; many more packets than bytes means the demuxer is looping.
    packet_budget = path.stat().st_size + 10_000
    pieces: list[np.ndarray] = []
    samples = 0
    bad = good = packets = 0
    resampler = None
    layout_key = None
    with container:
        if not container.streams.audio:
            raise NoText(f"{name}: no audio track")
        stream = container.streams.audio[0]
        try:
            for packet in container.demux(stream):
                packets += 1
                if packets > packet_budget or time.monotonic() > deadline:
                    raise DamagedFile(f"{name}: decoding did not finish; the file looks damaged")
                try:
                    frames = packet.decode()
                except (av.error.InvalidDataError, av.error.PatchWelcomeError, av.error.UndefinedError):
                    # A few broken packets are normal in real-world files; skip them.
                    bad += 1
                    if bad > 50 and bad > good:
                        raise DamagedFile(f"{name}: the audio track is mostly undecodable") from None
                    continue
                for frame in frames:
                    good += 1
                    key = (frame.format.name, frame.layout.name, frame.sample_rate)
                    if key != layout_key:
                        # A stream may change its sample rate or channels midway; start a new resampler.
                        if resampler is not None:
                            samples += _collect(resampler.resample(None), pieces)
                        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
                        layout_key = key
                    frame.pts = None  # decoders' timestamps can jump in damaged files; we only need the samples
                    samples += _collect(resampler.resample(frame), pieces)
                    if samples > limit:
                        raise TooLarge(f"{name}: longer than the limit of {format_clock(max_s)} (ESG_MAX_MEDIA_S)")
            if resampler is not None:
                samples += _collect(resampler.resample(None), pieces)
        except av.error.FFmpegError as exc:
            if not pieces:
                raise DamagedFile(f"{name}: damaged or incomplete media file ({_reason(exc)})") from exc
            # A truncated file: keep what decoded, as players do.
            log.warning("%s: decoding stopped early at %.1f s: %s", name, samples / SAMPLE_RATE, _reason(exc))
    if samples > limit:
        raise TooLarge(f"{name}: longer than the limit of {format_clock(max_s)} (ESG_MAX_MEDIA_S)")
    if not pieces:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(pieces).astype(np.int16, copy=False)


def _collect(frames, pieces: list[np.ndarray]) -> int:
    n = 0
    for out in frames:
        arr = out.to_ndarray().reshape(-1)
        pieces.append(arr)
        n += arr.shape[0]
    return n
