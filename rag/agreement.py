"""How well the judge's checks agree with hand labels: the labelled sample in ``tests/data/judge_labels.jsonl`` and
accuracy, Cohen's kappa, AUC and MAE for every check, with and without the LLM.

    rows = agreement(load_labels(LABELS_PATH), Judge(None, embedder), llm=False)
    print(agreement_table(rows))                  # the table docs/bench/evaluation.md quotes

From the command line: ``python -m rag eval --agreement [--judge none|same|small|large|PATH]``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rag.errors import ConfigError
from rag.judge import LLM_METRICS, Judge, unsupported_facts
from rag.text import is_refusal, is_refusal_statement, split_statements

log = logging.getLogger(__name__)

LABELS_PATH = Path(__file__).resolve().parent.parent / "tests" / "data" / "judge_labels.jsonl"


@dataclass(frozen=True)
class LabelledCase:
    """One hand-labelled (question, answer, passages) triple from ``tests/data/judge_labels.jsonl``."""

    id: str
    case: str
    lang: str
    question: str
    answer: str
    passages: tuple[str, ...]
    statements: tuple[tuple[str, bool], ...]  # (statement, supported)
    refusal: bool
    answer_relevant: bool
    passages_relevant: tuple[bool, ...]
    gold_answer: str | None = None
    correct: bool | None = None


def load_labels(path: Path) -> list[LabelledCase]:
    """Read the labelled sample; a malformed line raises ``ConfigError`` naming the line."""
    cases = []
    with open(path, encoding="utf-8") as fh:
        for no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                lab = obj["labels"]
                case = LabelledCase(
                    id=obj["id"],
                    case=obj.get("case", ""),
                    lang=obj.get("lang", "en"),
                    question=obj["question"],
                    answer=obj["answer"],
                    passages=tuple(obj["passages"]),
                    statements=tuple((s["text"], bool(s["supported"])) for s in lab["statements"]),
                    refusal=bool(lab["refusal"]),
                    answer_relevant=bool(lab["answer_relevant"]),
                    passages_relevant=tuple(bool(x) for x in lab["passages_relevant"]),
                    gold_answer=obj.get("gold_answer"),
                    correct=lab.get("correct"),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}:{no}: bad labelled case ({exc.__class__.__name__}: {exc})") from exc
            if len(case.passages_relevant) != len(case.passages):
                raise ConfigError(
                    f"{path}:{no}: passages_relevant has {len(case.passages_relevant)} labels for "
                    f"{len(case.passages)} passages"
                )
            cases.append(case)
    return cases


@dataclass(frozen=True)
class Agreement:
    """Agreement of one check with the hand labels.

    For yes/no checks: ``accuracy`` and Cohen's ``kappa``. For scores: ``auc`` (chance that a positive case
    scores above a negative one; 0.5 is chance).
    """

    metric: str
    method: str
    n: int
    accuracy: float | None = None
    kappa: float | None = None
    auc: float | None = None
    mae: float | None = None

    def row(self) -> str:
        def fmt(x: float | None) -> str:
            return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"

        return (
            f"| {self.metric} | {self.method} | {self.n} | {fmt(self.accuracy)} | {fmt(self.kappa)} | "
            f"{fmt(self.auc)} | {fmt(self.mae)} |"
        )


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float:
    n = len(a)
    if n == 0:
        return float("nan")
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pa, pb = sum(a) / n, sum(b) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def _binary(metric: str, method: str, pred: Sequence[bool], gold: Sequence[bool]) -> Agreement:
    n = len(gold)
    acc = sum(p == g for p, g in zip(pred, gold, strict=True)) / n if n else float("nan")
    return Agreement(metric, method, n, accuracy=acc, kappa=cohen_kappa(pred, gold))


def agreement(cases: Sequence[LabelledCase], judge: Judge, *, llm: bool = True) -> list[Agreement]:
    """Compare every check with the hand labels. ``llm=False`` measures only the deterministic checks.

    Statements are the labels' statements (the hand segmentation); ``split_statements`` is measured separately.
    """
    out: list[Agreement] = []
    use_llm = llm and judge.llm is not None
    probe = replace(judge, llm_metrics=LLM_METRICS)  # measures the LLM on every metric, whatever the judge uses
    # Statement segmentation.
    seg = [
        [s for s, _ in c.statements] == [s for s in split_statements(c.answer) if not is_refusal_statement(s)]
        for c in cases
    ]
    out.append(Agreement("statement split", "sentences", len(cases), accuracy=sum(seg) / len(cases)))
    # Refusal.
    out.append(_binary("refusal", "patterns", [is_refusal(c.answer) for c in cases], [c.refusal for c in cases]))
    # Faithfulness, per statement and per answer.
    gold_sup = [sup for c in cases for _, sup in c.statements]
    facts_pred = [not unsupported_facts(s, c.passages) for c in cases for s, _ in c.statements]
    out.append(_binary("faithfulness (statements)", "numbers/units/years only", facts_pred, gold_sup))
    lex = [judge.support(s, c.passages, use_llm=False).supported for c in cases for s, _ in c.statements]
    out.append(_binary("faithfulness (statements)", "facts + word overlap", lex, gold_sup))
    faith_gold = [sum(sup for _, sup in c.statements) / len(c.statements) for c in cases if c.statements]
    faith_lex = [
        sum(judge.support(s, c.passages, use_llm=False).supported for s, _ in c.statements) / len(c.statements)
        for c in cases
        if c.statements
    ]
    out.append(_score_mae("faithfulness (answers)", "facts + word overlap", faith_lex, faith_gold))
    if use_llm:
        llm_only, combined = [], []
        for c in cases:
            for st, _ in c.statements:
                verdict = probe.llm_support(st, c.passages)
                llm_only.append(bool(verdict))
                if unsupported_facts(st, c.passages):
                    combined.append(False)
                else:
                    combined.append(
                        verdict if verdict is not None else judge.fallback_support(st, c.passages).supported
                    )
        out.append(_binary("faithfulness (statements)", f"LLM only ({judge.name})", llm_only, gold_sup))
        out.append(_binary("faithfulness (statements)", f"facts + LLM ({judge.name})", combined, gold_sup))
        faith_comb = []
        i = 0
        for c in cases:
            k = len(c.statements)
            if k:
                faith_comb.append(sum(combined[i : i + k]) / k)
            i += k
        out.append(_score_mae("faithfulness (answers)", f"facts + LLM ({judge.name})", faith_comb, faith_gold))
        configured = [judge.support(s, c.passages).supported for c in cases for s, _ in c.statements]
        how = "facts + LLM" if judge.uses_llm("faithfulness") else "facts + word overlap"
        out.append(_binary("faithfulness (statements)", f"as judged ({how}, {judge.name})", configured, gold_sup))
    log.info("agreement: faithfulness done (%d LLM calls so far)", probe.calls)
    # Answer relevance (answers that are not refusals).
    rel_cases = [c for c in cases if not c.refusal]
    embedder = judge.embedder
    if embedder is not None:
        direct = [judge.direct_relevance(c.question, c.answer) or 0.0 for c in rel_cases]
        out.append(
            Agreement(
                "answer relevance",
                "cosine(question, answer)",
                len(rel_cases),
                auc=auc(direct, [c.answer_relevant for c in rel_cases]),
            )
        )
        if use_llm:
            gen = [probe.answer_relevance(c.question, c.answer).score or 0.0 for c in rel_cases]
            out.append(
                Agreement(
                    "answer relevance",
                    f"generated questions ({judge.name})",
                    len(rel_cases),
                    auc=auc(gen, [c.answer_relevant for c in rel_cases]),
                )
            )
            as_judged = [judge.answer_relevance(c.question, c.answer).score or 0.0 for c in rel_cases]
            how = "generated questions" if judge.uses_llm("answer_relevance") else "cosine(question, answer)"
            out.append(
                Agreement(
                    "answer relevance",
                    f"as judged ({how}, {judge.name})",
                    len(rel_cases),
                    auc=auc(as_judged, [c.answer_relevant for c in rel_cases]),
                )
            )
        # Context relevance: the embedder's cosine as a ranking signal.
        sims: list[float] = []
        labels: list[bool] = []
        for c in cases:
            q = embedder.query(c.question)
            vecs = embedder.passages(list(c.passages))
            sims += [float(np.dot(q, v)) for v in vecs]
            labels += list(c.passages_relevant)
        out.append(Agreement("context relevance", "cosine(question, passage)", len(labels), auc=auc(sims, labels)))
        t = judge.relevance_threshold
        out.append(_binary("context relevance", f"cosine ≥ {t:.2f}", [x >= t for x in sims], labels))
    if use_llm:
        pred: list[bool] = []
        judged: list[bool] = []
        relevant: list[bool] = []
        for c in cases:
            for p, lab in zip(c.passages, c.passages_relevant, strict=True):
                pred.append(bool(probe.passage_relevant(c.question, p)))
                judged.append(bool(judge.passage_relevant(c.question, p)))
                relevant.append(lab)
        out.append(_binary("context relevance", f"LLM ({judge.name})", pred, relevant))
        how = "LLM" if judge.uses_llm("context_relevance") else "cosine"
        out.append(_binary("context relevance", f"as judged ({how}, {judge.name})", judged, relevant))
    log.info("agreement: answer and context relevance done (%d LLM calls so far)", probe.calls)
    # Correctness against the gold answer.
    corr_cases = [c for c in cases if c.gold_answer and c.correct is not None]
    if corr_cases:
        gold_c = [bool(c.correct) for c in corr_cases]
        det = [judge.correctness(c.question, c.answer, c.gold_answer or "", use_llm=False) for c in corr_cases]
        out.append(_binary("correctness", "polarity + numbers + word overlap", [s >= 0.5 for s in det], gold_c))
        if use_llm:
            wl = [probe.correctness(c.question, c.answer, c.gold_answer or "") for c in corr_cases]
            out.append(
                _binary("correctness", f"polarity + numbers + LLM ({judge.name})", [s >= 0.5 for s in wl], gold_c)
            )
            graded = [judge.correctness(c.question, c.answer, c.gold_answer or "") for c in corr_cases]
            how = "LLM" if judge.uses_llm("correctness") else "word overlap"
            out.append(
                _binary(
                    "correctness",
                    f"as judged (polarity + numbers + {how}, {judge.name})",
                    [s >= 0.5 for s in graded],
                    gold_c,
                )
            )
    return out


def _score_mae(metric: str, method: str, pred: Sequence[float], gold: Sequence[float]) -> Agreement:
    n = len(gold)
    mae = sum(abs(p - g) for p, g in zip(pred, gold, strict=True)) / n if n else float("nan")
    acc = sum((p == 1.0) == (g == 1.0) for p, g in zip(pred, gold, strict=True)) / n if n else float("nan")
    return Agreement(metric, method, n, accuracy=acc, mae=mae)


def agreement_table(rows: Sequence[Agreement]) -> str:
    """Markdown table of agreement rows."""
    head = "| metric | check | n | accuracy | kappa | AUC | MAE |\n|---|---|---|---|---|---|---|"
    return "\n".join([head, *(r.row() for r in rows)])


__all__ = [
    "LABELS_PATH",
    "Agreement",
    "LabelledCase",
    "agreement",
    "agreement_table",
    "auc",
    "cohen_kappa",
    "load_labels",
]
