"""Idle keep-alive connections to the gateway, served by uvicorn as deployed: a request that
goes out on a connection the server is closing is lost, with no answer and no log line, so a
caller must give up an idle connection before the server does (deploy/README.md, "Keep-alive").

The gateway runs with a two-second idle timeout; each client connection is answered once, left
idle, and used again. The idle wait is the point of these tests, not synchronisation.
"""

import asyncio
import random
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from servicekit.testing import TEST_METRICS_TOKEN

KEEP_ALIVE_SECONDS = 2  # uvicorn takes whole seconds
CONNECTIONS = 300
REQUEST = b"GET /health/live HTTP/1.1\r\nHost: gateway.test\r\n\r\n"


@pytest.fixture(scope="module")
def gateway(
    gateway_process: Callable[..., AbstractContextManager[int]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[int]:
    """The gateway's port; it closes connections idle for KEEP_ALIVE_SECONDS."""
    environment = {
        "GATEWAY_ENVIRONMENT": "test",
        "GATEWAY_METRICS_TOKEN": TEST_METRICS_TOKEN,
        "UVICORN_TIMEOUT_KEEP_ALIVE": str(KEEP_ALIVE_SECONDS),
    }
    with gateway_process(environment, tmp_path_factory.mktemp("gateway") / "stderr.log") as port:
        yield port


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
    gateway: int,
) -> None:
    # A caller that gives idle connections up well before the server does (a margin that a
    # loaded machine's delays do not eat): each request on a reused connection is answered.
    outcomes = await _reuse_after_idle(
        gateway, (0.25 * KEEP_ALIVE_SECONDS, 0.5 * KEEP_ALIVE_SECONDS)
    )

    assert outcomes == {"answered": CONNECTIONS, "closed before it was sent": 0, "lost": 0}
