"""The application factory every service builds its FastAPI app with."""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from servicekit import health
from servicekit.database import Database
from servicekit.errors import install_error_handlers
from servicekit.observability import RequestContextMiddleware, configure_logging
from servicekit.settings import ServiceSettings


def create_service_app(
    *,
    name: str,
    version: str,
    settings: ServiceSettings,
    routers: Sequence[APIRouter],
    description: str = "",
) -> FastAPI:
    """A FastAPI app with the database lifecycle, error model, health probes and request logging."""
    configure_logging(name, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.database = Database.from_settings(settings)
        try:
            yield
        finally:
            await app.state.database.dispose()

    app = FastAPI(title=name, version=version, description=description, lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health.router)
    for router in routers:
        app.include_router(router)
    return app
