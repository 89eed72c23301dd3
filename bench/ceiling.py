"""The ceiling: the least a server can do to answer `GET /users/{id}` from the same database.

A bare Starlette app, one psycopg connection pool, one prepared statement, the same JSON body
as the users service. Nothing a real service needs (validation, sessions, logging, error model)
is here, so the users service is measured against what Python and Postgres allow at all.

    BENCH_CEILING_DSN=postgresql://postgres@127.0.0.1:5432/bench_users \
        uvicorn bench.ceiling:create_app --factory --port 18100
"""

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

QUERY = (
    "SELECT id, email, name, is_active, created_at, updated_at, version FROM users WHERE id = %s"
)
COLUMNS = ("id", "email", "name", "is_active", "created_at", "updated_at", "version")


def _isoformat(value: Any) -> Any:
    if isinstance(value, datetime):
        # The service answers timestamps in UTC with an explicit offset; so does the ceiling.
        return value.astimezone(UTC).isoformat()
    return value


def connection_pool(dsn: str) -> AsyncConnectionPool:
    """Ten connections to the database at `dsn`, opened by `bare_app`'s lifespan."""
    return AsyncConnectionPool(
        dsn,
        min_size=10,
        max_size=10,
        open=False,
        # autocommit: a read needs no BEGIN/ROLLBACK; prepare_threshold=0 prepares at first use.
        # Timestamps read in UTC, as the services answer them.
        kwargs={"autocommit": True, "prepare_threshold": 0, "options": "-c TimeZone=UTC"},
    )


def bare_app(pool: AsyncConnectionPool, *routes: Route) -> Starlette:
    """A Starlette app of `routes` and `GET /health/live`, its pool open while it runs."""

    async def live(_request: Request) -> Response:
        return Response('{"status":"ok"}', media_type="application/json")

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await pool.open(wait=True)
        try:
            yield
        finally:
            await pool.close()

    return Starlette(routes=[*routes, Route("/health/live", live)], lifespan=lifespan)


def create_app() -> Starlette:
    """The ceiling app, on the database named by BENCH_CEILING_DSN."""
    pool = connection_pool(os.environ["BENCH_CEILING_DSN"])

    async def get_user(request: Request) -> Response:
        user_id = int(request.path_params["user_id"])
        async with pool.connection() as connection:
            cursor = await connection.execute(QUERY, (user_id,), prepare=True)
            row = await cursor.fetchone()
        if row is None:
            return Response('{"detail":"not found"}', 404, media_type="application/json")
        body = {column: _isoformat(value) for column, value in zip(COLUMNS, row, strict=True)}
        return Response(json.dumps(body), media_type="application/json")

    return bare_app(pool, Route("/users/{user_id:int}", get_user))
