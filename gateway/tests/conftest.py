"""The real services as processes on Postgres, and the gateway in front of them.

Each service runs as its own uvicorn process, migrated by its own Alembic, so the gateway is
tested over real HTTP, and failure tests can stop a service and start it again.
"""

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from gateway_service.main import create_app
from gateway_service.settings import GatewaySettings
from servicekit.testing import (
    TEST_EVENTS_TOKEN,
    TEST_METRICS_TOKEN,
    ServiceProcess,
    TokenIssuer,
    asgi_client,
    free_port,
    running,
    serving,
    started,
)
from servicekit.testing.plugin import MakeDatabase

REPOSITORY = Path(__file__).parents[2]
SERVICES = ("users", "catalog", "blog")


# Passwords hashed at a small fraction of the production cost: the tests create many users.
CHEAP_PASSWORD_HASHING = {
    "USERS_PASSWORD_HASH_TIME_COST": "1",
    "USERS_PASSWORD_HASH_MEMORY_COST": "1024",
    "USERS_PASSWORD_HASH_PARALLELISM": "1",
}


MakeServices = Callable[..., dict[str, ServiceProcess]]


@pytest.fixture(scope="session")
def make_services(make_database: MakeDatabase, token_issuer: TokenIssuer) -> MakeServices:
    """Services, not started yet, each on a Postgres database of its own (named after a
    prefix), with environment variables added to each one's.

    Users signs with the test issuer's keys; catalog and blog fetch them from users, as they
    do when deployed.
    """

    def make(
        prefix: str,
        environment: Mapping[str, str] | None = None,
        names: tuple[str, ...] = SERVICES,
    ) -> dict[str, ServiceProcess]:
        processes: dict[str, ServiceProcess] = {}
        for name in names:
            own = {f"{name.upper()}_ENVIRONMENT": "test", **(environment or {})}
            if name == "users":
                own |= {"USERS_SIGNING_KEYS_FILE": str(token_issuer.keys_file)}
                own |= CHEAP_PASSWORD_HASHING
                own["USERS_EVENTS_TOKEN"] = TEST_EVENTS_TOKEN
            else:
                own[f"{name.upper()}_AUTH_JWKS_URL"] = (
                    f"{processes['users'].url}/.well-known/jwks.json"
                )
            if name == "blog":
                own |= {
                    "BLOG_EVENTS_URL": f"{processes['users'].url}/events",
                    "BLOG_EVENTS_TOKEN": TEST_EVENTS_TOKEN,
                    # Short long polls: users, stopped by failure tests, waits for them to end.
                    "BLOG_EVENTS_WAIT": "1",
                }
            processes[name] = ServiceProcess(
                name,
                make_database("postgresql", f"{prefix}_{name}"),
                REPOSITORY / "services" / name / "alembic.ini",
                own,
            )
        return processes

    return make


@pytest.fixture(scope="session")
def services(make_services: MakeServices) -> Iterator[dict[str, ServiceProcess]]:
    """Every service, running on a Postgres database of its own."""
    processes = make_services("gateway")
    with started(processes):
        yield processes


GatewaySettingsFactory = Callable[..., GatewaySettings]


@pytest.fixture(scope="session")
def gateway_settings(services: dict[str, ServiceProcess]) -> GatewaySettingsFactory:
    """Settings of a gateway in front of the test services (keys from users), with overrides."""

    def make(**overrides: object) -> GatewaySettings:
        urls = {f"{name}_url": process.url for name, process in services.items()}
        return GatewaySettings.model_validate(
            {"environment": "test", "metrics_token": TEST_METRICS_TOKEN, **urls, **overrides}
        )

    return make


@pytest.fixture(scope="session")
async def gateway_app(gateway_settings: GatewaySettingsFactory) -> AsyncIterator[FastAPI]:
    app = create_app(gateway_settings())
    async with running(app):
        yield app


@pytest.fixture
async def gateway(
    gateway_app: FastAPI, services: dict[str, ServiceProcess], token_issuer: TokenIssuer
) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's client of the gateway; every service is running and empty at the start."""
    for process in services.values():
        if not process.is_running:
            process.start()
        process.empty_tables()
    async with asgi_client(
        gateway_app, base_url="http://gateway.test", headers=token_issuer.admin_headers()
    ) as client:
        yield client


def _record_calls(app: FastAPI) -> tuple[list[httpx.Request], Callable[[], None]]:
    calls: list[httpx.Request] = []
    listeners = app.state.downstream.listeners
    listeners.append(calls.append)
    return calls, lambda: listeners.remove(calls.append)


@pytest.fixture
def downstream_calls(gateway_app: FastAPI) -> Iterator[list[httpx.Request]]:
    """Every request the gateway sends to a service during the test."""
    calls, stop_recording = _record_calls(gateway_app)
    yield calls
    stop_recording()


@pytest.fixture(params=["aiohttp", "httpx"])
async def impatient_gateway(
    request: pytest.FixtureRequest,
    gateway_settings: GatewaySettingsFactory,
    gateway: httpx.AsyncClient,
) -> AsyncIterator[tuple[httpx.AsyncClient, list[httpx.Request]]]:
    """A gateway that waits only 0.3 s for answers, on each HTTP transport, with its calls."""
    app = create_app(gateway_settings(read_timeout=0.3, http_transport=request.param))
    async with (
        running(app),
        asgi_client(app, base_url="http://gateway.test", headers=gateway.headers) as client,
    ):
        yield client, _record_calls(app)[0]


ServeGateway = Callable[..., AbstractContextManager[tuple[str, FastAPI]]]


@pytest.fixture
def serve_gateway(
    gateway_settings: GatewaySettingsFactory,
    gateway: httpx.AsyncClient,
    services: dict[str, ServiceProcess],
) -> ServeGateway:
    """A gateway of its own with these settings, served over HTTP by uvicorn in a thread (so a
    test may block while it serves): its URL and its app. Every service is running and empty."""

    @contextmanager
    def serve(**overrides: object) -> Iterator[tuple[str, FastAPI]]:
        keys = f"{services['users'].url}/.well-known/jwks.json"
        app = create_app(gateway_settings(auth_jwks_url=keys, **overrides))
        with serving(app) as url:
            yield url, app

    return serve


GatewayProcess = Callable[[Mapping[str, str], Path], AbstractContextManager[int]]


@contextmanager
def _gateway_process(environment: Mapping[str, str], log: Path) -> Iterator[int]:
    port = free_port()
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "gateway_service.main:create_app", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            ],
            env={**os.environ, **environment},
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
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def gateway_process() -> GatewayProcess:
    """The gateway as uvicorn runs it in production, in a process of its own with these
    environment variables (beside the test's), its log written to a file: its port."""
    return _gateway_process
