"""Ingestion end to end on real PDFs: CLI, re-ingest no-op, bad files in a batch, restart, search by page."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from rag.assistant import Assistant
from rag.errors import UnsupportedFile
from rag.ingest import check_file, safe_name
from rag.settings import Settings
from tests.conftest import ROOT


def _run_cli(*args: str, env_kb) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rag", *args, "--kb", str(env_kb)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )


def test_check_file_refuses_clearly(tmp_path):
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    with pytest.raises(UnsupportedFile, match="empty file"):
        check_file(empty, empty.name, 10)
    fake = tmp_path / "notes.pdf"
    fake.write_text("just text")
    with pytest.raises(UnsupportedFile, match="not a PDF"):
        check_file(fake, fake.name, 10)
    with pytest.raises(UnsupportedFile, match=r"unsupported file type: '\.docx'"):
        check_file(fake, "report.docx", 10)
    big = tmp_path / "big.pdf"
    big.write_bytes(b"%PDF-1.4\n" + b"0" * 2_000_000)
    with pytest.raises(Exception, match="limit is 1 MB"):
        check_file(big, big.name, 1)
    assert safe_name("../../etc/passwd") == "passwd" and safe_name("C:\\x\\r.pdf") == "r.pdf"


def test_assistant_ingest_search_restart_and_noop(assistant, kb_settings, embedder, kb_pdf_names):
    names = [d.name for d in assistant.documents()]
    assert sorted(names) == sorted(kb_pdf_names)
    costco = assistant.kb.document("climretrieve_costco_climate_action_plan.pdf")
    assert costco.pages == 15 and costco.meta.company and "costco" in costco.meta.company.lower()
    # A fresh Assistant on the same folder (a restart) sees the same documents and finds passages by page.
    again = Assistant(kb_settings, embedder=embedder)
    assert sorted(d.name for d in again.documents()) == sorted(names)
    hits = again.search("Sponsorship of industry events", k=5).hits
    assert any(h.chunk.source.file.startswith("climretrieve_ct_reit") and h.chunk.source.page == 26 for h in hits)
    # Re-ingesting an unchanged file is a no-op.
    src = again.source_path("climretrieve_costco_climate_action_plan.pdf")
    assert src is not None
    [result] = list(again.ingest([src]))
    assert result.ok and result.skipped and "unchanged" in result.message


def test_chinese_query_finds_chinese_page(assistant):
    hits = assistant.search("关键ESG指标建议").hits
    assert hits and hits[0].chunk.source.file == "ESGDisclosure-in-China.pdf"
    bm25 = assistant.search("温室气体排放", mode="bm25").hits
    assert bm25 and bm25[0].bm25 > 0 and bm25[0].chunk.source.file == "ESGDisclosure-in-China.pdf"


def test_cli_ingest_batch_with_bad_file_search_delete(tmp_path, testdata):
    kb = tmp_path / "kb"
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.7\nthis is not really a pdf\n%%EOF")
    good = testdata / "esg_pdfs" / "climretrieve_costco_climate_action_plan.pdf"
    enc = testdata / "finance_pdfs" / "financebench_AMCOR_2022_8K_dated-2022-07-01.pdf"
    proc = _run_cli("ingest", str(bad), str(good), str(enc), env_kb=kb)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("FAIL broken.pdf:") and len(lines) == 3
    assert lines[1].startswith("ok   climretrieve_costco_climate_action_plan.pdf: ingested: 15 pages")
    assert lines[2].startswith("ok   financebench_AMCOR"), lines[2]
    proc = _run_cli("search", "renewable electricity target", "--doc", good.name, "--k", "3", "--json", env_kb=kb)
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)
    assert len(hits) == 3 and {"file", "page", "score", "text"} <= set(hits[0])
    assert all(h["file"] == good.name for h in hits)
    proc = _run_cli("delete", good.name, env_kb=kb)
    assert proc.returncode == 0, proc.stderr
    proc = _run_cli("search", "renewable electricity target", "--json", env_kb=kb)
    remaining = json.loads(proc.stdout)
    assert remaining and all(h["file"] != good.name for h in remaining)  # the other document still answers


def test_search_on_missing_kb_is_empty_not_a_crash(tmp_path):
    proc = _run_cli("search", "anything", "--json", env_kb=tmp_path / "nothing-here")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_rebuild_from_stored_sources(tmp_path, testdata, embedder):
    settings = Settings.from_env(environ={}, kb_dir=tmp_path / "kb")
    a = Assistant(settings, embedder=embedder)
    pdf = tmp_path / "report.pdf"
    shutil.copy(testdata / "esg_pdfs" / "climretrieve_costco_climate_action_plan.pdf", pdf)
    assert all(r.ok for r in a.ingest([pdf]))
    manifest = settings.kb_dir / "manifest.json"
    data = json.loads(manifest.read_text())
    data["format_version"] = 0
    manifest.write_text(json.dumps(data))
    b = Assistant(settings, embedder=embedder)
    assert "format version" in (b.kb_status() or "")
    results = b.rebuild()
    assert [r.file for r in results] == ["report.pdf"] and results[0].ok
    assert b.kb_status() is None and [d.name for d in b.documents()] == ["report.pdf"]


def test_folder_ingest_with_parallel_parsers_keeps_input_order(tmp_path, testdata, embedder):
    from rag.ingest import expand_paths

    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(testdata / "zh_pdfs" / "SZSE-listed-company-reporting-regulation-2020-09-04.pdf", folder / "a.pdf")
    (folder / "b.pdf").write_bytes(b"%PDF-1.4 broken")
    shutil.copy(testdata / "zh_pdfs" / "Climate-Transition-Finance-Handbook-2020-Chinese.pdf", folder / "sub" / "c.pdf")
    (folder / "notes.txt").write_text("ignored")
    files = expand_paths([folder])
    assert [p.name for p in files] == ["a.pdf", "b.pdf", "c.pdf"]
    settings = Settings.from_env(environ={}, kb_dir=tmp_path / "kb", ingest_workers=2)
    a = Assistant(settings, embedder=embedder)
    results = list(a.ingest(files, save_every_s=3600))
    assert [r.file for r in results] == ["a.pdf", "b.pdf", "c.pdf"]
    assert [r.ok for r in results] == [True, False, True]
    # Saved once at the end: a restart sees both good documents.
    assert sorted(d.name for d in Assistant(settings, embedder=embedder).documents()) == ["a.pdf", "c.pdf"]
