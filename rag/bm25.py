"""BM25 (Okapi, k1=1.2, b=0.75 by default) over terms from ``rag.text.search_tokens``, for English and Chinese.

Chinese has no spaces, so a whitespace tokenizer scores 0 on it; CJK runs become overlapping character bigrams
(plus the single character for one-character runs), which needs no dictionary and matches any word boundary.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from rag.text import search_tokens

# The terms BM25 indexes and queries with (English stems and numbers, CJK bigrams), from the text toolkit.
tokenize = search_tokens


class BM25:
    """An immutable BM25 index over pre-tokenised documents, scored with numpy over posting lists."""

    def __init__(self, docs: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.n = len(docs)
        lengths = np.fromiter((len(d) for d in docs), dtype=np.float32, count=self.n)
        self.avgdl = float(lengths.mean()) if self.n else 0.0
        postings: dict[str, tuple[list[int], list[int]]] = {}
        for i, doc in enumerate(docs):
            for term, tf in Counter(doc).items():
                ids, tfs = postings.setdefault(term, ([], []))
                ids.append(i)
                tfs.append(tf)
        norm = k1 * (1 - b + b * lengths / self.avgdl) if self.n and self.avgdl else lengths
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for term, (ids, tfs) in postings.items():
            idx = np.asarray(ids, dtype=np.int64)
            tf = np.asarray(tfs, dtype=np.float32)
            idf = math.log(1 + (self.n - len(ids) + 0.5) / (len(ids) + 0.5))
            # Precompute each posting's full BM25 weight: scoring is then a sum over the query's terms.
            self._postings[term] = (idx, (idf * tf * (k1 + 1) / (tf + norm[idx])).astype(np.float32))

    def scores(self, query_tokens: Iterable[str]) -> np.ndarray:
        """BM25 score of every document for the query (length ``n``)."""
        out = np.zeros(self.n, dtype=np.float32)
        for term in set(query_tokens):
            posting = self._postings.get(term)
            if posting is not None:
                out[posting[0]] += posting[1]
        return out

    def top(self, query_tokens: Iterable[str], k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The ``k`` best (doc index, score) pairs with a positive score, optionally only among ``allowed`` rows."""
        scores = self.scores(query_tokens)
        if allowed is not None:
            mask = np.zeros(self.n, dtype=bool)
            mask[allowed] = True
            scores = np.where(mask, scores, 0.0)
        positive = np.flatnonzero(scores > 0)
        if positive.size == 0:
            return []
        k = min(k, positive.size)
        best = positive[np.argpartition(-scores[positive], k - 1)[:k]]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(i), float(scores[i])) for i in best]
