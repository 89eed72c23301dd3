"""SIGTERM under load, as a pod's deletion or `docker compose stop` sends it, to a service served
by uvicorn with the images' settings: the requests already accepted finish with their normal
answers, and new connections are refused meanwhile, so that they go to another replica."""

import asyncio
import signal
from pathlib import Path

import httpx
import psycopg

from deploy.tests.kubernetes_rules import GRACEFUL_SHUTDOWN_VARIABLE, image_environment
from servicekit.testing import ServiceProcess, TokenIssuer, libpq_url, locked_table, migrate
from servicekit.testing.plugin import MakeDatabase

CATALOG = Path(__file__).parents[2] / "services" / "catalog"
READS = WRITES = 12  # each holds a connection of its pool while it waits


async def _refuses_connections(url: str) -> bool:
    # A client of its own: a new connection each time, none kept alive.
    async with httpx.AsyncClient(base_url=url) as client:
        try:
            await client.get("/health/live")
        except httpx.ConnectError:
            return True
        except (httpx.RemoteProtocolError, httpx.ReadError):
            # Accepted by the kernel just before the listening socket closed, then closed (or
            # reset) unanswered: not served, but not the refusal this waits for either. Try
            # again.
            return False
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
            # Every request below waits on this lock, inside the service, until it is released.
            locked_table(url, "categories") as lock,
            httpx.AsyncClient(
                base_url=catalog.url, headers=token_issuer.admin_headers(), timeout=30
            ) as client,
        ):
            reads = [asyncio.create_task(client.get("/categories/")) for _ in range(READS)]
            writes = [
                asyncio.create_task(client.post("/categories/", json={"name": f"Category {n}"}))
                for n in range(WRITES)
            ]
            await lock.until_waiting(READS + WRITES)
            catalog.process.terminate()
            async with asyncio.timeout(30):
                while not await _refuses_connections(catalog.url):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            in_flight = not any(task.done() for task in reads + writes)
            still_serving = catalog.is_running
            await lock.release()
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
