"""The users service under test; servicekit's plugin builds the database, app and client on it."""

from pathlib import Path

import pytest
from fastapi import FastAPI

from servicekit.testing import ServiceUnderTest, TokenIssuer
from users_service.main import create_app
from users_service.models import Base
from users_service.settings import UsersSettings


@pytest.fixture(scope="session")
def service(token_issuer: TokenIssuer) -> ServiceUnderTest:
    def create_test_app(database_url: str) -> FastAPI:
        settings = UsersSettings(
            database_url=database_url, environment="test", auth_jwks_url=token_issuer.jwks_url
        )
        return create_app(settings)

    return ServiceUnderTest(
        name="users",
        create_app=create_test_app,
        metadata=Base.metadata,
        alembic_ini=Path(__file__).parents[1] / "alembic.ini",
        read_path="/users/1",
    )
