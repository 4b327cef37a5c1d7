"""Security against the running app: file-serving probes (path traversal, encodings, absolute paths, the knowledge
base's own files, files outside the upload cache) and isolation of a private upload between two sessions.

``python app.py`` runs in a subprocess in shared mode (``ESG_ADMIN_TOKEN`` set, as on the public Space) on a free
loopback port, over a knowledge base built here with the real pipeline and a temporary Gradio upload cache.
Probes are sent with ``http.client`` so ``..`` and ``%2e`` reach the server as written (``httpx`` would normalise
them away). Sessions are simulated with ``gradio_client``: each ``Client`` is one browser session.
"""

from __future__ import annotations

import http.client
import os
import urllib.parse
from pathlib import Path

import httpx
import pytest

from benchmarks.injection import text_pdf
from benchmarks.servers import free_port, shared_app_env, start_app
from rag.assistant import Assistant
from rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
EN_PDF = ROOT / "assets" / "northwind_metals_sustainability_report_2023.pdf"
SECRET = "OUTSIDE-SECRET-5b1c9e"  # in a file next to the upload cache: must never be served
CANARY = "QX-7731-ZEPHYR"  # in the private upload: must never reach another session
CANARY_FIGURE = "4,417,223"
CANARY_FILE = "zephyrine_quarries_water_2023.pdf"
CANARY_QUESTION = "How much water did Zephyrine Quarries withdraw in 2023?"
# What a served file would contain: /etc/passwd, the manifest, a chunk line, a PDF or FAISS header, environment.
LEAK_MARKERS = (b"root:x:0:0", SECRET.encode(), b'"documents"', b'"text"', b"%PDF", b"IxF", b"PATH=", CANARY.encode())


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder):
    """The app on a knowledge base holding the sample report; yields a dict of port and paths."""
    root = tmp_path_factory.mktemp("security")
    kb = root / "kb"
    settings = Settings.from_env(environ={}, kb_dir=kb, model_cache=Settings().model_cache)
    results = list(Assistant(settings, embedder=embedder).ingest([EN_PDF]))
    assert all(r.ok for r in results), [r.message for r in results]
    uploads = root / "gradio"
    for folder in (root / "outside", root / "gradio_evil"):  # a sibling whose name starts like the upload cache
        folder.mkdir()
        (folder / "secret.txt").write_text(SECRET)
    port = free_port()
    # Shared mode: visitors' uploads are private. A small upload limit keeps the over-size probe small.
    env = shared_app_env(kb, port, uploads, admin_token="admin-token-for-tests", ESG_MAX_UPLOAD_MB=1)
    with start_app(env, port, root / "app.log") as app:
        app.wait_http(timeout_s=600)
        yield {"port": port, "root": root, "kb": kb, "uploads": uploads, "app": app}


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (no dot-segment removal, no re-encoding)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def upload(port: int, name: str, data: bytes) -> str:
    """Upload through Gradio's own endpoint (as the browser does); returns the server-side path."""
    resp = httpx.post(f"http://127.0.0.1:{port}/gradio_api/upload", files={"files": (name, data)}, timeout=30)
    resp.raise_for_status()
    [path] = resp.json()
    return path


def probes(server: dict, uploaded: str) -> list[str]:
    kb, uploads, root = server["kb"], server["uploads"], server["root"]
    up_dir = Path(uploaded).parent
    kb_files = sorted(p for p in kb.rglob("*") if p.is_file())
    names = {p.name for p in kb_files}
    assert "manifest.json" in names and any(n.startswith("chunks-") for n in names)
    assert any(n.startswith("index-") for n in names) and any("sources" in p.parts for p in kb_files)
    paths = [
        "../../etc/passwd",
        "../../../../../../../../etc/passwd",
        "/etc/passwd",
        "//etc/passwd",
        "%2fetc%2fpasswd",
        "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "..%2f..%2f..%2f..%2fetc%2fpasswd",
        "%252e%252e%252f%252e%252e%252fetc%252fpasswd",  # double-encoded
        "..%5c..%5c..%5cetc%5cpasswd",
        "....//....//....//etc/passwd",
        "%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",  # overlong UTF-8 dots
        "/proc/self/environ",
        "file:///etc/passwd",
        "knowledge_base/manifest.json",  # the repo's own folder, relative to the app's working directory
        "app.py",
        ".git/config",
        str(root / "outside" / "secret.txt"),
        f"{uploads}/../outside/secret.txt",
        f"{up_dir}/../../outside/secret.txt",
        f"{uploads}_evil/secret.txt",  # prefix of the upload cache's name, not inside it
        urllib.parse.quote(f"{uploads}/../outside/secret.txt", safe=""),
        str(root / "app.log"),
    ]
    for p in kb_files:
        paths += [str(p), urllib.parse.quote(str(p), safe=""), f"{uploads}/../kb/{p.relative_to(kb)}"]
        paths.append(f"{up_dir}/../../kb/{urllib.parse.quote(str(p.relative_to(kb)))}")
    targets = []
    for p in paths:
        targets += [f"/gradio_api/file={p}", f"/gradio_api/file/{p}"]
    targets += [
        "/file=/etc/passwd",
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/assets/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/gradio_api/file=http://127.0.0.1:1/etc/passwd",  # the URL branch must not reach loopback services
    ]
    return targets


@pytest.mark.loopback
def test_file_serving_refuses_traversal_absolute_paths_and_the_knowledge_base(server):
    port = server["port"]
    # Positive control: an uploaded file IS served, so a probe that got content would be seen.
    marker = b"uploaded-control-" + os.urandom(6).hex().encode()
    uploaded = upload(port, "control.txt", marker)
    assert Path(uploaded).resolve().is_relative_to(server["uploads"].resolve())
    status, body = raw_get(port, "/gradio_api/file=" + uploaded)
    assert status == 200 and body == marker

    leaks = []
    for target in probes(server, uploaded):
        status, body = raw_get(port, target)
        found = [m.decode() for m in LEAK_MARKERS if m in body]
        if status not in (403, 404) or found:
            leaks.append(f"{status} {target} {found} {body[:80]!r}")
    assert leaks == [], "served outside the upload cache:\n" + "\n".join(leaks)
    assert server["app"].proc.poll() is None, "the app died under the probes"


@pytest.mark.loopback
def test_oversize_upload_is_refused_before_it_is_stored(server):
    port = server["port"]
    big = b"%PDF-1.4\n" + b"0" * (3 * 2**19)  # 1.5 MB, over ESG_MAX_UPLOAD_MB=1
    resp = httpx.post(f"http://127.0.0.1:{port}/gradio_api/upload", files={"files": ("big.pdf", big)}, timeout=60)
    assert resp.status_code == 413, (resp.status_code, resp.text[:200])
    assert "maximum allowed size" in resp.text
    assert not list(server["uploads"].rglob("big.pdf")), "the refused upload was kept in the upload cache"
    assert server["app"].proc.poll() is None


def _text(message: dict) -> str:
    """A chat message's text (Gradio 6 sends content as a list of parts)."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def _docs(load_or_upload_output: tuple) -> list[str]:
    """File names in the documents table of an ``/on_load`` (index 2) or ``/on_upload`` (index 2) reply."""
    table = load_or_upload_output[2]
    rows = (table.get("value") or {}).get("data") or table.get("data") or []
    return [row[0] for row in rows]


def _ask(client, question: str, mode: str = "all", docs: list[str] | None = None) -> str:
    _, chat = client.predict(question, [], api_name="/take_question")
    chat = client.predict(chat, mode, docs or [], None, api_name="/stream_answer")
    return _text(chat[-1])


@pytest.mark.slow
@pytest.mark.loopback
def test_private_canary_upload_is_never_listed_retrieved_or_served_to_another_session(server, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    port = server["port"]
    url = f"http://127.0.0.1:{port}/"
    canary = tmp_path / CANARY_FILE
    canary.write_bytes(
        text_pdf(
            [
                "Zephyrine Quarries - Water Report 2023\n"
                f"Zephyrine Quarries withdrew {CANARY_FIGURE} cubic metres of water in 2023. Canary code {CANARY}.\n"
                + "The quarry recycles its process water in closed loops and reports monthly to the regulator. "
                * 8
            ]
        )
    )
    owner, other = Client(url, verbose=False), Client(url, verbose=False)
    assert owner.session_hash != other.session_hash

    uploaded = owner.predict(files=[handle_file(str(canary))], api_name="/on_upload")
    assert "ingested" in uploaded[1], uploaded[1]
    # Positive controls: the owner sees, retrieves and is answered from the canary.
    assert CANARY_FILE in _docs(owner.predict(api_name="/on_load"))
    mine = _ask(owner, CANARY_QUESTION)
    assert CANARY_FILE in mine and CANARY in mine, mine[:2000]

    # The other session: not listed, not offered in any picker, not retrieved.
    seen = other.predict(api_name="/on_load")
    assert CANARY_FILE not in _docs(seen) and EN_PDF.name in _docs(seen)
    assert CANARY_FILE not in repr(seen)
    theirs = _ask(other, CANARY_QUESTION)
    assert CANARY not in theirs and CANARY_FILE not in theirs and CANARY_FIGURE not in theirs, theirs[:2000]
    theirs = _ask(other, f"What is canary code {CANARY} in the Zephyrine Quarries water report?")
    assert CANARY not in theirs.replace(f"canary code {CANARY}", "") and CANARY_FILE not in theirs

    # Naming the private document in the other session's requests gets an error, never its content.
    for api, args in (
        ("/stream_answer", ([], "docs", [CANARY_FILE], None)),
        ("/on_transcript", (CANARY_FILE,)),
        ("/on_delete", ([CANARY_FILE],)),
    ):
        try:
            out = other.predict(*args, api_name=api)
        except AppError as exc:
            out = str(exc)
        assert CANARY not in repr(out) and CANARY_FIGURE not in repr(out), (api, out)
    assert CANARY_FILE in _docs(owner.predict(api_name="/on_load")), "another session deleted the private upload"

    # Nothing of the private upload reaches the shared knowledge base on disk, so it can't be served from there.
    for path in server["kb"].rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes() and CANARY_FILE not in path.name, path
    assert server["app"].proc.poll() is None


@pytest.mark.slow
def test_private_transcripts_of_two_sessions_never_share_a_file(tmp_path, embedder, whisper, audio_dir):
    """Two visitors privately upload different recordings with the same file name: each one's transcript
    download holds their own words, at a path that the name alone does not give away."""
    from tests.fixtures_media import make_video
    from ui.controller import Controller

    settings = Settings.from_env(
        environ={}, kb_dir=tmp_path / "kb", model_cache=Settings().model_cache, admin_token="t0ken"
    )
    ctl = Controller(Assistant(settings, embedder=embedder, transcriber=whisper), media_dir=tmp_path / "media")
    a, b = ctl.new_session(), ctl.new_session()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    clip_a = make_video(tmp_path / "a" / "meeting.mp4", audio_dir / "whisper_jfk.flac")
    clip_b = make_video(tmp_path / "b" / "meeting.mp4", audio_dir / "speechbrain_ljspeech_LJ050-0131.wav")
    for clip, ui in ((clip_a, a), (clip_b, b)):
        [result] = list(ctl.ingest([clip], ui))
        assert result.ok, result.message
    _, srt_a, vtt_a = ctl.transcript("meeting.mp4", a)
    words_a = Path(srt_a).read_text(encoding="utf-8")
    assert "country" in words_a.lower()
    _, srt_b, vtt_b = ctl.transcript("meeting.mp4", b)
    assert Path(srt_a).read_text(encoding="utf-8") == words_a, "session B's transcript overwrote session A's file"
    # Different paths for the same name: the path depends on the session, not on the file name alone.
    assert {srt_a, vtt_a}.isdisjoint({srt_b, vtt_b}), "both sessions' transcripts live at one name-derived path"


def test_chat_history_is_per_session(tmp_path, embedder):
    """A follow-up in one session is never rewritten with another session's conversation."""
    from rag.llm import ScriptedLLM
    from rag.types import Scope
    from ui.controller import Controller

    llm = ScriptedLLM(lambda messages: "Scope 1 emissions were 388,500 tCO2e in 2023 [1].")
    settings = Settings.from_env(environ={}, kb_dir=tmp_path / "kb", model_cache=Settings().model_cache)
    assistant = Assistant(settings.replace(admin_token="t0ken"), embedder=embedder, llm=llm)
    assert all(r.ok for r in assistant.ingest([EN_PDF]))
    ctl = Controller(assistant, media_dir=tmp_path / "media")
    a, b = ctl.new_session(), ctl.new_session()
    first = "What were Northwind Metals' Scope 1 emissions in 2023 for project Bluebird?"
    list(ctl.ask(first, a, Scope()))
    before = len(llm.calls)
    follow_up = "And what were its Scope 2 emissions?"
    list(ctl.ask(follow_up, b, Scope()))
    assert len(llm.calls) > before  # the second session reached the model
    assert all("Bluebird" not in m.content for call in llm.calls[before:] for m in call)
    assert [q for q, _ in a.history] == [first] and [q for q, _ in b.history] == [follow_up]
    # The same follow-up in the first session is rewritten with its own history (the check above can fail).
    before = len(llm.calls)
    list(ctl.ask(follow_up, a, Scope()))
    assert any("Bluebird" in m.content for call in llm.calls[before:] for m in call)


def test_upload_cache_sweep_deletes_uploads_older_than_two_days(tmp_path, embedder, monkeypatch):
    """Private uploads must not stay in Gradio's upload cache for the life of the server: an upload made through the
    app's own upload route is deleted by the app's periodic cache sweep once it is two days old, and kept while fresh.

    The app runs in-process (Starlette's TestClient: no socket). The sweep is Gradio's own function, called with the
    age the app configured, at a clock moved forward; Gradio schedules it every ``frequency`` seconds from startup."""
    from datetime import datetime, timedelta

    from fastapi.testclient import TestClient
    from gradio import route_utils
    from gradio.routes import App

    from ui.layout import build_ui

    uploads = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    settings = Settings.from_env(environ={}, kb_dir=tmp_path / "kb", model_cache=Settings().model_cache)
    demo = build_ui(Assistant(settings, embedder=embedder), media_dir=tmp_path / "media")
    assert demo.delete_cache, "no delete_cache: uploads are kept until the server restarts"
    frequency_s, age_s = demo.delete_cache
    assert 0 < frequency_s <= 3600, "the sweep must run at least hourly"

    def sweep_after(elapsed: timedelta) -> None:
        class Later(datetime):
            @classmethod
            def now(cls, tz=None):
                return datetime.now(tz) + elapsed

        with monkeypatch.context() as m:
            m.setattr(route_utils, "datetime", Later)
            route_utils.delete_files_created_by_app(demo, age_s)

    demo.max_file_size = None  # launch() sets it; the size limit has its own test above
    with TestClient(App.create_app(demo)) as client:
        resp = client.post("/gradio_api/upload", files={"files": ("private.pdf", b"%PDF-1.4 private upload")})
        resp.raise_for_status()
        [path] = resp.json()
        upload = Path(path)
        assert upload.is_file() and upload.resolve().is_relative_to(uploads.resolve())
        sweep_after(timedelta(hours=1))
        assert upload.is_file(), "a fresh upload was swept: a visitor's file vanished while in use"
        sweep_after(timedelta(days=2, hours=1))
        assert not upload.exists(), f"an upload older than two days survived the sweep (age {age_s} s)"
