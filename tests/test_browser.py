"""End to end in a real browser: headless Chromium drives ``python app.py`` on a fresh knowledge base.

The app builds its sample knowledge base on first start; the test then drops a real ESG report on the upload area
(a genuine ``dragenter``/``dragover``/``drop`` sequence carrying a File built in the page), waits for indexing, asks
a question, watches the answer stream in, checks the cited source and its page, and saves screenshots. On the way:
the start-up status until the models are ready, the message for an empty question, embedding progress during the
upload, no English label left in the 中文 interface, and an example question asked by a click. Debian's chromium and
chromedriver are used; nothing is downloaded.

Screenshots go to ``tests/artifacts/screenshots/`` (git-ignored), so a test run never changes tracked files. To
refresh the README's pictures, run it with ``ESG_SCREENSHOTS=docs/screenshots`` (a folder, relative to the repo).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from rag.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / os.environ.get("ESG_SCREENSHOTS", "tests/artifacts/screenshots")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DROPPED = "esg_pdfs/climretrieve_costco_climate_action_plan.pdf"
QUESTION = "What is Costco's Scope 1 and 2 emissions reduction target for 2030?"
GOLD_PAGE = 6  # "39% absolute reduction by 2030 compared to our 2020 base year" (checked with pypdf)
GOLD_FIGURE = "39%"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python app.py`` on a fresh knowledge base and a free port; yields the URL and the log path."""
    root = tmp_path_factory.mktemp("browser")
    port = _free_port()
    log_path = root / "app.log"
    env = {
        **os.environ,
        "ESG_KB_DIR": str(root / "kb"),
        "ESG_PORT": str(port),
        "ESG_HOST": "127.0.0.1",
        "ESG_LLM": Settings().llm,  # the default model, as users get it
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(root / "gradio"),
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 900  # first start ingests the samples (two PDFs and a transcribed video)
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"app did not come up:\n{log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(1)
        yield url, log_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own process group: the app and its parser/forkserver children
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Debian chromium and chromium-driver are required (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)  # with the driver path too, selenium-manager never runs
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--lang=en-US",
        "--window-size=1400,1050",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, condition, timeout: float, what: str, poll: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(condition)
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


DROP_JS = """
const [b64, name, selector] = arguments;
const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
const file = new File([bytes], name, {type: "application/pdf"});
const dt = new DataTransfer();
dt.items.add(file);
const target = document.querySelector(selector);
if (!target) return "no drop target " + selector;
for (const type of ["dragenter", "dragover", "drop"]) {
  target.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: dt}));
}
return "dropped";
"""

# The per-file result lines (the progress overlay on the same output also names the file while it runs).
RESULT_LINES = (
    "return Array.from(document.querySelectorAll('#esg-results .esg-results > div'))"
    ".map(e => e.textContent).join('\\n');"
)
# Visible text (not screen-reader-only, not hidden by font-size 0) outside data: table rows, example questions, file
# names and paths, the header's sample citations, and the upload result lines (the core's messages, in English).
VISIBLE_TEXT = """
const out = [];
const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walk.nextNode()) {
  const node = walk.currentNode, el = node.parentElement, text = node.textContent.trim();
  const data = '#esg-docs-table, #esg-transcript, #esg-results, tbody, .gallery, code, em, footer';
  if (!text || !el || el.closest(data)) continue;
  const r = el.getBoundingClientRect();
  if (r.width < 3 || r.height < 3 || parseFloat(getComputedStyle(el).fontSize) < 1) continue;
  if (getComputedStyle(el).visibility === 'hidden' || !el.offsetParent) continue;
  out.push(text);
}
return out;
"""
# English that may stay in the Chinese interface: the toggle's own "English", the file kind, and the evaluation
# intro's JSON keys.
ZH_ALLOWED = {"English", "PDF", "question", "answer", "doc", "page", "evidence", "answerable"}


def english_left(driver) -> list[str]:
    texts = driver.execute_script(VISIBLE_TEXT)
    return sorted(
        {x for x in texts if re.search(r"[A-Za-z]{3,}", x) and not re.search(r"[\u4e00-\u9fff]", x)} - ZH_ALLOWED
    )


def close_toasts(driver) -> None:
    """Close every message toast, as a user would: they sit over the top-right corner (the language toggle)."""
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        buttons = driver.find_elements("css selector", "[data-testid=toast-close]")
        if not buttons:
            return
        for b in buttons:
            # The toast may close itself between the lookup and the click.
            with contextlib.suppress(WebDriverException):
                b.click()
        time.sleep(0.3)
    raise AssertionError("the message toasts did not close")


LAST_BOT = "const m = document.querySelectorAll('#esg-chat .esg-answer'); return m.length ? m[m.length - 1] : null;"


def test_drop_a_pdf_ask_and_see_the_cited_page(server, browser, testdata):
    url, log_path = server
    d = browser
    d.get(url)
    SHOTS.mkdir(parents=True, exist_ok=True)
    wait_for(d, "return document.querySelector('#esg-question textarea') !== null", 60, "the page")
    # Cold start: the page says what the server is preparing until the models are loaded (ui/warmup.py).
    wait_for(
        d,
        "const s = document.querySelector('#esg-status')?.innerText.trim() || '';"
        " return /^(Preparing the|✓ Models ready)/.test(s) ? s : null;",
        30,
        "the start-up status",
    )
    wait_for(d, "return document.querySelector('#esg-status')?.innerText.includes('Models ready')", 600, "ready")

    # An empty question is not asked: a message says so.
    d.find_element("css selector", "#esg-send").click()
    wait_for(
        d,
        "return Array.from(document.querySelectorAll('[data-testid=toast-body]'))"
        ".some(t => t.innerText.includes('Type a question first'))",
        30,
        "the empty-question message",
    )
    assert not d.execute_script("return document.querySelectorAll('#esg-chat .esg-answer').length")

    # Drop a real report on the upload area.
    pdf = testdata / DROPPED
    result = d.execute_script(
        DROP_JS, base64.b64encode(pdf.read_bytes()).decode(), pdf.name, "#esg-upload button.upload-container"
    )
    assert result == "dropped", result
    progress_seen: set[str] = set()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        texts = d.execute_script(
            "return Array.from(document.querySelectorAll('.progress-text, .progress-level-inner, .meta-text'))"
            ".map(e => e.textContent.trim()).filter(Boolean);"
        )
        if not any(pdf.name in t for t in progress_seen) and any(pdf.name in t for t in texts):
            d.save_screenshot(str(SHOTS / "upload-progress.png"))
        progress_seen.update(texts)
        done = d.execute_script(RESULT_LINES)
        if pdf.name in done:
            break
        time.sleep(0.2)
    results = d.execute_script(RESULT_LINES)
    assert f"{pdf.name}: ingested" in results, results
    assert any(pdf.name in t for t in progress_seen), progress_seen  # the ingest progress reached the page
    # Embedding is reported as it goes (58 passages: after 0 and after 32), not only at the start.
    assert any(re.search(r"embedding 32/\d+ passages", t) for t in progress_seen), progress_seen
    d.save_screenshot(str(SHOTS / "upload.png"))

    # The documents tab lists the samples built on first start and the dropped report, with their metadata.
    tab = next(b for b in d.find_elements("css selector", "button[role='tab']") if b.text.strip() == "Documents")
    tab.click()
    table = wait_for(
        d,
        "const t = document.querySelector('#esg-docs-table'); return t && t.textContent.includes(arguments[0])"
        " ? t.textContent : null;".replace("arguments[0]", repr(pdf.name)),
        30,
        "the documents table",
    )
    for name in (
        "northwind_metals_sustainability_report_2023.pdf",
        "qinghe_energy_esg_report_2023_zh.pdf",
        "northwind_metals_briefing_2023.mp4",
    ):
        assert name in table, table
    d.save_screenshot(str(SHOTS / "documents.png"))

    # The language toggle switches the interface to Chinese. The empty-question toast can still cover it
    # (Gradio shows it for 10 s; a fast upload ends sooner): close the toasts first, as a user would.
    close_toasts(d)
    d.find_element("xpath", "//*[@id='esg-lang']//label[contains(., '中文')]").click()
    wait_for(
        d,
        "return Array.from(document.querySelectorAll(\"button[role='tab']\"))"
        ".some(b => b.textContent.trim() === '问答')",
        30,
        "the Chinese tab labels",
    )
    assert "ESG 文档助手" in d.find_element("css selector", "#esg-header").text
    d.save_screenshot(str(SHOTS / "documents-zh.png"))
    # No English label is left in the Chinese interface, on any tab (Gradio's own "Drop File Here" included).
    for tab_zh in ("文档", "问答", "评估"):
        next(b for b in d.find_elements("css selector", "button[role='tab']") if b.text.strip() == tab_zh).click()
        # The tab renders asynchronously: poll (a fixed pause raced a busy machine) and report what stayed English.
        deadline = time.monotonic() + 30
        while english_left(d) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert english_left(d) == [], (tab_zh, english_left(d))

    # Back to English and the chat tab.
    close_toasts(d)
    d.find_element("xpath", "//*[@id='esg-lang']//label[contains(., 'English')]").click()
    wait_for(
        d,
        "return Array.from(document.querySelectorAll(\"button[role='tab']\"))"
        ".some(b => b.textContent.trim() === 'Chat')",
        30,
        "the English tab labels",
    )
    next(b for b in d.find_elements("css selector", "button[role='tab']") if b.text.strip() == "Chat").click()
    wait_for(d, "return document.querySelector('#esg-question textarea')?.offsetParent != null", 30, "the chat tab")

    # Ask; the passages being read appear before the answer streams in.
    box = d.find_element("css selector", "#esg-question textarea")
    box.send_keys(QUESTION)
    d.find_element("css selector", "#esg-send").click()
    seen: list[str] = []
    reading_before_text = None
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        state = d.execute_script(
            LAST_BOT.replace("return m.length ? m[m.length - 1] : null;", "")
            + "if (!m.length) return null; const a = m[m.length - 1];"
            "return [a.classList.contains('esg-streaming'), !!a.querySelector('.esg-reading'),"
            " (a.querySelector('.esg-text:not(.esg-muted)')?.textContent || '')];"
        )
        if state:
            streaming, reading, text = state
            if streaming and text and reading_before_text is None:
                reading_before_text = reading
            if text and (not seen or seen[-1] != text):
                seen.append(text)
            if not streaming and text:
                break
        time.sleep(0.1)
    else:
        raise AssertionError(
            f"no answer within the time limit; app log:\n{log_path.read_text(errors='replace')[-3000:]}"
        )
    assert reading_before_text, "the passages being read were not shown before the answer text"
    assert len(seen) >= 3, seen  # the answer arrived in pieces, not at once

    answer = d.execute_script(LAST_BOT)
    d.execute_script("arguments[0].scrollIntoView({block: 'end'});", answer)
    time.sleep(0.5)
    d.save_screenshot(str(SHOTS / "chat.png"))
    badge = answer.find_element("css selector", ".esg-badge").get_attribute("class")
    assert "esg-route-rag" in badge
    text = answer.find_element("css selector", ".esg-text").text
    labels = [e.text for e in answer.find_elements("css selector", ".esg-source .esg-label")]
    assert GOLD_FIGURE in text, (text, labels)
    pages = [
        int(p) for label in labels if label.startswith(pdf.name) for p in re.findall(r"\d+", label.split(",", 1)[1])
    ]
    assert GOLD_PAGE in pages, (labels, text)
    # The cited sentence is highlighted in the passage of the source card.
    marks = [e.get_attribute("textContent") for e in answer.find_elements("css selector", ".esg-source mark")]
    assert any(GOLD_FIGURE in m for m in marks), marks

    # Clicking an example asks it ("What is Scope 3?" is answered from the FAQ).
    answers = d.execute_script("return document.querySelectorAll('#esg-chat .esg-answer').length")
    example = next(b for b in d.find_elements("css selector", "button.gallery-item") if b.text == "What is Scope 3?")
    example.click()
    wait_for(
        d,
        f"const m = document.querySelectorAll('#esg-chat .esg-answer'); return m.length > {answers}"
        " && !m[m.length - 1].classList.contains('esg-streaming')"
        " && !!m[m.length - 1].querySelector('.esg-route-faq');",
        300,
        "the example's answer",
    )
