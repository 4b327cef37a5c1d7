"""Where the app keeps its data when deployed: persistent storage on a Hugging Face Space, local folders elsewhere.

A Space (detected by its ``SPACE_ID`` environment variable) loses its disk on every restart unless persistent
storage is attached, which appears as ``/data``. When the data root (``ESG_DATA_DIR``, default ``/data``) exists and
is writable, the knowledge base goes to ``<root>/knowledge_base`` and the model cache to ``<root>/cache``, so the
sample knowledge base is built once and uploads survive restarts. Explicit ``ESG_KB_DIR`` / ``ESG_MODEL_CACHE`` still
win. Off a Space the root is used only when ``ESG_DATA_DIR`` is set explicitly (then it is created if missing).

``deployment_settings()`` is what ``app.py`` calls: settings from the environment, plus the Space's host and the
storage above. Nothing here touches the disk except the writability probe of the data root.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rag.settings import Settings

log = logging.getLogger(__name__)

KB_SUBDIR = "knowledge_base"
CACHE_SUBDIR = "cache"


@dataclass(frozen=True)
class Storage:
    """Where the knowledge base lives and whether it survives a restart.

    ``kind`` is ``persistent`` (under a usable data root), ``ephemeral`` (a Space without persistent storage: the
    knowledge base is lost on restart) or ``local`` (a plain machine's folders, persistent as that disk is).
    """

    kind: str
    kb_dir: Path
    model_cache: Path
    root: Path | None = None  # the data root in use, if any
    note: str = ""  # why the data root is not used, when it is not

    @property
    def persistent(self) -> bool:
        return self.kind != "ephemeral"


def on_space(environ: Mapping[str, str] | None = None) -> bool:
    """True when running on a Hugging Face Space (the platform sets ``SPACE_ID=owner/name``)."""
    env = os.environ if environ is None else environ
    return bool(env.get("SPACE_ID"))


def writable_dir(path: Path, create: bool = False) -> str | None:
    """``None`` when ``path`` is a directory we can create files in, else the one-line reason it is not."""
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"cannot create {path}: {exc.strerror or exc}"
    if not path.is_dir():
        return f"{path} does not exist"
    # os.access ignores read-only mounts and quotas on some file systems; creating a file is the real test.
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".esg-write-probe-"):
            pass
    except OSError as exc:
        return f"{path} is not writable: {exc.strerror or exc}"
    return None


def _under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def resolve_storage(settings: Settings, environ: Mapping[str, str] | None = None) -> tuple[Settings, Storage]:
    """Point ``kb_dir`` and ``model_cache`` at the data root when it should and can be used; describe the result.

    Returns the (possibly changed) settings and the ``Storage`` the app reports in its footer.
    """
    env = os.environ if environ is None else environ
    space = on_space(env)
    explicit_root = bool(env.get("ESG_DATA_DIR"))
    root = Path(settings.data_dir).expanduser()
    if not (space or explicit_root):
        return settings, Storage("local", settings.kb_dir, settings.model_cache)

    # A Space's /data exists only when storage is attached: creating it would fake persistence. Elsewhere an
    # explicit root is the operator's choice, created on first start.
    problem = writable_dir(root, create=explicit_root and not space)
    if problem is not None:
        if space:
            log.warning(
                "no persistent storage (%s): the knowledge base in %s is lost when the Space restarts",
                problem,
                settings.kb_dir,
            )
            return settings, Storage("ephemeral", settings.kb_dir, settings.model_cache, note=problem)
        log.warning("data dir not usable (%s): using %s", problem, settings.kb_dir)
        return settings, Storage("local", settings.kb_dir, settings.model_cache, note=problem)

    changes: dict[str, object] = {}
    if not env.get("ESG_KB_DIR"):
        changes["kb_dir"] = root / KB_SUBDIR
    if not env.get("ESG_MODEL_CACHE"):
        changes["model_cache"] = root / CACHE_SUBDIR
    settings = settings.replace(**changes)
    # An explicit ESG_KB_DIR outside the data root is lost on a Space restart; elsewhere it is an ordinary folder.
    kind = "persistent" if _under(settings.kb_dir, root) else ("ephemeral" if space else "local")
    log.info("storage: %s (knowledge base %s, model cache %s)", kind, settings.kb_dir, settings.model_cache)
    return settings, Storage(kind, settings.kb_dir, settings.model_cache, root=root)


def deployment_settings(environ: Mapping[str, str] | None = None) -> tuple[Settings, Storage]:
    """Settings for the web app: ``Settings.from_env`` plus, on a Space, host ``0.0.0.0`` (unless ``ESG_HOST`` or
    ``GRADIO_SERVER_NAME`` says otherwise) and the storage chosen by ``resolve_storage``."""
    env = dict(os.environ if environ is None else environ)
    settings = Settings.from_env(env)
    if on_space(env) and not (env.get("ESG_HOST") or env.get("GRADIO_SERVER_NAME")):
        # The Space's proxy reaches the app from outside the container: listen on every interface.
        settings = settings.replace(host="0.0.0.0")
    return resolve_storage(settings, env)
