"""The application factory every service builds its FastAPI app with."""

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, FastAPI
from sqlalchemy import Table

from servicekit import health, metrics
from servicekit.auth import (
    RemoteKeys,
    TokenVerifier,
    install_token_verifier,
    require_access_rules,
)
from servicekit.database import Database
from servicekit.errors import install_error_handlers
from servicekit.idempotency import IdempotencyKeys, install_idempotency_keys
from servicekit.inbound import guard_requests
from servicekit.metrics import install_metrics, name_routes_in_scope
from servicekit.observability import RequestContextMiddleware, configure_logging
from servicekit.settings import BaseProcessSettings, ServiceSettings
from servicekit.tracing import FASTAPI_TELEMETRY, configure_tracing, flush, untraced

# The collector's first threshold: allocations between collections of the youngest objects.
# Python's 700 suits scripts; a server with hundreds of requests in flight keeps their objects
# alive across young collections, which then scan and promote them over and over.
SERVING_GC_THRESHOLDS = (10_000, 20, 20)


@contextmanager
def collector_tuned_for_serving() -> Iterator[None]:
    """Garbage collection for a running server; the interpreter's own settings again after.

    Modules, routes, models and schemas live as long as the process, yet every full
    collection traverses them all: about 94,000 objects, 35-43 ms for a service, during
    which no request moves. `gc.freeze()` moves what exists once the app has started to a
    generation the collector leaves alone. SERVING_GC_THRESHOLDS then collects less often:
    with 256 requests in flight through the gateway and a service, the collector cost
    116-125 us of CPU per request with Python's thresholds (38-60 us at 64 in flight).
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def include_routes(app: FastAPI, router: APIRouter) -> None:
    """Add the router's routes to the app's own route table.

    `app.include_router()` keeps the router as one entry of the app's table, which FastAPI
    matches on every request by searching the router's routes, and then searches again to
    pick the route: every request pays for two searches and the bookkeeping of the router's
    context. The routes themselves already carry the router's prefix, tags and dependencies,
    so adding them directly serves the same routes, documented the same way, with one search.
    Routers included with options of their own (a prefix, dependencies) need include_router.
    """
    app.router.routes.extend(router.routes)


def create_service_app(
    *,
    name: str,
    version: str,
    settings: ServiceSettings,
    routers: Sequence[APIRouter],
    description: str = "",
    token_verifier: TokenVerifier | None = None,
    background: Sequence[Callable[[FastAPI], Coroutine[Any, Any, None]]] = (),
    idempotency_keys: Table | None = None,
) -> FastAPI:
    """A FastAPI app with the database lifecycle, error model, health probes, request logging
    and metrics.

    Bearer tokens are verified against the keys at `settings.auth_jwks_url` unless a
    `token_verifier` is given (the issuer verifies with its own keys); every route must
    declare an access rule (servicekit.auth). Each of `background` runs as a task for as long
    as the app serves (an event consumer, a pruner), once the database is set up; they are
    cancelled before it is disposed of. Routes that take an Idempotency-Key keep keys and
    answers in `idempotency_keys` (servicekit.idempotency), pruned in the background.
    """
    configure_logging(name, settings.log_level)
    configure_tracing(name)
    keys = None
    if idempotency_keys is not None:
        retention = timedelta(seconds=settings.idempotency_key_retention)
        keys = IdempotencyKeys(idempotency_keys, retention)
        background = [*background, keys.keep_pruned]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.database = Database.from_settings(settings)
        await app.state.token_verifier.keys.prefetch()
        with untraced():  # each task starts the traces it wants (tasks copy this context)
            tasks = [asyncio.create_task(run(app)) for run in background]
        try:
            with collector_tuned_for_serving():
                yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await app.state.database.dispose()
            flush()

    app = FastAPI(
        title=name,
        version=version,
        description=description,
        lifespan=lifespan,
        telemetry=FASTAPI_TELEMETRY,
    )
    app.state.settings = settings
    app.state.health_details = {}  # name -> a callable giving details for /health/ready
    install_error_handlers(app, busy_retry_after=settings.busy_retry_after)
    if keys is not None:
        install_idempotency_keys(app, keys)
    guard_requests(
        app, max_body_bytes=settings.max_body_bytes, allowed_hosts=settings.allowed_hosts
    )
    process_metrics = install_metrics(app, readiness=_database_answers)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=process_metrics.requests if settings.request_metrics else None,
    )
    install_token_verifier(app, token_verifier or remote_token_verifier(settings))
    for router in (health.router, metrics.router, *routers):
        include_routes(app, router)
    require_access_rules(app.routes)
    name_routes_in_scope(app)
    return app


async def _database_answers(app: FastAPI) -> bool:
    database: Database = app.state.database
    return await database.is_reachable()


def remote_token_verifier(settings: BaseProcessSettings) -> TokenVerifier:
    """A verifier of the users service's tokens, with its keys fetched from the JWKS URL."""
    return TokenVerifier(
        RemoteKeys(settings.auth_jwks_url),
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
    )
