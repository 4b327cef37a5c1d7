"""Transcript chunking, subtitles and the transcript cache (fast: segments are built here, no model)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rag.chunk import key_line
from rag.errors import ConfigError
from rag.transcript import (
    TranscriptCache,
    chunk_segments,
    join_text,
    to_srt,
    to_vtt,
    transcribe_cached,
)
from rag.types import DocMeta, Segment
from rag.whisper import Transcript

DOC = "ab" * 32
META = DocMeta(company="Acme", year=2024, language="en")


def _talk(n: int, seg_s: float = 6.0, gap_s: float = 0.5, every: int = 2) -> list[Segment]:
    """``n`` segments of ``seg_s`` seconds; every ``every``-th one ends a sentence."""
    out = []
    t = 1.0
    for i in range(n):
        end = "." if (i + 1) % every == 0 else ","
        out.append(Segment(round(t, 2), round(t + seg_s, 2), f"part {i} of the talk{end}"))
        t += seg_s + gap_s
    return out


def _chunks(segments, **kw):
    kw.setdefault("pad_s", 0.0)  # exact segment times, except in the padding tests
    return chunk_segments(segments, file="briefing.mp4", doc_id=DOC, meta=META, **kw)


def test_chunks_are_30_to_60_seconds_and_cover_every_segment_in_order():
    segments = _talk(60)
    chunks = _chunks(segments)
    assert len(chunks) > 5
    for c in chunks[:-1]:
        length = c.source.end_s - c.source.start_s
        assert 30.0 <= length <= 60.0, length
    assert [s.text for s in segments] == [p for c in chunks for p in re.findall(r"part \d+ of the talk[.,]", c.text)]
    assert chunks[0].source.start_s == segments[0].start_s
    assert chunks[-1].source.end_s == segments[-1].end_s


def test_chunks_end_at_sentence_ends():
    chunks = _chunks(_talk(60, every=3))
    assert all(c.text.endswith(".") for c in chunks)


def test_chunk_fields():
    chunk = _chunks(_talk(12))[0]
    assert chunk.doc_id == DOC
    assert chunk.meta == META
    assert chunk.heading == ""
    assert chunk.source.file == "briefing.mp4"
    assert chunk.source.is_media and chunk.source.page is None
    assert chunk.source.label().startswith("briefing.mp4 ▶ 00:01–")
    assert chunk.key.startswith("Acme 2024 | part 0 of the talk")
    assert re.fullmatch(r"[0-9a-f]{16}", chunk.id)


def test_ids_are_stable_and_depend_on_doc_start_and_text():
    segments = _talk(30)
    first = [c.id for c in _chunks(segments)]
    assert first == [c.id for c in _chunks(segments)]
    assert len(set(first)) == len(first)
    other_doc = chunk_segments(segments, file="briefing.mp4", doc_id="cd" * 32, meta=META)
    assert not set(first) & {c.id for c in other_doc}
    shifted = [Segment(s.start_s + 1, s.end_s + 1, s.text) for s in segments]
    assert not set(first) & {c.id for c in _chunks(shifted)}


def test_without_sentence_ends_a_passage_still_stops_at_max():
    segments = [Segment(i * 5.0, i * 5.0 + 5.0, f"word{i}") for i in range(40)]
    chunks = _chunks(segments)
    assert all(c.source.end_s - c.source.start_s <= 60.0 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == [f"word{i}" for i in range(40)]


def test_long_run_on_passage_is_cut_at_its_last_sentence_end():
    # A sentence ends at 20 s (too short to close a passage), then no sentence ends until past 60 s.
    segments = [Segment(0, 10, "one,"), Segment(10, 20, "two."), Segment(20, 40, "three,"), Segment(40, 55, "four,")]
    segments += [Segment(55, 70, "five."), Segment(70, 75, "six.")]
    chunks = _chunks(segments)
    assert chunks[0].text == "one, two."
    assert chunks[1].text.startswith("three, four, five.")


def test_short_tail_joins_the_previous_passage():
    segments = _talk(11, seg_s=6.0, every=1)  # sentences end everywhere: passages close after 5 segments
    chunks = _chunks(segments)
    assert len(chunks) == 2  # the 11th segment (6 s) joined the second passage instead of standing alone
    assert chunks[-1].source.start_s == segments[5].start_s
    assert chunks[-1].source.end_s == segments[-1].end_s


def test_ranges_are_padded_into_silence_but_not_into_neighbouring_speech():
    segments = [
        Segment(0.2, 20, "One."),
        Segment(20, 35, "Two."),
        Segment(35.3, 50, "Three."),
        Segment(50, 66, "Four."),
    ]
    chunks = _chunks(segments, pad_s=0.5, duration_s=66.2)
    assert [(c.source.start_s, c.source.end_s) for c in chunks] == [(0.0, 35.3), (35.0, 66.2)]
    # Without a known duration the last range ends pad_s after the speech.
    assert _chunks(segments, pad_s=0.5)[-1].source.end_s == 66.5


def test_short_transcript_is_one_chunk():
    segment = Segment(0.4, 10.6, "And so my fellow Americans, ask not what your country can do for you.")
    chunks = chunk_segments([segment], file="jfk.flac", doc_id=DOC, meta=META, duration_s=11.0)
    assert len(chunks) == 1
    assert (chunks[0].source.start_s, chunks[0].source.end_s) == (0.0, 11.0)


def test_blank_segments_are_skipped_and_no_segments_give_no_chunks():
    assert _chunks([]) == []
    assert _chunks([Segment(0, 1, "  ")]) == []
    chunks = _chunks([Segment(0, 1, " "), Segment(1, 3, "Hello there.")])
    assert chunks[0].text == "Hello there." and chunks[0].source.start_s == 1


def test_chinese_text_joins_without_spaces():
    assert (
        join_text(["我们承诺", "到2030年实现碳中和。", "Scope 3", "排放"])
        == "我们承诺到2030年实现碳中和。 Scope 3 排放"
    )
    chunks = chunk_segments(
        [Segment(0, 20, "我们承诺"), Segment(20, 35, "到2030年实现碳中和。")],
        file="简报.mp4",
        doc_id=DOC,
        meta=DocMeta(language="zh"),
    )
    assert chunks[0].text == "我们承诺到2030年实现碳中和。"


def test_key_line_is_the_pdf_key_line():
    """A video passage gets the key line a PDF passage gets (rag.chunk.key_line): company and year, the first
    sentence, figures stated later."""
    text = (
        "Our emissions fell by 42% since 2019. Scope 3 dropped to 1.2 million tonnes, "
        "and we invested $4.5 billion. Nothing else here."
    )
    key = chunk_segments([Segment(0, 10, text)], file="briefing.mp4", doc_id=DOC, meta=META)[0].key
    assert key == key_line(text, "", META)
    assert key.startswith("Acme 2024 | Our emissions fell by 42% since 2019. | ")
    assert "$4.5 billion" in key and "1.2 million" in key
    assert "Nothing else" not in key


def test_key_line_chinese():
    meta = DocMeta(language="zh")
    text = "我们在2030年前实现碳中和。排放减少了30%，投资5亿元。"
    key = chunk_segments([Segment(0, 10, text)], file="简报.mp4", doc_id=DOC, meta=meta)[0].key
    assert key == "我们在2030年前实现碳中和。 | 30%, 5亿元, 2030"


# --- subtitles

SUBS = [Segment(0.0, 2.5, "Hello, world."), Segment(61.25, 3725.0049, "Second <b> & line\nwrapped")]


def test_srt_format():
    assert to_srt(SUBS) == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello, world.\n\n"
        "2\n00:01:01,250 --> 01:02:05,005\nSecond <b> & line wrapped\n"
    )


def test_vtt_format():
    assert to_vtt(SUBS) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:02.500\nHello, world.\n\n"
        "00:01:01.250 --> 01:02:05.005\nSecond &lt;b&gt; &amp; line wrapped\n"
    )


def test_subtitle_rounding_carries_into_the_next_unit():
    srt = to_srt([Segment(59.9996, 3599.9999, "x")])
    assert "00:01:00,000 --> 01:00:00,000" in srt


def test_subtitles_skip_blank_segments_and_number_consecutively():
    srt = to_srt([Segment(0, 1, "a"), Segment(1, 2, " "), Segment(2, 3, "b")])
    assert re.findall(r"^(\d+)$", srt, flags=re.M) == ["1", "2"]
    assert to_vtt([]) == "WEBVTT\n"


# --- cache

TRANSCRIPT = Transcript(
    language="en",
    language_probability=0.93,
    duration_s=11.0,
    segments=(Segment(0.0, 7.6, "And so my fellow Americans,"), Segment(7.6, 10.6, "我们 ask what.")),
    model="fake-asr",
)
SHA = "0123456789abcdef" * 4


def test_cache_round_trip(tmp_path):
    cache = TranscriptCache(tmp_path / "transcripts")
    assert cache.get(SHA) is None
    path = cache.put(SHA, TRANSCRIPT)
    assert path == tmp_path / "transcripts" / f"{SHA}.json"
    assert cache.get(SHA) == TRANSCRIPT
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left behind
    assert "我们" in path.read_text(encoding="utf-8")


def test_cache_ignores_damaged_entries(tmp_path):
    cache = TranscriptCache(tmp_path)
    (tmp_path / f"{SHA}.json").write_text('{"format": 1, "segm')
    assert cache.get(SHA) is None
    (tmp_path / f"{SHA}.json").write_text(json.dumps({"format": 99}))
    assert cache.get(SHA) is None
    cache.put(SHA, TRANSCRIPT)
    assert cache.get(SHA) == TRANSCRIPT


def test_cache_rejects_keys_that_are_not_sha256(tmp_path):
    cache = TranscriptCache(tmp_path)
    for bad in ("../../etc/passwd", "ABC", SHA.upper(), SHA + "0"):
        with pytest.raises(ConfigError, match="sha256"):
            cache.get(bad)


class CountingTranscriber:
    """Wraps a transcriber and counts calls (here wrapping a canned result; the slow test wraps real Whisper)."""

    def __init__(self, inner=None, result: Transcript = TRANSCRIPT) -> None:
        self.inner = inner
        self.result = result
        self.name = inner.name if inner is not None else result.model
        self.calls: list[tuple[Path, str | None]] = []

    def transcribe(self, path, language=None, progress=None):
        self.calls.append((Path(path), language))
        if self.inner is not None:
            return self.inner.transcribe(path, language=language, progress=progress)
        if progress:
            progress(self.result.duration_s, self.result.duration_s)
        return self.result


def test_transcribe_cached_hits_on_second_call(tmp_path):
    counter = CountingTranscriber()
    cache = TranscriptCache(tmp_path)
    first, hit1 = transcribe_cached(counter, tmp_path / "a.mp4", SHA, cache)
    seen = []
    second, hit2 = transcribe_cached(counter, tmp_path / "a.mp4", SHA, cache, progress=lambda d, t: seen.append((d, t)))
    assert (hit1, hit2) == (False, True)
    assert first == second == TRANSCRIPT
    assert len(counter.calls) == 1
    assert seen == [(11.0, 11.0)]  # the progress bar still completes


def test_transcribe_cached_redoes_other_language_or_model(tmp_path):
    cache = TranscriptCache(tmp_path)
    counter = CountingTranscriber()
    transcribe_cached(counter, tmp_path / "a.mp4", SHA, cache)
    transcribe_cached(counter, tmp_path / "a.mp4", SHA, cache, language="EN")  # same language: hit
    assert len(counter.calls) == 1
    transcribe_cached(counter, tmp_path / "a.mp4", SHA, cache, language="zh-CN")
    assert counter.calls[-1][1] == "zh" and len(counter.calls) == 2
    other = CountingTranscriber(result=Transcript("en", 0.9, 11.0, TRANSCRIPT.segments, model="other-asr"))
    transcribe_cached(other, tmp_path / "a.mp4", SHA, cache)
    assert len(other.calls) == 1


def test_transcript_language_notice():
    assert TRANSCRIPT.notice is None and not TRANSCRIPT.language_uncertain
    doubtful = Transcript("cy", 0.31, 5.0, (Segment(0, 1, "x"),))
    assert doubtful.language_uncertain
    assert doubtful.notice is not None and "'cy'" in doubtful.notice and "31%" in doubtful.notice
    assert Transcript("zh", 0.9, 1.0, ()).doc_language == "zh"
    assert Transcript("ja", 0.9, 1.0, ()).doc_language == "en"
