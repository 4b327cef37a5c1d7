"""Session fixtures for the LLM area (registered in conftest.py): the real bundled ``small`` model, loaded once."""

from __future__ import annotations

import pytest

from rag.settings import Settings


@pytest.fixture(scope="session")
def llm_settings() -> Settings:
    """Default settings with the bundled ``small`` model (assembled once into the shared model cache)."""
    return Settings.from_env(environ={}, llm="small", model_cache=Settings().model_cache)


@pytest.fixture(scope="session")
def llm_small(llm_settings):
    """The real Qwen2.5-Coder-0.5B (llama.cpp), loaded once per session."""
    from rag.llm import make_llm

    llm = make_llm(llm_settings)
    llm.load()
    return llm
