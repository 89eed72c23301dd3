"""Fixtures of servicekit's own tests."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from servicekit.database import Database, ServiceSettings
from servicekit.testing.plugin import MakeDatabase


@pytest.fixture
def pool_database_url(make_database: MakeDatabase) -> str:
    """A fresh Postgres database for the tests of connection pools."""
    return make_database("postgresql", "pool")


@pytest.fixture
async def make_pool(pool_database_url: str) -> AsyncIterator[Callable[..., Database]]:
    """A factory of Databases on `pool_database_url`, one pooled connection by default."""
    databases: list[Database] = []

    def make(**settings: Any) -> Database:
        database = Database.from_settings(
            ServiceSettings.model_validate(
                {"database_url": pool_database_url, "pool_size": 1, **settings}
            )
        )
        databases.append(database)
        return database

    yield make
    for database in databases:
        await database.dispose()
