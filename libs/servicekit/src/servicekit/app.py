"""The application factory every service builds its FastAPI app with."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, FastAPI
from sqlalchemy import Table

from servicekit import health, metrics
from servicekit.auth import (
    TokenVerifier,
    install_token_verifier,
    remote_token_verifier,
    require_access_rules,
)
from servicekit.database import Database, ServiceSettings
from servicekit.database_errors import install_database_error_handlers
from servicekit.errors import install_error_handlers
from servicekit.idempotency import IdempotencyKeys, install_idempotency_keys
from servicekit.inbound import guard_requests
from servicekit.metrics import install_metrics, name_routes_in_scope
from servicekit.observability import RequestContextMiddleware, configure_logging
from servicekit.serving import collector_tuned_for_serving, include_routes
from servicekit.tracing import FASTAPI_TELEMETRY, configure_tracing, flush, untraced


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
    install_error_handlers(app)
    install_database_error_handlers(app, busy_retry_after=settings.busy_retry_after)
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
