"""Media probing and decoding with real PyAV on real clips and on broken, fake and hostile files (no model)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from rag.errors import DamagedFile, NoText, TooLarge, UnsupportedFile
from rag.media import MEDIA_EXTENSIONS, SAMPLE_RATE, is_media, load_audio, probe, sniff_container
from tests.fixtures_media import make_video, write_wav


def test_accepted_extensions():
    assert {".mp4", ".mov", ".mkv", ".webm", ".avi", ".mp3", ".wav", ".m4a", ".flac"} == MEDIA_EXTENSIONS
    assert is_media(Path("Briefing.MP4"))
    assert not is_media(Path("report.pdf"))


def test_probe_audio_clip(jfk_audio):
    info = probe(jfk_audio, max_s=7200)
    assert info.has_audio and not info.has_video
    assert info.container == "flac"
    assert info.duration_s == pytest.approx(11.0, abs=0.1)


def test_probe_video_made_from_clip(jfk_video):
    info = probe(jfk_video, max_s=7200)
    assert info.has_audio and info.has_video
    assert info.container == "mov"
    assert info.audio_codec == "aac"
    assert info.duration_s == pytest.approx(14.0, abs=0.2)  # 3 s lead-in + 11 s of speech


def test_video_stays_small(jfk_video):
    assert jfk_video.stat().st_size < 200_000


def test_load_audio_is_16k_mono_pcm(jfk_audio):
    pcm = load_audio(jfk_audio, max_s=7200)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert len(pcm) / SAMPLE_RATE == pytest.approx(11.0, abs=0.05)
    assert np.abs(pcm).max() > 3000  # real speech, not silence


@pytest.mark.parametrize(
    ("fmt", "codec", "suffix", "container"),
    [
        ("mp3", "libmp3lame", ".mp3", "mp3"),
        ("webm", "libopus", ".webm", "matroska"),
        ("ipod", "aac", ".m4a", "mov"),
        ("matroska", "aac", ".mkv", "matroska"),
        ("avi", "pcm_s16le", ".avi", "avi"),
        ("mov", "aac", ".mov", "mov"),
    ],
)
def test_every_accepted_container_decodes(tmp_path, jfk_audio, fmt, codec, suffix, container):
    path = _convert(jfk_audio, tmp_path / f"jfk{suffix}", fmt, codec)
    info = probe(path, max_s=7200)
    assert info.container == container
    assert info.duration_s == pytest.approx(11.0, abs=0.2)
    assert len(load_audio(path, max_s=7200)) / SAMPLE_RATE == pytest.approx(11.0, abs=0.2)


def test_video_without_audio_track(tmp_path):
    path = make_video(tmp_path / "silent_film.mp4", None, seconds=3)
    with pytest.raises(NoText, match=r"^silent_film\.mp4: no audio track$"):
        probe(path, max_s=7200)
    with pytest.raises(NoText, match="no audio track"):
        load_audio(path, max_s=7200)


def test_text_file_renamed_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("Quarterly ESG notes\nScope 1: 12 kt\n" * 50)
    with pytest.raises(UnsupportedFile, match=r"^notes\.mp4: not a media file$"):
        probe(path, max_s=7200)


def test_random_bytes_are_not_media(tmp_path):
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(UnsupportedFile, match="not a media file"):
        probe(path, max_s=7200)


@pytest.mark.parametrize(
    "content",
    [
        # HLS playlist pointing at an unroutable address: following it would hang on the network.
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://10.255.255.1/segment0.ts\n#EXT-X-ENDLIST\n",
        # Playlist and concat script pointing at a local file.
        "#EXTM3U\n#EXTINF:11,\nfile:///etc/passwd\n",
        "ffconcat version 1.0\nfile '/etc/passwd'\n",
    ],
)
def test_playlists_posing_as_video_are_refused_without_following_them(tmp_path, content):
    path = tmp_path / "briefing.mp4"
    path.write_text(content)
    start = time.monotonic()
    with pytest.raises(UnsupportedFile, match="not a media file"):
        probe(path, max_s=7200)
    with pytest.raises(UnsupportedFile, match="not a media file"):
        load_audio(path, max_s=7200)
    assert time.monotonic() - start < 5


def test_corrupt_mp4_with_valid_header(tmp_path, jfk_video):
    data = bytearray(jfk_video.read_bytes())
    data[64:] = bytes(len(data) - 64)  # keep the ftyp box, zero everything after it
    path = tmp_path / "zeroed.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedFile, match=r"^zeroed\.mp4: damaged or incomplete media file"):
        probe(path, max_s=7200)


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.01])
def test_truncated_mp4_fails_fast(tmp_path, jfk_video, fraction):
    data = jfk_video.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * fraction)])
    start = time.monotonic()
    with pytest.raises((DamagedFile, UnsupportedFile)):
        load_audio(path, max_s=7200)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("suffix", [".flac", ".mp3", ".webm", ".wav"])
def test_truncated_audio_keeps_what_decodes_and_ends(tmp_path, jfk_audio, suffix):
    source = jfk_audio if suffix == ".flac" else _convert(jfk_audio, tmp_path / f"full{suffix}", *_CODECS[suffix])
    data = source.read_bytes()
    path = tmp_path / f"half{suffix}"
    path.write_bytes(data[: len(data) // 2])
    start = time.monotonic()
    pcm = load_audio(path, max_s=7200)
    assert time.monotonic() - start < 5
    assert 3.0 < len(pcm) / SAMPLE_RATE < 8.0


def test_decoding_stops_at_its_deadline(jfk_audio):
    with pytest.raises(DamagedFile, match="decoding did not finish"):
        load_audio(jfk_audio, max_s=7200, deadline_s=0.0)


def test_missing_file(tmp_path):
    with pytest.raises(UnsupportedFile, match=r"^gone\.mp4: cannot read the file"):
        load_audio(tmp_path / "gone.mp4", max_s=7200)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    with pytest.raises(UnsupportedFile, match=r"^empty\.wav: empty file$"):
        probe(path, max_s=7200)


def test_unsupported_extension(tmp_path, jfk_audio):
    path = tmp_path / "speech.ogg"
    path.write_bytes(jfk_audio.read_bytes())
    with pytest.raises(UnsupportedFile, match=r"unsupported media type '\.ogg'"):
        probe(path, max_s=7200)


def test_content_decides_the_demuxer_not_the_name(tmp_path, jfk_audio):
    path = tmp_path / "actually_flac.mp3"
    path.write_bytes(jfk_audio.read_bytes())
    assert probe(path, max_s=7200).container == "flac"


def test_over_long_media_is_refused(tmp_path):
    path = write_wav(tmp_path / "long.wav", np.zeros(SAMPLE_RATE * 5, dtype=np.float32))
    with pytest.raises(TooLarge, match=r"^long\.wav: 00:05 long; the limit is 00:02 \(ESG_MAX_MEDIA_S\)$"):
        probe(path, max_s=2)
    with pytest.raises(TooLarge, match="ESG_MAX_MEDIA_S"):
        load_audio(path, max_s=2)
    assert probe(path, max_s=7200).duration_s == pytest.approx(5.0)


def test_duration_cap_holds_when_the_header_has_no_duration(tmp_path, jfk_audio):
    # A live-recorded WebM (as browsers produce) declares no duration; decoding must still stop at the cap.
    path = _convert(jfk_audio, tmp_path / "live.webm", "webm", "libopus", options={"live": "1"})
    with pytest.raises(TooLarge):
        probe(path, max_s=5)
    with pytest.raises(TooLarge):
        load_audio(path, max_s=5)


@pytest.mark.parametrize("id3", ["0", "3", "4"])
def test_mp3_with_and_without_id3_tag(tmp_path, jfk_audio, id3):
    path = _convert(jfk_audio, tmp_path / "a.mp3", "mp3", "libmp3lame", options={"id3v2_version": id3})
    assert path.read_bytes().startswith(b"ID3") == (id3 != "0")
    assert sniff_container(path) == "mp3"
    assert len(load_audio(path, max_s=7200)) / SAMPLE_RATE == pytest.approx(11.0, abs=0.2)


_CODECS = {".mp3": ("mp3", "libmp3lame"), ".webm": ("webm", "libopus"), ".wav": ("wav", "pcm_s16le")}


def _convert(src: Path, dst: Path, fmt: str, codec: str, options: dict | None = None) -> Path:
    import av

    rate = 48_000 if codec == "libopus" else 16_000
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt, options=options or {}) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate)
        for frame in inp.decode(audio=0):
            frame.pts = None
            for f in resampler.resample(frame):
                for packet in stream.encode(f):
                    out.mux(packet)
        for f in resampler.resample(None):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return dst
