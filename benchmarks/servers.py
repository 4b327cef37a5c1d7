"""Servers in a subprocess, shared by the benchmark scripts and the tests: a free loopback port, the app's environment,
and a process in its own process group that logs to a file, waits for HTTP and stops cleanly.

No pytest here (benchmark scripts import it too): a server that exits or never answers raises ``ServerError`` with
the end of its log, which fails a test as clearly as ``pytest.fail`` would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


class ServerError(RuntimeError):
    """The server exited, or did not answer HTTP in time; the message ends with the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(**settings: object) -> dict[str, str]:
    """The environment for ``python app.py`` in a subprocess: this process's own without its ``ESG_*`` and
    ``GRADIO_SERVER_*`` variables (so only ``settings`` configure the app), offline, without analytics and with
    unbuffered output (the log is complete when the app is stopped); then ``settings``, as strings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESG_", "GRADIO_SERVER_"))}
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env |= {"PYTHONUNBUFFERED": "1"}
    return env | {k: str(v) for k, v in settings.items()}


def shared_app_env(kb: Path, port: int, uploads: Path, admin_token: str, **settings: object) -> dict[str, str]:
    """``app_env`` for the app as the public Space runs it, but on 127.0.0.1:``port``: shared mode (``admin_token``
    set, so visitors' uploads stay private), the small LLM and 2 threads, over the knowledge base in ``kb``, with its
    own Gradio upload cache ``uploads``; ``settings`` add to or override these."""
    base = {"ESG_KB_DIR": kb, "ESG_HOST": "127.0.0.1", "ESG_PORT": port, "ESG_LLM": "small", "ESG_THREADS": 2}
    base |= {"ESG_ADMIN_TOKEN": admin_token, "GRADIO_TEMP_DIR": uploads}
    return app_env(**(base | settings))


class Server:
    """``cmd`` running in its own process group, so that ``stop()`` also ends the workers it starts (the app's parser
    and forkserver children); stdout and stderr go to ``log``. Also a context manager that stops it on exit."""

    def __init__(
        self,
        cmd: list[str],
        url: str,
        log: Path,
        env: dict[str, str],
        *,
        name: str,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.url, self.log, self.name, self.stop_signal = url, log, name, stop_signal
        with log.open("wb") as out:  # the child keeps its own handle
            self.proc = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def tail(self, n: int = 4000) -> str:
        """The last ``n`` characters of the log."""
        return self.log.read_text(encoding="utf-8", errors="replace")[-n:]

    def wait_http(
        self, timeout_s: float, path: str = "/", headers: dict[str, str] | None = None, poll_s: float = 1.0
    ) -> httpx.Response:
        """Poll ``url + path`` every ``poll_s`` seconds until it answers HTTP 200 (returned); ``ServerError`` if the
        process exits first or ``timeout_s`` seconds pass."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.proc.returncode} before answering:\n{self.tail()}")
            try:
                resp = httpx.get(self.url + path, headers=headers, timeout=5.0)
                if resp.status_code == 200:
                    return resp
            except httpx.HTTPError:
                pass  # not listening yet
            time.sleep(poll_s)
        raise ServerError(f"{self.name} did not answer HTTP at {self.url} within {timeout_s:.0f} s:\n{self.tail()}")

    def stop(self, timeout_s: float = 30) -> None:
        """Send ``stop_signal`` to the process group; kill it if it is still running after ``timeout_s`` seconds."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, self.stop_signal)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout_s)


def start_app(env: dict[str, str], port: int, log: Path) -> Server:
    """``python app.py`` from the repository root with ``env`` (see ``app_env``), serving on ``port``; ``stop()``
    sends SIGINT, as Ctrl-C in a terminal would."""
    return Server(
        [sys.executable, "app.py"],
        f"http://127.0.0.1:{port}",
        log,
        env,
        name="app.py",
        cwd=ROOT,
        stop_signal=signal.SIGINT,
    )
