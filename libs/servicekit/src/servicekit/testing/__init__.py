"""Test support shared by every service: real databases, statement counts, a live server."""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import psycopg.sql
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import MetaData, Select, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from servicekit.auth import SigningKey, SigningKeys
from servicekit.database import Database, ServiceSettings
from servicekit.events import Position
from servicekit.migrations import alembic_config
from servicekit.reads import compile_for_driver, driver_listeners

T = TypeVar("T")
S = TypeVar("S", bound=ServiceSettings)

# The user id of the admin whose token the services' test clients send by default.
TEST_ADMIN_ID = 1_000_000
# The event feed's credential between the services under test.
TEST_EVENTS_TOKEN = "events-token-of-the-tests"  # noqa: S105 - a test value
# The metrics credential of every process under test, and the header that presents it.
TEST_METRICS_TOKEN = "metrics-token-of-the-tests"  # noqa: S105 - a test value
METRICS_CREDENTIAL = {"Authorization": f"Bearer {TEST_METRICS_TOKEN}"}


@dataclass(frozen=True)
class TokenIssuer:
    """Signs access tokens as the users service would, with keys of its own.

    Its private key set is the file the users service under test signs with, and its public
    key set the JWKS every other service under test verifies against: a token made here is one
    the users service could have issued.
    """

    keys: SigningKeys
    directory: Path
    issuer: str = "users"
    audience: str = "api"

    @classmethod
    def create(cls, directory: Path) -> "TokenIssuer":
        issuer = cls(SigningKeys((SigningKey.generate(),)), directory)
        issuer.keys.write(issuer.keys_file)
        (directory / "jwks.json").write_text(json.dumps(issuer.keys.public_jwks()))
        return issuer

    @property
    def keys_file(self) -> Path:
        return self.directory / "signing-keys.json"

    @property
    def jwks_url(self) -> str:
        return (self.directory / "jwks.json").as_uri()

    def claims(self, user_id: int, *, admin: bool = False, expires_in: int = 900) -> dict[str, Any]:
        now = int(time.time())
        return {
            "sub": str(user_id),
            "admin": admin,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + expires_in,
            "jti": uuid.uuid4().hex,
        }

    def token(self, user_id: int, *, admin: bool = False, **claims: Any) -> str:
        """A signed access token of `user_id`; `claims` replace or add claims."""
        return self.keys.current.sign({**self.claims(user_id, admin=admin), **claims})

    def headers(self, user_id: int, *, admin: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, admin=admin)}"}

    def admin_headers(self) -> dict[str, str]:
        return self.headers(TEST_ADMIN_ID, admin=True)


def libpq_url(url: str | URL) -> str:
    """The libpq connection string of an SQLAlchemy Postgres URL, for psycopg directly."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def terminate_backend(database_url: str | URL, pid: int) -> None:
    """End one server process of `database_url`'s server, as a restart or a proxy would."""
    libpq = libpq_url(database_url)
    async with await psycopg.AsyncConnection.connect(libpq, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


class TableLock:
    """A table held in ACCESS EXCLUSIVE mode by a connection of the test: every statement a
    service runs on it waits, keeping its pooled connection lent, until the lock is released."""

    def __init__(self, holder: "psycopg.AsyncConnection[Any]", table: str) -> None:
        self.holder = holder
        self.table = table

    async def waiting(self) -> int:
        """How many statements wait for the lock now."""
        cursor = await self.holder.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
            (self.table,),
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def until_waiting(self, count: int) -> None:
        """Return once `count` statements wait for the lock (fails after 30 seconds)."""
        async with asyncio.timeout(30):
            # The statements wait in another process: their state can only be observed.
            while await self.waiting() < count:  # noqa: ASYNC110
                await asyncio.sleep(0.02)

    async def release(self) -> None:
        """End the holder's transaction: the waiting statements run."""
        await self.holder.rollback()


@asynccontextmanager
async def locked_table(database_url: str | URL, table: str) -> AsyncIterator[TableLock]:
    """`table` of `database_url` locked for the block (see TableLock), released at its end."""
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url)) as holder:
        await holder.execute(
            psycopg.sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                psycopg.sql.Identifier(table)
            )
        )
        lock = TableLock(holder, table)
        try:
            yield lock
        finally:
            await lock.release()


def one_connection_per_pool(name: str) -> dict[str, str]:
    """The environment of a `name` service process whose every pool (transactions, reads) has
    one connection, that gives up waiting for one after half a second, and whose readiness is
    checked at every probe: two requests waiting on a TableLock leave it no free connection."""
    prefix = name.upper()
    return {
        f"{prefix}_POOL_SIZE": "1",
        f"{prefix}_MAX_OVERFLOW": "0",
        f"{prefix}_POOL_TIMEOUT": "0.5",
        f"{prefix}_READINESS_INTERVAL": "0",
    }


@dataclass(frozen=True)
class ServiceUnderTest:
    """What the shared fixtures and contract tests need to know about a service."""

    name: str
    create_app: Callable[[str], FastAPI]  # database URL -> app
    metadata: MetaData
    alembic_ini: Path
    read_path: str  # a GET that reads the database
    read_route: str  # the path template of read_path's route, as the request metrics name it
    # A POST that creates a resource from a JSON body, which DELETE at its Location deletes;
    # create_body(n) is the n-th of as many bodies as a test needs, none conflicting with another.
    create_path: str
    create_body: Callable[[int], Mapping[str, Any]]
    # A PATCH body of what create_path creates; change_body(n) the n-th of as many different
    # changes as a test needs.
    change_body: Callable[[int], Mapping[str, Any]]


@dataclass(frozen=True)
class Versioned:
    """A resource just created, at version 1 (its ETag "1"), and the changes a PATCH may make
    to it: change(n) is the n-th of as many different ones as a test needs."""

    location: str
    change: Callable[[int], Mapping[str, Any]]


def app_under_test(
    create_app: Callable[[S], FastAPI],
    settings_class: Callable[..., S],
    token_issuer: TokenIssuer,
    **settings: Any,
) -> Callable[[str], FastAPI]:
    """A ServiceUnderTest's create_app: the app on a database URL, its settings those of every
    service under test (the test environment, tokens of `token_issuer`, the tests' metrics
    credential) and `settings`."""

    def create_test_app(database_url: str) -> FastAPI:
        return create_app(
            settings_class(
                database_url=database_url,
                environment="test",
                auth_jwks_url=token_issuer.jwks_url,
                metrics_token=TEST_METRICS_TOKEN,
                **settings,
            )
        )

    return create_test_app


_TRANSACTION_CONTROL = re.compile(r"\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)
_WORD = re.compile(r"\w+")


@dataclass
class StatementLog:
    """The SQL statements a database ran while the log was open."""

    statements: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)

    @property
    def queries(self) -> list[str]:
        """The statements other than transaction control (BEGIN, COMMIT, ROLLBACK, ...)."""
        return [sql for sql in self.statements if not _TRANSACTION_CONTROL.match(sql)]

    def touched(self, metadata: MetaData) -> list[tuple[str, set[str]]]:
        """What each query does (its first keyword: SELECT, INSERT, ...) and the tables of
        `metadata` it names, in order: facts of the request, unchanged by how SQLAlchemy lays a
        statement out, quotes, aliases or binds it."""
        tables = set(metadata.tables)
        touched = []
        for sql in self.queries:
            words = _WORD.findall(sql)
            touched.append((words[0].upper(), set(words) & tables))
        return touched


@contextmanager
def count_statements(database: Database) -> Iterator[StatementLog]:
    """Record every statement `database` sends inside the block, on the engine and read path."""
    log = StatementLog()

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        log.statements.append(statement)

    engine = database.engine.sync_engine  # read sessions and the read pool report to it too
    event.listen(engine, "before_cursor_execute", record)
    driver_listeners(engine).append(log.statements.append)
    try:
        yield log
    finally:
        event.remove(engine, "before_cursor_execute", record)
        driver_listeners(engine).remove(log.statements.append)


async def migrate(alembic_ini: Path, database_url: str, revision: str = "head") -> None:
    """Upgrade a database to `revision` with the service's own migrations."""
    from alembic import command

    # env.py runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(command.upgrade, alembic_config(alembic_ini, database_url), revision)


async def truncate_tables(engine: AsyncEngine, metadata: MetaData) -> None:
    """Empty every table of `metadata` and restart its ids, leaving the schema in place."""
    tables = metadata.sorted_tables
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            names = ", ".join(
                connection.dialect.identifier_preparer.format_table(t) for t in tables
            )
            await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            return
        for table in reversed(tables):
            await connection.execute(table.delete())
        has_sequences = await connection.scalar(
            text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_sequence'")
        )
        if has_sequences:
            await connection.execute(text("DELETE FROM sqlite_sequence"))


async def plan_nodes(
    engine: AsyncEngine,
    statement: Select[Any],
    parameters: Mapping[str, Any] | None = None,
    *,
    analyze: bool = False,
    avoid: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Every node of the plan Postgres makes for `statement` as the read path sends it.

    The SQL and parameters are the read path's own (servicekit.reads), so a parameter bound
    as another type than its column's shows in the plan. `avoid` switches plan kinds off for
    this statement ("sort", "seqscan"): on a test's few rows, reading them all and sorting is
    the cheapest plan for anything; without it Postgres picks the plan a large table gets.
    `analyze` runs the statement, and each node tells its actual rows.
    """
    sql, values = compile_for_driver(statement, engine.dialect, parameters)
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    async with engine.begin() as connection:
        for kind in avoid:
            await connection.exec_driver_sql(f"SET LOCAL enable_{kind} = off")
        explained = await connection.exec_driver_sql(f"EXPLAIN ({options}) {sql}", values)
        [plan] = explained.scalar_one()

    def below(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [node, *(each for child in node.get("Plans", []) for each in below(child))]

    return below(plan["Plan"])


@dataclass(frozen=True)
class Scrape:
    """The samples of one answer of `GET /metrics`."""

    samples: tuple[Sample, ...]

    @classmethod
    def parse(cls, text: str) -> "Scrape":
        families = text_string_to_metric_families(text)
        return cls(tuple(sample for family in families for sample in family.samples))

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels`; 0 if there are none."""
        return sum(
            sample.value
            for sample in self.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    def labels(self, name: str, label: str) -> set[str]:
        """The values `label` takes among the samples of `name`."""
        return {sample.labels[label] for sample in self.samples if sample.name == name}

    @property
    def names(self) -> set[str]:
        return {sample.name for sample in self.samples}


async def scrape(client: httpx.AsyncClient) -> Scrape:
    """The metrics of the app `client` calls, read with the test metrics credential."""
    response = await client.get("/metrics", headers=METRICS_CREDENTIAL)
    assert response.status_code == 200, response.text
    return Scrape.parse(response.text)


async def created(
    client: httpx.AsyncClient, response: httpx.Response, collection: str
) -> dict[str, Any]:
    """The body of a response that created a resource in `collection` ("/users/"), checked for
    what every create answers: 201, version 1 and its ETag, a creation time in UTC, and a
    relative Location where the same resource is read back."""
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["version"] == 1
    assert str(body["created_at"]).endswith(("+00:00", "Z"))
    assert response.headers["Location"] == f"{collection}{body['id']}"
    assert response.headers["ETag"] == '"1"'
    assert (await client.get(response.headers["Location"])).json() == body
    return body


def next_link(response: httpx.Response) -> str | None:
    """The URL of a response's `Link: <...>; rel="next"` header, if it has one."""
    match = re.fullmatch(r'<([^>]+)>; rel="next"', response.headers.get("Link", ""))
    return match.group(1) if match else None


async def walk(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    """Follow Link headers from `url` to the last page, collecting every row.

    A Link back to a page already read fails the walk rather than going round for ever.
    """
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    next_url: str | None = url
    while next_url:
        assert next_url not in seen, f"the Link header leads back to {next_url}"
        seen.add(next_url)
        response = await client.get(next_url)
        assert response.status_code == 200, response.text
        rows.extend(response.json())
        next_url = next_link(response)
    return rows


def database_of(app: FastAPI) -> Database:
    """The Database an app's lifespan created."""
    database: Database = app.state.database
    return database


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[FastAPI]:
    """Run an app's lifespan around the block, as a server would."""
    async with app.router.lifespan_context(app):
        yield app


def asgi_client(
    app: FastAPI, base_url: str = "http://testserver", headers: Mapping[str, str] | None = None
) -> httpx.AsyncClient:
    """An httpx client that calls the app in-process over ASGI."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=base_url, headers=headers
    )


@contextmanager
def serving(app: FastAPI, startup_timeout: float = 10.0) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout)
        sock.close()


STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServiceProcess:
    """A service migrated and served by uvicorn in a process of its own (`<name>_service`)."""

    def __init__(
        self,
        name: str,
        database_url: str,
        alembic_ini: Path,
        environment: Mapping[str, str] | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.name = name
        # Where the process's log lines go (appended, run after run); none: nowhere.
        self.log_file = log_file
        # A metrics token the settings accept in any environment, unless one is given.
        self.environment = {
            f"{name.upper()}_METRICS_TOKEN": TEST_METRICS_TOKEN,
            **(environment or {}),
        }
        self.database_url = database_url
        self.alembic_ini = alembic_ini
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def migrate(self) -> str:
        """Run the service's migration step as the deployments do; what it logged."""
        step = subprocess.run(
            [
                sys.executable, "-m", "servicekit.migrate", str(self.alembic_ini),
                "-x", f"database_url={self.database_url}",
            ],
            check=False,
            capture_output=True,
            text=True,
        )  # fmt: skip
        assert step.returncode == 0, step.stderr
        return step.stderr

    def start(self) -> None:
        """Start serving and return once the service is ready."""
        env = {
            **os.environ,
            **self.environment,
            f"{self.name.upper()}_DATABASE_URL": self.database_url,
        }
        log = None if self.log_file is None else self.log_file.open("ab")
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "uvicorn", f"{self.name}_service.main:create_app",
                    "--factory", "--host", "127.0.0.1", "--port", str(self.port),
                    "--no-access-log", "--log-level", "warning",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL if log is None else log,
            )  # fmt: skip
        finally:
            if log is not None:
                log.close()  # the process has a copy of its own
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._is_ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.name} service did not start")
            time.sleep(0.05)

    def _is_ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The process stopped by SIGSTOP for the block: it keeps its sockets and accepts
        connections, but answers nothing (a hung service); it resumes after the block."""
        assert self.process is not None, f"{self.name} is not running"
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines the process has written to its log file so far."""
        assert self.log_file is not None, "the process was given no log file"
        text = self.log_file.read_text() if self.log_file.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def empty_tables(self) -> None:
        with psycopg.connect(libpq_url(self.database_url), autocommit=True) as db:
            tables = [
                row[0]
                for row in db.execute(
                    "SELECT quote_ident(tablename) FROM pg_tables "
                    "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                )
            ]
            if tables:
                db.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


@contextmanager
def started(processes: Mapping[str, ServiceProcess]) -> Iterator[Mapping[str, ServiceProcess]]:
    """The processes migrated and serving, in order, for the block; stopped after it."""
    try:
        for process in processes.values():
            process.migrate()
            process.start()
        yield processes
    finally:
        for process in processes.values():
            process.stop()


def caught_up(
    feed: ServiceProcess, consumer: ServiceProcess, timeout: float = 15.0
) -> dict[str, Any]:
    """Wait until `consumer` has applied every event committed to `feed`'s outbox by now; the
    consumer's state.

    The newest event is read from the feed's database rather than from its head: the feed
    holds an event back while an older transaction is still running (an autovacuum's, say),
    so its head can lag a commit that has just been acknowledged. Polls the consumer's
    readiness details until its cursor is at or past that event (a condition, not a fixed
    sleep); fails after `timeout` seconds.
    """
    with psycopg.connect(libpq_url(feed.database_url), autocommit=True) as database:
        newest = database.execute(
            "SELECT txid, id FROM outbox_events ORDER BY txid DESC, id DESC LIMIT 1"
        ).fetchone()

    def reached(events: dict[str, Any]) -> bool:
        cursor = events.get("cursor")
        if newest is None:
            return cursor is not None
        return cursor is not None and Position.parse(cursor) >= Position(*newest)

    return consumer_reaches(consumer, reached, timeout)


def consumer_status(process: ServiceProcess) -> dict[str, Any]:
    """What the event consumer of `process` reports in its readiness details."""
    details = httpx.get(f"{process.url}/health/ready").json().get("details", {})
    events: dict[str, Any] = details.get("events", {})
    return events


def consumer_reaches(
    process: ServiceProcess,
    condition: Callable[[dict[str, Any]], bool],
    timeout: float = 15.0,
) -> dict[str, Any]:
    """Poll the consumer's status until `condition` holds (fails after `timeout` seconds)."""
    return poll(lambda: consumer_status(process), condition, timeout, f"{process.name}'s consumer")


def process_metrics(process: ServiceProcess) -> Scrape:
    """The metrics `process` serves, read over HTTP with the test metrics credential."""
    response = httpx.get(f"{process.url}/metrics", headers=METRICS_CREDENTIAL)
    assert response.status_code == 200, response.text
    return Scrape.parse(response.text)


def lock_waits(database_url: str | URL) -> int:
    """How many locks the sessions of `database_url`'s database are waiting for now: a request
    stalled on a row or table another transaction holds."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as database:
        row = database.execute(
            "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid)"
            " WHERE NOT granted AND datname = current_database()"
        ).fetchone()
    return 0 if row is None else int(row[0])


def poll(read: Callable[[], T], condition: Callable[[T], bool], timeout: float, what: str) -> T:
    """`read()` again until what it gives meets `condition`: a state another process reaches
    in its own time (fails after `timeout` seconds, naming `what`)."""
    deadline = time.monotonic() + timeout
    while not condition(value := read()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never got there: {value}")
        time.sleep(0.02)
    return value
