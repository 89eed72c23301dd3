"""Writes whose answer the client never got: repeated with their Idempotency-Key, applied once.

The services run as processes on Postgres. A service that stalls on a lock and is then paused
(SIGSTOP) past the gateway's read timeout answers nothing in time, yet commits once it resumes:
the client is told so, and its repeat with the same key gets the first answer.
"""

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
import pytest

from gateway_service.main import create_app
from gateway_service.settings import GatewaySettings
from servicekit.testing import ServiceProcess, asgi_client, libpq_url, lock_waits, poll, running
from servicekit.testing.idempotency import (
    KEY,
    REPLAYED,
    assert_replayed,
    new_key,
    sent_twice,
)

GatewaySettingsFactory = Callable[..., GatewaySettings]
ADA = {"email": "ada@example.com", "name": "Ada", "password": "correct horse battery"}
# What the gateway says when a write's answer is lost.
MAY_HAVE_BEEN_APPLIED = (
    "; the request may have been applied: repeat it with the same Idempotency-Key, which "
    "applies it at most once"
)


def count(process: ServiceProcess, sql: str) -> int:
    with psycopg.connect(libpq_url(process.database_url), autocommit=True) as database:
        row = database.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_create_through_the_gateway_passes_its_key_on(gateway: httpx.AsyncClient) -> None:
    post = {"title": "Hello", "content": "First words."}

    first, repeated = await sent_twice(gateway, "/posts/", post)

    assert_replayed(first, repeated)
    assert first.headers["Location"].startswith("/posts/")
    assert len((await gateway.get("/posts/")).json()) == 1


async def test_a_post_created_for_a_user_passes_its_key_on(gateway: httpx.AsyncClient) -> None:
    ada = (await gateway.post("/users/", json=ADA)).json()
    grace = (await gateway.post("/users/", json={**ADA, "email": "grace@example.com"})).json()
    key = new_key()
    post = {"title": "Hello", "content": "First words."}

    first, repeated = await sent_twice(gateway, f"/users/{ada['id']}/posts", post, key=key)
    # Another author is another body for blog: the key names Ada's post.
    for_grace = await gateway.post(f"/users/{grace['id']}/posts", json=post, headers={KEY: key})

    assert_replayed(first, repeated)
    assert for_grace.status_code == 422
    assert [p["author_id"] for p in (await gateway.get("/posts/")).json()] == [ada["id"]]


async def test_every_create_and_stock_adjustment_documents_the_key(
    gateway: httpx.AsyncClient,
) -> None:
    paths = (await gateway.get("/openapi.json")).json()["paths"]
    writes = {
        path: operations["post"]
        for path, operations in paths.items()
        if "post" in operations
        and ("201" in operations["post"]["responses"] or path.endswith("/stock-adjustments"))
    }

    assert "/users/{user_id}/posts" in writes
    assert "/products/{product_id}/stock-adjustments" in writes
    for path, operation in writes.items():
        assert KEY in [parameter["name"] for parameter in operation["parameters"]], path


@asynccontextmanager
async def gateway_waiting(
    gateway_settings: GatewaySettingsFactory, transport: str, headers: httpx.Headers
) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway that waits 2 s for a service's answer: long enough to pause the service
    before it gives up."""
    app = create_app(gateway_settings(read_timeout=2, http_transport=transport))
    async with running(app), asgi_client(app, "http://gateway.test", headers) as client:
        yield client


async def stalled_and_paused(
    process: ServiceProcess, table: str, send: Awaitable[httpx.Response]
) -> httpx.Response:
    """What the gateway answers to `send` when `process` is stuck on `table` (locked here
    once the request's transaction has begun), then paused until the gateway gives up.

    The lock is let go while the process is paused, so its statement completes in Postgres;
    the process resumes after the gateway has answered, and commits what it was doing.
    """
    url = process.database_url
    assert process.process is not None
    pid = process.process.pid
    async with await psycopg.AsyncConnection.connect(libpq_url(url)) as holder:
        await holder.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        answer = asyncio.ensure_future(send)
        await asyncio.to_thread(poll, lambda: lock_waits(url), lambda n: n >= 1, 15, "the write")
        os.kill(pid, signal.SIGSTOP)
        try:
            await holder.rollback()
            return await answer
        finally:
            os.kill(pid, signal.SIGCONT)


LostThenRepeated = Callable[
    [ServiceProcess, str, str, Any], Awaitable[tuple[httpx.Response, httpx.Response]]
]


@pytest.fixture(params=["aiohttp", "httpx"])
def lost_then_repeated(
    request: pytest.FixtureRequest,
    gateway: httpx.AsyncClient,
    gateway_settings: GatewaySettingsFactory,
) -> LostThenRepeated:
    """`(process, table, path, body)`: the answer of a gateway on each HTTP transport to `body`
    POSTed at `path` with a new key while `process` stalls on `table` and is paused (see
    stalled_and_paused), then the answer to the same request repeated with its key."""

    async def send(
        process: ServiceProcess, table: str, path: str, body: Any
    ) -> tuple[httpx.Response, httpx.Response]:
        key = new_key()
        async with gateway_waiting(gateway_settings, request.param, gateway.headers) as waiting:
            lost = await stalled_and_paused(
                process, table, waiting.post(path, json=body, headers={KEY: key})
            )
        return lost, await gateway.post(path, json=body, headers={KEY: key})

    return send


async def test_a_sign_up_answered_504_while_users_was_paused_is_applied_once_when_repeated(
    gateway: httpx.AsyncClient,
    services: dict[str, ServiceProcess],
    lost_then_repeated: LostThenRepeated,
) -> None:
    lost, repeated = await lost_then_repeated(services["users"], "users", "/users/", ADA)

    assert lost.status_code == 504
    assert lost.json() == {
        "detail": "the users service did not answer in time" + MAY_HAVE_BEEN_APPLIED
    }
    assert repeated.status_code == 201, repeated.text
    assert repeated.headers[REPLAYED] == "true"
    stored = await gateway.get(repeated.headers["Location"])
    assert repeated.json() == stored.json()
    assert count(services["users"], "SELECT count(*) FROM users") == 1


async def test_a_stock_adjustment_answered_504_while_catalog_was_paused_is_applied_once(
    gateway: httpx.AsyncClient,
    services: dict[str, ServiceProcess],
    lost_then_repeated: LostThenRepeated,
) -> None:
    category = (await gateway.post("/categories/", json={"name": "Lamps"})).json()
    product = {"name": "Lamp", "price": "10.00", "category_id": category["id"], "stock_quantity": 5}
    created = (await gateway.post("/products/", json=product)).json()
    path = f"/products/{created['id']}/stock-adjustments"

    lost, repeated = await lost_then_repeated(services["catalog"], "products", path, {"delta": -1})

    assert lost.status_code == 504
    assert lost.json()["detail"].endswith(MAY_HAVE_BEEN_APPLIED)
    assert repeated.status_code == 200, repeated.text
    assert repeated.headers[REPLAYED] == "true"
    assert repeated.json()["stock_quantity"] == 4
    stored: dict[str, Any] = (await gateway.get(f"/products/{created['id']}")).json()
    assert (stored["stock_quantity"], stored["version"]) == (4, 2)
