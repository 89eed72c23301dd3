"""The readiness check on real databases: it never waits for a pooled connection, a success is
reused for the interval unless a request has since failed to connect, a failure is never
reused, and probes that arrive during a check share it."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import literal, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from servicekit.database import Database, ServiceSettings
from servicekit.readiness import DatabaseProbe, sqlite_check
from servicekit.testing import libpq_url
from servicekit.testing.plugin import BACKENDS, MakeDatabase

# A pool timeout no test here may wait out: a check that waited for a pooled connection would
# give up at its own timeout (2 s) and report the database unreachable.
HANG = 60.0


@pytest.fixture
async def make(make_database: MakeDatabase) -> AsyncIterator[Callable[..., Database]]:
    """Databases on one fresh database per backend asked for, one pooled connection each."""
    urls: dict[str, str] = {}
    databases: list[Database] = []

    def make_one(backend: str, **settings: Any) -> Database:
        url = urls.setdefault(backend, make_database(backend, "readiness"))
        database = Database.from_settings(
            ServiceSettings.model_validate(
                {"database_url": url, "pool_size": 1, "pool_timeout": HANG, **settings}
            )
        )
        databases.append(database)
        return database

    yield make_one
    for database in databases:
        await database.dispose()


@asynccontextmanager
async def _every_connection_lent(database: Database) -> AsyncIterator[None]:
    async with database.engine.connect() as connection:
        await connection.exec_driver_sql("SELECT 1")
        if database.read_pool is None:
            yield
            return
        lent = await database.read_pool.acquire()
        try:
            yield
        finally:
            await database.read_pool.release(lent)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_database_answers_while_every_pooled_connection_is_lent(
    make: Callable[..., Database], backend: str
) -> None:
    database = make(backend, readiness_interval=0)

    async with _every_connection_lent(database), asyncio.timeout(HANG / 2):
        reachable = await database.is_reachable()

    assert reachable
    assert all(pool.waits == 0 for pool in database.pool_statistics().values())


async def _allow_connections(database_url: str, allowed: bool) -> None:
    url = make_url(database_url)
    async with await psycopg.AsyncConnection.connect(
        libpq_url(url.set(database="postgres")), autocommit=True
    ) as admin:
        await admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(str(url.database)), sql.Literal(allowed)
            )
        )


@asynccontextmanager
async def _refusing_connections(database_url: str) -> AsyncIterator[None]:
    """The database refuses new connections for the block (open ones carry on)."""
    await _allow_connections(database_url, allowed=False)
    try:
        yield
    finally:
        await _allow_connections(database_url, allowed=True)


async def test_a_success_is_reused_for_the_interval(
    make: Callable[..., Database], make_database: MakeDatabase
) -> None:
    url = make_database("postgresql", "readiness_interval")
    cached = make("postgresql", database_url=url, readiness_interval=3600)
    fresh = make("postgresql", database_url=url, readiness_interval=0)
    assert await cached.is_reachable()
    assert await fresh.is_reachable()

    async with _refusing_connections(url):
        # The cached one asks nothing until its interval is over: it cannot see the refusal.
        cached_answer, fresh_answer = await cached.is_reachable(), await fresh.is_reachable()

    assert (cached_answer, fresh_answer) == (True, False)


async def test_a_failure_is_not_reused(
    make: Callable[..., Database], make_database: MakeDatabase
) -> None:
    url = make_database("postgresql", "readiness_back")
    database = make("postgresql", database_url=url, readiness_interval=3600)

    async with _refusing_connections(url):
        down = await database.is_reachable()

    assert not down
    assert await database.is_reachable()


async def _query_through(database: Database, pool: str) -> None:
    """A query on a connection of `pool`: "reads" (the read path) or "orm" (a transaction)."""
    if pool == "reads":
        await database.fetch(select(literal(1)))
        return
    async with database.transaction() as session:
        await session.execute(select(literal(1)))


@pytest.mark.parametrize("pool", ["orm", "reads"])
async def test_a_request_that_cannot_connect_makes_the_next_probe_ask_again(
    make: Callable[..., Database], make_database: MakeDatabase, pool: str
) -> None:
    url = make_database("postgresql", "readiness_forget")
    database = make("postgresql", database_url=url, readiness_interval=3600)
    assert await database.is_reachable()

    async with _refusing_connections(url):
        with pytest.raises(DBAPIError):
            await _query_through(database, pool)
        ready = await database.is_reachable()

    assert not ready


async def test_probes_arriving_during_a_check_share_it(tmp_path: Path) -> None:
    check = sqlite_check(make_url(f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"))
    checks = 0

    async def counted() -> None:
        nonlocal checks
        checks += 1
        await check()

    probe = DatabaseProbe(counted, interval=0)

    together = await asyncio.gather(*(probe.answers() for _ in range(20)))
    alone = await probe.answers()

    assert together == [True] * 20
    assert alone
    assert checks == 2


async def test_an_sqlite_file_that_is_not_a_database_is_not_ready(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"not an SQLite database, whatever its name says" * 100)

    probe = DatabaseProbe(sqlite_check(make_url(f"sqlite:///{path}")), interval=0)

    answered = await probe.answers()

    assert not answered
