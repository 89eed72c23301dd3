"""A users process whose every pooled connection is busy: still ready (its database answers),
and a request that finds no free connection in time is a 503 that says "busy" with a
`Retry-After`, logged as a warning; a database that refuses connections is not ready."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from servicekit.database_errors import BUSY
from servicekit.testing import (
    TEST_EVENTS_TOKEN,
    ServiceProcess,
    TokenIssuer,
    libpq_url,
    locked_table,
    one_connection_per_pool,
    process_metrics,
    started,
)
from servicekit.testing.plugin import MakeDatabase

USERS = Path(__file__).parents[1]
RETRY_AFTER = "3"  # not the default, so the answer shows the setting at work
READY = {"status": "ok", "checks": {"database": "ok"}}
PASSWORD = "correct horse battery"


def _sign_up_body(name: str) -> dict[str, str]:
    return {"email": f"{name.lower()}@example.com", "name": name, "password": PASSWORD}


@pytest.fixture(scope="module")
def users(
    make_database: MakeDatabase,
    token_issuer: TokenIssuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    """Users on Postgres with one connection in each pool; its log lines go to a file."""
    process = ServiceProcess(
        "users",
        make_database("postgresql", "users_busy"),
        USERS / "alembic.ini",
        {
            "USERS_ENVIRONMENT": "test",
            "USERS_SIGNING_KEYS_FILE": str(token_issuer.keys_file),
            "USERS_EVENTS_TOKEN": TEST_EVENTS_TOKEN,
            "USERS_PASSWORD_HASH_TIME_COST": "1",
            "USERS_PASSWORD_HASH_MEMORY_COST": "1024",
            "USERS_BUSY_RETRY_AFTER": RETRY_AFTER,
            **one_connection_per_pool("users"),
        },
        log_file=tmp_path_factory.mktemp("users-busy") / "users.log",
    )
    with started({"users": process}):
        yield process


async def test_a_busy_service_is_ready_and_answers_503_busy_with_retry_after(
    users: ServiceProcess,
) -> None:
    async with httpx.AsyncClient(base_url=users.url, timeout=30) as client:
        created = await client.post("/users/", json=_sign_up_body("Ada"))
        assert created.status_code == 201, created.text
        path = f"/users/{created.json()['id']}"
        logged_before = len(users.log_lines())
        before = process_metrics(users)

        async with locked_table(users.database_url, "users") as lock:
            # One read and one write wait on the lock, each holding its pool's only connection.
            held_read = asyncio.create_task(client.get(path))
            held_write = asyncio.create_task(client.post("/users/", json=_sign_up_body("Bea")))
            await lock.until_waiting(2)

            ready = await client.get("/health/ready")
            read = await client.get(path)
            write = await client.post("/users/", json=_sign_up_body("Cy"))
            still_held = not held_read.done() and not held_write.done()
            await lock.release()
            held = await asyncio.gather(held_read, held_write)

    after = process_metrics(users)
    assert (ready.status_code, ready.json()) == (200, READY)
    for answer in (read, write):
        assert (answer.status_code, answer.json()) == (503, {"detail": BUSY})
        assert answer.headers["Retry-After"] == RETRY_AFTER
    assert still_held
    assert [answer.status_code for answer in held] == [200, 201]
    for pool in ("orm", "reads"):
        timeouts = after.value("db_pool_timeouts_total", pool=pool)
        assert timeouts == before.value("db_pool_timeouts_total", pool=pool) + 1
    lines = users.log_lines()[logged_before:]
    assert not [line for line in lines if line["level"] in {"ERROR", "CRITICAL"}]
    busy = [line for line in lines if line["logger"] == "servicekit.errors"]
    assert [line["level"] for line in busy] == ["WARNING", "WARNING"]
    assert all(line["message"].startswith("busy: ") for line in busy)


async def _refuse_connections(database_url: str, allowed: bool) -> None:
    """Make the service's database accept or refuse connections, its open ones ended."""
    url = make_url(database_url)
    server = libpq_url(url.set(database="postgres"))
    name = sql.Identifier(str(url.database))
    async with await psycopg.AsyncConnection.connect(server, autocommit=True) as admin:
        await admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(name, sql.Literal(allowed))
        )
        if not allowed:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (url.database,),
            )


async def _ready(client: httpx.AsyncClient, status: int) -> dict[str, Any]:
    async with asyncio.timeout(10):
        # The service's own check runs when it is asked: poll until it answers `status`.
        while (answer := await client.get("/health/ready")).status_code != status:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    body: dict[str, Any] = answer.json()
    return body


async def test_a_database_refusing_connections_is_not_ready_until_it_is_back(
    users: ServiceProcess,
) -> None:
    async with httpx.AsyncClient(base_url=users.url, timeout=30) as client:
        assert (await client.get("/health/ready")).status_code == 200
        await _refuse_connections(users.database_url, allowed=False)
        try:
            down = await _ready(client, 503)
            read = await client.get("/users/1")
        finally:
            await _refuse_connections(users.database_url, allowed=True)
        back = await _ready(client, 200)

    assert down == {"status": "unavailable", "checks": {"database": "unreachable"}}
    assert (read.status_code, read.json()) == (503, {"detail": "database unavailable"})
    assert back == READY
    # An outage, unlike a busy pool, is an error.
    errors = [(line["level"], line["message"]) for line in users.log_lines()]
    assert ("ERROR", "database unavailable: OperationalError") in errors
