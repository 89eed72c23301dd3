"""Bulk inserts by the shortest path the database offers."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import psycopg
from sqlalchemy import Table, insert
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.schema import CallableColumnDefault, ScalarElementColumnDefault

from servicekit.reads import Row, announce, driver_rows, on_psycopg, sqlalchemy_error


async def insert_many(
    session: AsyncSession, model: type[Any], rows: Sequence[Mapping[str, Any]]
) -> list[Row]:
    """Insert `rows` (each with the same keys) into `model`'s table in the session's
    transaction; return them.

    The stored rows come back as dicts, in the order given, with the values the database
    filled in (ids, server defaults). On Postgres this is one statement with one parameter
    per column, whatever the number of rows: `INSERT ... SELECT ... FROM unnest(arrays)`.
    (SQLAlchemy's batched INSERT writes a placeholder per value, which psycopg parses again,
    in Python, for every batch; a pipelined executemany still handles a result per row.)
    The arrays go in psycopg's binary format (`%b`): the text format quotes and escapes every
    element in Python, with regular expressions, and costs a third of a 1,000-row request.
    Elsewhere SQLAlchemy's batched INSERT runs.

    Either way the rows come back sorted by primary key, which follows their order: Postgres
    draws the ids as the SELECT yields its rows in ORDER BY order (the "sentinel" SQLAlchemy
    itself relies on), and SQLite's writer holds the database lock for the whole statement.
    """
    if not rows:
        return []
    table = cast("Table", model.__table__)
    connection = await session.connection()
    by_key = tuple(table.primary_key)
    if on_psycopg(connection.dialect):
        stored = await _insert_unnested(connection, table, rows)
    else:
        result = await session.execute(insert(table).returning(*table.c), rows)
        stored = [dict(row) for row in result.mappings()]
    return sorted(stored, key=lambda row: tuple(row[column.name] for column in by_key))


async def _insert_unnested(
    connection: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> list[Row]:
    dialect = connection.dialect
    defaults = _python_defaults(table, rows[0].keys())
    names = [*rows[0], *defaults]
    quote = dialect.identifier_preparer.quote
    arrays = ", ".join(
        f"%({name})b::{table.c[name].type.compile(dialect=dialect)}[]" for name in names
    )
    columns = ", ".join(quote(table.c[name].name) for name in names)
    returned = ", ".join(quote(column.name) for column in table.c)
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({columns}) "  # noqa: S608 - identifiers from the table, values bound
        f"SELECT {columns} FROM unnest({arrays}) "
        f"WITH ORDINALITY AS given({columns}, given_position) "
        f"ORDER BY given_position RETURNING {returned}"
    )
    parameters: dict[str, list[Any]] = {}
    for name in names:
        processor = table.c[name].type.bind_processor(dialect)
        values = [defaults[name]] * len(rows) if name in defaults else [row[name] for row in rows]
        parameters[name] = [processor(value) for value in values] if processor else values
    announce(connection.engine.sync_engine, sql)
    raw = await connection.get_raw_connection()
    driver = cast("psycopg.AsyncConnection[Any]", raw.driver_connection)
    try:
        return await driver_rows(driver, sql, parameters)
    except psycopg.Error as exc:
        raise sqlalchemy_error(sql, {}, exc, invalidated=driver.broken) from exc


class _DefaultsSoFar:
    """What a context-sensitive default asks of its execution context: the row's values so
    far (here the defaults of the columns before it, as SQLAlchemy computes them in order)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def get_current_parameters(self, isolate_multiinsert_groups: bool = True) -> dict[str, Any]:
        return self.values


def _python_defaults(table: Table, given: Iterable[str]) -> dict[str, Any]:
    # SQLAlchemy fills these in when it runs an INSERT itself; one value serves a whole batch
    # (a timestamp default then reads the same for every row, as Postgres' now() would).
    values: dict[str, Any] = {}
    for column in table.c:
        default = column.default
        if column.key in given or default is None:
            continue
        if isinstance(default, ScalarElementColumnDefault):
            values[column.key] = default.arg
        elif isinstance(default, CallableColumnDefault):
            # A zero-argument default is wrapped to take (and ignore) an execution context.
            context = cast("DefaultExecutionContext", _DefaultsSoFar(values))
            values[column.key] = default.arg(context)
    return values
