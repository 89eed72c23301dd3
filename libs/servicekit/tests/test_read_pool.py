"""The read pool on real Postgres: what it lends, keeps, closes, and how it fails and recovers."""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from servicekit.database import Database, ServiceSettings
from servicekit.pool import PooledConnection, ReadPool
from servicekit.testing import libpq_url, terminate_backend
from servicekit.testing.plugin import UNREACHABLE_DATABASE

MakeReadPool = Callable[..., ReadPool]
BACKEND_PID = select(func.pg_backend_pid().label("pid"))
# A guard against a hang, far longer than anything here takes when it works.
HANG = 60


def _settings(url: str, **settings: Any) -> ServiceSettings:
    return ServiceSettings.model_validate({"database_url": url, "pool_size": 1, **settings})


@pytest.fixture
def make_read_pool(make_pool: Callable[..., Database]) -> MakeReadPool:
    """A factory of the read pools of make_pool's Databases, one connection by default."""

    def make(**settings: Any) -> ReadPool:
        pool = make_pool(**settings).read_pool
        assert pool is not None
        return pool

    return make


async def _pid(connection: PooledConnection) -> int:
    cursor = await connection.driver.execute("SELECT pg_backend_pid()")
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _queued_acquire(pool: ReadPool) -> "asyncio.Future[PooledConnection]":
    """A caller of `pool.acquire()` that is queued: every connection is lent."""
    caller = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0)  # one turn of the loop: the caller runs up to its wait
    assert pool.waiting == 1
    return caller


class Queued(NamedTuple):
    """A pool whose one connection is lent (`held`), and a caller waiting for it."""

    pool: ReadPool
    held: PooledConnection
    waiting: "asyncio.Future[PooledConnection]"


@pytest.fixture
async def queued(make_read_pool: MakeReadPool) -> Queued:
    pool = make_read_pool(pool_timeout=HANG)
    held = await pool.acquire()
    return Queued(pool, held, await _queued_acquire(pool))


async def _borrowed_pid(pool: ReadPool) -> int:
    connection = await pool.acquire()
    try:
        return await _pid(connection)
    finally:
        await pool.release(connection)


async def test_a_returned_connection_is_lent_again(make_read_pool: MakeReadPool) -> None:
    pool = make_read_pool(pool_pre_ping_idle=3600)

    pids = {await _borrowed_pid(pool) for _ in range(3)}

    assert (len(pids), pool.opened) == (1, 1)


async def test_the_settings_give_size_overflow_wait_and_statement_timeout(
    make_read_pool: MakeReadPool,
) -> None:
    pool = make_read_pool(pool_size=3, max_overflow=2, pool_timeout=0.5, statement_timeout_ms=1234)

    connection = await pool.acquire()
    try:
        cursor = await connection.driver.execute("SHOW statement_timeout")
        assert await cursor.fetchone() == ("1234ms",)
    finally:
        await pool.release(connection)
    assert (pool.size, pool.limit, pool.timeout) == (3, 5, 0.5)


async def test_when_every_connection_is_lent_a_caller_waits_then_times_out(
    make_read_pool: MakeReadPool,
) -> None:
    pool = make_read_pool(pool_timeout=0.1)
    held = await pool.acquire()

    with pytest.raises(PoolTimeoutError):
        await pool.acquire()

    await pool.release(held)
    assert await _borrowed_pid(pool) == await _pid(held)
    assert pool.opened == 1


async def test_a_waiting_caller_is_given_the_connection_returned(queued: Queued) -> None:
    pool, held, waiting = queued

    await pool.release(held)
    given = await asyncio.wait_for(waiting, HANG)

    assert given is held
    await pool.release(given)
    assert pool.opened == 1


async def test_a_caller_that_stops_waiting_takes_nothing_with_it(queued: Queued) -> None:
    pool, held, waiting = queued
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    await pool.release(held)

    assert await _borrowed_pid(pool) == await _pid(held)
    assert (pool.opened, pool.waiting) == (1, 0)


async def test_callers_that_timed_out_are_no_longer_queued(make_read_pool: MakeReadPool) -> None:
    pool = make_read_pool(pool_timeout=0.05)
    held = await pool.acquire()
    for _ in range(3):
        with pytest.raises(PoolTimeoutError):
            await pool.acquire()

    assert pool.waiting == 0
    await pool.release(held)


async def test_overflow_connections_are_closed_when_returned(
    make_read_pool: MakeReadPool,
) -> None:
    pool = make_read_pool(pool_size=1, max_overflow=1)
    first, second = await pool.acquire(), await pool.acquire()
    assert pool.opened == 2

    await pool.release(first)
    await pool.release(second)

    assert pool.opened == 1
    assert second.driver.closed


async def test_many_concurrent_reads_share_the_pool_without_exceeding_it(
    make_pool: Callable[..., Database],
) -> None:
    database = make_pool(pool_size=3, pool_timeout=HANG)
    assert database.read_pool is not None

    rows = await asyncio.gather(*(database.fetch_one(BACKEND_PID) for _ in range(50)))

    assert len({row["pid"] for row in rows if row is not None}) <= 3
    assert database.read_pool.opened <= 3


async def test_a_connection_left_in_a_transaction_is_closed_not_kept(
    make_read_pool: MakeReadPool,
) -> None:
    pool = make_read_pool()
    connection = await pool.acquire()
    await connection.driver.execute("BEGIN")

    await pool.release(connection)

    assert (connection.driver.closed, pool.opened) == (True, 0)


async def test_a_connection_dropped_while_idle_is_tested_and_replaced_before_use(
    make_read_pool: MakeReadPool, pool_database_url: str
) -> None:
    pool = make_read_pool(pool_pre_ping_idle=1e-6)  # any pause counts as idle
    first = await _borrowed_pid(pool)
    await terminate_backend(pool_database_url, first)

    second = await _borrowed_pid(pool)

    assert second != first
    assert pool.opened == 1


async def test_connections_in_steady_use_are_not_tested(
    make_read_pool: MakeReadPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = make_read_pool(pool_pre_ping_idle=3600)
    statements: list[str] = []
    connection = await pool.acquire()
    original = type(connection.driver).execute

    async def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(str(query))
        return await original(self, query, *args, **kwargs)

    monkeypatch.setattr(type(connection.driver), "execute", execute)
    await pool.release(connection)

    for _ in range(3):
        await _borrowed_pid(pool)

    assert statements == ["SELECT pg_backend_pid()"] * 3


async def test_connections_past_their_recycle_age_are_replaced(
    make_read_pool: MakeReadPool,
) -> None:
    pool = make_read_pool(pool_recycle=0)  # any age is past it

    first, second = await _borrowed_pid(pool), await _borrowed_pid(pool)

    assert first != second
    assert pool.opened == 1


async def test_once_a_connection_was_dropped_every_older_one_is_replaced(
    make_read_pool: MakeReadPool,
) -> None:
    pool = make_read_pool(pool_size=2, pool_pre_ping=False)
    first, second = await pool.acquire(), await pool.acquire()
    old = {await _pid(first), await _pid(second)}
    await pool.release(first)

    pool.invalidate()  # what a read does when its connection turns out to be broken
    await pool.release(second)

    assert await _borrowed_pid(pool) not in old
    assert (first.driver.closed, second.driver.closed, pool.opened) == (True, True, 1)


async def test_a_server_refusing_connections_fails_a_read_at_once() -> None:
    # A pool timeout of an hour: a read that waited for a connection would hang the test.
    database = Database.from_settings(_settings(UNREACHABLE_DATABASE, pool_timeout=3600))
    assert database.read_pool is not None

    async with asyncio.timeout(HANG):
        for _ in range(3):
            with pytest.raises(OperationalError):
                await database.fetch_one(BACKEND_PID)

    assert database.read_pool.opened == 0
    await database.dispose()


async def test_the_next_read_after_the_server_comes_back_reconnects(
    pool_database_url: str,
) -> None:
    libpq = libpq_url(pool_database_url)
    refusals = [psycopg.OperationalError("connection refused")] * 2

    async def connect_while_down_then_up() -> "psycopg.AsyncConnection[Any]":
        if refusals:
            raise refusals.pop()
        return await psycopg.AsyncConnection.connect(libpq, autocommit=True)

    pool = ReadPool(connect_while_down_then_up, size=2, timeout=3600)
    async with asyncio.timeout(HANG):
        for _ in range(2):
            with pytest.raises(psycopg.OperationalError):
                await pool.acquire()

        assert await _borrowed_pid(pool) > 0

    assert pool.opened == 1
    await pool.dispose()


async def test_a_waiting_caller_opens_the_place_of_a_connection_that_was_closed(
    queued: Queued,
) -> None:
    pool, held, waiting = queued
    await held.driver.execute("BEGIN")  # so it is closed when returned

    await pool.release(held)
    given = await asyncio.wait_for(waiting, HANG)

    assert given is not held
    assert not given.driver.closed
    await pool.release(given)
    assert pool.opened == 1


async def test_a_caller_cancelled_while_its_connection_is_tested_takes_nothing_with_it(
    make_read_pool: MakeReadPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = make_read_pool(pool_pre_ping_idle=0)  # every checkout is tested
    await _borrowed_pid(pool)
    connection = await pool.acquire()
    await pool.release(connection)

    async def cancelled(*_args: Any, **_kwargs: Any) -> Any:
        raise asyncio.CancelledError

    monkeypatch.setattr(connection.driver, "execute", cancelled)
    with pytest.raises(asyncio.CancelledError):
        await pool.acquire()

    assert (connection.driver.closed, pool.opened) == (True, 0)


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A database URL whose server takes connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/silent"
        for writer in held:
            writer.close()


async def test_a_server_that_does_not_answer_fails_reads_after_the_connect_timeout(
    silent_server: str,
) -> None:
    database = Database.from_settings(
        _settings(silent_server, connect_timeout=2, pool_timeout=3600)
    )

    async with asyncio.timeout(HANG):
        with pytest.raises(OperationalError):
            await database.fetch_one(BACKEND_PID)
        with pytest.raises(OperationalError):
            async with database.transaction() as session:
                await session.execute(BACKEND_PID)

    assert database.read_pool is not None
    assert database.read_pool.opened == 0
    await database.dispose()
