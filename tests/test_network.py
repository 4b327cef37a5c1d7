"""No network in tests: a test that reaches for another machine fails at once instead of hanging.

pytest-socket is switched on in pyproject.toml (``--disable-socket --allow-unix-socket``); tests that talk to a server
on this machine carry ``@pytest.mark.loopback`` (tests/conftest.py), which allows 127.0.0.1, localhost and ::1 only.
192.0.2.1 is TEST-NET-1 (RFC 5737): never routed, so a real connection attempt there would hang until its timeout.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from pytest_socket import SocketBlockedError, SocketConnectBlockedError

UNROUTABLE = "192.0.2.1"

# pytest-socket also warns when it blocks; the exception is what these tests check.
pytestmark = pytest.mark.filterwarnings("ignore:A test tried to use socket")


def test_an_internet_socket_cannot_even_be_created():
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(SocketBlockedError):
        socket.create_connection((UNROUTABLE, 80), timeout=600)


def test_name_lookup_and_an_http_client_fail_at_once():
    with pytest.raises(SocketBlockedError):
        socket.getaddrinfo("example.com", 443)
    # With a 10-minute timeout: the error is the block, not a timeout.
    with pytest.raises(SocketBlockedError):
        httpx.get(f"http://{UNROUTABLE}/", timeout=600)
    with pytest.raises(SocketBlockedError):
        httpx.get("https://huggingface.co/api/models", timeout=600)


def _square(x: int) -> int:
    return x * x


def test_unix_sockets_and_a_forkserver_process_pool_still_work():
    # What the PDF parser pool and asyncio need: unix socket pairs and a forkserver (which listens on a unix socket).
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"ping")
        assert b.recv(4) == b"ping"
    ctx = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        assert list(pool.map(_square, [2, 3])) == [4, 9]


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello from loopback")

    def log_message(self, *args):
        pass


@pytest.mark.loopback
def test_loopback_tests_reach_this_machine_and_nothing_else():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        # Positive control: the allowed hosts are reachable, so the refusals below are not a broken stack.
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=30).text == "hello from loopback"
        assert httpx.get(f"http://localhost:{port}/", timeout=30).text == "hello from loopback"
        with pytest.raises(SocketConnectBlockedError, match=UNROUTABLE):
            socket.create_connection((UNROUTABLE, 80), timeout=600)
        with pytest.raises(SocketConnectBlockedError):
            httpx.get(f"http://{UNROUTABLE}/", timeout=600)
    finally:
        server.shutdown()
        server.server_close()


def test_the_loopback_marker_is_cleared_after_its_test():
    # Runs after the loopback test above (file order): sockets are blocked again.
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
