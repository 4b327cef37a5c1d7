"""Session fixtures and media builders for the video/audio area (registered in conftest.py).

``make_video`` muxes any audio file PyAV can read with a still frame into a small H.264/AAC mp4; the ``jfk_video``
fixture (the JFK clip as a video) is reused by the end-to-end ingest tests.
"""

from __future__ import annotations

import fractions
import math
import os
import wave
from pathlib import Path

import numpy as np
import pytest

JFK_PHRASE = "ask not what your country can do for you"
_RATE = 16_000


def make_video(
    path: Path,
    audio: Path | None,
    *,
    seconds: float | None = None,
    size: tuple[int, int] = (64, 48),
    fps: int = 1,
    lead_in_s: float = 0.0,
) -> Path:
    """Write an mp4 at ``path``: a still frame for the length of ``audio`` (or ``seconds`` with no audio track).

    ``lead_in_s`` seconds of silence go before the audio, so the speech does not start at 0:00.
    """
    import av

    path = Path(path)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "35"}
        duration = seconds or 0.0
        if audio is not None:
            samples = np.concatenate([np.zeros(int(lead_in_s * _RATE), dtype=np.float32), decode_16k(audio)])
            stream = out.add_stream("aac", rate=_RATE, layout="mono")
            stream.bit_rate = 64_000
            step = 1024  # AAC frame size
            for pos in range(0, len(samples), step):
                frame = av.AudioFrame.from_ndarray(samples[None, pos : pos + step], format="fltp", layout="mono")
                frame.sample_rate = _RATE
                frame.pts = pos
                frame.time_base = fractions.Fraction(1, _RATE)
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
            duration = max(duration, len(samples) / _RATE)
        image = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        image[:, :, 1] = 128
        for i in range(max(1, math.ceil(duration * fps))):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    return path


def write_wav(path: Path, samples: np.ndarray, rate: int = _RATE) -> Path:
    """Write mono float samples in [-1, 1] as a 16-bit WAV file."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return Path(path)


def decode_16k(path: Path) -> np.ndarray:
    """Any audio file as 16 kHz mono float32 (for building test signals)."""
    from rag.media import load_audio

    return load_audio(Path(path), max_s=3600).astype(np.float32) / 32768.0


@pytest.fixture(scope="session")
def audio_dir(testdata: Path) -> Path:
    return testdata / "audio"


@pytest.fixture(scope="session")
def jfk_audio(audio_dir: Path) -> Path:
    return audio_dir / "whisper_jfk.flac"


@pytest.fixture(scope="session")
def jfk_video(tmp_path_factory, jfk_audio: Path) -> Path:
    """The JFK clip (11 s) as ``jfk_speech.mp4`` with a still frame, speech starting after 3 s of silence."""
    return make_video(tmp_path_factory.mktemp("media") / "jfk_speech.mp4", jfk_audio, lead_in_s=3.0)


@pytest.fixture(scope="session")
def whisper():
    """The real bundled Whisper base transcriber, loaded once per session.

    Uses the normal model cache (``ESG_MODEL_CACHE`` or ~/.cache/esg-rag), so the 145 MB model is assembled once.
    """
    from rag.settings import Settings
    from rag.whisper import WhisperTranscriber

    settings = Settings.from_env()
    transcriber = WhisperTranscriber(
        "base", model_cache=settings.model_cache, threads=os.cpu_count() or 2, max_s=settings.max_media_s
    )
    transcriber.load()
    return transcriber
