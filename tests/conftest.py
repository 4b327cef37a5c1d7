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

# Sockets are off for every test (pyproject.toml: --disable-socket --allow-unix-socket), so a test that reaches for the
# network fails at once with pytest_socket.SocketBlockedError instead of hanging. Unix sockets stay on: multiprocessing
# (the forkserver of the PDF parser pool) and asyncio's self-pipe use them. A test that talks to a server on this
# machine (the app in a subprocess, llama_cpp.server, a local HTTP stub) says so with ``@pytest.mark.loopback`` (browser
# tests, which drive Chromium through chromedriver against the app, imply it): it may then connect to these hosts only,
# and connecting anywhere else raises pytest_socket.SocketConnectBlockedError.
LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOOPBACK_MARKERS = ("loopback", "browser")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``loopback`` means ``allow_hosts(LOOPBACK)`` (pytest-socket reads that marker when each test is set up)."""
    for item in items:
        wants = any(item.get_closest_marker(name) for name in LOOPBACK_MARKERS)
        if wants and not item.get_closest_marker("allow_hosts"):
            item.add_marker(pytest.mark.allow_hosts(list(LOOPBACK)))


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
