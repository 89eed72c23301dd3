"""Prometheus metrics of a process built by create_service_app: requests by route template,
requests in flight, readiness, connection pools, and a registry of each app's own."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from servicekit.app import create_service_app
from servicekit.auth import PUBLIC
from servicekit.database import Database, ServiceSettings
from servicekit.domain import NotFound
from servicekit.events import ConsumerStatus
from servicekit.metrics import DURATION_BUCKETS, Counts, Durations, metrics_of
from servicekit.settings import BaseProcessSettings
from servicekit.testing import (
    TEST_METRICS_TOKEN,
    TokenIssuer,
    asgi_client,
    database_of,
    running,
    scrape,
)
from servicekit.testing.plugin import UNREACHABLE_DATABASE, MakeDatabase

REQUESTS = "http_server_request_duration_seconds_count"
IN_FLIGHT = "http_server_requests_in_flight"


class Hold:
    """What `GET /held` waits for, and tells once it is waiting."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()


def _router(hold: Hold) -> APIRouter:
    router = APIRouter(dependencies=[PUBLIC])

    @router.get("/things/{thing_id:int}")
    async def get_thing(thing_id: int) -> dict[str, int]:
        if thing_id != 1:
            raise NotFound(f"thing {thing_id} not found")
        return {"id": thing_id}

    @router.get("/moved")
    async def moved() -> RedirectResponse:
        return RedirectResponse("/things/1", status_code=303)

    @router.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    @router.get("/held")
    async def held() -> dict[str, str]:
        hold.entered.set()
        await hold.release.wait()
        return {"status": "released"}

    return router


MakeApp = Callable[..., AbstractAsyncContextManager[FastAPI]]


@pytest.fixture
def make_app(make_database: MakeDatabase, token_issuer: TokenIssuer) -> MakeApp:
    """Running apps on fresh databases: `make_app(backend, **settings)`; `app.state.hold`."""

    @asynccontextmanager
    async def make(backend: str = "sqlite", **settings: Any) -> AsyncIterator[FastAPI]:
        hold = Hold()
        url = settings.pop("database_url", None) or make_database(backend, "metrics")
        app = create_service_app(
            name="things",
            version="1",
            settings=ServiceSettings(
                database_url=url,
                auth_jwks_url=token_issuer.jwks_url,
                metrics_token=TEST_METRICS_TOKEN,
                **settings,
            ),
            routers=[_router(hold)],
        )
        app.state.hold = hold
        async with running(app):
            yield app

    return make


@pytest.fixture
async def app(make_app: MakeApp) -> AsyncIterator[FastAPI]:
    async with make_app() as app:
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as client:
        yield client


# What a request is counted under


@pytest.mark.parametrize(
    ("paths", "counted_under"),
    [
        (("/things/1", "/things/2"), {"route": "/things/{thing_id}", "method": "GET"}),
        (("/nowhere", "/things/not-a-number"), {"route": "<unmatched>", "status_class": "4xx"}),
    ],
    ids=["its-route-template", "unmatched-when-no-route-matched"],
)
async def test_a_request_is_counted_under_its_route_never_its_path(
    client: httpx.AsyncClient, paths: tuple[str, str], counted_under: dict[str, str]
) -> None:
    for path in paths:
        await client.get(path)

    metrics = await scrape(client)

    assert metrics.value(REQUESTS, **counted_under) == 2
    assert not set(paths) & metrics.labels(REQUESTS, "route")


@pytest.mark.parametrize(
    ("method", "path", "status", "route", "counted_as"),
    [
        ("HEAD", "/things/1", 200, "/things/{thing_id}", "HEAD"),
        ("GET", "/things/1/", 200, "/things/{thing_id}", "GET"),
        ("GET", "/openapi.json", 200, "/openapi.json", "GET"),
        ("BREW", "/things/1", 405, "/things/{thing_id}", "_OTHER"),
    ],
    ids=[
        "head-under-the-get-route-with-its-own-method",
        "a-path-with-the-other-trailing-slash-under-the-route",
        "documentation-under-its-path",
        "a-method-outside-http-s-own-as-other",
    ],
)
async def test_a_request_is_counted_once_under_its_route_method_and_status_class(
    client: httpx.AsyncClient, method: str, path: str, status: int, route: str, counted_as: str
) -> None:
    assert (await client.request(method, path)).status_code == status

    metrics = await scrape(client)

    status_class = f"{status // 100}xx"
    assert metrics.value(REQUESTS, route=route, method=counted_as, status_class=status_class) == 1
    # It is the only request counted: a raw method such as BREW never becomes a label.
    assert metrics.labels(REQUESTS, "method") == {counted_as}
    assert metrics.value(REQUESTS, route=route) == 1


async def test_each_answer_is_counted_in_its_status_class(client: httpx.AsyncClient) -> None:
    await client.get("/things/1")
    await client.get("/moved")
    await client.get("/things/2")
    await client.get("/broken")

    metrics = await scrape(client)

    counted = {
        (route, status_class): metrics.value(REQUESTS, route=route, status_class=status_class)
        for route, status_class in [
            ("/things/{thing_id}", "2xx"),
            ("/moved", "3xx"),
            ("/things/{thing_id}", "4xx"),
            ("/broken", "5xx"),
        ]
    }
    assert set(counted.values()) == {1}


async def test_a_request_is_in_flight_until_its_answer_ends(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    hold: Hold = app.state.hold
    held = asyncio.create_task(client.get("/held"))
    await hold.entered.wait()

    during = await scrape(client)  # the scrape itself is in flight too
    hold.release.set()
    await held

    assert during.value(IN_FLIGHT) == 2
    assert metrics_of(app).registry.get_sample_value(IN_FLIGHT) == 0
    assert (await scrape(client)).value(REQUESTS, route="/held", status_class="2xx") == 1


# The credential


async def test_metrics_are_not_in_the_api_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()

    assert "/metrics" not in document["paths"]


def test_the_metrics_token_refuses_development_values_outside_development() -> None:
    development = BaseProcessSettings()

    with pytest.raises(ValidationError, match="metrics_token is a development password"):
        BaseProcessSettings(environment="production")
    with pytest.raises(ValidationError, match="metrics_token must have at least 8 characters"):
        BaseProcessSettings(metrics_token=SecretStr("short"))
    production = BaseProcessSettings(environment="production", metrics_token="a-real-credential")

    assert development.metrics_token.get_secret_value() == "changeme"
    assert production.metrics_token.get_secret_value() == "a-real-credential"


# Readiness, the process, and each app's own registry


async def test_ready_is_1_while_the_database_answers(client: httpx.AsyncClient) -> None:
    assert (await scrape(client)).value("service_ready") == 1


async def test_ready_is_0_when_the_database_does_not_answer(make_app: MakeApp) -> None:
    async with make_app(database_url=UNREACHABLE_DATABASE) as app, asgi_client(app) as client:
        metrics = await scrape(client)

    assert "service_ready" in metrics.names
    assert metrics.value("service_ready") == 0


async def test_the_process_is_described_by_prometheus_s_own_collectors(
    client: httpx.AsyncClient,
) -> None:
    names = (await scrape(client)).names

    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"} <= names
    assert "python_gc_collections_total" in names


async def test_each_app_counts_its_own_requests(make_app: MakeApp) -> None:
    async with (
        make_app() as first,
        make_app() as second,
        asgi_client(first) as first_client,
        asgi_client(second) as second_client,
    ):
        await first_client.get("/things/1")

        first_metrics, second_metrics = await scrape(first_client), await scrape(second_client)

    assert first_metrics.value(REQUESTS, route="/things/{thing_id}") == 1
    assert second_metrics.value(REQUESTS, route="/things/{thing_id}") == 0


async def test_a_consumer_s_status_is_read_at_each_scrape(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    status = ConsumerStatus()
    metrics_of(app).report_consumer("users", status)
    before = await scrape(client)

    status.events_behind, status.seconds_behind, status.parked, status.applied = 3, 1.5, 1, 7
    after = await scrape(client)

    assert before.value("events_consumer_applied_total", consumer="users") == 0
    assert {
        name: after.value(name, consumer="users")
        for name in (
            "events_consumer_lag_events",
            "events_consumer_lag_seconds",
            "events_consumer_parked",
            "events_consumer_applied_total",
        )
    } == {
        "events_consumer_lag_events": 3,
        "events_consumer_lag_seconds": 1.5,
        "events_consumer_parked": 1,
        "events_consumer_applied_total": 7,
    }


# Connection pools


def _pool(app: FastAPI, name: str, pool: str, **labels: str) -> float | None:
    """A pool metric as the app's registry reads it now (without a scrape's readiness check,
    which would open a connection of its own)."""
    registry = metrics_of(app).registry
    return registry.get_sample_value(name, {"pool": pool, **labels})


@pytest.mark.parametrize(
    ("backend", "pools"), [("sqlite", {"orm"}), ("postgresql", {"orm", "reads"})]
)
async def test_every_pool_reports_its_size_and_connections(
    make_app: MakeApp, backend: str, pools: set[str]
) -> None:
    async with make_app(backend, pool_size=3, max_overflow=2) as app, asgi_client(app) as client:
        metrics = await scrape(client)

    assert metrics.labels("db_pool_max_connections", "pool") == pools
    for pool in pools:
        assert metrics.value("db_pool_max_connections", pool=pool) == 5
        assert metrics.value("db_pool_connections", pool=pool, state="in_use") == 0
        # The scrape's readiness check connects on its own, never through a pool.
        assert metrics.value("db_pool_connections", pool=pool, state="idle") == 0
        assert metrics.value("db_pool_waiting", pool=pool) == 0


@asynccontextmanager
async def _holding(database: Database, pool: str) -> AsyncIterator[None]:
    """Hold one connection of `pool` ("orm" or "reads") for the block."""
    if pool == "orm":
        async with database.engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")
            yield
        return
    assert database.read_pool is not None
    lent = await database.read_pool.acquire()
    try:
        yield
    finally:
        await database.read_pool.release(lent)


async def _checkout(database: Database, pool: str) -> None:
    async with _holding(database, pool):
        pass


POOLS = [("sqlite", "orm"), ("postgresql", "orm"), ("postgresql", "reads")]


@pytest.mark.parametrize(("backend", "pool"), POOLS)
async def test_a_checkout_that_waits_is_counted_and_shown_waiting(
    make_app: MakeApp, backend: str, pool: str
) -> None:
    async with make_app(backend, pool_size=1, max_overflow=0) as app:
        database = database_of(app)
        async with _holding(database, pool):
            waiter = asyncio.create_task(_checkout(database, pool))
            async with asyncio.timeout(5):
                # The waiter runs until it waits in the pool: a state to observe, not an event.
                while not _pool(app, "db_pool_waiting", pool):  # noqa: ASYNC110
                    await asyncio.sleep(0)
            in_use = _pool(app, "db_pool_connections", pool, state="in_use")
        await waiter

        assert in_use == 1
        assert _pool(app, "db_pool_waits_total", pool) == 1
        assert _pool(app, "db_pool_timeouts_total", pool) == 0
        assert _pool(app, "db_pool_waiting", pool) == 0


@pytest.mark.parametrize(("backend", "pool"), POOLS)
async def test_a_checkout_that_gives_up_waiting_is_counted(
    make_app: MakeApp, backend: str, pool: str
) -> None:
    async with make_app(backend, pool_size=1, max_overflow=0, pool_timeout=0.05) as app:
        database = database_of(app)
        async with _holding(database, pool):
            with pytest.raises(PoolTimeoutError):
                await _checkout(database, pool)

        assert _pool(app, "db_pool_waits_total", pool) == 1
        assert _pool(app, "db_pool_timeouts_total", pool) == 1
        assert _pool(app, "db_pool_waiting", pool) == 0


def test_a_duration_counts_in_every_bucket_whose_bound_it_does_not_exceed() -> None:
    registry = CollectorRegistry()
    durations = Durations("call_seconds", "Calls.", ("service",), registry)
    calls = Counts("calls_total", "Calls.", ("service", "outcome"), registry)
    for seconds in (0.005, 0.0051, 11.0):
        durations.observe(("users",), seconds)
        calls.add(("users", "ok"))

    def bucket(bound: str) -> float | None:
        labels = {"service": "users", "le": bound}
        return registry.get_sample_value("call_seconds_bucket", labels)

    assert DURATION_BUCKETS[:2] == (0.005, 0.01)
    assert (bucket("0.005"), bucket("0.01"), bucket("10.0"), bucket("+Inf")) == (1, 2, 2, 3)
    assert registry.get_sample_value("call_seconds_count", {"service": "users"}) == 3
    assert registry.get_sample_value("call_seconds_sum", {"service": "users"}) == pytest.approx(
        11.0101
    )
    assert registry.get_sample_value("calls_total", {"service": "users", "outcome": "ok"}) == 3
