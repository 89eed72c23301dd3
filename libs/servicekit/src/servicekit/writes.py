"""Bulk inserts by the shortest path the database offers."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Table, bindparam, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.schema import CallableColumnDefault, ScalarElementColumnDefault

from servicekit.reads import Row, announce, sqlalchemy_error


async def insert_many(
    session: AsyncSession, model: type[Any], rows: Sequence[Mapping[str, Any]]
) -> list[Row]:
    """Insert `rows` (each with the same keys) into `model`'s table in the session's
    transaction; return them.

    The stored rows come back as dicts, in the order given, with the values the database
    filled in (ids, server defaults). On Postgres, psycopg runs one prepared single-row
    INSERT ... RETURNING for every row in pipeline mode: the statement is parsed and planned
    once and the rows stream without a round trip each. (SQLAlchemy's batched INSERT writes
    one statement with a placeholder per value, which psycopg parses again, in Python, for
    every batch: most of the cost at a thousand rows.) Elsewhere SQLAlchemy's batched INSERT
    runs; SQLite's writer holds the database lock for the whole statement, so primary keys
    follow the rows and sorting by them restores their order.
    """
    if not rows:
        return []
    table = cast("Table", model.__table__)
    connection = await session.connection()
    defaults = _python_defaults(table, rows[0].keys())
    columns = [*rows[0], *defaults]
    statement = (
        insert(table)
        .values({name: bindparam(name, type_=table.c[name].type) for name in columns})
        .returning(*table.c)
    )
    if connection.dialect.name != "postgresql" or connection.dialect.driver != "psycopg":
        result = await session.execute(insert(table).returning(*table.c), rows)
        inserted = [dict(row) for row in result.mappings()]
        return sorted(inserted, key=lambda row: tuple(row[c.name] for c in table.primary_key))
    dialect = connection.dialect
    sql = str(statement.compile(dialect=dialect))
    processors = {
        name: processor
        for name in columns
        if (processor := table.c[name].type.bind_processor(dialect)) is not None
    }
    parameters = [
        {
            name: processors[name](value) if name in processors else value
            for name, value in (*row.items(), *defaults.items())
        }
        for row in rows
    ]
    announce(connection.engine.sync_engine, sql)
    raw = await connection.get_raw_connection()
    driver = cast("psycopg.AsyncConnection[Any]", raw.driver_connection)
    stored: list[Row] = []
    try:
        async with driver.cursor(row_factory=dict_row) as cursor:
            await cursor.executemany(sql, parameters, returning=True)
            while True:
                stored.extend(await cursor.fetchall())
                if not cursor.nextset():
                    break
    except psycopg.Error as exc:
        raise sqlalchemy_error(sql, {}, exc, invalidated=driver.broken) from exc
    return stored


def _python_defaults(table: Table, given: Iterable[str]) -> dict[str, Any]:
    # SQLAlchemy fills these in when it runs an INSERT itself; one value serves a whole batch
    # (a timestamp default then reads the same for every row, as Postgres' now() would).
    values = {}
    for column in table.c:
        default = column.default
        if column.key in given or default is None:
            continue
        if isinstance(default, ScalarElementColumnDefault):
            values[column.key] = default.arg
        elif isinstance(default, CallableColumnDefault):
            # A zero-argument default is wrapped to take (and ignore) an execution context.
            values[column.key] = default.arg(None)  # type: ignore[arg-type]
    return values
