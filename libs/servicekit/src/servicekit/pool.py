"""The connection pool of the read path: psycopg connections lent and taken back in asyncio.

Every read borrows a connection, so the pool's own cost is paid on every request. SQLAlchemy's
pool lends through greenlets, checkout events and its queue, and psycopg_pool's costs most of
that too (docs/performance.md has the figures). psycopg_pool also makes a caller wait for its
background reconnection while the server refuses connections, up to the whole pool timeout,
where a read should fail at once (503) and the next one should reconnect.

So this pool keeps SQLAlchemy's rules (size and overflow, a wait bounded by the pool timeout,
recycling, tests of connections that idled, every connection of an age replaced once one was
found dropped) with none of its layers: a connection that is free is handed out without
awaiting anything, and one that cannot be opened fails its caller at once.
"""

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

Connect = Callable[[], Awaitable["psycopg.AsyncConnection[Any]"]]


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """What a connection pool holds now, and its waits since it was created."""

    limit: int  # connections it may open: size and overflow
    in_use: int  # lent (or being opened for a caller)
    idle: int
    waiting: int  # callers waiting for a connection now
    waits: int  # acquisitions that had to wait for a connection
    timeouts: int  # of those, the ones that gave up (the pool timeout passed)


class PooledConnection:
    """A connection of the pool, with the times its rules need."""

    __slots__ = ("driver", "idle_since", "opened_at")

    def __init__(self, driver: "psycopg.AsyncConnection[Any]") -> None:
        self.driver = driver
        self.opened_at = self.idle_since = time.monotonic()


class ReadPool:
    """Up to `size + overflow` connections; `size` of them are kept when they are returned.

    `recycle` (seconds, negative for never) replaces old connections before use; `ping_idle`
    (seconds, None for never) tests a connection that waited at least that long in the pool.
    """

    def __init__(
        self,
        connect: Connect,
        *,
        size: int,
        overflow: int = 0,
        timeout: float,
        recycle: float = -1,
        ping_idle: float | None = None,
    ) -> None:
        self._connect = connect
        self.size = size
        self.limit = size + overflow
        self.timeout = timeout
        self.recycle = recycle
        self.ping_idle = ping_idle
        self._idle: deque[PooledConnection] = deque()
        # Callers waiting for a connection: each is given one being returned, or None when a
        # connection was closed and the caller may open one in its place.
        self._waiters: deque[asyncio.Future[PooledConnection | None]] = deque()
        self._opened = 0  # idle, lent, and being opened
        self._valid_since = float("-inf")
        self._waits = 0
        self._timeouts = 0

    @property
    def opened(self) -> int:
        """How many connections exist now: idle, lent, or being opened."""
        return self._opened

    @property
    def waiting(self) -> int:
        """How many callers wait for a connection."""
        return len(self._waiters)  # each leaves the queue when served, cancelled or timed out

    def statistics(self) -> PoolStatistics:
        """The pool's state now, for metrics."""
        idle = len(self._idle)
        return PoolStatistics(
            limit=self.limit,
            in_use=self._opened - idle,
            idle=idle,
            waiting=self.waiting,
            waits=self._waits,
            timeouts=self._timeouts,
        )

    async def acquire(self) -> PooledConnection:
        """A connection for one caller: an idle one, a new one, or one returned while waiting."""
        while self._idle:
            connection = self._idle.pop()  # the most recently used: its cache is warm
            if await self._usable(connection):
                return connection
        if self._opened < self.limit:
            self._opened += 1
            return await self._open()
        return await self._wait()

    async def release(self, connection: PooledConnection) -> None:
        """Take back a connection; one broken, in a transaction, or too old is closed instead."""
        driver = connection.driver
        if (
            driver.broken
            or driver.closed
            or driver.info.transaction_status != TransactionStatus.IDLE
            or connection.opened_at < self._valid_since
        ):
            await self._close(connection)
            return
        connection.idle_since = time.monotonic()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        if len(self._idle) < self.size:
            self._idle.append(connection)
        else:
            await self._close(connection)  # an overflow connection: only kept while needed

    def invalidate(self) -> None:
        """Replace every connection that exists now (the server dropped one, it may drop all)."""
        self._valid_since = time.monotonic()

    async def dispose(self) -> None:
        """Close the idle connections; lent ones are closed when they are returned."""
        self.invalidate()
        while self._idle:
            await self._close(self._idle.pop())

    async def _usable(self, connection: PooledConnection) -> bool:
        now = time.monotonic()
        if (
            connection.opened_at < self._valid_since
            or (self.recycle >= 0 and now - connection.opened_at > self.recycle)
            or connection.driver.closed
        ):
            await self._close(connection)
            return False
        if self.ping_idle is not None and now - connection.idle_since >= self.ping_idle:
            try:
                await connection.driver.execute(";")
            except psycopg.Error:
                await self._close(connection)
                return False
            except BaseException:
                # Cancelled mid-ping: the connection is in an unknown state and nobody's.
                await self._close(connection)
                raise
        return True

    async def _open(self) -> PooledConnection:
        # The caller has counted the connection in `_opened` already: that reserves its place.
        try:
            return PooledConnection(await self._connect())
        except BaseException:
            self._opened -= 1
            self._offer_slot()
            raise

    async def _wait(self) -> PooledConnection:
        waiter: asyncio.Future[PooledConnection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._waits += 1
        try:
            async with asyncio.timeout(self.timeout):
                connection = await waiter
        except BaseException as exc:
            with contextlib.suppress(ValueError):  # gone already if it was given something
                self._waiters.remove(waiter)
            if waiter.done() and not waiter.cancelled():
                given = waiter.result()
                if given is None:
                    self._opened -= 1
                    self._offer_slot()
                else:
                    await self.release(given)
            if isinstance(exc, TimeoutError):
                self._timeouts += 1
                raise PoolTimeoutError(
                    f"no connection of {self.limit} was free within {self.timeout} s"
                ) from exc
            raise
        if connection is None:
            return await self._open()
        if await self._usable(connection):
            return connection
        return await self.acquire()

    async def _close(self, connection: PooledConnection) -> None:
        self._opened -= 1
        self._offer_slot()
        with contextlib.suppress(psycopg.Error):  # a broken one has nothing left to close
            await connection.driver.close()

    def _offer_slot(self) -> None:
        # A place freed goes to the first caller still waiting, reserved for it at once.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._opened += 1
                waiter.set_result(None)
                return
