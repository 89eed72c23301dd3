"""The users service under test; servicekit's plugin builds the database, app and client on it."""

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from servicekit.testing import TEST_EVENTS_TOKEN, ServiceUnderTest, TokenIssuer, app_under_test
from users_service.main import create_app
from users_service.models import Base
from users_service.settings import UsersSettings


@pytest.fixture(scope="session")
def service(token_issuer: TokenIssuer) -> ServiceUnderTest:
    return ServiceUnderTest(
        name="users",
        create_app=app_under_test(
            create_app,
            UsersSettings,
            token_issuer,
            # Tokens of the test issuer are then tokens this service could have issued.
            signing_keys_file=token_issuer.keys_file,
            # argon2id at a cost the suite can afford for its hundreds of sign-ups; production
            # keeps the settings' defaults (pwdlib's recommended parameters).
            password_hash_memory_cost=1024,
            password_hash_time_cost=1,
            password_hash_parallelism=1,
            events_token=TEST_EVENTS_TOKEN,
        ),
        metadata=Base.metadata,
        alembic_ini=Path(__file__).parents[1] / "alembic.ini",
        read_path="/users/1",
        read_route="/users/{user_id}",
        create_path="/users/",
        create_body=lambda n: {
            "email": f"user{n}@example.com",
            "name": f"User {n}",
            "password": "correct horse battery",
        },
        change_body=lambda n: {"name": f"Renamed {n}"},
    )


SignUp = Callable[[httpx.AsyncClient, str], Awaitable[dict[str, Any]]]
PASSWORD = "correct horse battery"


@pytest.fixture
def sign_up() -> SignUp:
    """Sign a user up through `client` as `name` (`<name>@example.com`, PASSWORD); the user."""

    async def sign_up(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
        body = {"email": f"{name.lower()}@example.com", "name": name, "password": PASSWORD}
        response = await client.post("/users/", json=body)
        assert response.status_code == 201, response.text
        user: dict[str, Any] = response.json()
        return user

    return sign_up
