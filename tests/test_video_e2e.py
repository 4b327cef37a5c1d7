"""A video end to end: ingested through the real pipeline (PyAV, Whisper, e5, faiss), then a question answered by
the real LLM with a citation whose time range covers the spoken words."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rag.assistant import Assistant
from rag.cli import answer_json
from rag.settings import Settings
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def video_assistant(tmp_path_factory, jfk_video, embedder, llm_small, whisper):
    settings = Settings.from_env(environ={}, kb_dir=tmp_path_factory.mktemp("vkb"), llm="small")
    a = Assistant(settings, embedder=embedder, llm=llm_small, transcriber=whisper)
    [result] = list(a.ingest([jfk_video]))
    assert result.ok, result.message
    assert result.document.kind == "media" and 13 < result.document.duration_s < 15
    return a


@pytest.mark.slow
def test_question_about_a_video_cites_the_moment(video_assistant):
    answer = video_assistant.answer("In the video, what does the speaker ask Americans to do for their country?")
    assert answer.route == "rag" and not answer.refused, answer.text
    assert answer.citations, answer.text
    source = answer.citations[0].source
    assert source.file == "jfk_speech.mp4"
    # Speech starts after the 3 s lead-in; "ask not what your country can do for you" is spoken around 9-11 s.
    assert source.start_s is not None and source.start_s <= 9.5 and source.end_s >= 10.5
    assert "ask not what your country" in answer.citations[0].hit.chunk.text.lower()
    assert "jfk_speech.mp4 ▶ 00:" in source.label()
    data = answer_json(answer)
    assert data["citations"][0]["start_s"] == source.start_s and data["citations"][0]["page"] is None


@pytest.mark.slow
def test_video_search_json_has_times_and_reupload_is_a_noop(video_assistant, jfk_video):
    kb_dir = video_assistant.settings.kb_dir
    proc = subprocess.run(
        [sys.executable, "-m", "rag", "search", "ask not what your country can do", "--json", "--kb", str(kb_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)
    assert hits[0]["file"] == "jfk_speech.mp4" and hits[0]["start_s"] is not None and hits[0]["page"] is None
    [again] = list(video_assistant.ingest([jfk_video]))
    assert again.skipped
