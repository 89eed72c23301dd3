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
            database_url=database_url,
            environment="test",
            auth_jwks_url=token_issuer.jwks_url,
            # Tokens of the test issuer are then tokens this service could have issued.
            signing_keys_file=token_issuer.keys_file,
            # argon2id at a cost the suite can afford for its hundreds of sign-ups; production
            # keeps the settings' defaults (pwdlib's recommended parameters).
            password_hash_memory_cost=1024,
            password_hash_time_cost=1,
            password_hash_parallelism=1,
        )
        return create_app(settings)

    return ServiceUnderTest(
        name="users",
        create_app=create_test_app,
        metadata=Base.metadata,
        alembic_ini=Path(__file__).parents[1] / "alembic.ini",
        read_path="/users/1",
        create_path="/users/",
        create_body=lambda n: {
            "email": f"user{n}@example.com",
            "name": f"User {n}",
            "password": "correct horse battery",
        },
    )
