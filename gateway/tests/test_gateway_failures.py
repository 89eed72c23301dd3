"""When a service is down or slow: a clear 503 or 504 naming it, and recovery without restart.

Each test runs on both HTTP transports the gateway offers, since they report failures
differently underneath.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, asynccontextmanager
from types import SimpleNamespace

import httpx
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from starlette.requests import Request

from gateway_service.circuit import CircuitState
from gateway_service.errors import MAY_HAVE_BEEN_APPLIED as APPLIED
from gateway_service.errors import BadGateway
from gateway_service.main import create_app
from gateway_service.proxy import relay
from gateway_service.settings import GatewaySettings
from servicekit.database_errors import BUSY
from servicekit.testing import (
    TEST_METRICS_TOKEN,
    ServiceProcess,
    TokenIssuer,
    asgi_client,
    locked_table,
    one_connection_per_pool,
    poll,
    running,
    started,
)

Gateway = tuple[httpx.AsyncClient, list[httpx.Request]]
GatewaySettingsFactory = Callable[..., GatewaySettings]
ServeGateway = Callable[..., AbstractContextManager[tuple[str, FastAPI]]]


async def test_a_stopped_service_gives_503_naming_it(
    impatient_gateway: Gateway, services: dict[str, ServiceProcess]
) -> None:
    gateway, _ = impatient_gateway
    services["users"].stop()

    response = await gateway.get("/users/")

    assert response.status_code == 503
    assert response.json() == {"detail": "the users service is unavailable"}
    assert response.headers["Retry-After"] == "1"


async def test_reads_are_retried_once_and_writes_never(
    impatient_gateway: Gateway, services: dict[str, ServiceProcess]
) -> None:
    gateway, calls = impatient_gateway
    services["users"].stop()

    await gateway.get("/users/stats")
    reads = len(calls)
    await gateway.post(
        "/users/", json={"email": "a@example.com", "name": "A", "password": "correct horse battery"}
    )

    assert reads == 2
    assert len(calls) - reads == 1


async def test_the_gateway_serves_a_service_again_once_it_is_back(
    impatient_gateway: Gateway, services: dict[str, ServiceProcess]
) -> None:
    gateway, _ = impatient_gateway
    services["users"].stop()
    assert (await gateway.get("/users/stats")).status_code == 503

    services["users"].start()

    response = await gateway.get("/users/stats")
    assert (response.status_code, response.json()["total_users"]) == (200, 0)


async def test_a_service_slower_than_the_read_timeout_gives_504(
    impatient_gateway: Gateway, services: dict[str, ServiceProcess]
) -> None:
    gateway, _ = impatient_gateway
    url = make_url(services["users"].database_url).set(drivername="postgresql")
    # A real stall: the users service blocks on a table lock held here until the gateway gives up.
    async with await psycopg.AsyncConnection.connect(
        url.render_as_string(hide_password=False)
    ) as holder:
        await holder.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        response = await gateway.get("/users/stats")
        await holder.rollback()

    assert response.status_code == 504
    assert response.json() == {"detail": "the users service did not answer in time"}
    assert (await gateway.get("/users/stats")).status_code == 200


async def test_readiness_reports_every_service(
    impatient_gateway: Gateway, services: dict[str, ServiceProcess]
) -> None:
    gateway, _ = impatient_gateway
    ready = await gateway.get("/health/ready")
    services["users"].stop()
    not_ready = await gateway.get("/health/ready")

    assert all(ready.json()["checks"][name] == "ok" for name in services)
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["users"] == "unreachable"
    assert (await gateway.get("/health/live")).status_code == 200


async def test_a_busy_service_s_503_reaches_the_client_with_its_retry_after(
    make_services: Callable[..., dict[str, ServiceProcess]],
    gateway_settings: GatewaySettingsFactory,
) -> None:
    environment = {"USERS_BUSY_RETRY_AFTER": "3", **one_connection_per_pool("users")}
    with started(make_services("busy", environment, names=("users",))) as busy:
        users = busy["users"]
        app = create_app(gateway_settings(users_url=users.url))
        async with (
            running(app),
            asgi_client(app, base_url="http://gateway.test") as gateway,
            httpx.AsyncClient(base_url=users.url, timeout=30) as direct,
        ):
            body = {"email": "ada@example.com", "name": "Ada", "password": "correct horse battery"}
            path = f"/users/{(await direct.post('/users/', json=body)).json()['id']}"
            calls: list[httpx.Request] = []
            app.state.downstream.listeners.append(calls.append)
            async with locked_table(users.database_url, "users") as lock:
                # A read and a write wait on the lock, holding the only connection of each pool.
                held = [
                    asyncio.create_task(direct.get(path)),
                    asyncio.create_task(direct.post("/users/", json={**body, "email": "b@x.io"})),
                ]
                await lock.until_waiting(2)
                forwarded = await gateway.get(path)
                composed = await gateway.get("/users-with-posts")
                ready = await gateway.get("/health/ready")
                await lock.release()
                await asyncio.gather(*held)

    for answer in (forwarded, composed):
        assert (answer.status_code, answer.json()) == (503, {"detail": BUSY})
        assert answer.headers["Retry-After"] == "3"
    assert ready.json()["checks"]["users"] == "ok"
    # Relayed as they came: not retried, which would only add to the service's load.
    assert len(calls) == 2


def test_a_service_error_becomes_a_502_naming_the_service() -> None:
    app = FastAPI()
    request = Request({"type": "http", "app": app, "headers": [], "method": "GET", "path": "/"})

    with pytest.raises(BadGateway, match="the users service failed"):
        relay(request, None, "users", httpx.Response(500, json={"detail": "boom"}))  # type: ignore[arg-type]


def test_a_header_a_service_repeats_is_relayed_as_one_list_with_relative_urls() -> None:
    app = FastAPI()
    request = Request(
        {"type": "http", "app": app, "headers": [(b"host", b"gateway.test")], "method": "GET",
         "path": "/", "scheme": "http", "server": ("gateway.test", 80), "query_string": b""}
    )  # fmt: skip
    downstream = SimpleNamespace(base_urls={"blog": "http://blog:8000"})
    answer = httpx.Response(
        200,
        headers=[
            ("Link", '<http://blog:8000/posts/?after=x>; rel="next"'),
            ("Link", '<http://blog:8000/posts/>; rel="first"'),
            ("Cache-Control", "no-cache"),
            ("Cache-Control", "private"),
        ],
    )

    relayed = relay(request, downstream, "blog", answer)  # type: ignore[arg-type]

    assert relayed.headers["link"] == ('</posts/?after=x>; rel="next", </posts/>; rel="first"')
    assert relayed.headers["cache-control"] == "no-cache, private"


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def loopback_server(handle: Handler) -> AsyncIterator[str]:
    """A TCP server on loopback running `handle` for each connection; yields its URL."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
async def broken_service() -> AsyncIterator[str]:
    """A server on loopback that answers every request with bytes that are not HTTP."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 ok\r\nno header here\r\n\r\n")
        await writer.drain()
        writer.close()

    async with loopback_server(answer) as url:
        yield url


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_service_answering_garbage_gives_502_naming_it(
    gateway_settings: GatewaySettingsFactory, broken_service: str, transport: str
) -> None:
    app = create_app(gateway_settings(users_url=broken_service, http_transport=transport))
    async with running(app), asgi_client(app) as gateway:
        response = await gateway.post(
            "/users/",
            json={"email": "a@example.com", "name": "A", "password": "correct horse battery"},
        )
        ready = await gateway.get("/health/ready")

    assert response.status_code == 502
    assert response.json() == {"detail": "the users service broke the connection" + APPLIED}
    assert (ready.status_code, ready.json()["checks"]["users"]) == (503, "unreachable")


@pytest.fixture
async def hanging_up_service() -> AsyncIterator[str]:
    """A server on loopback that reads every request and closes the connection unanswered."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async with loopback_server(hang_up) as url:
        yield url


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_service_that_hangs_up_after_the_request_gives_502_not_503(
    gateway_settings: GatewaySettingsFactory,
    hanging_up_service: str,
    transport: str,
    token_issuer: TokenIssuer,
) -> None:
    # The keys from the issuer's file: the users service may be stopped by an earlier test.
    app = create_app(
        gateway_settings(
            catalog_url=hanging_up_service,
            http_transport=transport,
            auth_jwks_url=token_issuer.jwks_url,
        )
    )
    async with running(app), asgi_client(app, headers=token_issuer.admin_headers()) as gateway:
        write = await gateway.post("/products/1/stock-adjustments", json={"delta": -1})
        read = await gateway.get("/products/1")

    # The adjustment may have been applied: "unavailable" (503, retry later) would be untrue,
    # and the client is told how to repeat it safely; a read changed nothing either way.
    assert (write.status_code, read.status_code) == (502, 502)
    assert write.json() == {"detail": "the catalog service broke the connection" + APPLIED}
    assert read.json() == {"detail": "the catalog service broke the connection"}


def test_idle_connections_are_dropped_before_the_services_drop_them() -> None:
    services_idle_timeout = uvicorn.Config("any:app").timeout_keep_alive

    settings = GatewaySettings(environment="test", metrics_token=TEST_METRICS_TOKEN)

    assert settings.keepalive_expiry < services_idle_timeout


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_a_read_that_finds_no_free_connection_is_answered_once_its_wait_is_over(
    serve_gateway: ServeGateway, services: dict[str, ServiceProcess], transport: str
) -> None:
    # One connection, which a call to the hung users service holds.
    settings = {"http_transport": transport, "max_connections": 1, "pool_timeout": 0.5}
    with serve_gateway(read_timeout=5, **settings) as (url, app), ThreadPoolExecutor(1) as pool:
        sent: list[httpx.Request] = []
        app.state.downstream.listeners.append(sent.append)
        with services["users"].paused():
            stalled = pool.submit(httpx.get, f"{url}/users/", timeout=30)
            poll(lambda: len(sent), lambda count: count == 1, 10, "the call holding the pool")
            started = time.monotonic()
            response = httpx.get(f"{url}/categories/", timeout=30)
            waited = time.monotonic() - started
        assert stalled.result().status_code == 200
        circuits = app.state.downstream.circuit_states()

    assert [request.url.path for request in sent] == ["/users/", "/categories/"]  # not retried
    assert waited < 2 * 0.5
    assert (response.status_code, response.json()) == (
        503,
        {"detail": "the gateway has no free connection to the catalog service"},
    )
    assert circuits["catalog"] == CircuitState.CLOSED  # the gateway's pool is not catalog's fault


@pytest.fixture
async def silent_service() -> AsyncIterator[tuple[str, list[str]]]:
    """A server on loopback that reads each request and never answers it; its URL, and the
    method of each request that arrived."""
    arrived: list[str] = []

    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        arrived.append(head.split(b" ", 1)[0].decode())
        await reader.read()  # until the gateway gives up and closes the connection
        writer.close()

    async with loopback_server(say_nothing) as url:
        yield url, arrived


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_call_that_timed_out_is_never_sent_again(
    gateway_settings: GatewaySettingsFactory,
    silent_service: tuple[str, list[str]],
    transport: str,
    token_issuer: TokenIssuer,
) -> None:
    url, arrived = silent_service
    app = create_app(
        gateway_settings(
            users_url=url,
            http_transport=transport,
            read_timeout=0.3,
            auth_jwks_url=token_issuer.jwks_url,
        )
    )
    body = {"email": "a@example.com", "name": "A", "password": "correct horse battery"}
    async with running(app), asgi_client(app, headers=token_issuer.admin_headers()) as gateway:
        answers = [
            await gateway.post("/users/", json=body),
            await gateway.patch("/users/1", json={"name": "B"}),
            await gateway.delete("/users/1"),
            await gateway.get("/users/1"),
        ]

    assert [answer.status_code for answer in answers] == [504, 504, 504, 504]
    assert arrived == ["POST", "PATCH", "DELETE", "GET"]
