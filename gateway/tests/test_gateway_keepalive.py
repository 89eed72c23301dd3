"""Idle keep-alive connections to the gateway, served by uvicorn as deployed: a request that
goes out on a connection the server is closing is lost, with no answer and no log line, so a
caller must give up an idle connection before the server does (deploy/README.md, "Keep-alive").

The gateway runs with a one-second idle timeout; each client connection is answered once, left
idle, and used again. The idle wait is the point of these tests, not synchronisation.
"""

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from servicekit.testing import TEST_METRICS_TOKEN, free_port, poll

KEEP_ALIVE_SECONDS = 1  # uvicorn takes whole seconds
CONNECTIONS = 300
REQUEST = b"GET /health/live HTTP/1.1\r\nHost: gateway.test\r\n\r\n"


@dataclass
class Gateway:
    port: int
    log: Path

    def answered_requests(self) -> int:
        return self.log.read_text().count('"message":"GET /health/live 200"')


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway as uvicorn runs it, closing connections idle for KEEP_ALIVE_SECONDS."""
    port = free_port()
    log = tmp_path_factory.mktemp("gateway") / "stderr.log"
    environment = {
        **os.environ,
        "GATEWAY_ENVIRONMENT": "test",
        "GATEWAY_METRICS_TOKEN": TEST_METRICS_TOKEN,
        "UVICORN_TIMEOUT_KEEP_ALIVE": str(KEEP_ALIVE_SECONDS),
    }
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "gateway_service.main:create_app", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            ],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start: {log.read_text()}")
            time.sleep(0.05)
        yield Gateway(port, log)
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(REQUEST)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    (length,) = (
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)


async def _reuse_after_idle(port: int, idle: tuple[float, float]) -> dict[str, int]:
    """Each connection answered, left idle for a time in `idle`, then used again: how each
    second request ended."""
    outcomes = {"answered": 0, "closed before it was sent": 0, "lost": 0}

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await _exchange(reader, writer)
            await asyncio.sleep(random.uniform(*idle))
            # A pool that sees the server's FIN opens a new connection instead: not a loss.
            closed = reader.at_eof()
            try:
                await _exchange(reader, writer)
                outcomes["answered"] += 1
            except (ConnectionError, asyncio.IncompleteReadError):
                outcomes["closed before it was sent" if closed else "lost"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(CONNECTIONS)))
    return outcomes


async def test_connections_a_client_reuses_before_the_server_times_them_out_are_answered(
    gateway: Gateway,
) -> None:
    # A caller that gives idle connections up a margin before the server does.
    outcomes = await _reuse_after_idle(gateway.port, (0.6 * KEEP_ALIVE_SECONDS, 0.8))

    assert outcomes == {"answered": CONNECTIONS, "closed before it was sent": 0, "lost": 0}


async def test_a_request_sent_as_the_server_times_the_connection_out_is_lost_unlogged(
    gateway: Gateway,
) -> None:
    # A caller that keeps idle connections as long as the server: some of its requests cross
    # the server's close. Each connection has a few percent of a chance; one of 300 is enough.
    before = gateway.answered_requests()
    window = (KEEP_ALIVE_SECONDS - 0.01, KEEP_ALIVE_SECONDS + 0.01)

    outcomes = await _reuse_after_idle(gateway.port, window)

    assert outcomes["lost"] > 0, outcomes
    # The server logs what it answers; of the lost requests, at least some it never logged, so
    # nothing tells its operator of them.
    answered = CONNECTIONS + outcomes["answered"]
    logged = poll(
        lambda: gateway.answered_requests() - before, lambda n: n >= answered, 5, "the log"
    )
    assert logged - answered < outcomes["lost"], (logged, outcomes)
