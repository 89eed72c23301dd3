"""Pytest fixtures for real databases.

Postgres comes from `TEST_DATABASE_URL` (an existing server: a fresh database is created for
each use and dropped afterwards), else from a testcontainers `PostgresContainer` running the image
`TEST_POSTGRES_IMAGE` (default the official `postgres:16`). With `CI=true`, a test that needs
Postgres and cannot get one fails instead of being skipped.
"""

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from servicekit.testing import (
    ServiceUnderTest,
    TokenIssuer,
    Versioned,
    asgi_client,
    database_of,
    libpq_url,
    migrate,
    running,
    serving,
    truncate_tables,
)

DEFAULT_POSTGRES_IMAGE = "postgres:16"
# Nothing listens on port 1: connections are refused at once.
UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/unreachable"
BACKENDS = ("postgresql", "sqlite")

MakeDatabase = Callable[[str, str], str]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Postgres is required in CI: {reason}", pytrace=False)
    pytest.skip(f"Postgres unavailable: {reason}")


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[URL]:
    """The URL of a Postgres server (its maintenance database) the tests may create databases on."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        url = make_url(configured).set(drivername="postgresql+psycopg")
        try:
            psycopg.connect(libpq_url(url), connect_timeout=5).close()
        except psycopg.Error as exc:
            _unavailable(f"TEST_DATABASE_URL does not answer ({type(exc).__name__})")
        yield url
        return
    try:
        from testcontainers.community.postgres import PostgresContainer

        container = PostgresContainer(
            os.environ.get("TEST_POSTGRES_IMAGE", DEFAULT_POSTGRES_IMAGE), driver="psycopg"
        )
        container.start()
    except Exception as exc:
        _unavailable(f"testcontainers could not start Postgres ({type(exc).__name__}: {exc})")
    try:
        yield make_url(container.get_connection_url())
    finally:
        container.stop()


@pytest.fixture(scope="session")
def postgres_database_factory(postgres_server_url: URL) -> Iterator[Callable[[str], str]]:
    """A factory of fresh Postgres databases on the test server, dropped after the session."""
    created: list[str] = []
    server = libpq_url(postgres_server_url)

    def make(name: str) -> str:
        database = f"test_{name}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        created.append(database)
        return postgres_server_url.set(database=database).render_as_string(hide_password=False)

    yield make
    with psycopg.connect(server, autocommit=True) as connection:
        for database in created:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )


@pytest.fixture(scope="session")
def make_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> MakeDatabase:
    """A factory `(backend, name) -> url` of fresh, empty databases.

    Postgres is only started when a test asks for a Postgres database.
    """

    def make(backend: str, name: str) -> str:
        if backend == "sqlite":
            path: Path = tmp_path_factory.mktemp("sqlite") / f"{name}.db"
            return f"sqlite+aiosqlite:///{path}"
        if backend != "postgresql":
            raise ValueError(f"unknown backend {backend!r}")
        factory: Callable[[str], str] = request.getfixturevalue("postgres_database_factory")
        return factory(name)

    return make


@pytest.fixture(scope="session")
def token_issuer(tmp_path_factory: pytest.TempPathFactory) -> TokenIssuer:
    """Signs tokens the services under test accept (see TokenIssuer)."""
    return TokenIssuer.create(tmp_path_factory.mktemp("token-keys"))


# Fixtures for a service's tests. The service's conftest.py provides a session-scoped
# `service` fixture returning its ServiceUnderTest; these build on it.


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses a service's database once per backend.

    pytest caches a session fixture by its parameter alone, so in a run that collects several
    services' suites the parameter also names the suite's folder: each suite then gets its own
    database and app rather than those of the suite that ran before it.
    """
    if "database_url" in metafunc.fixturenames:
        suite = metafunc.definition.path.parent
        metafunc.parametrize(
            "database_url",
            [(backend, suite) for backend in BACKENDS],
            ids=BACKENDS,
            indirect=True,
            scope="session",
        )


@pytest.fixture(scope="session")
def database_url(
    request: pytest.FixtureRequest, make_database: MakeDatabase, service: ServiceUnderTest
) -> str:
    """A fresh database for the service, on each backend in turn."""
    backend, _suite = request.param
    return make_database(backend, service.name)


@pytest.fixture(scope="session")
async def app(database_url: str, service: ServiceUnderTest) -> AsyncIterator[FastAPI]:
    """The service's app, running, on a database migrated to head."""
    await migrate(service.alembic_ini, database_url)
    app = service.create_app(database_url)
    async with running(app):
        yield app


@pytest.fixture
async def client(
    app: FastAPI, service: ServiceUnderTest, token_issuer: TokenIssuer
) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's HTTP client of the app (in-process ASGI); every test starts from empty tables.

    Tests of what the API does send an admin's token, whom every rule admits; tests of who
    may do what use `anonymous` or tokens of their own.
    """
    await truncate_tables(database_of(app).engine, service.metadata)
    async with asgi_client(app, headers=token_issuer.admin_headers()) as client:
        yield client


@pytest.fixture
async def anonymous(client: httpx.AsyncClient, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same app (and the same emptied tables) that sends no token."""
    async with asgi_client(app) as anonymous:
        yield anonymous


@pytest.fixture(scope="session")
def service_url(database_url: str, app: FastAPI, service: ServiceUnderTest) -> Iterator[str]:
    """The service served over real HTTP by uvicorn, on the same migrated database as `app`."""
    with serving(service.create_app(database_url)) as base_url:
        yield base_url


@pytest.fixture(params=BACKENDS)
def empty_database(
    request: pytest.FixtureRequest, make_database: MakeDatabase, service: ServiceUnderTest
) -> str:
    """A fresh, unmigrated database for the service, on each backend in turn."""
    return make_database(request.param, f"{service.name}_empty")


@pytest.fixture
async def no_database(
    service: ServiceUnderTest, token_issuer: TokenIssuer
) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's client of the service whose database refuses connections."""
    app = service.create_app(UNREACHABLE_DATABASE)
    async with running(app), asgi_client(app, headers=token_issuer.admin_headers()) as client:
        yield client


@pytest.fixture
async def versioned(service: ServiceUnderTest, client: httpx.AsyncClient) -> Versioned:
    """A resource of the service that carries a version, just created: what its create_path
    creates, unless the suite overrides this fixture (with one for each such resource, say)."""
    created = await client.post(service.create_path, json=service.create_body(1))
    assert created.status_code == 201, created.text
    return Versioned(created.headers["Location"], service.change_body)
