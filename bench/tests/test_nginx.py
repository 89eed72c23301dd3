"""Scenario 13's nginx: a process of its own that proxies to an upstream over kept-alive
connections."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.nginx import running
from servicekit.testing import free_port, poll


class _Upstream(BaseHTTPRequestHandler):
    """Answers every GET with its path, noting the connection each request came on."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[int, str | None]]  # (the client's port, its Connection header)

    def do_GET(self) -> None:
        self.seen.append((self.client_address[1], self.headers.get("Connection")))
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[tuple[int, list[tuple[int, str | None]]]]:
    """An HTTP/1.1 upstream on a port of its own, and the requests it saw."""
    seen: list[tuple[int, str | None]] = []
    handler = type("Handler", (_Upstream,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_nginx_passes_requests_on_over_one_kept_alive_connection(
    nginx: str, upstream: tuple[int, list[tuple[int, str | None]]], tmp_path: Path
) -> None:
    upstream_port, seen = upstream
    port = free_port()
    with running(port, f"127.0.0.1:{upstream_port}", 1, tmp_path / "nginx.log"):
        url = f"http://127.0.0.1:{port}"

        def answer() -> int | None:
            try:
                return httpx.get(f"{url}/ready").status_code
            except httpx.TransportError:
                return None

        poll(answer, lambda status: status == 200, 10, "nginx")
        before = len(seen)
        # A connection of the client's own for each request: nginx's keep-alive to the
        # upstream is its own, not the client's passed on.
        answers = [httpx.get(f"{url}/users/{number}") for number in range(10)]

    assert [a.text for a in answers] == [f"/users/{number}" for number in range(10)]
    connections = {client_port for client_port, _ in seen[before:]}
    assert len(connections) == 1
    assert all(header is None for _, header in seen[before:])  # no "Connection: close"


def test_nginx_leaves_its_log_where_asked_once_stopped(
    nginx: str, upstream: tuple[int, list[tuple[int, str | None]]], tmp_path: Path
) -> None:
    log = tmp_path / "nginx.log"
    port = free_port()
    with running(port, f"127.0.0.1:{upstream[0]}", 1, log) as process:
        poll(lambda: _listening(port), bool, 10, "nginx")

    assert process.returncode == 0  # stopped as asked, not killed
    assert log.exists()


def _listening(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/")
    except httpx.TransportError:
        return False
    return True
