"""When a service is down or slow: a clear 503 or 504 naming it, and recovery without restart.

Each test runs on both HTTP transports the gateway offers, since they report failures
differently underneath.
"""

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from starlette.requests import Request

from gateway_service.errors import BadGateway
from gateway_service.proxy import relay
from servicekit.testing import ServiceProcess

Gateway = tuple[httpx.AsyncClient, list[httpx.Request]]


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
    await gateway.post("/users/", json={"email": "a@example.com", "name": "A"})

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
    assert (response.status_code, response.json()["total"]) == (200, 0)


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


def test_a_service_error_becomes_a_502_naming_the_service() -> None:
    app = FastAPI()
    request = Request({"type": "http", "app": app, "headers": [], "method": "GET", "path": "/"})

    with pytest.raises(BadGateway, match="the users service failed"):
        relay(request, None, "users", httpx.Response(500, json={"detail": "boom"}))  # type: ignore[arg-type]
