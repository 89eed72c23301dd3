"""Reads by the shortest path: Core SELECTs run on the driver's own connection on Postgres.

SQLAlchemy's execution layer (connection events, execution contexts, result wrappers, the ORM
identity map) costs several times the database round trip of a small query. For read-only
requests SQLAlchemy compiles the statement, a ReadPool (servicekit.pool) lends a connection
in autocommit mode (no BEGIN or ROLLBACK), and psycopg runs the SQL, preparing statements it
sees repeatedly and returning rows as dicts. Writes keep the ORM and its unit of work.
"""

import weakref
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import ARRAY, ColumnElement, Dialect, Select, any_, bindparam
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import NullType

from servicekit.pool import ReadPool
from servicekit.tracing import end_statement_span, start_driver_statement_span, tracing_active

Row = dict[str, Any]

# Who wants to see the SQL sent on an engine's connections outside SQLAlchemy's execution
# (which has its own events): tests count statements this way.
_DRIVER_LISTENERS: "weakref.WeakKeyDictionary[Engine, list[Callable[[str], None]]]" = (
    weakref.WeakKeyDictionary()
)


def driver_listeners(engine: Engine) -> list[Callable[[str], None]]:
    """The callables given the SQL of each statement run on `engine`'s connections directly."""
    return _DRIVER_LISTENERS.setdefault(engine, [])


def announce(engine: Engine, sql: str) -> None:
    """Tell `engine`'s driver listeners about a statement about to run."""
    for listener in _DRIVER_LISTENERS.get(engine, ()):
        listener(sql)


def on_psycopg(dialect: Dialect) -> bool:
    """Whether `dialect` is Postgres through psycopg, where statements can go to the driver."""
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


LIKE_ESCAPE = "/"


def escape_like(text: str) -> str:
    """`text` with LIKE's wildcards escaped by LIKE_ESCAPE, to match it literally.

    For a statement shape: `column.icontains(bindparam("q"), escape=LIKE_ESCAPE)` with
    `{"q": escape_like(text)}` matches what `icontains(text, autoescape=True)` would.
    """
    escape = LIKE_ESCAPE
    return text.replace(escape, escape * 2).replace("%", escape + "%").replace("_", escape + "_")


class Criteria:
    """A list's optional criteria, as one statement per combination of them given.

    Each criterion is a WHERE clause that binds its value as `bindparam(<its name>)`, or none
    (a flag, given as True). A request names the values it has; the statement for that
    combination is built once and kept, so the read path compiles it once, and the values go
    separately as its parameters.
    """

    def __init__(self, base: Select[Any], **clauses: ColumnElement[bool]) -> None:
        self.base = base
        self.clauses = clauses
        self._statements: dict[frozenset[str], Select[Any]] = {}

    def select(self, **values: Any) -> tuple[Select[Any], dict[str, Any]]:
        """The statement applying every criterion whose value is not None, and its parameters."""
        given = {name: value for name, value in values.items() if value is not None}
        key = frozenset(given)
        statement = self._statements.get(key)
        if statement is None:
            clauses = [self.clauses[name] for name in sorted(key)]
            statement = self._statements.setdefault(key, self.base.where(*clauses))
        return statement, given


class _OneOf(ColumnElement[bool]):
    # SQLAlchemy cannot key its compiled cache on this element's state, so SQLite compiles
    # statements using it at each execution; the Postgres read path compiles each once.
    inherit_cache = False
    # A predicate: typed Boolean, SQLite (no boolean type) would compare it with 1.
    type = NullType()  # type: ignore[assignment]

    def __init__(self, column: ColumnElement[Any], name: str) -> None:
        self.column = column
        self.name = name


def one_of(column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """`column IN (...)` with the list bound as the parameter `name`, as one array on Postgres.

    `IN` renders one placeholder per element, so every length of list is different SQL to
    compile and to prepare; `= ANY(:name)` is the same statement whatever the length.
    """
    return _OneOf(column, name)


@compiles(_OneOf)
def _one_of_in(element: _OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column.in_(bindparam(element.name, expanding=True)), **kw)


@compiles(_OneOf, "postgresql")
def _one_of_any(element: _OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    values = bindparam(element.name, type_=ARRAY(element.column.type))
    return compiler.process(element.column == any_(values), **kw)


class _Compiled:
    """A statement compiled for the driver: its SQL and how to bind its parameters."""

    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        self.compiled = statement.compile(
            dialect=dialect, compile_kwargs={"render_postcompile": True}
        )
        self.sql = str(self.compiled)
        self.processors: dict[str, Callable[[Any], Any]] = {}
        for name in self.compiled.params:
            # An expanded IN element `ids_1_3` is bound by the parameter `ids_1`.
            bind = self.compiled.binds.get(name)
            if bind is None:
                bind = self.compiled.binds.get(name.rpartition("_")[0])
            # The dialect's own form of the type binds it, as SQLAlchemy's execution does: the
            # generic Numeric would turn a Decimal into a float, which Postgres compares as
            # float8, casting the column, so no index on it serves the comparison.
            processor = (
                bind.type.dialect_impl(dialect).bind_processor(dialect)
                if bind is not None
                else None
            )
            if processor is not None:
                self.processors[name] = processor

    def parameters(self, values: Mapping[str, Any] | None) -> dict[str, Any]:
        # construct_params() returns a new dict each call, so it can be processed in place.
        parameters = dict(self.compiled.construct_params(values))
        for name, processor in self.processors.items():
            parameters[name] = processor(parameters[name])
        return parameters


# Compiled forms, kept as long as their statement lives: statements defined once (with
# bindparam()s for their values) compile once; one built for a single request compiles when
# it runs and is dropped with it.
_COMPILED: weakref.WeakKeyDictionary[Select[Any], _Compiled] = weakref.WeakKeyDictionary()


def compile_for_driver(
    statement: Select[Any], dialect: Dialect, parameters: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """The SQL text and parameters psycopg runs for `statement` with `parameters`.

    `IN` lists are rendered as one parameter per element, and parameters go through their
    types' bind processing, as SQLAlchemy's own execution would do.
    """
    compiled = _COMPILED.get(statement)
    if compiled is None:
        compiled = _COMPILED.setdefault(statement, _Compiled(statement, dialect))
    return compiled.sql, compiled.parameters(parameters)


async def driver_rows(
    driver: "psycopg.AsyncConnection[Any]", sql: str, parameters: Mapping[str, Any]
) -> list[Row]:
    """Every row one statement returns on a psycopg connection, as dicts."""
    span = start_driver_statement_span(sql, driver) if tracing_active() else None
    if span is None:
        return await _rows(driver, sql, parameters)
    error: Exception | None = None
    try:
        return await _rows(driver, sql, parameters)
    except Exception as exc:
        error = exc
        raise
    finally:
        end_statement_span(span, error)


async def _rows(
    driver: "psycopg.AsyncConnection[Any]", sql: str, parameters: Mapping[str, Any]
) -> list[Row]:
    async with driver.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(sql, parameters)
        return await cursor.fetchall()


def sqlalchemy_error(
    sql: str, values: Mapping[str, Any], exc: psycopg.Error, *, invalidated: bool = True
) -> StatementError:
    """The error SQLAlchemy would have raised for a driver's, so the error model maps both."""
    return DBAPIError.instance(sql, values, exc, psycopg.Error, connection_invalidated=invalidated)


class DriverReads:
    """Runs compiled SQL on psycopg connections of a ReadPool.

    `engine` is the service's engine: its dialect compiles the statements, and listeners of
    its statements (see driver_listeners) hear these ones too.
    """

    def __init__(self, engine: AsyncEngine, pool: ReadPool) -> None:
        self.engine = engine
        self.pool = pool

    async def fetch(
        self, statement: Select[Any], parameters: Mapping[str, Any] | None
    ) -> list[Row]:
        """Every row of one statement; a read cut off by a dropped connection runs once more."""
        sql, values = compile_for_driver(statement, self.engine.dialect, parameters)
        announce(self.engine.sync_engine, sql)
        for attempt in (1, 2):
            try:
                connection = await self.pool.acquire()
            except psycopg.Error as exc:
                raise sqlalchemy_error(sql, values, exc) from exc
            driver = connection.driver
            try:
                return await driver_rows(driver, sql, values)
            except psycopg.Error as exc:
                if driver.broken:
                    self.pool.invalidate()
                    if attempt == 1:
                        continue
                raise sqlalchemy_error(sql, values, exc, invalidated=driver.broken) from exc
            finally:
                await self.pool.release(connection)
        raise AssertionError("unreachable")  # pragma: no cover
