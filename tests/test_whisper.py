"""Transcription with the real bundled Whisper base model on real clips (slow), plus the offline model setup."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.errors import ConfigError, DamagedFile, NoText, TooLarge, UnsupportedFile
from rag.media import SAMPLE_RATE, probe
from rag.settings import Settings
from rag.transcript import TranscriptCache, chunk_segments, to_srt, to_vtt, transcribe_cached
from rag.types import DocMeta
from rag.whisper import (
    Transcriber,
    WhisperTranscriber,
    _clean,
    bundled_model_dir,
    make_transcriber,
    normalize_language,
    split_windows,
)
from tests.fixtures_media import JFK_PHRASE, decode_16k, make_video, write_wav


def _norm(text: str) -> str:
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


# --- model setup (fast apart from copying 145 MB)


def test_bundled_model_assembles_into_the_cache(tmp_path):
    directory = bundled_model_dir(tmp_path)
    assert directory == tmp_path / "whisper-base"
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["config.json", "model.bin", "tokenizer.json", "vocabulary.json"]
    digest = hashlib.sha256(directory.joinpath("model.bin").read_bytes()).hexdigest()
    assert digest == "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
    mtime = directory.joinpath("model.bin").stat().st_mtime_ns
    assert bundled_model_dir(tmp_path) == directory  # second call reuses the assembled file
    assert directory.joinpath("model.bin").stat().st_mtime_ns == mtime


def test_constructing_a_transcriber_loads_and_writes_nothing(tmp_path):
    settings = Settings.from_env(environ={}, model_cache=tmp_path / "cache")
    transcriber = make_transcriber(settings)
    assert isinstance(transcriber, Transcriber)
    assert not (tmp_path / "cache").exists()


def test_whisper_model_must_be_base_or_a_local_directory(tmp_path):
    for bad in ("small", "openai/whisper-large-v3", str(tmp_path / "missing")):
        with pytest.raises(ConfigError, match="ESG_WHISPER_MODEL"):
            make_transcriber(Settings.from_env(environ={}, whisper_model=bad, model_cache=tmp_path))


def test_vad_model_ships_with_faster_whisper_and_loads_offline():
    from faster_whisper.utils import get_assets_path
    from faster_whisper.vad import VadOptions, get_speech_timestamps, get_vad_model

    assert Path(get_assets_path(), "silero_vad_v6.onnx").is_file()
    assert get_vad_model() is not None
    assert get_speech_timestamps(np.zeros(SAMPLE_RATE * 2, dtype=np.float32), VadOptions()) == []


def test_windows_are_cut_in_the_pause(jfk_audio):
    speech = decode_16k(jfk_audio)
    pause = np.zeros(4 * SAMPLE_RATE, dtype=np.float32)
    pcm = np.concatenate([speech, pause, speech])
    windows = split_windows(pcm, window_s=20.0)
    assert len(windows) == 2
    cut = windows[0][1] / SAMPLE_RATE
    assert 11.0 <= cut <= 15.0
    assert windows[0][0] == 0 and windows[1] == (windows[0][1], len(pcm))
    assert split_windows(pcm, window_s=600.0) == [(0, len(pcm))]


def test_segment_filter_drops_non_speech():
    from types import SimpleNamespace

    transcriber = WhisperTranscriber("base", model_cache=Path("/nonexistent"))

    def piece(text, no_speech=0.05, ratio=1.5):
        return SimpleNamespace(text=text, no_speech_prob=no_speech, compression_ratio=ratio)

    assert transcriber._keep(piece(" Our target is 80% by 2028."))
    assert transcriber._keep(piece("我们的目标是二零六零年实现碳中和。"))
    assert not transcriber._keep(piece(" Thank you.", no_speech=0.9))
    assert not transcriber._keep(piece(" the the the the the the", ratio=3.1))
    for text in (" [Music]", " (applause)", " ♪ ♪", "  ", "【音乐】", " Subtitles by the Amara.org community"):
        assert not transcriber._keep(piece(text)), text
    assert _clean(" [Music] Welcome to the  briefing. (applause)") == "Welcome to the briefing."


def test_language_names_normalise_to_whisper_codes():
    assert [normalize_language(x) for x in ("zh-CN", "zh_TW", "English", "中文", " EN ", "", None)] == [
        "zh",
        "zh",
        "en",
        "zh",
        "en",
        None,
        None,
    ]


# --- real transcription


@pytest.mark.slow
def test_jfk_transcript(whisper, jfk_audio):
    calls = []
    transcript = whisper.transcribe(jfk_audio, progress=lambda done, total: calls.append((done, total)))
    assert JFK_PHRASE in _norm(transcript.text)
    assert transcript.language == "en" and transcript.language_probability > 0.8
    assert transcript.notice is None
    assert transcript.duration_s == pytest.approx(11.0, abs=0.05)
    assert transcript.model == "whisper-base/int8"
    for seg in transcript.segments:
        assert 0.0 <= seg.start_s < seg.end_s <= 11.0
    # Progress: starts at 0, never goes back, ends at the total.
    assert calls[0] == (0.0, pytest.approx(11.0, abs=0.05))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1][0] == pytest.approx(calls[-1][1])


@pytest.mark.slow
def test_video_probe_transcribe_chunk_cites_the_spoken_words(whisper, jfk_video):
    info = probe(jfk_video, max_s=7200)
    transcript = whisper.transcribe(jfk_video)
    chunks = chunk_segments(
        transcript.segments,
        file=jfk_video.name,
        doc_id="f" * 64,
        meta=DocMeta(language=transcript.doc_language),
        duration_s=transcript.duration_s,
    )
    assert len(chunks) == 1
    chunk = chunks[0]
    assert "what your country can do for you" in _norm(chunk.text)
    # Speech runs from 3.3 s (after the 3 s lead-in) to 13.25 s of the 14 s video (measured by signal energy).
    assert 2.0 <= chunk.source.start_s <= 3.3
    assert 13.25 <= chunk.source.end_s <= info.duration_s + 0.05
    assert chunk.source.label().startswith("jfk_speech.mp4 ▶ 00:0")
    assert chunk.meta.language == "en"


@pytest.mark.slow
def test_language_detection_and_decoding_share_one_encoder_pass(whisper, jfk_audio, monkeypatch):
    from faster_whisper import WhisperModel

    calls = []
    original = WhisperModel.encode

    def counting(self, features):
        calls.append(features.shape)
        return original(self, features)

    monkeypatch.setattr(WhisperModel, "encode", counting)
    transcript = whisper.transcribe(jfk_audio)
    assert JFK_PHRASE in _norm(transcript.text)
    assert len(calls) == 1  # an 11 s clip is one 30 s window: detection reuses the decoder's encoding


@pytest.mark.slow
def test_language_override(whisper, jfk_audio):
    transcript = whisper.transcribe(jfk_audio, language="English")
    assert transcript.language == "en" and transcript.language_probability == 1.0
    assert JFK_PHRASE in _norm(transcript.text)
    with pytest.raises(ConfigError, match="'xx' is not a Whisper language code"):
        whisper.transcribe(jfk_audio, language="xx")


@pytest.mark.slow
def test_pure_silence_is_no_speech(whisper, tmp_path):
    path = write_wav(tmp_path / "silence.wav", np.zeros(SAMPLE_RATE * 20, dtype=np.float32))
    with pytest.raises(NoText, match=r"^silence\.wav: no speech found$"):
        whisper.transcribe(path)


@pytest.mark.slow
def test_noise_and_tones_produce_no_invented_text(whisper, tmp_path):
    rng = np.random.default_rng(7)
    t = np.arange(SAMPLE_RATE * 20) / SAMPLE_RATE
    chord = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * (1 + 0.3 * np.sin(2 * np.pi * t))
    for name, signal in {"noise.wav": 0.05 * rng.standard_normal(t.size), "chord.wav": chord}.items():
        with pytest.raises(NoText, match="no speech found"):
            whisper.transcribe(write_wav(tmp_path / name, signal))


@pytest.mark.slow
def test_silent_video_and_broken_files_get_clear_errors(whisper, tmp_path):
    with pytest.raises(NoText, match="no audio track"):
        whisper.transcribe(make_video(tmp_path / "mute.mp4", None, seconds=2))
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(UnsupportedFile, match="not a media file"):
        whisper.transcribe(fake)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(b"\0\0\0\x20ftypisom" + bytes(200))
    with pytest.raises(DamagedFile):
        whisper.transcribe(cut)


@pytest.mark.slow
def test_over_long_media_is_refused_before_transcribing(whisper, jfk_audio):
    with pytest.raises(TooLarge, match="ESG_MAX_MEDIA_S"):
        whisper.with_options(max_s=5.0).transcribe(jfk_audio)


@pytest.mark.slow
def test_long_media_in_windows_keeps_absolute_times(whisper, audio_dir, tmp_path):
    # JFK (11 s), 5 s pause, LJSpeech clip (7.7 s), 5 s pause, a Harvard sentence; windows of 20 s.
    pause = np.zeros(5 * SAMPLE_RATE, dtype=np.float32)
    parts = [
        decode_16k(audio_dir / "whisper_jfk.flac"),
        pause,
        decode_16k(audio_dir / "speechbrain_ljspeech_LJ050-0131.wav"),
        pause,
        decode_16k(audio_dir / "speechbrain_spk1_snt4.wav"),
    ]
    path = write_wav(tmp_path / "long.wav", np.concatenate(parts))
    transcript = whisper.with_options(window_s=20.0).transcribe(path)
    text = _norm(transcript.text)
    assert JFK_PHRASE in text
    assert "frequent formal review" in text
    assert "thin stripe runs down the middle" in text
    lj = next(s for s in transcript.segments if "formal review" in s.text)
    assert 15.5 <= lj.start_s <= 17.0  # the LJ clip starts at 16.0 s
    stripe = next(s for s in transcript.segments if "stripe" in s.text)
    assert 29.5 <= stripe.end_s <= 31.3  # spoken from 28.7 s to 31.2 s (Whisper may join it to the sentence before)
    assert [s.start_s for s in transcript.segments] == sorted(s.start_s for s in transcript.segments)


@pytest.mark.slow
def test_progress_callback_can_cancel(whisper, jfk_audio):
    class Cancelled(Exception):
        pass

    def progress(done, total):
        if done > 0:
            raise Cancelled

    with pytest.raises(Cancelled):
        whisper.transcribe(jfk_audio, progress=progress)
    assert JFK_PHRASE in _norm(whisper.transcribe(jfk_audio).text)  # the lock was released


@pytest.mark.slow
def test_cache_means_a_reupload_is_not_transcribed_again(whisper, jfk_audio, tmp_path):
    from tests.test_transcript import CountingTranscriber

    counter = CountingTranscriber(whisper)
    cache = TranscriptCache(tmp_path / "transcripts")
    sha = hashlib.sha256(jfk_audio.read_bytes()).hexdigest()
    first, hit1 = transcribe_cached(counter, jfk_audio, sha, cache)
    second, hit2 = transcribe_cached(counter, jfk_audio, sha, cache)
    assert (hit1, hit2) == (False, True)
    assert len(counter.calls) == 1
    assert first == second
    assert (tmp_path / "transcripts" / f"{sha}.json").is_file()


@pytest.mark.slow
def test_subtitles_from_a_real_transcript(whisper, jfk_audio):
    transcript = whisper.transcribe(jfk_audio)
    srt, vtt = to_srt(transcript.segments), to_vtt(transcript.segments)
    assert srt.startswith("1\n00:00:00,")
    assert vtt.startswith("WEBVTT\n\n00:00:00.")
    assert JFK_PHRASE in _norm(srt) and JFK_PHRASE in _norm(vtt)


@pytest.mark.slow
def test_model_load_and_transcription_need_no_network(audio_dir):
    # In a fresh process with sockets disabled and no HF_HUB_OFFLINE: any fetch by model name would raise.
    code = (
        "import socket\n"
        "def deny(*a, **k):\n"
        "    raise OSError('network access attempted')\n"
        "socket.socket.connect = deny\n"
        "socket.create_connection = deny\n"
        "from pathlib import Path\n"
        "from rag.settings import Settings\n"
        "from rag.whisper import WhisperTranscriber\n"
        "t = WhisperTranscriber('base', model_cache=Settings.from_env().model_cache, threads=1)\n"
        "print(t.transcribe(Path(%r)).text)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}}
    clip = str(audio_dir / "speechbrain_spk1_snt4.wav")
    result = subprocess.run(
        [sys.executable, "-c", code % clip],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "stripe" in result.stdout.lower()
