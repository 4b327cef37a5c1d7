"""Session fixtures for the knowledge base: real PDFs ingested once with the real embedder; the app built over one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PDFS = (  # the app's two sample PDFs (fictional reports, English and Chinese)
    ROOT / "assets" / "northwind_metals_sustainability_report_2023.pdf",
    ROOT / "assets" / "qinghe_energy_esg_report_2023_zh.pdf",
)
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


@pytest.fixture(scope="session")
def sample_kb(tmp_path_factory, embedder) -> Path:
    """The folder of a knowledge base holding the two sample PDFs (ingested once per session). Shared: tests copy it
    before using it (``make_app(samples=True)`` does)."""
    from rag.assistant import Assistant

    kb = tmp_path_factory.mktemp("sample_kb") / "kb"
    settings = Settings.from_env(environ={}, kb_dir=kb, model_cache=Settings().model_cache)
    results = list(Assistant(settings, embedder=embedder).ingest(list(SAMPLE_PDFS)))
    assert all(r.ok for r in results), [r.message for r in results]
    return kb


@pytest.fixture()
def make_app(tmp_path, embedder, request):
    """Build (assistant, demo, controller) over ``tmp_path / "kb"``: empty, or with ``samples=True`` a copy of
    ``sample_kb`` (ingested only when a test asks for it); ``llm`` and settings overridable."""
    from rag.assistant import Assistant
    from ui.layout import build_ui

    def build(llm=None, samples: bool = False, **overrides):
        kb = tmp_path / "kb"
        if samples:
            shutil.copytree(request.getfixturevalue("sample_kb"), kb)
        settings = Settings.from_env(environ={}, kb_dir=kb, model_cache=Settings().model_cache).replace(**overrides)
        assistant = Assistant(settings, embedder=embedder, llm=llm)
        demo = build_ui(assistant, media_dir=tmp_path / "media")
        return assistant, demo, demo.controller

    return build
