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


# Known regression (issue 3, open): since the prompt gained a worked example, the bundled 0.5B model often copies the
# example's refusal instead of answering, so these answer-quality checks with the real model fail. They stay in the
# suite (and report XPASS once the prompt is fixed); remove this list with the fix.
KNOWN_ANSWER_REGRESSION = {
    "tests/test_answer.py::test_real_answer_cites_the_page_that_holds_it",
    "tests/test_answer.py::test_real_chinese_question_is_answered_in_chinese_with_a_citation",
    "tests/test_answer.py::test_real_follow_up_is_rewritten_and_answered",
    "tests/test_app.py::test_one_chat_turn_end_to_end_with_the_real_small_llm",
    "tests/test_openai_server.py::test_streamed_cited_answer_through_the_assistant",
    "tests/test_browser.py::test_drop_a_pdf_ask_and_see_the_cited_page",
}


def pytest_collection_modifyitems(config, items):
    mark = pytest.mark.xfail(reason="issue 3: small model copies the prompt's worked example", strict=False)
    for item in items:
        if item.nodeid in KNOWN_ANSWER_REGRESSION:
            item.add_marker(mark)
