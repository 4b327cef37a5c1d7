"""The app's Evaluation tab: its handlers (looked up in the built Blocks by function name, so the tests exercise what
the UI runs) over the sample knowledge base with the real embedder and index; a scripted LLM for the fast tests, the
real bundled one for a short run (slow)."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import gradio as gr
import pytest

from rag.llm import ScriptedLLM
from rag.qa import SAMPLE_QA_PATH, load_qa
from tests.test_evaluate import scripted  # answers with the Scope 1 figure, declines nothing
from ui import evaluation
from ui.i18n import t
from ui.render import report_for_display

ROOT = Path(__file__).resolve().parent.parent
EN_PDF = ROOT / "assets" / "northwind_metals_sustainability_report_2023.pdf"
ZH_PDF = ROOT / "assets" / "qinghe_energy_esg_report_2023_zh.pdf"
PNG = b"\x89PNG\r\n\x1a\n"


def handler(demo: gr.Blocks, name: str):
    fns = [f.fn for f in demo.fns.values() if f.name == name]
    assert fns, f"no handler {name!r} wired in the UI"
    return fns[0]


class Recorder:
    """Stands in for gr.Progress: records (fraction, message) calls; ``then(n)`` runs after the n-th call."""

    def __init__(self, then=None) -> None:
        self.calls: list[tuple[float, str | None]] = []
        self.then = then

    def __call__(self, fraction, desc=None, **_):
        self.calls.append((fraction, desc))
        if self.then is not None:
            self.then(len(self.calls))


@pytest.fixture(autouse=True)
def pinned_code(monkeypatch):
    """Cache keys hash the pipeline's and the judge's source: pin them, so edits to those files while the tests run
    (others work on them) can't void a rerun that the test expects to reuse."""
    monkeypatch.setattr("rag.evaluate.code_fingerprint", lambda *a, **k: "pinned")
    monkeypatch.setattr("rag.evaluate.judge_fingerprint", lambda judge: f"pinned-{judge.name}")


def shown(update: gr.Gallery | gr.File) -> list[tuple[str, Path]]:
    """(original name, served copy) of each file in a Gallery or File update (Gradio copies them into its cache)."""
    assert update.visible is True
    items = [v.get("image", v) for v in update.value]
    return [(v["orig_name"], Path(v["path"])) for v in items]


def write_qa(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


# ----------------------------------------------------------------------------------------------------- fast: scripted
def test_sample_set_runs_with_progress_report_charts_and_downloads(make_app):
    llm = ScriptedLLM(scripted)
    _, demo, ctl = make_app(samples=True, llm=llm)
    ui = ctl.new_session()
    progress = Recorder()

    status, report, charts, files = handler(demo, "on_eval")(None, "hybrid", "same", 0, ui, progress=progress)

    n = len(load_qa(SAMPLE_QA_PATH))
    assert status.startswith(f"✓ {n} questions evaluated") and "sample_qa.jsonl (bundled sample)" in status
    assert "⚠" not in status  # both sample documents are in the knowledge base: nothing skipped or failed
    # The report: overall, per document and per question, without the chart image lines (shown in the gallery).
    for heading in ("## Overall", "## Per document", "## Per question (worst first)"):
        assert heading in report
    assert "| hit@5 |" in report and "qinghe_energy_esg_report_2023_zh.pdf" in report and "nw-01" in report
    assert "![" not in report
    # The LLM that answered and judged is the app's own (no second model was built).
    assert llm.calls and "scripted" in report
    # Progress: one step per question (and its judging), rising to 1.
    fractions = [f for f, _ in progress.calls]
    assert len(fractions) >= n and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(0.0 <= f <= 1.0 for f in fractions) and any(f"1/{n} What were" in (m or "") for _, m in progress.calls)
    # Charts and downloads: the zip holds report.md and every chart; the files are offered one by one too.
    pngs = ["report_overall.png", "report_by_document.png", "report_questions.png"]
    assert [name for name, _ in shown(charts)] == pngs
    assert all(path.read_bytes()[:8] == PNG for _, path in shown(charts))
    assert [name for name, _ in shown(files)] == ["evaluation_report.zip", "report.md", *pngs]
    with zipfile.ZipFile(shown(files)[0][1]) as zf:
        assert sorted(zf.namelist()) == sorted(["report.md", *pngs])
        md = zf.read("report.md").decode("utf-8")
    assert "![overall](report_overall.png)" in md  # the downloaded report links the charts beside it
    # The run's own folder is outside the one Gradio serves by path (the answer cache may quote private documents).
    first = ui.eval_out
    assert (first / "report.md").is_file() and not first.resolve().is_relative_to(ctl.media_dir)
    assert not demo.evaluator.root.resolve().is_relative_to(ctl.media_dir)

    # A second run reuses every finished question: no LLM call, and the earlier report folder is cleaned up.
    calls = len(llm.calls)
    status2, *_ = handler(demo, "on_eval")(None, "hybrid", "same", 0, ui, progress=Recorder())
    assert f"({n} reused from an earlier run)" in status2 and len(llm.calls) == calls
    assert not first.exists() and (ui.eval_out / "report.md").is_file()


def test_private_uploads_are_evaluated_and_unknown_documents_skipped(make_app, tmp_path, monkeypatch):
    """Shared mode: a visitor's private upload is part of what they evaluate; a question about a document they
    don't have is skipped with a clear warning; a visitor runs at most EVAL_MAX_QUESTIONS questions."""
    monkeypatch.setattr(evaluation, "EVAL_MAX_QUESTIONS", 3)
    _, demo, ctl = make_app(llm=ScriptedLLM(scripted), admin_token="s3cret")
    visitor, other = ctl.new_session(), ctl.new_session()
    upload = tmp_path / "up" / EN_PDF.name
    upload.parent.mkdir()
    shutil.copyfile(EN_PDF, upload)
    assert all(r.ok for r in ctl.ingest([upload], visitor))
    sample = {r["id"]: r for r in map(json.loads, SAMPLE_QA_PATH.read_text(encoding="utf-8").splitlines())}
    qa = write_qa(tmp_path / "mine.jsonl", [sample["nw-01"], sample["qh-01"], sample["nw-02"], sample["nw-03"]])

    status, report, charts, files = handler(demo, "on_eval")(qa, "hybrid", "none", 0, visitor, progress=Recorder())

    assert status.startswith("✓ 2 questions evaluated") and "mine.jsonl" in status
    assert "⚠ Only the first 3 of 4 questions were run." in status
    assert "⚠ Skipped 1 question(s) whose document is not in the knowledge base: qinghe_energy" in status
    assert "## Skipped" in report and "qh-01" in report and "| nw-01 |" in report
    assert "- Judge: deterministic" in report
    assert len(shown(charts)) == 3 and shown(files)[0][1].is_file()
    # Another visitor sees no documents at all: a clear error, not an empty report.
    with pytest.raises(gr.Error) as err:
        handler(demo, "on_eval")(qa, "hybrid", "none", 0, other, progress=Recorder())
    assert err.value.message == "the knowledge base is empty: add documents before evaluating"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": "ok?"}\n{"question": \n', r"^qa\.jsonl:2: not valid JSON"),
        ("\n\n", r"^QA file qa\.jsonl has no rows$"),
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", r"^QA file qa\.jsonl is not UTF-8 text"),
        ('{"answer": "42"}\n', r"^qa\.jsonl: row 1 has no 'question'$"),
        ('{"question": "q?", "page": "two"}\n', r"^qa\.jsonl: row 1 has a page that is not a whole number"),
        ('{"question": "q?", "doc": "gone.pdf"}\n', r"^none of the documents the questions name .*: gone\.pdf$"),
    ],
)
def test_bad_uploads_give_a_clear_message(make_app, tmp_path, content, message):
    _, demo, ctl = make_app(samples=True, llm=ScriptedLLM(scripted))
    upload = tmp_path / "upload" / "qa.jsonl"  # Gradio keeps the uploaded name; messages must use it, not the path
    upload.parent.mkdir()
    (upload.write_bytes if isinstance(content, bytes) else upload.write_text)(content)
    with pytest.raises(gr.Error) as err:
        handler(demo, "on_eval")(str(upload), "hybrid", "none", 0, ctl.new_session(), progress=Recorder())
    assert re.search(message, err.value.message), err.value.message
    assert str(upload.parent) not in err.value.message


def test_only_the_offered_choices_are_accepted(make_app):
    """The handler is reachable through the API too: no other judge (which would load a model) and no other mode."""
    _, demo, ctl = make_app(samples=True, llm=ScriptedLLM(scripted))
    on_eval = handler(demo, "on_eval")
    with pytest.raises(gr.Error, match="judge must be one of same, none, got 'large'"):
        on_eval(None, "hybrid", "large", 0, ctl.new_session(), progress=Recorder())
    with pytest.raises(gr.Error, match="retrieval mode must be one of"):
        on_eval(None, "sparse", "none", 0, ctl.new_session(), progress=Recorder())


def test_stop_keeps_finished_questions_and_a_rerun_continues(make_app):
    llm = ScriptedLLM(scripted)
    _, demo, ctl = make_app(samples=True, llm=llm)
    ui = ctl.new_session()
    on_eval = handler(demo, "on_eval")

    def press_stop(calls: int) -> None:
        if calls == 4:  # question 2 is being judged: it finishes, question 3 never starts
            assert handler(demo, "on_eval_stop")(ui) == t("en", "eval_stopped")

    status, report, charts, files = on_eval(None, "hybrid", "none", 4, ui, progress=Recorder(then=press_stop))
    # The scores of the questions finished are shown (a stopped run showed none), read from the cache.
    assert status.startswith("Stopped after 2 of 4 questions: the scores below are for those."), status
    assert "✓ 2 questions evaluated" in status
    assert "| hit@5 |" in report and len(shown(charts)) == 3 and shown(files)[0][0] == "evaluation_report.zip"
    asked = len(llm.calls)
    assert asked == 2

    status, *_ = on_eval(None, "hybrid", "none", 4, ui, progress=Recorder())
    assert status.startswith("✓ 4 questions evaluated") and "(2 reused from an earlier run)" in status
    assert len(llm.calls) == asked + 2


def test_stop_in_the_chinese_interface_says_stopped_in_chinese(make_app):
    """Switched to 中文 with the toggle, Stop answers in Chinese, and so does the status of the run it stopped."""
    llm = ScriptedLLM(scripted)
    _, demo, ctl = make_app(samples=True, llm=llm)
    ui = ctl.new_session()
    handler(demo, "on_lang")("zh", ui)
    replies: list[str] = []

    def press_stop(calls: int) -> None:
        if calls == 4:  # question 2 is being judged: it finishes, question 3 never starts
            replies.append(handler(demo, "on_eval_stop")(ui))

    status, *_ = handler(demo, "on_eval")(None, "hybrid", "none", 4, ui, progress=Recorder(then=press_stop))
    assert replies == [t("zh", "eval_stopped")] and t("zh", "eval_stopped") != t("en", "eval_stopped")
    assert "Stopped" not in replies[0] and "已停止" in replies[0]
    assert status.startswith(t("zh", "eval_stopped_partial").format(n=2, total=4)), status
    assert "Stopped" not in status


def test_evaluation_runs_beside_chat_and_stop_cancels_a_queued_run(make_app):
    _, demo, _ = make_app(samples=True)
    fns = {f.name: f for f in demo.fns.values()}
    run, chat = fns["on_eval"], fns["stream_answer"]
    assert run.concurrency_id == "eval" and run.concurrency_limit == 1
    assert chat.concurrency_id != run.concurrency_id and fns["on_upload"].concurrency_id != run.concurrency_id
    assert run.show_progress == "full" and len(run.show_progress_on) == 1
    ids = {f.name: i for i, f in demo.fns.items()}
    stop_dep = next(d for d in demo.config["dependencies"] if d["id"] == ids["on_eval_stop"])
    assert stop_dep["queue"] is False  # Stop answers at once, even while the queue is busy
    # Gradio wires ``cancels`` as a second listener on the same button: it drops a run still waiting in the queue.
    assert any(
        d["targets"] == stop_dep["targets"] and d["cancels"] == [ids["on_eval"]] for d in demo.config["dependencies"]
    )


def test_report_display_is_inert():
    md = (
        "# Evaluation report\n\n![overall](report_overall.png)\n\n"
        "| nw-01 | q | [click](http://evil.example/x) ![img](https://evil.example/a.png) <script>x</script> "
        "www.evil.example |\n"
    )
    shown = report_for_display(md)
    assert "report_overall.png" not in shown and "# Evaluation report" in shown
    assert "<script>" not in shown and "&lt;script&gt;" in shown
    assert not re.search(r"(?<!\\)\[", shown) and not re.search(r"(?<!\\)\]\(", shown)
    assert "http://" not in shown and "https://" not in shown and "www." not in shown.replace("www\\.", "")


def test_language_toggle_switches_the_evaluation_labels(make_app):
    _, demo, ctl = make_app(samples=True)
    out = handler(demo, "on_lang")("zh", ctl.new_session())
    labels = [getattr(u, "label", None) for u in out] + [getattr(u, "value", None) for u in out]
    assert all(label in labels for label in ("评估", "检索方式", "评判模型", "开始评估", "停止")), labels
    radios = [u for u in out if isinstance(u, gr.Radio)]
    choices = [c for r in radios for c in r.choices]
    assert ("混合（与问答相同）", "hybrid") in choices and ("仅确定性检查（快速）", "none") in choices
    intro = next(u.value for u in out if isinstance(u, gr.Markdown) and "示例集" in (u.value or ""))
    assert f"{len(load_qa(SAMPLE_QA_PATH))} 个问题" in intro


# ---------------------------------------------------------------------------------------------------- slow: real LLM
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_sample_questions_with_the_real_small_llm(make_app, llm_small):
    """The real bundled model answers and judges the first two sample questions (the limit field)."""
    _, demo, ctl = make_app(samples=True, llm=llm_small)
    ui = ctl.new_session()
    progress = Recorder()
    status, report, charts, files = handler(demo, "on_eval")(None, "hybrid", "same", 2, ui, progress=progress)
    print(status, report, sep="\n")
    total = len(load_qa(SAMPLE_QA_PATH))
    assert status.startswith("✓ 2 questions evaluated") and f"Only the first 2 of {total}" in status
    assert "failed" not in status
    assert "| nw-01 |" in report and "| nw-02 |" in report and "Judge: " + llm_small.name in report
    # Each question's row carries scores in [0, 1] (a number or "–" where a metric does not apply).
    for qid in ("nw-01", "nw-02"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {qid} |"))
        cells = [c.strip() for c in row.split("|")[4:12]]
        assert all(c == "–" or 0.0 <= float(c) <= 1.0 for c in cells), row
    assert all(path.read_bytes()[:8] == PNG for _, path in shown(charts)) and len(shown(charts)) == 3
    with zipfile.ZipFile(shown(files)[0][1]) as zf:
        assert "report.md" in zf.namelist()
    assert progress.calls[-1][0] == 1.0
