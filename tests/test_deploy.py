"""Deployment: the Space's front matter and apt packages, storage on a Space, shared mode, and the app run exactly as
a Space runs it (``python app.py`` in a subprocess with ``SPACE_ID`` set and a /data-like folder).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from benchmarks.servers import app_env, free_port, start_app
from rag.settings import Settings
from rag.storage import Storage, deployment_settings, resolve_storage

ROOT = Path(__file__).resolve().parent.parent
EN_PDF = ROOT / "assets" / "northwind_metals_sustainability_report_2023.pdf"
ZH_PDF = ROOT / "assets" / "qinghe_energy_esg_report_2023_zh.pdf"
SAMPLES = sorted(
    p.name for p in (ROOT / "assets").iterdir() if p.suffix.lower() in (".pdf", ".mp4", ".m4a", ".mp3", ".wav")
)


# ------------------------------------------------------------------------------------------------ Space metadata
def front_matter() -> tuple[dict, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.match(r"\A---\n(.*?)\n---\n(.*)\Z", text, re.S)
    assert m, "README.md must start with the Spaces YAML front matter between --- lines"
    return yaml.safe_load(m.group(1)), m.group(2)


def test_front_matter_parses_and_names_the_pinned_gradio():
    meta, body = front_matter()
    pins = dict(
        re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s#;]+)", (ROOT / "requirements.txt").read_text(encoding="utf-8"), re.M)
    )
    assert meta["sdk"] == "gradio"
    assert str(meta["sdk_version"]) == pins["gradio"], (meta["sdk_version"], pins["gradio"])
    assert meta["app_file"] == "app.py" and (ROOT / meta["app_file"]).is_file()
    # Unquoted 3.10 would parse as the float 3.1: the version must be a string, and the one the project requires.
    assert isinstance(meta["python_version"], str) and re.fullmatch(r"3\.\d+", meta["python_version"])
    requires = re.search(r'requires-python\s*=\s*">=\s*(3\.\d+)"', (ROOT / "pyproject.toml").read_text())
    assert requires and tuple(map(int, meta["python_version"].split("."))) >= tuple(map(int, requires[1].split(".")))
    assert meta["title"] and meta["emoji"] and len(meta["title"]) <= 30  # the Hub truncates longer titles
    assert meta["colorFrom"] and meta["colorTo"]
    # On GitHub the front matter shows as a table; the document itself must still open with its title.
    assert body.lstrip().startswith("# ")
    assert "docs/DEPLOY.md" in body and (ROOT / "docs" / "DEPLOY.md").is_file()


def test_readme_settings_table_lists_every_setting():
    from dataclasses import fields

    _, body = front_matter()
    table = body[body.index("## Settings") :]
    table = table[: table.index("\n## ", 1)]
    documented = set(re.findall(r"`ESG_([A-Z0-9_]+)`", table))
    missing = [f.name for f in fields(Settings) if f.name.upper() not in documented]
    assert missing == [], f"settings missing from the README table: {missing}"


def test_packages_txt_lists_the_build_tools_for_llama_cpp():
    lines = (ROOT / "packages.txt").read_text(encoding="utf-8").splitlines()
    # The Space installs every line with apt-get: one Debian package name per line, nothing else.
    assert lines and all(re.fullmatch(r"[a-z0-9][a-z0-9.+\-]+", line) for line in lines), lines
    assert "cmake" in lines
    assert {"build-essential", "g++"} & set(lines)


def test_server_requirements_for_the_llama_cpp_openai_server_are_pinned():
    pins = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    for name in ("sse-starlette", "starlette-context", "pydantic-settings"):
        assert re.search(rf"^{name}==\S+", pins, re.M), f"{name} is not pinned in requirements.txt"


# ------------------------------------------------------------------------------------------------ storage choice
def test_off_a_space_nothing_changes(tmp_path):
    settings, storage = deployment_settings({"ESG_KB_DIR": str(tmp_path / "kb")})
    assert storage.kind == "local" and storage.persistent and storage.root is None
    assert settings.kb_dir == tmp_path / "kb" and settings.host == "127.0.0.1" and settings.port == 7860
    # A usable data root is ignored off a Space unless ESG_DATA_DIR names it.
    settings, storage = resolve_storage(Settings(data_dir=tmp_path), {})
    assert storage.kind == "local" and settings.kb_dir == Path("knowledge_base") and list(tmp_path.iterdir()) == []


def test_space_with_persistent_storage_puts_kb_and_caches_on_it(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    env = {"SPACE_ID": "someone/esg", "ESG_DATA_DIR": str(data), "GRADIO_SERVER_PORT": "7861"}
    settings, storage = deployment_settings(env)
    assert storage == Storage("persistent", data / "knowledge_base", data / "cache", root=data)
    assert settings.kb_dir == data / "knowledge_base" and settings.model_cache == data / "cache"
    assert settings.host == "0.0.0.0" and settings.port == 7861  # reachable from the Space's proxy
    assert list(data.iterdir()) == []  # the write probe leaves nothing behind; folders appear on first use

    # Explicit ESG_KB_DIR / ESG_MODEL_CACHE win; a knowledge base outside /data does not survive a Space restart.
    env |= {"ESG_KB_DIR": str(tmp_path / "kb"), "ESG_MODEL_CACHE": str(tmp_path / "models")}
    settings, storage = deployment_settings(env)
    assert settings.kb_dir == tmp_path / "kb" and settings.model_cache == tmp_path / "models"
    assert storage.kind == "ephemeral" and not storage.persistent
    # An explicit host wins too.
    settings, _ = deployment_settings({"SPACE_ID": "someone/esg", "GRADIO_SERVER_NAME": "127.0.0.1"})
    assert settings.host == "127.0.0.1"


def test_space_without_storage_says_so_and_creates_no_data_dir(tmp_path, caplog):
    missing = tmp_path / "data"  # persistent storage not attached: /data does not exist
    settings, storage = deployment_settings({"SPACE_ID": "someone/esg", "ESG_DATA_DIR": str(missing)})
    assert storage.kind == "ephemeral" and not storage.persistent
    assert settings.kb_dir == Path("knowledge_base") and not missing.exists()
    assert "does not exist" in storage.note and "lost when the Space restarts" in caplog.text

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    _, storage = resolve_storage(Settings(data_dir=not_a_dir), {"SPACE_ID": "someone/esg"})
    assert storage.kind == "ephemeral" and str(not_a_dir) in storage.note


def test_explicit_data_dir_off_a_space_is_created(tmp_path):
    data = tmp_path / "srv" / "esg"
    settings, storage = deployment_settings({"ESG_DATA_DIR": str(data)})
    assert data.is_dir() and storage.kind == "persistent"
    assert settings.kb_dir == data / "knowledge_base" and settings.host == "127.0.0.1"


def test_footer_says_whether_storage_is_persistent(tmp_path):
    from ui.i18n import t
    from ui.render import footer_text

    persistent = Storage("persistent", tmp_path / "kb", tmp_path / "c", root=Path("/data"))
    assert "Storage: persistent (`/data`)" in footer_text("en", persistent)
    assert "存储：持久" in footer_text("zh", persistent)
    ephemeral = Storage("ephemeral", Path("knowledge_base"), tmp_path / "c")
    assert "not persistent" in footer_text("en", ephemeral)
    assert "非持久" in footer_text("zh", ephemeral)
    assert "local folder `knowledge_base`" in footer_text("en", Storage("local", Path("knowledge_base"), tmp_path))
    assert footer_text("en") == t("en", "footer")


# ------------------------------------------------------------------------------------------------ shared mode
def test_shared_mode_admin_adds_to_the_shared_kb_visitors_upload_privately(tmp_path, embedder):
    """With ESG_ADMIN_TOKEN set, a visitor's upload stays in their session; the admin's goes to the shared,
    persistent knowledge base, which another visitor and a restarted app both see."""
    from rag.assistant import Assistant
    from ui.controller import Controller

    data = tmp_path / "data"
    data.mkdir()
    env = {"SPACE_ID": "someone/esg", "ESG_DATA_DIR": str(data), "ESG_ADMIN_TOKEN": "s3cret-token"}
    settings, _ = deployment_settings(env)
    assert settings.admin_token == "s3cret-token"
    ctl = Controller(Assistant(settings, embedder=embedder), media_dir=tmp_path / "media")
    assert ctl.shared_mode
    visitor, admin, other = ctl.new_session(), ctl.new_session(), ctl.new_session()

    [result] = list(ctl.ingest([ZH_PDF], visitor))
    assert result.ok, result.message
    assert [d.name for d in ctl.documents(visitor)] == [ZH_PDF.name]
    assert ctl.documents(other) == [] and not (data / "knowledge_base" / "manifest.json").exists()

    with pytest.raises(Exception, match="wrong admin token"):
        ctl.unlock("s3cret", admin)
    assert not ctl.can_write_shared(admin)
    ctl.unlock("s3cret-token", admin)
    [result] = list(ctl.ingest([EN_PDF], admin))
    assert result.ok, result.message
    assert [d.name for d in ctl.documents(other)] == [EN_PDF.name]
    assert ctl.docs_rows(other)[0][6] == "everyone"

    # A restart (a new Assistant over the same storage) sees the admin's document, not the visitor's.
    restarted = Assistant(deployment_settings(env)[0], embedder=embedder)
    assert [d.name for d in restarted.documents()] == [EN_PDF.name]


# ------------------------------------------------------------------------------------------------ the app as a Space
def space_env(data: Path, port: int) -> dict[str, str]:
    # SPACE_ID is what the platform sets; the Space's /data is ``data``.
    return app_env(SPACE_ID="someone/esg-assistant", GRADIO_SERVER_PORT=port, ESG_DATA_DIR=data, ESG_THREADS=2)


def listening_hosts(pid: int, port: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def page_config(port: int) -> str:
    """The page and its component config (where the footer's text is), as one string."""
    page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10.0).text
    config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=10.0)
    return page + (config.text if config.status_code == 200 else "")


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.loopback
def test_app_runs_as_a_space_on_persistent_storage_and_reuses_it(tmp_path):
    data = tmp_path / "data"  # stands in for the Space's /data (persistent storage attached)
    data.mkdir()
    repo_kb = sorted(p.name for p in (ROOT / "knowledge_base").iterdir())

    # First start: nothing but the repo. The app assembles its models and builds the sample knowledge base on /data.
    port = free_port()
    with start_app(space_env(data, port), port, tmp_path / "first.log") as first:
        first.wait_http(timeout_s=1200)
        assert "0.0.0.0" in listening_hosts(first.proc.pid, port), "on a Space the app must listen on 0.0.0.0"
        text = page_config(port)
        assert "ESG Document Assistant" in text
        assert f"Storage: persistent (`{data}`)" in text, "the footer must say the storage is persistent"
    log1 = first.tail(100_000)
    assert "first start: building the sample knowledge base" in log1

    kb, cache = data / "knowledge_base", data / "cache"
    manifest_path = kb / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert sorted(d["name"] for d in manifest["documents"]) == SAMPLES
    assert (cache / "whisper-base").is_dir() and any((cache / "whisper-base").iterdir())  # model cache on /data
    assert sorted(p.name for p in (ROOT / "knowledge_base").iterdir()) == repo_kb  # nothing written to the repo
    generation, mtime = manifest["generation"], manifest_path.stat().st_mtime_ns

    # Second start (a Space restart): the knowledge base on /data is reused, nothing is ingested again.
    port = free_port()
    with start_app(space_env(data, port), port, tmp_path / "second.log") as second:
        second.wait_http(timeout_s=600)
        assert f"Storage: persistent (`{data}`)" in page_config(port)
    log2 = second.tail(100_000)
    assert "first start" not in log2 and "ingested" not in log2, log2[-3000:]
    assert manifest_path.stat().st_mtime_ns == mtime
    assert json.loads(manifest_path.read_text(encoding="utf-8"))["generation"] == generation
