"""Session fixtures for the knowledge base: real PDFs ingested once with the real embedder."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.settings import Settings

KB_PDFS = (
    "esg_pdfs/climretrieve_costco_climate_action_plan.pdf",
    "esg_pdfs/climretrieve_ct_reit_2022_esg_report.pdf",
    "zh_pdfs/ESGDisclosure-in-China.pdf",
)


@pytest.fixture(scope="session")
def kb_settings(tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("kb")
    # Two parser workers, so the session knowledge base also exercises parallel parsing. The small model keeps the
    # many tests that ask through this knowledge base quick; answer quality with the default model is tested end to
    # end by the tests that take the ``llm_default`` fixture.
    return Settings.from_env(
        environ={}, kb_dir=root / "knowledge_base", model_cache=Settings().model_cache, ingest_workers=2, llm="small"
    )


@pytest.fixture(scope="session")
def assistant(kb_settings, embedder, testdata):
    """An Assistant over a knowledge base of two English reports and one Chinese document (ingested once)."""
    from rag.assistant import Assistant

    a = Assistant(kb_settings, embedder=embedder)
    results = list(a.ingest([testdata / p for p in KB_PDFS]))
    assert all(r.ok for r in results), [r.message for r in results]
    return a


@pytest.fixture(scope="session")
def kb_pdf_names() -> list[str]:
    return [Path(p).name for p in KB_PDFS]
