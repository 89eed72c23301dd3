"""SIGTERM under load, as a pod's deletion or `docker compose stop` sends it, to a service served
by uvicorn with the images' settings: the requests already accepted finish with their normal
answers, and new connections are refused meanwhile, so that they go to another replica."""

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from deploy.tests.kubernetes_rules import GRACEFUL_SHUTDOWN_VARIABLE, image_environment
from servicekit.testing import ServiceProcess, TokenIssuer, libpq_url, migrate
from servicekit.testing.plugin import MakeDatabase

CATALOG = Path(__file__).parents[2] / "services" / "catalog"
READS = WRITES = 12  # each holds a connection of its pool while it waits


async def _waiting_for_the_lock(holder: psycopg.AsyncConnection[Any], table: str) -> int:
    cursor = await holder.execute(
        sql.SQL(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = {}::regclass"
        ).format(sql.Literal(table))
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _refuses_connections(url: str) -> bool:
    # A client of its own: a new connection each time, none kept alive.
    async with httpx.AsyncClient(base_url=url) as client:
        try:
            await client.get("/health/live")
        except httpx.ConnectError:
            return True
    return False


async def test_requests_in_flight_at_sigterm_finish_and_new_connections_are_refused(
    make_database: MakeDatabase, token_issuer: TokenIssuer
) -> None:
    url = make_database("postgresql", "shutdown")
    await migrate(CATALOG / "alembic.ini", url)
    catalog = ServiceProcess(
        "catalog",
        url,
        CATALOG / "alembic.ini",
        {
            "CATALOG_ENVIRONMENT": "test",
            "CATALOG_AUTH_JWKS_URL": token_issuer.jwks_url,
            "CATALOG_POOL_SIZE": str(max(READS, WRITES)),
            GRACEFUL_SHUTDOWN_VARIABLE: image_environment()[GRACEFUL_SHUTDOWN_VARIABLE],
        },
    )
    await asyncio.to_thread(catalog.start)
    assert catalog.process is not None
    try:
        async with (
            await psycopg.AsyncConnection.connect(libpq_url(url)) as holder,
            httpx.AsyncClient(
                base_url=catalog.url, headers=token_issuer.admin_headers(), timeout=30
            ) as client,
        ):
            # Every request below waits on this lock, inside the service, until it is released.
            await holder.execute("LOCK TABLE categories IN ACCESS EXCLUSIVE MODE")
            reads = [asyncio.create_task(client.get("/categories/")) for _ in range(READS)]
            writes = [
                asyncio.create_task(client.post("/categories/", json={"name": f"Category {n}"}))
                for n in range(WRITES)
            ]
            async with asyncio.timeout(30):
                # The requests wait in another process: their state can only be observed.
                while await _waiting_for_the_lock(holder, "categories") < READS + WRITES:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)

                catalog.process.terminate()
                while not await _refuses_connections(catalog.url):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            in_flight = not any(task.done() for task in reads + writes)
            still_serving = catalog.is_running
            await holder.rollback()
            answers = await asyncio.gather(*reads, *writes)
        exit_status = await asyncio.to_thread(catalog.process.wait, 30)
    finally:
        catalog.stop()

    assert in_flight
    assert still_serving
    assert [answer.status_code for answer in answers] == [200] * READS + [201] * WRITES
    # Once shut down, uvicorn raises the signal it caught again: it ended on its own, not killed.
    assert exit_status == -signal.SIGTERM
    async with await psycopg.AsyncConnection.connect(libpq_url(url)) as database:
        stored = await (await database.execute("SELECT count(*) FROM categories")).fetchone()
    assert stored == (WRITES,)
