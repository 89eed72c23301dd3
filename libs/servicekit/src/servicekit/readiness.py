"""Whether the database answers, asked apart from the pools that serve requests.

Ready means "can serve". A check that borrowed a pooled connection would wait behind the
requests whenever every connection is lent, and report a busy process as one whose database
is down: Kubernetes would then take the busiest pods out of service, the load would move to
the others, and they would fail their probes in turn. So each check opens a connection of its
own (with a short connect timeout), asks one trivial question and closes it: a database that
is down, refuses connections or does not answer fails it; a busy pool does not. Between checks
no connection is kept, so the probe adds nothing to the connections a deployment budgets for.

Probes come every few seconds from the kubelet, and from Prometheus, a blackbox exporter and
the gateway besides (whose own `/health/ready`, which asks every service, is open to anyone).
So a success is reused for `interval` seconds, and callers arriving during a check share it:
while the database answers, it sees at most one probe connection per interval from each
process, however many probes arrive. What the requests learn overrides that: a connection
that failed or broke under a request (see servicekit.database) makes the next probe ask again,
so readiness never claims a database the requests have just found down. A failure is not
reused: each probe asks again while the database is down (concurrent ones still share a
check), as each request does, and the first probe after it is back finds it ready.
"""

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from sqlalchemy import Dialect
from sqlalchemy.engine import URL

# Seconds a check may take, connecting included.
READINESS_TIMEOUT = 2.0

Check = Callable[[], Awaitable[None]]


class DatabaseProbe:
    """Runs `check` (which raises unless the database answers); a success holds for `interval`
    seconds, unless forgotten."""

    def __init__(
        self, check: Check, *, interval: float, timeout: float = READINESS_TIMEOUT
    ) -> None:
        self._check = check
        self.interval = interval
        self.timeout = timeout
        self._answered_until = float("-inf")
        self._forgotten = 0  # how many times forget() was called
        self._running: asyncio.Future[bool] | None = None

    async def answers(self) -> bool:
        """Whether the database answers: a recent success, else a check made now."""
        if time.monotonic() < self._answered_until:
            return True
        if self._running is None:
            self._running = asyncio.ensure_future(self._check_now())
        # Shielded: a caller that gives up (its client hung up) leaves the check to the others.
        return await asyncio.shield(self._running)

    def forget(self) -> None:
        """Drop the success held: a request found the database unreachable meanwhile."""
        self._answered_until = float("-inf")
        self._forgotten += 1

    async def close(self) -> None:
        """Stop a check under way (the process is shutting down)."""
        running = self._running
        if running is not None:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running

    async def _check_now(self) -> bool:
        forgotten = self._forgotten
        try:
            async with asyncio.timeout(self.timeout):
                await self._check()
        except Exception:
            return False
        else:
            # A request that failed during the check knows better: this success is not kept.
            if self._forgotten == forgotten:
                self._answered_until = time.monotonic() + self.interval
            return True
        finally:
            self._running = None


def postgres_check(url: URL, dialect: Dialect, connect_args: dict[str, Any]) -> Check:
    """A check on a connection of its own: connect, `SELECT 1`, close."""
    _, params = dialect.create_connect_args(url)  # the same server, role and options as the pools
    params.update(
        connect_args,
        autocommit=True,
        # libpq's least (it counts whole seconds); READINESS_TIMEOUT bounds the check anyway.
        connect_timeout=2,
    )

    async def check() -> None:
        connection = await psycopg.AsyncConnection.connect(**params)
        try:
            await connection.execute("SELECT 1")
        finally:
            with contextlib.suppress(psycopg.Error):
                await connection.close()

    return check


def sqlite_check(url: URL) -> Check:
    """A check on a connection of its own that reads the database file's schema.

    As a pooled connection would, it creates a file that does not exist yet (`make run`
    migrates before it serves); a file that cannot be opened or read fails it.
    """
    path = url.database or ":memory:"

    def read_schema() -> None:
        # The busy timeout ends the thread, which a timed out await leaves running.
        with contextlib.closing(sqlite3.connect(path, timeout=READINESS_TIMEOUT)) as connection:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()

    async def check() -> None:
        await asyncio.to_thread(read_schema)

    return check
