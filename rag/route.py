"""Intent routing: every message goes to ``faq``, ``chitchat``, ``rag`` or ``out_of_scope`` before any LLM runs.

How a message is classified (no LLM; one query embedding at most):

1. Rules for the obvious cases (``rag.intent_rules``): a bare greeting / thanks / goodbye / "ok" is chit-chat
   without embedding anything; a leading greeting before a real question ("hi, what were Costco's emissions?") is
   stripped and the rest is classified; a request to write code is out of scope.
2. The message is embedded once (the vector travels on the ``Query`` to retrieval) and compared with every FAQ
   question variant. A close match (cosine ≥ ``faq_min`` and ahead of the nearest example of any other label by
   ``faq_margin``) returns the stored answer —
   unless the message is a follow-up ("and what about scope 3?") or names a company, year or quantity the entry
   doesn't mention, which only the documents can answer. Other tasks (translate, book, play, arithmetic) are out
   of scope.
3. Otherwise nearest neighbours over labelled examples (``assets/intents.jsonl`` plus the FAQ variants) decide
   between ``rag``, ``chitchat`` and ``out_of_scope``. Leaving RAG needs a margin, and a message with ESG / finance
   vocabulary in question form never leaves it: a knowledge question sent to chit-chat is the costly mistake.
4. The knowledge bases the question will be asked of (``kbs``: the shared one plus the session's uploads) decide the
   rest (``rag.kb_evidence``): rare words shared with a passage, or a best cosine far above what unrelated messages
   reach on that knowledge base, send a chit-chat or out-of-scope verdict to ``rag`` (``kb:lexical``, ``kb:dense``);
   a message the neighbours put in ``rag`` only weakly, with no ESG vocabulary and no sign of the knowledge base at
   all (or an empty one), is world knowledge and goes to its nearest other label (``kb:none``).

Every Route carries ``reason`` (which step decided) and ``detail`` (the evidence, one line for logs and
``route_reason``).

Thresholds were calibrated on ``tests/data/routing.jsonl`` by ``benchmarks/routing.py`` (see docs/bench/routing.md).
The FAQ file is re-read when it changes on disk; only question variants not seen before are embedded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.embed import Embedder
from rag.errors import ConfigError
from rag.faq import DEFAULT_FAQ_PATH, FaqEntry, FaqError, load_faq, user_faq_path, validate_faq
from rag.fsio import atomic_file
from rag.intent_rules import clean_message, detect_lang, text_signals
from rag.kb_evidence import Background, EvidenceScorer, KbEvidence, SearchableKb
from rag.settings import Settings
from rag.types import Query

log = logging.getLogger(__name__)

LABELS = ("chitchat", "faq", "rag", "out_of_scope")
DEFAULT_INTENTS_PATH = Path(__file__).resolve().parent.parent / "assets" / "intents.jsonl"
_KNN_LABELS = ("rag", "chitchat", "out_of_scope")

# Replies used when the FAQ file lacks the entry a rule points at (the user may have deleted it).
_FALLBACK = {
    "greeting": (
        "Hello! Ask me anything about the reports in your knowledge base.",
        "你好！请问关于知识库中报告的任何问题。",
    ),
    "thanks": ("You're welcome!", "不客气！"),
    "goodbye": ("Goodbye!", "再见！"),
    "smalltalk": (
        "I'm here to help with questions about the documents in your knowledge base.",
        "我可以回答关于知识库中文档的问题。",
    ),
    "out_of_scope": (
        "Sorry, that's outside what I can help with: I answer questions about the ESG documents in the knowledge base.",
        "抱歉，这超出了我的服务范围：我只回答关于本知识库中ESG文档的问题。",
    ),
    "empty": ("Please type a question about your documents.", "请输入关于文档的问题。"),
}


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds on the e5 cosine scale (calibrated by ``benchmarks/routing.py``)."""

    faq_min: float = 0.88  # cosine to the nearest FAQ variant needed to answer from the FAQ
    faq_exact: float = 0.985  # near-verbatim FAQ match: answer even if the message names a company or year
    faq_margin: float = 0.02  # FAQ variant must beat the nearest knowledge-question example by this much
    away_margin: float = 0.015  # chit-chat / out-of-scope neighbours must beat knowledge neighbours by this much
    k: int = 3  # neighbours averaged per label
    # Knowledge-base evidence (rag.kb_evidence), relative to what unrelated messages score on the same base.
    kb_lexical: float = 0.9  # rarity weight of the message's words in one passage (1.0 = one unseen word) ...
    kb_lexical_margin: float = 0.3  # ... beating unrelated messages' 95th percentile by this ...
    kb_coverage: float = 0.25  # ... and holding this share of the message's weight: "about the documents"
    kb_dense_z: float = 3.0  # best cosine this many standard deviations above unrelated messages: about them
    kb_none_z: float = 1.0  # below this, with no lexical evidence: nothing in the knowledge base is near
    kb_none_lead: float = 0.03  # "no evidence" overrules a rag verdict by neighbours only when rag leads by less


@dataclass(frozen=True)
class Route:
    """Where a message goes. ``reply`` is set for ``faq``, ``chitchat`` and ``out_of_scope`` (no LLM needed).

    ``score`` is the evidence behind the decision (a cosine, or 1.0 for a rule); ``reason`` says which step decided
    (``rule:greeting``, ``faq``, ``knn``, ``vocabulary``, ``kb:lexical``, ``kb:dense``, ``kb:none``...) and
    ``detail`` the evidence in words; ``lang`` is the reply language. ``query`` is the message as retrieval should
    see it (greeting removed, language, and the query embedding when one was computed).
    """

    label: str
    score: float
    reply: str | None = None
    entry_id: str | None = None
    lang: str = "en"
    reason: str = ""
    detail: str = ""
    query: Query | None = None

    @property
    def explanation(self) -> str:
        """``reason: detail`` (``route_reason`` in answers and ``ask --json``)."""
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass(frozen=True)
class Example:
    """A labelled example message for the nearest-neighbour classifier."""

    text: str
    label: str
    lang: str = "en"


@dataclass(frozen=True)
class Features:
    """Everything the decision looks at for one message (kept separate so the benchmark can calibrate thresholds)."""

    text: str  # the message after stripping a leading greeting or thanks
    lang: str
    rule: str | None = None  # a bare chit-chat rule that fired: greeting, thanks, goodbye, smalltalk, empty
    code: bool = False  # asks to write or fix code
    task: bool = False  # another task outside the app: translate, book, play, draw, arithmetic
    followup: bool = False  # depends on the conversation ("and what about ...", "那……呢")
    specific: bool = False  # names a year, period, quantity, or a company the matched FAQ entry doesn't mention
    knowledge: bool = False  # ESG / finance vocabulary in question or instruction form
    entry_sim: float = 0.0  # cosine to the closest FAQ question variant
    entry_id: str | None = None
    entry_kind: str | None = None
    chat_entry_id: str | None = None  # closest chit-chat FAQ entry, for replies to chit-chat found by neighbours
    class_sims: dict[str, float] = field(default_factory=dict)  # mean of the top-k cosines per label
    class_max: dict[str, float] = field(default_factory=dict)  # the single closest example per label
    kb: KbEvidence | None = None  # evidence from the knowledge bases in view (None: none were given)
    kb_beyond_faq: bool = False  # the words matched in the knowledge base include some the matched FAQ entry lacks


# --------------------------------------------------------------------------- decision


def kb_strong(e: KbEvidence | None, t: Thresholds) -> str | None:
    """``lexical`` or ``dense`` when the knowledge base alone shows the message is about the documents, else None."""
    if e is None or not e.chunks:
        return None
    if (
        e.lexical >= t.kb_lexical
        and e.lexical - e.lexical_typical >= t.kb_lexical_margin
        and e.coverage >= t.kb_coverage
    ):
        return "lexical"
    if e.dense_z is not None and e.dense_z >= t.kb_dense_z:
        return "dense"
    return None


def kb_absent(e: KbEvidence | None, t: Thresholds) -> bool:
    """True when nothing in the knowledge bases is near the message (always, for an empty one); False without them."""
    if e is None:
        return False
    if not e.chunks:
        return True
    # One common word in a passage ("world", 国家) is no sign: the words must stand out as for strong evidence.
    lexical = e.lexical - e.lexical_typical >= t.kb_lexical_margin and e.coverage >= t.kb_coverage
    return not lexical and (e.dense_z is None or e.dense_z < t.kb_none_z)


def decide(f: Features, t: Thresholds) -> tuple[str, float, str | None, str]:
    """Pure decision on precomputed features: ``(label, score, entry_id, reason)``."""
    if f.rule:
        return "chitchat", 1.0, f.rule, f"rule:{f.rule}"
    sims = f.class_sims
    rag_sim = sims.get("rag", 0.0)
    exact = f.entry_id is not None and f.entry_sim >= t.faq_exact
    if f.code and not exact:
        return "out_of_scope", 1.0, "out_of_scope", "rule:code"
    strong = kb_strong(f.kb, t)
    if f.task and not f.knowledge and not exact and strong != "lexical":
        return "out_of_scope", 1.0, "out_of_scope", "rule:task"
    if f.entry_id is not None and f.entry_kind is not None:
        # The FAQ variant must be closer than any example of another label (chit-chat variants count as chit-chat).
        rival = max((v for label, v in f.class_max.items() if label != f.entry_kind), default=0.0)
        close = f.entry_sim >= t.faq_min and f.entry_sim - rival >= t.faq_margin
        if exact or (close and not f.followup and not f.specific):
            # "What can you do?" wording, or an FAQ topic, but about what the documents say and the entry doesn't.
            if strong and not exact and (f.entry_kind != "faq" or (strong == "lexical" and f.kb_beyond_faq)):
                return "rag", rag_sim, None, f"kb:{strong}"
            return f.entry_kind, f.entry_sim, f.entry_id, "faq"
    if f.knowledge or f.followup:
        return "rag", rag_sim, None, "vocabulary" if f.knowledge else "followup"
    other = max(("chitchat", "out_of_scope"), key=lambda label: sims.get(label, 0.0))
    entry = f.chat_entry_id if other == "chitchat" else "out_of_scope"
    if sims.get(other, 0.0) - rag_sim >= t.away_margin:
        if strong:
            return "rag", rag_sim, None, f"kb:{strong}"
        return other, sims[other], entry, "knn"
    # Nothing in the knowledge bases is near: world knowledge (unless the neighbours are sure it is a knowledge
    # question), or nothing to ask at all (an empty knowledge base).
    if f.kb is not None and kb_absent(f.kb, t) and (not f.kb.chunks or rag_sim - sims.get(other, 0.0) < t.kb_none_lead):
        return other, sims.get(other, 0.0), entry, "kb:none"
    return "rag", rag_sim, None, "knn"


# --------------------------------------------------------------------------- examples and vectors


def load_examples(path: Path | str = DEFAULT_INTENTS_PATH) -> list[Example]:
    """Read labelled examples (JSONL ``{"text", "label", "lang"}``); raises ``ConfigError`` naming the bad line."""
    path = Path(path)
    examples = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"intent examples {path} cannot be read: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, label = row["text"], row["label"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"{path}:{number}: expected a JSON object with 'text' and 'label'") from None
        if label not in _KNN_LABELS or not isinstance(text, str) or not text.strip():
            allowed = ", ".join(_KNN_LABELS)
            raise ConfigError(f"{path}:{number}: label {label!r} must be one of {allowed} and text non-empty")
        examples.append(Example(text.strip(), label, row.get("lang") or detect_lang(text)))
    return examples


# Query vectors per embedder object, shared by all routers in the process (tests build many).
_MEMORY: weakref.WeakKeyDictionary[object, dict[str, np.ndarray]] = weakref.WeakKeyDictionary()
_MEMORY_LOCK = threading.Lock()


class _VectorCache:
    """Query embeddings of example texts: in memory per embedder, and on disk in ``model_cache`` across restarts."""

    def __init__(self, embedder: Embedder, directory: Path | None) -> None:
        self.embedder = embedder
        with _MEMORY_LOCK:
            try:
                self.memory = _MEMORY.setdefault(embedder, {})
            except TypeError:  # an embedder that can't be weakly referenced keeps a private cache
                self.memory = {}
        tag = hashlib.sha256(f"{embedder.name}|{embedder.dim}|query".encode()).hexdigest()[:16]
        self.file = directory / f"route-vectors-{tag}.npz" if directory else None
        self._disk_loaded = False

    def _load_disk(self) -> None:
        self._disk_loaded = True
        if not self.file or not self.file.is_file():
            return
        try:
            with np.load(self.file, allow_pickle=False) as data:
                keys, vecs = data["keys"], data["vecs"]
            if vecs.ndim == 2 and vecs.shape[1] == self.embedder.dim and len(keys) == len(vecs):
                for key, vec in zip(keys.tolist(), vecs, strict=True):
                    self.memory.setdefault(key, np.asarray(vec, dtype=np.float32))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable routing vector cache %s: %s", self.file, exc)

    def vectors(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """Vectors for ``texts`` (shape ``(n, dim)``) and how many had to be embedded now."""
        if not self._disk_loaded:
            self._load_disk()
        missing = [t for t in dict.fromkeys(texts) if t not in self.memory]
        for text in missing:
            self.memory[text] = np.asarray(self.embedder.query(text), dtype=np.float32)
        if missing:
            self._save_disk(texts)
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32), 0
        return np.vstack([self.memory[t] for t in texts]).astype(np.float32, copy=False), len(missing)

    def _save_disk(self, texts: Sequence[str]) -> None:
        """Store the vectors of the current bank (not every text ever seen, so edits don't grow the file)."""
        if not self.file:
            return
        try:
            keys = list(dict.fromkeys(texts))
            with atomic_file(self.file, "wb") as fh:
                np.savez(fh, keys=np.array(keys, dtype=str), vecs=np.vstack([self.memory[k] for k in keys]))
        except OSError as exc:  # a read-only cache only costs start-up time
            log.warning("cannot write routing vector cache %s: %s", self.file, exc)


@dataclass(frozen=True)
class _Bank:
    """Everything classification needs, swapped atomically on reload."""

    entries: tuple[FaqEntry, ...]
    by_id: dict[str, FaqEntry]
    entry_vecs: np.ndarray  # one row per FAQ question variant
    entry_rows: tuple[int, ...]  # entry index of each row
    chat_rows: np.ndarray  # rows whose entry is chit-chat
    blobs: dict[str, str]  # entry id -> its questions and answers, case-folded (to check names against)
    knn_vecs: dict[str, np.ndarray]  # label -> example vectors (FAQ chit-chat variants count as chit-chat examples)
    background: Background | None = None  # word rarity and unrelated messages, for knowledge-base evidence
    fingerprint: tuple = ()


# --------------------------------------------------------------------------- router


class Router:
    """Classifies messages into routes and returns FAQ / chit-chat / scope replies without an LLM.

    ``faq`` is a path to an FAQ file, a sequence of entries, or ``None`` for the user's copy in ``settings.kb_dir``
    (falling back to the shipped defaults). A file is re-read when it changes (checked at most every
    ``check_interval_s`` seconds during ``classify``). ``classify(..., kbs=...)`` judges the message against the
    knowledge bases it will be asked of (statistics cached per knowledge base until it changes).
    """

    def __init__(
        self,
        embedder: Embedder,
        faq: Path | str | Sequence[FaqEntry] | None = None,
        settings: Settings | None = None,
        *,
        examples: Sequence[Example] | Path | str | None = None,
        thresholds: Thresholds | None = None,
        check_interval_s: float = 1.0,
    ) -> None:
        self.settings = settings or Settings()
        self.embedder = embedder
        self.evidence = EvidenceScorer()
        self.thresholds = thresholds or Thresholds()
        self.check_interval_s = check_interval_s
        if faq is None:
            self._faq_paths: tuple[Path, ...] = (user_faq_path(self.settings), DEFAULT_FAQ_PATH)
            self._fixed: tuple[FaqEntry, ...] | None = None
        elif isinstance(faq, str | Path):
            self._faq_paths, self._fixed = (Path(faq),), None
        else:
            self._fixed = tuple(faq)
            validate_faq(self._fixed)
            self._faq_paths = ()
        if examples is None or isinstance(examples, str | Path):
            self._examples_path: Path | None = Path(examples) if examples else DEFAULT_INTENTS_PATH
            self._examples: tuple[Example, ...] | None = None
        else:
            self._examples_path, self._examples = None, tuple(examples)
        self._cache = _VectorCache(embedder, Path(self.settings.model_cache) if settings else None)
        self._bank: _Bank | None = None
        self._lock = threading.Lock()
        self._checked = 0.0
        self.faq_error: str | None = None  # why the last reload failed (the previous FAQ stays in use)
        self.embedded_last_reload = 0  # texts embedded by the last (re)load, for tests and logs

    # ---- FAQ state

    @property
    def entries(self) -> tuple[FaqEntry, ...]:
        """The FAQ entries in use."""
        return self._ensure().entries

    @property
    def faq_file(self) -> Path | None:
        """The FAQ file in effect (the user's copy if it exists), or ``None`` for entries given in code."""
        return next((p for p in self._faq_paths if p.is_file()), self._faq_paths[0] if self._faq_paths else None)

    def _fingerprint(self) -> tuple:
        """Which FAQ file is in effect and a hash of its bytes (a few KB: cheap, and immune to mtime granularity)."""
        if self._fixed is not None:
            return ("fixed",)
        for path in self._faq_paths:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                return (str(path), f"unreadable: {exc.strerror}")
            return (str(path), hashlib.sha256(data).hexdigest())
        return ("missing",)

    def warm(self) -> None:
        """Load the FAQ and embed the examples now rather than on the first message."""
        self._ensure()

    def reload(self) -> bool:
        """Re-read the FAQ file if it changed; returns whether it was reloaded. A bad file keeps the previous FAQ
        (``faq_error`` says why). Only question variants not embedded before are embedded."""
        with self._lock:
            return self._reload_locked(force=False)

    def _ensure(self) -> _Bank:
        bank = self._bank
        if bank is None:
            with self._lock:
                if self._bank is None:
                    self._reload_locked(force=True)
                bank = self._bank
        assert bank is not None
        return bank

    def _maybe_reload(self) -> None:
        if self._fixed is not None or time.monotonic() - self._checked < self.check_interval_s:
            return
        self.reload()

    def _reload_locked(self, force: bool) -> bool:
        self._checked = time.monotonic()
        fingerprint = self._fingerprint()
        if not force and self._bank is not None and fingerprint == self._bank.fingerprint:
            return False
        if self._fixed is not None:
            entries = self._fixed
        else:
            path = next((p for p in self._faq_paths if p.is_file()), None)
            try:
                if path is None:
                    raise FaqError(f"no FAQ file at {', '.join(str(p) for p in self._faq_paths)}")
                entries = tuple(load_faq(path))
                self.faq_error = None
            except FaqError as exc:
                self.faq_error = str(exc)
                if self._bank is not None:
                    log.error("FAQ not reloaded, keeping the previous one: %s", exc)
                    # Remember the bad file so it isn't re-parsed on every message.
                    self._bank = _replace_fingerprint(self._bank, fingerprint)
                    return False
                log.error("FAQ unavailable, routing without it: %s", exc)
                entries = ()
        self._bank = self._build(entries, fingerprint)
        log.info("router loaded %d FAQ entries (%d texts embedded)", len(entries), self.embedded_last_reload)
        return True

    def _build(self, entries: tuple[FaqEntry, ...], fingerprint: tuple) -> _Bank:
        if self._examples is None:
            self._examples = tuple(load_examples(self._examples_path or DEFAULT_INTENTS_PATH))
        rows = [(i, q) for i, e in enumerate(entries) for q in e.questions]
        entry_texts = [q for _, q in rows]
        example_texts = [ex.text for ex in self._examples]
        vecs, embedded = self._cache.vectors(entry_texts + example_texts)
        self.embedded_last_reload = embedded
        entry_vecs, example_vecs = vecs[: len(entry_texts)], vecs[len(entry_texts) :]
        knn: dict[str, list[np.ndarray]] = {label: [] for label in _KNN_LABELS}
        null: list[tuple[str, str, np.ndarray]] = []  # unrelated messages: (text, language, vector)
        for ex, vec in zip(self._examples, example_vecs, strict=True):
            knn[ex.label].append(vec)
            if ex.label != "rag":
                null.append((ex.text, ex.lang, vec))
        for (i, q), vec in zip(rows, entry_vecs, strict=True):
            if entries[i].kind in ("chitchat", "out_of_scope"):
                knn[entries[i].kind].append(vec)
                null.append((q, detect_lang(q), vec))
        dim = self.embedder.dim
        background = Background.build(
            entry_texts + example_texts,
            [t for t, _, _ in null],
            np.vstack([v for _, _, v in null]) if null else np.zeros((0, dim), np.float32),
            [lang for _, lang, _ in null],
        )
        return _Bank(
            entries=entries,
            by_id={e.id: e for e in entries},
            entry_vecs=entry_vecs,
            entry_rows=tuple(i for i, _ in rows),
            chat_rows=np.array([r for r, (i, _) in enumerate(rows) if entries[i].kind == "chitchat"], dtype=np.int64),
            blobs={e.id: clean_message(" ".join((*e.questions, e.answer, e.answer_zh or ""))) for e in entries},
            knn_vecs={k: np.vstack(v) if v else np.zeros((0, dim), np.float32) for k, v in knn.items()},
            background=background,
            fingerprint=fingerprint,
        )

    # ---- classification

    def query(self, message: str | Query) -> Query:
        """The message as routing and retrieval see it: a leading greeting removed, its language, and its query
        embedding (computed here, once; reused when ``message`` already carries it for the same text). A message a
        rule decides (a bare greeting, thanks, "ok") gets no embedding."""
        given = message if isinstance(message, Query) else None
        text = given.text if given else message
        sig = text_signals(text, given.language if given else None)
        vector = given.vector if given is not None and given.text == sig.text else None
        if vector is None and not sig.rule:
            vector = np.asarray(self.embedder.query(sig.text), dtype=np.float32)
        return Query(sig.text, sig.lang, vector)

    def features(
        self, message: str | Query, kbs: Sequence[SearchableKb] | None = None, query: Query | None = None
    ) -> Features:
        """Rule signals, embedding similarities and (with ``kbs``) knowledge-base evidence for ``message``.

        ``query``: the message's ``Query`` from ``self.query`` (built when not given: one query embedding unless a
        rule decides)."""
        self._maybe_reload()
        bank = self._ensure()
        text = message.text if isinstance(message, Query) else message
        sig = text_signals(text, message.language if isinstance(message, Query) else None)
        if sig.rule:
            return Features(sig.text, sig.lang, rule=sig.rule)
        query = query or self.query(message)
        q = query.vector
        assert q is not None
        k = max(1, self.thresholds.k)
        class_sims, class_max = {}, {}
        for label, mat in bank.knn_vecs.items():
            if len(mat):
                sims = mat @ q
                top = np.partition(sims, len(sims) - min(k, len(sims)))[-k:]
                class_sims[label] = float(top.mean())
                class_max[label] = float(top.max())
        entry_id = entry_kind = chat_entry = None
        entry_sim = 0.0
        if len(bank.entry_vecs):
            sims = bank.entry_vecs @ q
            best = int(np.argmax(sims))
            entry = bank.entries[bank.entry_rows[best]]
            entry_sim, entry_id, entry_kind = float(sims[best]), entry.id, entry.kind
            if len(bank.chat_rows):
                row = int(bank.chat_rows[int(np.argmax(sims[bank.chat_rows]))])
                chat_entry = bank.entries[bank.entry_rows[row]].id
        # A marker the matched entry never mentions (Costco, 2023, 公司) means the message is about the documents.
        blob = bank.blobs.get(entry_id or "", "")
        specific = any(marker not in blob for marker in sig.markers)
        evidence = None
        if kbs is not None and bank.background is not None:
            evidence = self.evidence.evidence(kbs, sig.text, q, sig.lang, bank.background)
        beyond = evidence is not None and any(term not in blob for term in evidence.terms)
        return Features(
            text=sig.text,
            lang=sig.lang,
            code=sig.code,
            task=sig.task,
            followup=sig.followup,
            specific=specific,
            knowledge=sig.knowledge,
            entry_sim=entry_sim,
            entry_id=entry_id,
            entry_kind=entry_kind,
            chat_entry_id=chat_entry,
            class_sims=class_sims,
            class_max=class_max,
            kb=evidence,
            kb_beyond_faq=beyond,
        )

    def classify(self, message: str | Query, kbs: Sequence[SearchableKb] | None = None) -> Route:
        """Route one message (a string, or a ``Query`` whose embedding is reused). Never calls an LLM.

        ``kbs``: the knowledge bases the question would be asked of (the shared one and the session's uploads);
        without them the decision uses the message alone. ``Route.query`` carries the message's text, language and
        query embedding on to retrieval.
        """
        query = self.query(message)
        f = self.features(query, kbs, query)
        label, score, entry_id, reason = decide(f, self.thresholds)
        detail = _detail(reason, f)
        log.info("route %s (%s) for %r: %s", label, reason, query.text[:80], detail)
        if label == "rag":
            return Route("rag", score, lang=f.lang, reason=reason, detail=detail, query=query)
        reply = self._reply(entry_id, label, f.lang)
        return Route(label, score, reply, entry_id, f.lang, reason, detail, query)

    def _reply(self, entry_id: str | None, label: str, lang: str) -> str:
        bank = self._ensure()
        entry = None if entry_id == "empty" else bank.by_id.get(entry_id or "")
        if entry is None and label == "out_of_scope":
            entry = next((e for e in bank.entries if e.kind == "out_of_scope"), None)
        if entry is None and label == "chitchat" and entry_id != "empty":
            entry = bank.by_id.get("smalltalk")
        if entry is not None:
            return entry.reply(lang)
        key = entry_id if entry_id in _FALLBACK else ("out_of_scope" if label == "out_of_scope" else "smalltalk")
        en, zh = _FALLBACK[key]
        return zh if lang == "zh" else en


_RULES = {
    "greeting": "a greeting",
    "thanks": "thanks",
    "goodbye": "a goodbye",
    "smalltalk": "a short acknowledgement",
    "empty": "an empty message",
    "code": "asks for code",
    "task": "asks for another task (translate, book, play, draw, arithmetic)",
}


def _detail(reason: str, f: Features) -> str:
    """The evidence behind ``reason`` in one line."""
    if reason.startswith("rule:"):
        return _RULES.get(reason[5:], reason[5:])
    sims = ", ".join(f"{k} {v:.3f}" for k, v in sorted(f.class_sims.items()))
    evidence = f"; knowledge base: {f.kb.describe()}" if f.kb is not None else ""
    if reason == "faq":
        return f"close to the FAQ entry {f.entry_id!r} (cosine {f.entry_sim:.3f}){evidence}"
    if reason == "vocabulary":
        return f"ESG / finance vocabulary or a reference to a document{evidence}"
    if reason == "followup":
        return f"a follow-up to the conversation{evidence}"
    if reason == "kb:lexical":
        return f"shares rare words with the knowledge base, {f.kb.describe() if f.kb else ''}"
    if reason == "kb:dense":
        return f"much closer to the knowledge base than unrelated messages, {f.kb.describe() if f.kb else ''}"
    if reason == "kb:none":
        return f"no ESG vocabulary and nothing near it in the knowledge base ({f.kb.describe() if f.kb else ''})"
    return f"nearest examples by label: {sims}{evidence}"


def _replace_fingerprint(bank: _Bank, fingerprint: tuple) -> _Bank:
    return dataclasses.replace(bank, fingerprint=fingerprint)
