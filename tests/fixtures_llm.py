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


@pytest.fixture(scope="session")
def llm_default(request):
    """The real bundled model the app uses by default (``Settings.llm``), loaded once per session: end-to-end tests
    of answer quality run on what users get."""
    from rag.llm import make_llm

    settings = Settings.from_env(environ={}, model_cache=Settings().model_cache)
    if settings.llm == "small":
        return request.getfixturevalue("llm_small")  # one copy of the model per session
    llm = make_llm(settings)
    llm.load()
    return llm
