"""Fixtures: the users app on a migrated database, once on Postgres and once on SQLite."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from servicekit.testing import asgi_client, database_of, migrate, running, truncate_tables
from servicekit.testing.plugin import BACKENDS, MakeDatabase
from users_service.main import create_app
from users_service.models import Base
from users_service.settings import UsersSettings

ALEMBIC_INI = Path(__file__).parents[1] / "alembic.ini"


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, make_database: MakeDatabase) -> str:
    """A fresh users database, on each backend in turn."""
    url: str = make_database(request.param, "users")
    return url


@pytest.fixture(scope="session")
async def app(database_url: str) -> AsyncIterator[FastAPI]:
    """The users app, running, on a database migrated to head."""
    await migrate(ALEMBIC_INI, database_url)
    app = create_app(UsersSettings(database_url=database_url, environment="test"))
    async with running(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the app; every test starts from empty tables."""
    await truncate_tables(database_of(app).engine, Base.metadata)
    async with asgi_client(app) as client:
        yield client


@pytest.fixture
def backend(database_url: str) -> str:
    return database_url.split("+", 1)[0].split(":", 1)[0]
