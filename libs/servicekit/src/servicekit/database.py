"""Engine and session lifecycle: one engine per process, one session per request, configured by
ServiceSettings."""

import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Protocol

import psycopg
from fastapi import Depends, Request
from pydantic import Field, model_validator
from sqlalchemy import (
    DateTime,
    Dialect,
    Index,
    MetaData,
    Select,
    event,
    func,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.engine.interfaces import ExceptionContext
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Mapped, MappedColumn, declared_attr, mapped_column
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.types import TypeDecorator

from servicekit.pool import PoolStatistics, ReadPool
from servicekit.readiness import DatabaseProbe, postgres_check, sqlite_check
from servicekit.reads import DriverReads, Row, on_psycopg
from servicekit.settings import DEVELOPMENT_PASSWORDS, BaseProcessSettings
from servicekit.tracing import (
    DatabaseAddress,
    end_statement_span,
    start_statement_span,
    tracing_active,
)

# Constraint names are part of the schema: migrations and error mapping refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Execution option marking connections of read-only sessions (see Database).
_READ_ONLY = "servicekit_read_only"
# When a pooled connection was last returned (ConnectionPoolEntry.info key).
_IDLE_SINCE = "servicekit_idle_since"


class ServiceSettings(BaseProcessSettings):
    """Configuration of a service and its database; subclasses set the env prefix and default."""

    database_url: str
    # Migrations connect with their own role, which owns the schema, where the service's role
    # may only read and write rows (deploy/README.md, "The database roles"); only the migration
    # step is given this URL. Unset, migrations use database_url (`make run`, SQLite).
    migration_database_url: str | None = None
    pool_size: int = Field(default=10, ge=1)
    # Connections beyond pool_size are closed as soon as they are returned, so under a steady
    # load above pool_size every burst opens new ones; waiting briefly for a pooled connection
    # is cheaper than a new Postgres backend.
    max_overflow: int = Field(default=0, ge=0)
    pool_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for a connection.")
    # A request that waited pool_timeout for a connection is a 503 telling the client to retry
    # this much later: the database answers, the process is busy.
    busy_retry_after: int = Field(
        default=1,
        ge=1,
        description="Seconds of the Retry-After of a 503 answered when no database connection "
        "became free within pool_timeout.",
    )
    pool_recycle: int = Field(default=1800, description="Seconds before a connection is replaced.")
    pool_pre_ping: bool = True
    pool_pre_ping_idle: float = Field(
        default=5.0,
        ge=0,
        description="Test a pooled connection before use only once it has been idle this long; "
        "0 tests it at every checkout.",
    )
    statement_timeout_ms: int = Field(default=15_000, ge=0, description="Postgres only; 0 = off.")
    connect_timeout: int = Field(
        default=5,
        ge=2,  # libpq's least
        description="Postgres only: seconds to open a connection, so a server that does not "
        "answer (rather than refuse) fails requests instead of holding them.",
    )
    readiness_interval: float = Field(
        default=2.0,
        ge=0,
        description="Seconds a successful readiness check is reused (servicekit.readiness): "
        "while the database answers, it sees at most one probe connection per interval.",
    )
    sql_echo: bool = False
    # How long a create's Idempotency-Key and first answer are kept (servicekit.idempotency):
    # longer than any client goes on retrying a request.
    idempotency_key_retention: int = Field(
        default=24 * 3600, ge=60, description="Seconds an Idempotency-Key is kept."
    )

    @property
    def migrator_url(self) -> str:
        """The URL migrations connect with: migration_database_url, else database_url."""
        return self.migration_database_url or self.database_url

    @model_validator(mode="after")
    def _refuse_development_secrets_outside_development(self) -> "ServiceSettings":
        if self.environment == "development":
            return self
        for name in ("database_url", "migration_database_url"):
            value = getattr(self, name)
            password = None if value is None else make_url(value).password
            if password is not None and password in DEVELOPMENT_PASSWORDS:
                raise ValueError(
                    f"{name} uses a development password; set a real one for {self.environment}"
                )
        return self


def make_metadata() -> MetaData:
    """A MetaData with the shared constraint naming convention."""
    return MetaData(naming_convention=NAMING_CONVENTION)


# Table options of a table whose ids clients hold: SQLite would otherwise give a deleted row's id
# to the next one (see servicekit.migrations.never_reuse_sqlite_ids, which migrates to it).
NEVER_REUSE_IDS: dict[str, Any] = {"sqlite_autoincrement": True}

# Index.info key: the only dialect an index exists on (migrations compare it there alone).
ONLY_ON_DIALECT = "servicekit_only_on_dialect"


def trigram_index_options(column: str) -> dict[str, Any]:
    """How a substring search index on `column` is built: GIN, with pg_trgm's operator class."""
    return {"postgresql_using": "gin", "postgresql_ops": {column: "gin_trgm_ops"}}


def substring_search_index(name: str, column: str) -> Index:
    """A trigram index (Postgres's pg_trgm) for `column ILIKE '%text%'`, as `icontains` does.

    Without it, such a search reads every row of the table. With it, Postgres looks the
    pattern's trigrams up in a GIN index, whatever the table's size, for patterns of three
    characters or more. SQLite has no such index: there the search scans, and the index is
    neither created nor expected by the migrations.
    """
    return Index(
        name, column, **trigram_index_options(column), info={ONLY_ON_DIALECT: "postgresql"}
    ).ddl_if(dialect="postgresql")


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class _InsertContext(Protocol):
    # The part of SQLAlchemy's (untyped) DefaultExecutionContext a column default reads.
    def get_current_parameters(self) -> Mapping[str, Any]: ...


def _created_at_of_the_row(context: _InsertContext) -> datetime:
    created_at: datetime | None = context.get_current_parameters().get("created_at")
    return created_at if created_at is not None else utcnow()


def created_at_column() -> MappedColumn[datetime]:
    """A row's creation time: now (UTC) at insert, by the application or, for SQL, the database."""
    return mapped_column(UTCDateTime, default=utcnow, server_default=func.now())


def updated_at_column() -> MappedColumn[datetime]:
    """A row's last change: now at each update; at insert, the very instant of its `created_at`.

    Two calls of the clock would differ by microseconds, and a client comparing the two to tell
    whether a row was ever changed would think every new row had been.
    """
    return mapped_column(
        UTCDateTime, default=_created_at_of_the_row, onupdate=utcnow, server_default=func.now()
    )


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that reads back aware on every dialect (SQLite stores naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


class Versioned:
    """The columns of a resource that clients change and cache: when it was created and last
    changed, and its version, which each update increments, and which the ORM checks was not
    changed by another update first (the resource's ETag; If-Match compares it).

    Mixed into a model before its declarative base, `class Post(Versioned, Base)`, which puts
    these columns last; its indexes name them as strings ("created_at").
    """

    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805 - given the class
        return {"version_id_col": cls.version}


def insert_with_conflicts(
    bind: AsyncSession | Connection, table: Any
) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into `table` (a model or a Table) that takes ON CONFLICT clauses, in the
    dialect of the session's (or connection's) database (both spell them the same way)."""
    dialect = bind.dialect if isinstance(bind, Connection) else bind.get_bind().dialect
    if dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def prepare_sqlite_path(url: URL) -> None:
    """Create the folder of an SQLite database file so a fresh checkout runs without set-up."""
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def fold_case_like_postgres(engine: AsyncEngine) -> None:
    """Give SQLite connections a `lower()` that folds every letter, as Postgres's does.

    SQLite's own folds A-Z alone: `lower('Ödön')` stays `Ödön`, so a unique index on
    lower(email) let `Ödön@...` and `ödön@...` both in, and a case-insensitive search (lower
    on both sides of LIKE) missed them. Indexes on lower() are built with this one (see the
    migrations that rebuild them), so every connection that writes must have it.
    """
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("lower", 1, _lower, deterministic=True)


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, a busy timeout, foreign keys, and explicit BEGINs that take the write lock up front.

    pysqlite's own transaction handling begins lazily, so two writers can both read and then
    fail to upgrade their locks; BEGIN IMMEDIATE makes the second writer wait instead. Letters
    fold to lower case as on Postgres (fold_case_like_postgres).
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "busy_timeout=30000", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    fold_case_like_postgres(engine)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _ping_connections_idle_for(engine: AsyncEngine, seconds: float) -> None:
    """SQLAlchemy's pre-ping, for connections that sat in the pool longer than `seconds`.

    Pinging at every checkout costs a round trip on every request; a connection in steady use
    has just proved itself. One that waited longer is tested before it is handed out, and
    replaced when the server has dropped it (DisconnectionError makes the pool retry with a
    new connection). A connection dropped while busy fails its statement, and the pool then
    invalidates every connection of that age, so the next checkouts get fresh ones.
    """
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("the pooled connection no longer answers") from exc


class CountingQueuePool(AsyncAdaptedQueuePool):
    """SQLAlchemy's pool for async engines, counting the checkouts that wait and give up.

    SQLAlchemy tells how many connections are lent and idle, but has no event for a checkout
    that waits. One waits exactly when every connection it may open is lent (the check and
    the checkout happen without an await in between), so a comparison per checkout counts it.
    """

    def __init__(
        self, creator: Any, pool_size: int = 5, max_overflow: int = 10, **kwargs: Any
    ) -> None:
        super().__init__(creator, pool_size=pool_size, max_overflow=max_overflow, **kwargs)
        self.limit = pool_size + max_overflow
        self.waiting = 0
        self._waits = 0
        self._timeouts = 0

    def connect(self) -> PoolProxiedConnection:
        if self.checkedout() < self.limit:
            return super().connect()
        self._waits += 1
        self.waiting += 1
        try:
            return super().connect()
        except PoolTimeoutError:
            self._timeouts += 1
            raise
        finally:
            self.waiting -= 1

    def statistics(self) -> PoolStatistics:
        """The pool's state now, for metrics."""
        return PoolStatistics(
            limit=self.limit,
            in_use=self.checkedout(),
            idle=self.checkedin(),
            waiting=self.waiting,
            waits=self._waits,
            timeouts=self._timeouts,
        )


def _connect_args(settings: ServiceSettings, url: URL) -> dict[str, Any]:
    if url.get_backend_name() != "postgresql":
        return {}
    arguments: dict[str, Any] = {"connect_timeout": settings.connect_timeout}
    if settings.statement_timeout_ms:
        arguments["options"] = f"-c statement_timeout={settings.statement_timeout_ms}"
    return arguments


def instrument_engine(engine: AsyncEngine) -> None:
    """A span for each statement `engine` runs (when tracing is on: servicekit.tracing)."""
    if not tracing_active():
        return
    url = engine.url
    database = DatabaseAddress(url.get_backend_name(), url.database, url.host, url.port)

    # The engine's own listeners, not SQLAlchemyInstrumentor: that one also patches
    # create_engine and Engine.connect for the whole process, adding a span per connect.
    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def start(_c: Any, _cursor: Any, sql: str, _p: Any, execution: Any, _many: bool) -> None:
        span = start_statement_span(sql, database)
        if span is not None:
            execution._servicekit_span = span

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def end(_c: Any, _cursor: Any, _sql: str, _p: Any, execution: Any, _many: bool) -> None:
        span = getattr(execution, "_servicekit_span", None)
        if span is not None:
            end_statement_span(span)

    @event.listens_for(engine.sync_engine, "handle_error")
    def failed(error: ExceptionContext) -> None:
        span = getattr(error.execution_context, "_servicekit_span", None)
        if span is not None:
            end_statement_span(span, error.original_exception)


def create_engine(settings: ServiceSettings) -> AsyncEngine:
    """An async engine configured from settings (pool, timeouts, dialect specifics)."""
    url = make_url(settings.database_url)
    prepare_sqlite_path(url)
    engine = create_async_engine(
        url,
        poolclass=CountingQueuePool,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle,
        pool_pre_ping=settings.pool_pre_ping and not settings.pool_pre_ping_idle,
        echo=settings.sql_echo,
        connect_args=_connect_args(settings, url),
    )
    if settings.pool_pre_ping and settings.pool_pre_ping_idle:
        _ping_connections_idle_for(engine, settings.pool_pre_ping_idle)
    if url.get_backend_name() == "sqlite":
        _configure_sqlite(engine)
    instrument_engine(engine)
    return engine


def create_read_pool(settings: ServiceSettings, dialect: Dialect) -> ReadPool:
    """A ReadPool of autocommit psycopg connections with the engine's settings and adapters."""
    url = make_url(settings.database_url)
    _, params = dialect.create_connect_args(url)  # the dialect's types go with its connections
    params.update(_connect_args(settings, url), autocommit=True)

    async def connect() -> "psycopg.AsyncConnection[Any]":
        return await psycopg.AsyncConnection.connect(**params)

    return ReadPool(
        connect,
        size=settings.pool_size,
        overflow=settings.max_overflow,
        timeout=settings.pool_timeout,
        recycle=settings.pool_recycle,
        ping_idle=settings.pool_pre_ping_idle if settings.pool_pre_ping else None,
    )


def _recheck_readiness_when_connections_fail(engine: AsyncEngine, probe: DatabaseProbe) -> None:
    """Make the next readiness probe ask the database again once a connection of the engine
    could not be opened, or broke: readiness then agrees with what the requests just saw."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        if context.is_disconnect or context.connection is None:  # None: it failed to connect
            probe.forget()


def create_probe(settings: ServiceSettings, dialect: Dialect) -> DatabaseProbe:
    """The readiness check of the configured database, on connections of its own."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        check = sqlite_check(url)
    else:
        check = postgres_check(url, dialect, _connect_args(settings, url))
    return DatabaseProbe(check, interval=settings.readiness_interval)


class Database:
    """The engine for sessions, the fast path for reads on Postgres, their sessions, and the
    readiness probe."""

    def __init__(
        self, engine: AsyncEngine, probe: DatabaseProbe, read_pool: ReadPool | None = None
    ) -> None:
        self.engine = engine
        self.probe = probe
        _recheck_readiness_when_connections_fail(engine, probe)
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # Read sessions share the engine's pool, marked read-only: on SQLite that makes their
        # BEGIN a plain one; on Postgres their connections are lent in autocommit mode, so
        # they send no BEGIN or ROLLBACK (the pool restores the mode when they are returned).
        read_options: dict[str, Any] = {_READ_ONLY: True}
        if engine.dialect.name == "postgresql":
            read_options["isolation_level"] = "AUTOCOMMIT"
        self.read_engine = engine.execution_options(**read_options)
        self._read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # Reads need no transaction on Postgres: the read pool's connections are in autocommit
        # mode, which saves the BEGIN and ROLLBACK round trips, and READ COMMITTED gives each
        # statement its own snapshot either way.
        self.read_pool = read_pool
        self.driver_reads = DriverReads(engine, read_pool) if read_pool is not None else None

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> "Database":
        """A Database for the configured URL; on Postgres, reads get a pool of their own."""
        engine = create_engine(settings)
        probe = create_probe(settings, engine.dialect)
        if on_psycopg(engine.dialect):
            return cls(engine, probe, create_read_pool(settings, engine.dialect))
        return cls(engine, probe)

    async def fetch(
        self, statement: Select[Any], parameters: Mapping[str, Any] | None = None
    ) -> list[Row]:
        """The rows of a read-only Core SELECT as dicts keyed by column label.

        `parameters` gives values for the statement's `bindparam()`s: a statement defined
        once that way compiles once (see servicekit.reads).
        """
        if self.driver_reads is not None:
            try:
                return await self.driver_reads.fetch(statement, parameters)
            except DBAPIError as exc:
                if exc.connection_invalidated:  # could not connect, or the connection broke
                    self.probe.forget()
                raise
        async with self.read_engine.connect() as connection:
            result = await connection.execute(statement, parameters)
            return [dict(row) for row in result.mappings()]

    async def fetch_one(
        self, statement: Select[Any], parameters: Mapping[str, Any] | None = None
    ) -> Row | None:
        """The first row of a read-only Core SELECT, or None."""
        rows = await self.fetch(statement, parameters)
        return rows[0] if rows else None

    async def fetch_grouped(
        self, statement: Select[Any], parameter: str, ids: Iterable[Any], *, by: str
    ) -> dict[Any, list[Row]]:
        """The rows of `statement` for `ids` (bound as `parameter`), grouped by column `by`.

        One query for a whole batch of parents, whatever its size (no N+1); each id given
        has its list, empty when it has no rows.
        """
        groups: dict[Any, list[Row]] = {id_: [] for id_ in ids}
        if groups:
            for row in await self.fetch(statement, {parameter: list(groups)}):
                groups[row[by]].append(row)
        return groups

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed if the block succeeds, rolled back otherwise."""
        async with self._sessions.begin() as session:
            yield session

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        """A session for requests that only read."""
        async with self._read_sessions() as session:
            yield session

    async def is_reachable(self) -> bool:
        """Whether the database answers, asked without a connection of the pools (so a busy
        process is still ready): see servicekit.readiness."""
        return await self.probe.answers()

    def pool_statistics(self) -> dict[str, PoolStatistics]:
        """Each pool's state by name: "orm" (the engine's), and "reads" on Postgres."""
        pools: dict[str, PoolStatistics] = {}
        engine_pool = self.engine.pool
        if isinstance(engine_pool, CountingQueuePool):
            pools["orm"] = engine_pool.statistics()
        if self.read_pool is not None:
            pools["reads"] = self.read_pool.statistics()
        return pools

    async def dispose(self) -> None:
        """Close every pooled connection, and the readiness check's if one is under way."""
        await self.probe.close()
        if self.read_pool is not None:
            await self.read_pool.dispose()
        await self.engine.dispose()


def get_database(request: Request) -> Database:
    """The process's Database, created by the application's lifespan.

    Read dependencies call this themselves rather than depending on a Database dependency:
    each level of dependencies costs FastAPI a resolution on every request.
    """
    database: Database = request.app.state.database
    return database


async def _transaction_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_database(request).transaction() as session:
        yield session


# scope="function" closes the session before the response is sent, so a failed commit is
# reported to the client instead of being lost after a 2xx went out.
SessionDep = Annotated[AsyncSession, Depends(_transaction_session, scope="function")]
