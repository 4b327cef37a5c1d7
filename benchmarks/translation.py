"""Query translation (issue 14/15): does the bundled model keep the question's company when it translates?

For every cross-lingual question of the verified set (``--set dev|test``: Chinese questions about English reports,
English questions about Chinese documents), the question is translated into its document's language twice in one
run, with the current prompt (``rag.translate``) and with the session-7 prompt, whose example was "西门子 ->
Siemens". Reported per direction with 95% bootstrap intervals:

- company kept: the translation names the item's company (its English name, or for a Chinese company its Chinese
  name or the English question's form of it);
- other company named: it names a company of another item (the "Baidu answered from Tencent's report" confusion,
  made by the translation before retrieval even starts);
- usable: ``clean_translation`` kept a translation at all.

    python benchmarks/translation.py --set dev [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fmt_ci, machine, today, verified_questions
from rag.llm import ChatMessage, make_llm
from rag.prompt import SYSTEM_PROMPT, sanitize
from rag.settings import Settings
from rag.translate import MAX_TOKENS, clean_translation, translate_messages

# The prompt before this benchmark (commit 57142c0), kept verbatim as the baseline.
_BEFORE = {
    "en": (
        "Translate the question below into English, to search a company's ESG report with it. Do not answer it. Keep "
        "company names (in their usual English form), figures and years.\n"
        "Example: 西门子2023年的范围1排放是多少？ -> What were Siemens' Scope 1 emissions in 2023?\n\n"
        "Question: {question}\nEnglish question:"
    ),
    "zh": (
        "把下面的问题翻译成中文，用于检索企业的ESG报告。不要回答问题。保留公司名称、数字和年份。\n"
        "例：What were Siemens' Scope 1 emissions in 2023? -> 西门子2023年的范围1排放是多少？\n\n"
        "问题：{question}\n中文问题："
    ),
}


def _before_messages(question: str, target: str) -> tuple[ChatMessage, ...]:
    return (ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", _BEFORE[target].format(question=question)))


def _names(company: str) -> list[str]:
    """Forms of a company's name a translation may use ("Samsung Electronics" -> "samsung")."""
    low = company.lower()
    return [low, low.split()[0]] if re.match(r"[a-z]", low) else [low]


def _names_in(text: str, company: str) -> bool:
    """``text`` (lower-cased) names ``company``: Latin names as whole words ("PRI" is not in "price")."""
    return any(
        re.search(rf"(?<![a-z]){re.escape(n)}(?![a-z])", text) if re.match(r"[a-z]", n) else n in text
        for n in _names(company)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=("dev", "test"), required=True)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    items = [r for r in verified_questions(args.set) if r["lang_pair"] in ("zh-en", "en-zh") and r.get("company")]
    companies = {r["company"] for r in verified_questions()}
    llm = make_llm(Settings.from_env())
    llm.load()
    rows, wall = [], time.perf_counter()
    for item in items:
        question, target = sanitize(item["question"]).strip(), item["lang_pair"].split("-")[1]
        # the question's own form of a Chinese company (the English question names "SynTao Green Finance")
        own = [item["company"].lower()] + [w.lower() for w in re.findall(r"[A-Z][\w&]+(?:\s+[A-Z][\w&]+)*", question)]
        row = {"id": item["id"], "lang_pair": item["lang_pair"], "company": item["company"]}
        for config, messages in (("now", translate_messages), ("before", _before_messages)):
            raw = "".join(llm.stream(messages(question, target), max_tokens=MAX_TOKENS, stop=("\n",)))
            text = clean_translation(raw, question, target)
            low = (text or "").lower()
            kept = _names_in(low, item["company"]) or (
                not re.match(r"[a-z]", item["company"].lower()) and any(n and n in low for n in own[1:])
            )
            others = [c for c in companies if c != item["company"] and _names_in(low, c)]
            others = [c for c in others if not _names_in(question.lower(), c)]
            row[config] = {"text": text, "usable": float(text is not None), "kept": float(text is not None and kept)}
            row[config]["other"] = float(bool(others))
        rows.append(row)
        print(f"{item['id']} {row['now']['text']!r} | before {row['before']['text']!r}", file=sys.stderr, flush=True)

    lines = [
        f"{args.set} split, {len(rows)} cross-lingual questions, {llm.name}, {today()}, {machine()}, "
        f"wall {time.perf_counter() - wall:.0f} s",
        "",
        "| direction | n | company kept: now | before | other company named: now | before | usable: now | before |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pair in ("zh-en", "en-zh", "all"):
        sub = [r for r in rows if pair in ("all", r["lang_pair"])]
        if not sub:
            continue
        cells = [fmt_ci([r[c][m] for r in sub]) for m in ("kept", "other", "usable") for c in ("now", "before")]
        lines.append(f"| {pair} | {len(sub)} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"date": today(), "rows": rows}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
