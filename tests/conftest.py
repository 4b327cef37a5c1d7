"""Shared test fixtures. Real models load once per session; areas keep their fixtures in tests/fixtures_*.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No model hub, ever: libraries that would try one fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = [
    "tests.fixtures_kb",
    "tests.fixtures_llm",
    "tests.fixtures_media",
]


@pytest.fixture(scope="session")
def testdata() -> Path:
    """The shared, read-only test material (``ESG_TESTDATA`` overrides ``../shared/testdata``)."""
    path = Path(os.environ.get("ESG_TESTDATA", ROOT.parent / "shared" / "testdata")).resolve()
    if not path.is_dir():
        pytest.fail(f"shared test data not found at {path} (set ESG_TESTDATA)")
    return path


@pytest.fixture(scope="session")
def embedder():
    """The real bundled embedder, loaded once per session."""
    from rag.embed import E5Embedder

    return E5Embedder(threads=os.cpu_count() or 2)
