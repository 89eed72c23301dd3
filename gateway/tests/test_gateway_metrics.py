"""Metrics of the running system: the gateway's own (its requests, and how each call to a
service ended), and those the services report as processes (users' outbox, blog's consumer)."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from gateway_service.main import create_app
from gateway_service.settings import GatewaySettings
from servicekit.testing import (
    METRICS_CREDENTIAL,
    Scrape,
    ServiceProcess,
    TokenIssuer,
    asgi_client,
    caught_up,
    libpq_url,
    poll,
    process_metrics,
    running,
    scrape,
)

GatewaySettingsFactory = Callable[..., GatewaySettings]
GatewayWith = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
REQUESTS = "http_server_request_duration_seconds_count"
CALLS = "gateway_downstream_requests_total"
CALL_DURATIONS = "gateway_downstream_request_duration_seconds_count"
# Nothing listens on port 1: connections are refused at once.
DEAD_SERVICE = "http://127.0.0.1:1"


@pytest.fixture
async def anonymous(
    gateway_app: FastAPI, gateway: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(gateway_app, base_url="http://gateway.test") as client:
        yield client


@pytest.fixture
def gateway_with(
    gateway_settings: GatewaySettingsFactory,
    gateway: httpx.AsyncClient,
    services: dict[str, ServiceProcess],
) -> GatewayWith:
    """A gateway of its own (so its counts start at 0) with these settings, and an admin's
    client of it; tokens verify with the real users service's keys."""

    @asynccontextmanager
    async def make(**overrides: object) -> AsyncIterator[httpx.AsyncClient]:
        keys = f"{services['users'].url}/.well-known/jwks.json"
        app = create_app(gateway_settings(auth_jwks_url=keys, **overrides))
        async with (
            running(app),
            asgi_client(app, base_url="http://gateway.test", headers=gateway.headers) as client,
        ):
            yield client

    return make


async def test_the_gateway_s_metrics_are_its_own_and_need_the_metrics_credential(
    anonymous: httpx.AsyncClient,
    token_issuer: TokenIssuer,
    downstream_calls: list[httpx.Request],
) -> None:
    refused = [
        await anonymous.get("/metrics", headers=headers)
        for headers in ({}, token_issuer.admin_headers(), {"Authorization": "Bearer wrong-one"})
    ]
    answered = [
        await anonymous.get(path, headers=METRICS_CREDENTIAL) for path in ("/metrics", "/metrics/")
    ]

    assert [response.status_code for response in refused] == [401, 401, 401]
    assert [response.status_code for response in answered] == [200, 200]
    for response in answered:
        metrics = Scrape.parse(response.text)
        assert metrics.value("service_ready") == 1
        assert "db_pool_max_connections" not in metrics.names  # the gateway has no database
    assert downstream_calls == []  # answered by the gateway, forwarded nowhere


async def test_forwarded_and_composed_requests_are_counted_under_their_route_templates(
    gateway: httpx.AsyncClient,
) -> None:
    before = await scrape(gateway)

    await gateway.get("/users/12345")
    await gateway.get("/users/12345/posts")
    await gateway.get("/no/such/route")
    after = await scrape(gateway)

    for route in ("/users/{user_id}", "/users/{user_id}/posts", "<unmatched>"):
        assert after.value(REQUESTS, route=route) == before.value(REQUESTS, route=route) + 1
    assert not {"/users/12345", "/users/12345/posts"} & after.labels(REQUESTS, "route")


async def test_each_call_to_a_service_is_counted_by_how_it_ended(
    gateway: httpx.AsyncClient,
) -> None:
    before = await scrape(gateway)

    assert (await gateway.get("/users/")).status_code == 200
    assert (await gateway.get("/users/12345")).status_code == 404
    after = await scrape(gateway)

    def added(metrics_name: str, **labels: str) -> float:
        return after.value(metrics_name, **labels) - before.value(metrics_name, **labels)

    assert added(CALLS, service="users", outcome="ok") == 1
    assert added(CALLS, service="users", outcome="4xx") == 1
    assert added(CALL_DURATIONS, service="users") == 2


async def test_a_service_that_refuses_connections_is_counted_as_refused_at_each_attempt(
    gateway_with: GatewayWith,
) -> None:
    async with gateway_with(catalog_url=DEAD_SERVICE) as gateway:
        assert (await gateway.get("/categories/")).status_code == 503

        metrics = await scrape(gateway)

    assert metrics.value(CALLS, service="catalog", outcome="refused") == 2  # a read is retried
    assert metrics.value(CALLS, service="catalog") == 2
    assert metrics.value("service_ready") == 0


async def test_a_service_slower_than_the_read_timeout_is_counted_as_a_timeout(
    gateway_with: GatewayWith, services: dict[str, ServiceProcess]
) -> None:
    async with gateway_with(read_timeout=0.3) as gateway:
        # A real stall: users blocks on a table lock held here until the gateway gives up.
        url = libpq_url(services["users"].database_url)
        async with await psycopg.AsyncConnection.connect(url) as holder:
            await holder.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            response = await gateway.get("/users/stats")
            await holder.rollback()

        metrics = await scrape(gateway)

    assert response.status_code == 504
    assert metrics.value(CALLS, service="users", outcome="timeout") == 1
    assert metrics.value(CALLS, service="users") == 1


async def test_users_counts_its_outbox_and_blog_reports_its_consumer(
    gateway: httpx.AsyncClient, services: dict[str, ServiceProcess]
) -> None:
    body = {"email": "ada@example.com", "name": "Ada", "password": "correct horse battery"}
    assert (await gateway.post("/users/", json=body)).status_code == 201

    # On Postgres the feed serves an event once every older transaction of the server has
    # ended (servicekit.events), and the outbox's count is of the events it serves.
    users = poll(
        lambda: process_metrics(services["users"]),
        lambda metrics: metrics.value("events_outbox_events") > 0,
        15.0,
        "users' outbox count",
    )
    caught_up(services["users"], services["blog"])
    blog = process_metrics(services["blog"])

    assert users.value("events_outbox_events") == 1  # every test starts from empty tables
    assert blog.labels("events_consumer_lag_events", "consumer") == {"users"}
    assert blog.value("events_consumer_lag_events", consumer="users") == 0
    assert blog.value("events_consumer_lag_seconds", consumer="users") == 0
    assert blog.value("events_consumer_parked", consumer="users") == 0
    assert blog.value("events_consumer_applied_total", consumer="users") >= 1
