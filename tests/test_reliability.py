"""Faults and concurrency: SIGKILL mid-ingest and mid-save, a failing disk, and simultaneous uploads."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from rag.assistant import Assistant
from rag.errors import RagError
from rag.index import KnowledgeBase
from rag.settings import Settings
from rag.types import Scope
from tests.conftest import ROOT

COSTCO = "esg_pdfs/climretrieve_costco_climate_action_plan.pdf"
CTREIT = "esg_pdfs/climretrieve_ct_reit_2022_esg_report.pdf"
ORANGE = "esg_pdfs/cfb_orange_2023_integrated_annual_report.pdf"

# Ingests one file in a child process; with PAUSE_AT set, announces the moment and sleeps there so the test can
# SIGKILL it exactly mid-embedding ("embed") or between writing the new generation and swapping the manifest ("save").
DRIVER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import rag.index, rag.ingest
    from rag.assistant import Assistant
    from rag.settings import Settings

    marker, pause_at, kb_dir, pdf = sys.argv[1:5]

    def pause():
        Path(marker).write_text("here")
        time.sleep(600)

    if pause_at == "save":
        real = rag.index.atomic_write
        def slow_write(path, data):
            if path.name == "manifest.json":
                pause()
            real(path, data)
        rag.index.atomic_write = slow_write
    elif pause_at == "embed":
        real_embed = rag.ingest.Ingestor._embed
        def slow_embed(self, chunks, step):
            vectors = real_embed(self, chunks, step)
            pause()
            return vectors
        rag.ingest.Ingestor._embed = slow_embed
    a = Assistant(Settings.from_env(kb_dir=Path(kb_dir)))
    for r in a.ingest([Path(pdf)]):
        print(r.ok, r.message)
    """
)


@pytest.fixture
def base_kb(tmp_path, testdata, embedder):
    """A knowledge base with one committed document."""
    settings = Settings.from_env(environ={}, kb_dir=tmp_path / "kb")
    a = Assistant(settings, embedder=embedder)
    assert all(r.ok for r in a.ingest([testdata / COSTCO]))
    return settings


@pytest.mark.parametrize("pause_at", ["embed", "save"])
def test_sigkill_mid_ingest_or_save_keeps_previous_knowledge_base(pause_at, base_kb, testdata, embedder, tmp_path):
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(marker), pause_at, str(base_kb.kb_dir), str(testdata / CTREIT)],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 600
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "driver never reached the pause point"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # On restart the previous consistent knowledge base loads; the interrupted document is simply absent.
    a = Assistant(base_kb, embedder=embedder)
    assert [d.name for d in a.documents()] == ["climretrieve_costco_climate_action_plan.pdf"]
    assert a.search("Scope 3 reduction target", k=3).hits
    # ... and it can be ingested again.
    [result] = list(a.ingest([testdata / CTREIT]))
    assert result.ok and not result.skipped, result.message
    assert len(Assistant(base_kb, embedder=embedder).documents()) == 2


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS])
def test_failing_disk_during_save_gives_clear_error_and_keeps_old_index(err, base_kb, testdata, embedder, monkeypatch):
    a = Assistant(base_kb, embedder=embedder)
    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    [result] = list(a.ingest([testdata / CTREIT]))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert not result.ok and "could not save the knowledge base" in result.message
    assert os.strerror(err) in result.message
    reopened = KnowledgeBase.open(base_kb.kb_dir, embedder)
    assert [d.name for d in reopened.documents()] == ["climretrieve_costco_climate_action_plan.pdf"]
    assert not list(base_kb.kb_dir.glob(".*.tmp")), "temporary files left behind"
    # The running app agrees with the disk: the failed document is not half-there in memory.
    assert [d.name for d in a.documents()] == ["climretrieve_costco_climate_action_plan.pdf"]


def test_save_error_is_a_rag_error(tmp_path, embedder, monkeypatch):
    kb = KnowledgeBase.open(tmp_path, embedder)
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    with pytest.raises(RagError, match="No space left"):
        kb.save()


def test_two_uploads_at_once_and_queries_during_saves(base_kb, testdata, embedder, tmp_path):
    a = Assistant(base_kb, embedder=embedder)
    results, errors = [], []
    stop = threading.Event()

    def upload(rel: str) -> None:
        copy = tmp_path / os.path.basename(rel)
        shutil.copy(testdata / rel, copy)
        results.extend(a.ingest([copy]))

    def query() -> None:
        n = 0
        while not stop.is_set():
            try:
                a.search("emissions reduction target", k=5)
                n += 1
            except Exception as exc:
                errors.append(exc)
        assert n > 0

    reader = threading.Thread(target=query)
    reader.start()
    uploads = [threading.Thread(target=upload, args=(rel,)) for rel in (CTREIT, ORANGE)]
    for t in uploads:
        t.start()
    for t in uploads:
        t.join()
    stop.set()
    reader.join()
    assert not errors, errors
    assert all(r.ok for r in results), [r.message for r in results]
    for name in ("climretrieve_ct_reit_2022_esg_report.pdf", "cfb_orange_2023_integrated_annual_report.pdf"):
        assert a.search("climate", k=3, scope=Scope(docs=(name,))).hits
    reopened = Assistant(base_kb, embedder=embedder)
    assert len(reopened.documents()) == 3
