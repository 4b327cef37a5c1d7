"""Validate the verified question sets (benchmarks/data/questions_*.jsonl) against the real documents.

Run: ``python benchmarks/data/check_questions.py [--loader] [--no-cache] [FILE ...]``. Exits 1 on any failure.

For every item it checks the schema and that ids are unique across all files. For an answerable item, ``evidence``
must occur in the text pypdf extracts from one of ``pages`` (1-based), after normalisation (NFKC, lower case, quotes
folded, hyphens, dashes and all whitespace removed), and each of ``figures`` must occur in the evidence. For an
unanswerable item, none of ``absent_terms`` may occur anywhere in the document (required for "not_disclosed"; for
items without a document, e.g. "absent_company", the terms are searched in every document the files name).
``--loader`` also requires the evidence in the project's cleaned page text (``rag.pdf.load_pdf``, what retrieval
sees). Documents are found under ``$ESG_TESTDATA`` (default ``../shared/testdata``) in esg_pdfs/, zh_pdfs/ or
finance_pdfs/. pypdf's page text is cached under ``$XDG_CACHE_HOME/esg-rag/question-text``, keyed by the file's
SHA-256 and the pypdf version (``--no-cache`` extracts again). Finally it prints the counts per split x lang_pair x
kind x answerable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import unicodedata
from collections import Counter
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DOC_DIRS = ("esg_pdfs", "zh_pdfs", "finance_pdfs")

SPLITS = {"dev", "test"}
LANG_PAIRS = {"en-en", "zh-en", "zh-zh", "en-zh"}
KINDS = {"figure", "table", "yesno", "qualitative"}
UNANSWERABLE_KINDS = {"not_disclosed", "other_company", "wrong_year", "absent_company"}
REQUIRED = {
    "id": str,
    "split": str,
    "lang_pair": str,
    "question": str,
    "answer": str,
    "doc": (str, type(None)),
    "pages": list,
    "evidence": str,
    "figures": list,
    "kind": str,
    "table_cell": (dict, type(None)),
    "answerable": bool,
    "unanswerable_kind": (str, type(None)),
    "company": str,
    "year": (int, type(None)),
}
MIN_EVIDENCE_CHARS = 20

_FOLD = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u00ad": "-",
        "\u200b": "",
        "\u200c": "",
        "\u200d": "",
        "\u2060": "",
        "\ufeff": "",
    }
)
# Whitespace and hyphens carry no meaning for matching: PDFs break words at line ends ("sustain-\nable"), draw soft
# hyphens as hyphens ("science\xadbased"), and text extraction splits or joins words ("tar get", "Surfacewater").
_DROP_RE = re.compile(r"[\s-]+")


def normalise(text: str) -> str:
    """Text folded for matching: NFKC, lower case, quotes unified, dashes and all whitespace removed."""
    text = unicodedata.normalize("NFKC", text).translate(_FOLD).lower()
    return _DROP_RE.sub("", text)


def testdata_dir() -> Path:
    """The shared, read-only test material (``ESG_TESTDATA`` overrides ``../shared/testdata``)."""
    return Path(os.environ.get("ESG_TESTDATA", ROOT.parent / "shared" / "testdata")).resolve()


@cache
def find_doc(name: str) -> Path | None:
    """The path of a document file named in a question set, or None when it is not in the test material."""
    for sub in DOC_DIRS:
        path = testdata_dir() / sub / name
        if path.is_file():
            return path
    return None


USE_CACHE = True


def cache_dir() -> Path:
    """Where extracted page text is kept between runs (``$XDG_CACHE_HOME/esg-rag/question-text``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "esg-rag" / "question-text"


def _extract(path: Path) -> list[str]:
    """pypdf's text of every page, cached on disk by the file's SHA-256 and the pypdf version (extraction of the
    nine reports takes ~30 s of CPU; a cached run reads JSON)."""
    import pypdf

    key = f"{hashlib.sha256(path.read_bytes()).hexdigest()[:32]}-pypdf{pypdf.__version__}.json"
    cached = cache_dir() / key
    if USE_CACHE and cached.is_file():
        return json.loads(cached.read_text(encoding="utf-8"))
    texts = [page.extract_text() or "" for page in pypdf.PdfReader(path).pages]
    if USE_CACHE:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        tmp.replace(cached)
    return texts


@cache
def raw_pages(name: str) -> tuple[str, ...]:
    """Normalised pypdf text of every page of a document (index 0 = page 1)."""
    return tuple(normalise(text) for text in _extract(find_doc(name)))


@cache
def loader_pages(name: str) -> tuple[str, ...]:
    """Normalised text of every page as the project's loader cleans it (index 0 = page 1)."""
    sys.path.insert(0, str(ROOT))
    from rag.pdf import load_pdf

    return tuple(normalise(p.text) for p in sorted(load_pdf(find_doc(name)), key=lambda p: p.number))


def check_schema(item: dict) -> list[str]:
    """Schema problems of one item (empty when it is well formed)."""
    errors = []
    for key, typ in REQUIRED.items():
        if key not in item:
            errors.append(f"missing field {key!r}")
        elif not isinstance(item[key], typ) or (typ is int and isinstance(item[key], bool)):
            errors.append(f"field {key!r} has type {type(item[key]).__name__}")
    if errors:
        return errors
    if item["split"] not in SPLITS:
        errors.append(f"split {item['split']!r} not in {sorted(SPLITS)}")
    if item["lang_pair"] not in LANG_PAIRS:
        errors.append(f"lang_pair {item['lang_pair']!r} not in {sorted(LANG_PAIRS)}")
    if item["kind"] not in KINDS:
        errors.append(f"kind {item['kind']!r} not in {sorted(KINDS)}")
    if not item["question"].strip() or not item["answer"].strip():
        errors.append("empty question or answer")
    if item["kind"] == "table" and item["answerable"]:
        cell = item["table_cell"] or {}
        if not (isinstance(cell.get("row"), str) and isinstance(cell.get("column"), str)):
            errors.append("table item without table_cell {'row': str, 'column': str}")
    if not all(isinstance(f, str) and f.strip() for f in item["figures"]):
        errors.append("figures must be non-empty strings")
    if item["answerable"]:
        if item["unanswerable_kind"] is not None:
            errors.append("answerable item with an unanswerable_kind")
        if not item["doc"]:
            errors.append("answerable item without doc")
        pages_ok = all(isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in item["pages"])
        if not item["pages"] or not pages_ok:
            errors.append("answerable item needs pages: 1-based ints")
        if len(item["evidence"].strip()) < MIN_EVIDENCE_CHARS:
            errors.append(f"evidence shorter than {MIN_EVIDENCE_CHARS} characters")
    else:
        if item["unanswerable_kind"] not in UNANSWERABLE_KINDS:
            errors.append(f"unanswerable_kind {item['unanswerable_kind']!r} not in {sorted(UNANSWERABLE_KINDS)}")
        if item["pages"] or item["evidence"] or item["figures"]:
            errors.append("unanswerable item must have pages [], evidence '' and figures []")
        terms = item.get("absent_terms")
        if terms is not None and not (isinstance(terms, list) and all(isinstance(t, str) and t.strip() for t in terms)):
            errors.append("absent_terms must be a list of non-empty strings")
        if item["unanswerable_kind"] == "not_disclosed" and not (terms and item["doc"]):
            errors.append("not_disclosed item needs doc and absent_terms (the key terms searched for)")
    return errors


def check_content(item: dict, kb_docs: list[str], use_loader: bool) -> list[str]:
    """Problems found by reading the documents for one schema-valid item."""
    errors = []
    doc = item["doc"]
    if doc and find_doc(doc) is None:
        return [f"document {doc!r} not found under {testdata_dir()}"]
    if item["answerable"]:
        n = len(raw_pages(doc))
        bad = [p for p in item["pages"] if p > n]
        if bad:
            return [f"pages {bad} beyond the document's {n} pages"]
        evidence = normalise(item["evidence"])
        pages = raw_pages(doc)
        if not any(evidence in pages[p - 1] for p in item["pages"]):
            errors.append(f"evidence not found in pypdf text of pages {item['pages']}: {item['evidence'][:80]!r}")
        if use_loader:
            cleaned = loader_pages(doc)
            if not any(evidence in cleaned[p - 1] for p in item["pages"] if p <= len(cleaned)):
                errors.append(f"evidence not found in rag.pdf text of pages {item['pages']}")
        for fig in item["figures"]:
            if normalise(fig) not in evidence:
                errors.append(f"figure {fig!r} not in evidence")
    else:
        searched = [doc] if doc else kb_docs
        for term in item.get("absent_terms") or []:
            t = normalise(term)
            for name in searched:
                hits = [i + 1 for i, text in enumerate(raw_pages(name)) if t in text]
                if hits:
                    errors.append(f"absent term {term!r} occurs in {name} on pages {hits[:5]}")
    return errors


def counts_table(items: list[dict]) -> str:
    """Counts per split x lang_pair x kind x answerable, one row per combination, with totals."""
    c = Counter((i["split"], i["lang_pair"], i["kind"], i["answerable"]) for i in items)
    lines = [f"{'split':5} {'lang':5} {'kind':11} {'answerable':10} {'n':>4}"]
    for (split, lang, kind, ans), n in sorted(c.items()):
        lines.append(f"{split:5} {lang:5} {kind:11} {ans!s:10} {n:4d}")
    for field in ("split", "lang_pair", "kind", "answerable", "unanswerable_kind", "doc"):
        tally = Counter(str(i.get(field)) for i in items)
        lines.append(f"by {field}: " + ", ".join(f"{k}={v}" for k, v in sorted(tally.items())))
    lines.append(f"total: {len(items)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Validate the files; print failures and counts; return the exit status (0 = all valid)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="question files (default: all questions_*.jsonl here)")
    parser.add_argument("--loader", action="store_true", help="also require evidence in rag.pdf's cleaned text")
    parser.add_argument("--no-cache", action="store_true", help="extract the text again instead of reading the cache")
    args = parser.parse_args(argv)
    global USE_CACHE
    USE_CACHE = not args.no_cache
    files = args.files or sorted(HERE.glob("questions_*.jsonl"))
    if not files:
        print("no question files found", file=sys.stderr)
        return 1
    failures: list[str] = []
    items: list[dict] = []
    for path in files:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                failures.append(f"{path.name}:{lineno}: invalid JSON ({exc})")
                continue
            if not isinstance(item, dict):
                failures.append(f"{path.name}:{lineno}: not a JSON object")
                continue
            item["_where"] = f"{path.name}:{lineno} {item.get('id')}"
            items.append(item)
    ids = Counter(i.get("id") for i in items)
    failures += [f"duplicate id {k!r} ({n} times)" for k, n in ids.items() if n > 1]
    valid = []
    for item in items:
        errs = check_schema(item)
        failures += [f"{item['_where']}: {e}" for e in errs]
        if not errs:
            valid.append(item)
    kb_docs = sorted({i["doc"] for i in valid if i["doc"] and find_doc(i["doc"])})
    for item in valid:
        failures += [f"{item['_where']}: {e}" for e in check_content(item, kb_docs, args.loader)]
    print(counts_table(valid), flush=True)
    for f in failures:
        print("FAIL", f, file=sys.stderr)
    print(f"{len(items)} items in {len(files)} files, {len(failures)} failures", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
