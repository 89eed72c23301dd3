"""Pooled connections on real Postgres: tested after idling, replaced when dropped; fast reads."""

from collections.abc import Callable

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import Column, Integer, MetaData, Table, func, literal, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from servicekit.database import Database
from servicekit.testing import StatementLog, count_statements, terminate_backend

MakePool = Callable[..., Database]


async def _backend_pid(database: Database) -> int:
    async with database.reader() as session:
        return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_dropped_while_idle_is_replaced_before_use(make_pool: MakePool) -> None:
    database = make_pool(pool_pre_ping_idle=1e-6)  # any pause counts as idle
    first = await _backend_pid(database)
    await terminate_backend(database.engine.url, first)

    second = await _backend_pid(database)

    assert second != first


async def test_connections_in_steady_use_are_not_pinged(
    make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = make_pool(pool_pre_ping_idle=3600)
    pings: list[object] = []
    monkeypatch.setattr(database.engine.dialect, "do_ping", pings.append)

    pids = {await _backend_pid(database) for _ in range(5)}

    assert (len(pids), pings) == (1, [])


async def test_without_pings_a_dropped_connection_fails_once_then_the_pool_recovers(
    make_pool: MakePool,
) -> None:
    database = make_pool(pool_pre_ping=False)
    first = await _backend_pid(database)
    await terminate_backend(database.engine.url, first)

    with pytest.raises(OperationalError):
        await _backend_pid(database)
    second = await _backend_pid(database)

    assert second != first


async def test_a_fast_read_cut_off_by_a_dropped_connection_runs_again_on_a_fresh_one(
    make_pool: MakePool,
) -> None:
    database = make_pool(pool_pre_ping=False)
    backend = select(func.pg_backend_pid().label("pid"))
    first = await database.fetch_one(backend)
    assert first is not None
    await terminate_backend(database.engine.url, first["pid"])

    second = await database.fetch_one(backend)

    assert second is not None
    assert second["pid"] != first["pid"]


async def test_fast_reads_count_as_statements_and_need_no_transaction(
    make_pool: MakePool,
) -> None:
    database = make_pool()

    with count_statements(database) as log:
        row = await database.fetch_one(select(literal(1).label("one")))

    assert row == {"one": 1}
    assert log.count == 1
    assert log.queries == log.statements  # no BEGIN, COMMIT or ROLLBACK around it
    assert database.read_pool is not None
    connection = await database.read_pool.acquire()
    try:
        assert connection.driver.autocommit  # psycopg sends no BEGIN or ROLLBACK
    finally:
        await database.read_pool.release(connection)


def test_statement_log_queries_leave_out_transaction_control() -> None:
    # SQLite's driver sends BEGIN as a statement; psycopg starts transactions implicitly.
    log = StatementLog(
        ["BEGIN (implicit)", "SELECT 1", "savepoint sa_1", "RELEASE SAVEPOINT sa_1", "COMMIT"]
    )

    assert log.queries == ["SELECT 1"]
    assert log.count == 5


def test_statement_log_tells_what_each_query_does_and_the_tables_it_names() -> None:
    metadata = MetaData()
    for name in ("posts", "post_tags", "tags"):
        Table(name, metadata, Column("id", Integer, primary_key=True))
    log = StatementLog(
        [
            "BEGIN",
            'SELECT p.id, p.title \nFROM "posts" AS p JOIN post_tags ON post_tags.post_id = p.id',
            "insert into tags (id) values (?)",
        ]
    )

    assert log.touched(metadata) == [("SELECT", {"posts", "post_tags"}), ("INSERT", {"tags"})]


async def test_pool_size_overflow_and_wait_come_from_the_settings(make_pool: MakePool) -> None:
    database = make_pool(pool_size=1, max_overflow=1, pool_timeout=0.2)
    engine = database.engine

    async with engine.connect(), engine.connect():  # the pooled one and the overflow one
        with pytest.raises(SQLAlchemyTimeoutError):
            async with engine.connect():
                pass


async def test_read_sessions_open_no_transaction_and_leave_none_behind(
    make_pool: MakePool,
) -> None:
    database = make_pool(pool_size=1)  # both sessions get the same connection

    async with database.reader() as session:
        await session.execute(text("SELECT 1"))
        connection = await (await session.connection()).get_raw_connection()
        driver = connection.driver_connection
        assert driver is not None
        in_read_session = driver.info.transaction_status
    in_transaction: list[TransactionStatus] = []

    async def create_a_table_then_fail() -> None:
        async with database.transaction() as session:
            await session.execute(text("CREATE TABLE notes (id int)"))
            in_transaction.append(driver.info.transaction_status)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await create_a_table_then_fail()
    async with database.reader() as session:
        tables = await session.execute(text("SELECT to_regclass('notes')"))

    assert in_read_session == TransactionStatus.IDLE
    assert in_transaction == [TransactionStatus.INTRANS]  # the mode was restored
    assert tables.scalar_one() is None  # and the transaction's work rolled back
