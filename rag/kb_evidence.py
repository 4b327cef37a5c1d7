"""How much a message is about the knowledge bases in view, judged against each knowledge base's own scores.

The router asks this before sending a message away from the documents. Two signals, neither a fixed cosine:

- **Lexical**: the message's words found together in one passage, each weighted by its rarity (an IDF over the
  knowledge base's passages plus the router's example messages, so "what", "you", "tell" weigh little and names,
  places and numbers weigh most; 1.0 = a word seen nowhere else). The best passage's sum is compared with the same
  sum for messages that are not about any document (the router's chit-chat and out-of-scope examples) on this
  knowledge base: an ESG knowledge base matches "weather" somewhere, a one-sentence transcript matches almost nothing.
- **Dense**: the best cosine of the message's query embedding with the knowledge base, as a z-score against the best
  cosines of those unrelated messages (same language) on the same knowledge base. e5 cosines sit in a narrow band
  (0.78–0.93 for everything on an ESG knowledge base), so only the position relative to that band means anything.

Statistics are computed once per knowledge base and version (``KnowledgeBase.version`` changes on every edit) and
cached; scoring a message costs one posting-list pass and one nearest-neighbour search per knowledge base.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rag.text import STOPWORDS, search_tokens
from rag.types import Chunk

log = logging.getLogger(__name__)

_MIN_NULL_PER_LANG = 10  # fewer unrelated examples in a language than this: pool both languages
_STD_FLOOR = 0.01  # cosine spread below this is noise (a one-passage knowledge base)
# Function words carry no evidence however rare they are in short messages ("so", "your"); stems included, since
# the words are compared as the knowledge base's search terms.
# Chinese is indexed as character bigrams: these are the bigrams of question and function words.
_ZH_FUNCTION = frozenset(
    """什么 哪些 哪个 哪里 怎么 怎样 如何 为什 可以 能否 是否 没有 有没 多少 问题 一下 请问 好的 非常 别的 这个 那个
    这些 那些 我们 你们 他们 以及 还有 其他 一些 需要 应该 不是 就是 因为 所以 但是 如果 这样 那么 已经 一个 有哪 有什
    是什 么是 的是""".split()
)
_STOP = STOPWORDS | {t for w in STOPWORDS for t in search_tokens(w)} | _ZH_FUNCTION


def content_terms(text: str) -> set[str]:
    """The words of ``text`` that can show what it is about: search terms (as the knowledge base indexes them: light
    stems, Chinese bigrams) less function words."""
    return {t for t in search_tokens(text) if t not in _STOP}


class SearchableKb(Protocol):
    """What the evidence needs from a knowledge base (``rag.index.KnowledgeBase`` provides it)."""

    version: int

    def chunks(self, names: Iterable[str] | None = None) -> list[Chunk]: ...

    def search_dense(self, qvec: np.ndarray, k: int, files: set[str] | None = None) -> list[tuple[Chunk, float]]: ...


@dataclass(frozen=True)
class Background:
    """The reference messages: all router examples for word rarity; the unrelated ones (chit-chat, out of scope)
    as the null distribution every knowledge base's scores are judged against."""

    df: Counter  # token -> number of example messages containing it
    n: int  # example messages
    null_tokens: tuple[frozenset[str], ...]
    null_vecs: np.ndarray  # (len(null_tokens), dim) query embeddings
    null_langs: tuple[str, ...]

    @classmethod
    def build(
        cls, all_texts: Sequence[str], null_texts: Sequence[str], null_vecs: np.ndarray, null_langs: Sequence[str]
    ) -> Background:
        df: Counter = Counter()
        for text in all_texts:
            df.update(content_terms(text))
        return cls(
            df=df,
            n=len(all_texts),
            null_tokens=tuple(frozenset(content_terms(t)) for t in null_texts),
            null_vecs=np.asarray(null_vecs, dtype=np.float32),
            null_langs=tuple(null_langs),
        )


@dataclass(frozen=True)
class KbEvidence:
    """The knowledge bases' evidence for one message (the best knowledge base per signal)."""

    chunks: int  # passages in view (0: nothing to ask)
    lexical: float = 0.0  # rarity-weighted words of the message found in the best passage
    lexical_typical: float = 0.0  # the same for unrelated messages on that knowledge base (95th percentile)
    coverage: float = 0.0  # share of the message's rarity weight the best passage holds
    terms: tuple[str, ...] = ()  # the words matched in the best passage, rarest first
    dense: float | None = None  # best cosine with the knowledge base
    dense_typical: float | None = None  # mean best cosine of unrelated messages (same language) there
    dense_z: float | None = None  # (dense - that mean) / their standard deviation

    def describe(self) -> str:
        """One line for logs and ``route_reason``."""
        if not self.chunks:
            return "the knowledge base is empty"
        words = ", ".join(self.terms[:5]) or "none"
        dense = (
            f"best cosine {self.dense:.3f} vs {self.dense_typical:.3f} for unrelated messages (z {self.dense_z:+.1f})"
            if self.dense is not None and self.dense_z is not None and self.dense_typical is not None
            else "no vectors yet"
        )
        return (
            f"rare words shared with a passage: {words} (weight {self.lexical:.2f}, {self.coverage:.0%} of the "
            f"message; unrelated messages {self.lexical_typical:.2f}); {dense}"
        )


@dataclass
class _Profile:
    """Per-knowledge-base statistics for one version."""

    version: int
    background: Background
    n: int  # passages
    postings: dict[str, np.ndarray]  # token -> sorted passage rows containing it
    null_lexical: dict[str, float]  # language -> 95th percentile of the unrelated messages' lexical scores
    null_dense: dict[str, tuple[float, float]]  # language -> (mean, std) of unrelated messages' best cosine
    seconds: float = 0.0


class EvidenceScorer:
    """Scores messages against knowledge bases; per-knowledge-base statistics are cached until the base changes."""

    def __init__(self) -> None:
        self._profiles: weakref.WeakKeyDictionary[object, _Profile] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def evidence(
        self,
        kbs: Sequence[SearchableKb],
        text: str,
        vector: np.ndarray | None,
        lang: str,
        background: Background,
    ) -> KbEvidence:
        """Evidence that ``text`` (query embedding ``vector``, language ``lang``) is about the knowledge bases."""
        tokens = content_terms(text)
        total = 0
        lex: tuple[float, float, float, tuple[str, ...]] | None = None  # (score, typical, coverage, terms)
        dense: tuple[float, float, float] | None = None  # (z, cosine, typical)
        for kb in kbs:
            profile = self._profile(kb, background)
            if profile is None:
                continue
            total += profile.n
            score, coverage, terms = _lexical(profile, tokens)
            # The knowledge base where the message stands out most from unrelated messages.
            typical = profile.null_lexical.get(lang, profile.null_lexical["all"])
            if lex is None or score - typical > lex[0] - lex[1]:
                lex = (score, typical, coverage, terms)
            if vector is not None:
                found = kb.search_dense(vector, 1)
                if found:
                    cos = found[0][1]
                    mean, std = profile.null_dense.get(lang) or profile.null_dense["all"]
                    z = (cos - mean) / std
                    if dense is None or z > dense[0]:
                        dense = (z, cos, mean)
        if not total or lex is None:
            return KbEvidence(0)
        return KbEvidence(
            chunks=total,
            lexical=lex[0],
            lexical_typical=lex[1],
            coverage=lex[2],
            terms=lex[3],
            dense=dense[1] if dense else None,
            dense_typical=dense[2] if dense else None,
            dense_z=dense[0] if dense else None,
        )

    def _profile(self, kb: SearchableKb, background: Background) -> _Profile | None:
        with self._lock:
            profile = self._profiles.get(kb)
            if profile is not None and profile.version == kb.version and profile.background is background:
                return profile if profile.n else None
            version = kb.version  # read before the chunks: a change while building is caught next time
        # Built outside the lock: one session's fresh upload must not hold up routing for the others. Two messages
        # may build the same statistics at once; the work is repeated, the result is the same.
        profile = _build_profile(kb, version, background)
        with self._lock:
            self._profiles[kb] = profile
        if profile.n:
            log.info(
                "routing statistics for a knowledge base of %d passages (version %d) in %.2f s: unrelated messages "
                "score lexical %s, cosine %s",
                profile.n,
                version,
                profile.seconds,
                ", ".join(f"{k} {v:.2f}" for k, v in profile.null_lexical.items()),
                ", ".join(f"{k} {m:.3f}±{s:.3f}" for k, (m, s) in profile.null_dense.items()),
            )
        return profile if profile.n else None


def weight(token: str, profile: _Profile) -> float:
    """Rarity of ``token`` in [0, 1]: 1.0 for a word in no example message and in one passage at most."""
    bg = profile.background
    n = bg.n + profile.n
    posting = profile.postings.get(token)
    df = bg.df.get(token, 0) + (len(posting) if posting is not None else 0)
    top = math.log((n + 1) / 1.5)  # df = 1
    return max(0.0, min(1.0, math.log((n + 1) / (df + 0.5)) / top)) if top > 0 else 1.0


def _lexical(profile: _Profile, tokens: set[str]) -> tuple[float, float, tuple[str, ...]]:
    """(best passage's rarity-weighted overlap, its share of the message's weight, matched words rarest first)."""
    if not tokens or not profile.n:
        return 0.0, 0.0, ()
    weights = {t: weight(t, profile) for t in tokens}
    total = sum(weights.values())
    acc = np.zeros(profile.n, dtype=np.float32)
    for t, w in weights.items():
        rows = profile.postings.get(t)
        if rows is not None:
            acc[rows] += w
    best = int(np.argmax(acc))
    score = float(acc[best])
    if score <= 0:
        return 0.0, 0.0, ()
    terms = [t for t in weights if (rows := profile.postings.get(t)) is not None and _contains(rows, best)]
    terms.sort(key=lambda t: -weights[t])
    return score, score / total if total else 0.0, tuple(terms)


def _contains(sorted_rows: np.ndarray, row: int) -> bool:
    i = int(np.searchsorted(sorted_rows, row))
    return i < len(sorted_rows) and int(sorted_rows[i]) == row


def _build_profile(kb: SearchableKb, version: int, background: Background) -> _Profile:
    start = time.perf_counter()
    chunks = kb.chunks()
    rows: dict[str, list[int]] = {}
    for i, chunk in enumerate(chunks):
        for token in set(search_tokens(chunk.text + " " + chunk.heading)):
            rows.setdefault(token, []).append(i)
    postings = {t: np.asarray(r, dtype=np.int64) for t, r in rows.items()}
    profile = _Profile(version, background, len(chunks), postings, {"all": 0.0}, {})
    if not chunks:
        return profile
    # Per language: Chinese messages share function bigrams with a Chinese knowledge base that English ones cannot.
    lexical: dict[str, list[float]] = {}
    for tokens, lang in zip(background.null_tokens, background.null_langs, strict=True):
        score = _lexical(profile, set(tokens))[0]
        lexical.setdefault(lang, []).append(score)
        lexical.setdefault("all", []).append(score)
    profile.null_lexical = {
        lang: float(np.percentile(v, 95))
        for lang, v in lexical.items()
        if lang == "all" or len(v) >= _MIN_NULL_PER_LANG
    } or {"all": 0.0}
    cosines: dict[str, list[float]] = {}
    for vec, lang in zip(background.null_vecs, background.null_langs, strict=True):
        found = kb.search_dense(vec, 1)
        if found:
            cosines.setdefault(lang, []).append(found[0][1])
            cosines.setdefault("all", []).append(found[0][1])
    if not cosines:  # nothing embedded yet (documents still being embedded): neutral statistics
        profile.null_dense = {"all": (1.0, 1.0)}
    else:
        profile.null_dense = {
            lang: (float(np.mean(v)), max(_STD_FLOOR, float(np.std(v))))
            for lang, v in cosines.items()
            if lang == "all" or len(v) >= _MIN_NULL_PER_LANG
        }
    profile.seconds = time.perf_counter() - start
    return profile
