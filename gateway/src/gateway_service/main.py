"""The gateway application: `uvicorn gateway_service.main:create_app --factory`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway_service import composed, health
from gateway_service.downstream import (
    CircuitStates,
    Downstream,
    DownstreamMetrics,
    create_http_client,
    create_transport,
)
from gateway_service.errors import UpstreamResponse
from gateway_service.openapi import SystemDocument, add_documentation_routes
from gateway_service.proxy import ROUTE_TABLE, add_proxy_routes
from gateway_service.settings import GatewaySettings
from servicekit.auth import install_token_verifier, remote_token_verifier, require_access_rules
from servicekit.errors import install_error_handlers
from servicekit.inbound import guard_requests
from servicekit.metrics import install_metrics, metrics_of, name_routes_in_scope
from servicekit.metrics import router as metrics_router
from servicekit.observability import RequestContextMiddleware, configure_logging
from servicekit.serving import collector_tuned_for_serving, include_routes
from servicekit.tracing import FASTAPI_TELEMETRY, configure_tracing, flush, traced_transport


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the gateway from settings (by default, from `GATEWAY_*` environment variables)."""
    settings = settings or GatewaySettings()
    configure_logging("gateway", settings.log_level)
    configure_tracing("gateway")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        transport = create_transport(settings)
        async with create_http_client(settings, transport) as client:
            app.state.downstream = Downstream(
                client,
                traced_transport(transport),
                settings,
                DownstreamMetrics(metrics_of(app).registry) if settings.request_metrics else None,
            )
            await app.state.token_verifier.keys.prefetch()
            with collector_tuned_for_serving():
                yield
        flush()

    app = FastAPI(
        title="gateway",
        version="0.1.0",
        description="The public API: users, catalog and blog, and views composed across them.",
        lifespan=lifespan,
        telemetry=FASTAPI_TELEMETRY,
        openapi_url=None,  # served merged with the services' documents instead
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_exception_handler(UpstreamResponse, composed.upstream_response)
    guard_requests(
        app, max_body_bytes=settings.max_body_bytes, allowed_hosts=settings.allowed_hosts
    )
    metrics = install_metrics(app, readiness=health.every_service_ready)
    metrics.registry.register(CircuitStates(app))
    app.add_middleware(
        RequestContextMiddleware, metrics=metrics.requests if settings.request_metrics else None
    )
    install_token_verifier(app, remote_token_verifier(settings))
    include_routes(app, health.router)
    include_routes(app, metrics_router)  # the gateway's own: /metrics is never forwarded
    include_routes(app, composed.router)
    require_access_rules(app.routes)  # the forwarded routes' rules are in ROUTE_TABLE
    add_proxy_routes(app, ROUTE_TABLE)
    add_documentation_routes(
        app,
        SystemDocument(
            app.openapi, ROUTE_TABLE, settings.openapi_cache_seconds, composed.DOCUMENTED_BY
        ),
    )
    name_routes_in_scope(app)
    return app
