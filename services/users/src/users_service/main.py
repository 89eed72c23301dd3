"""The users service application: `uvicorn users_service.main:create_app --factory`."""

from fastapi import FastAPI

from servicekit.app import create_service_app
from users_service.router import router
from users_service.settings import UsersSettings


def create_app(settings: UsersSettings | None = None) -> FastAPI:
    """Build the users app from settings (by default, from `USERS_*` environment variables)."""
    return create_service_app(
        name="users",
        version="0.1.0",
        description="User accounts: unique emails, search, stats and sorted listings.",
        settings=settings or UsersSettings(),
        routers=[router],
    )
