"""The blog service under test; servicekit's plugin builds the database, app and client on it."""

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from blog_service.main import create_app
from blog_service.models import Base
from blog_service.settings import BlogSettings
from servicekit.testing import TEST_EVENTS_TOKEN, ServiceUnderTest, TokenIssuer, app_under_test

Json = dict[str, Any]
A_POST: Json = {"title": "Hello", "content": "First words.", "author_id": 1}


@pytest.fixture(scope="session")
def service(token_issuer: TokenIssuer) -> ServiceUnderTest:
    return ServiceUnderTest(
        name="blog",
        create_app=app_under_test(
            create_app,
            BlogSettings,
            token_issuer,
            events_token=TEST_EVENTS_TOKEN,
            # Blog alone: the tests of the consumer run it themselves, against a feed they serve.
            consume_events=False,
        ),
        metadata=Base.metadata,
        alembic_ini=Path(__file__).parents[1] / "alembic.ini",
        read_path="/posts/1",
        read_route="/posts/{post_id}",
        create_path="/posts/",
        create_body=lambda n: {"title": f"Post {n}", "content": "Some text."},
        change_body=lambda n: {"title": f"Retitled {n}"},
    )


@pytest.fixture
def create_post(client: httpx.AsyncClient) -> Callable[..., Awaitable[Json]]:
    """Create a post through the API (a default one, with any fields replaced) and return it."""

    async def create(**fields: Any) -> Json:
        response = await client.post("/posts/", json={**A_POST, **fields})
        assert response.status_code == 201, response.text
        body: Json = response.json()
        return body

    return create


@pytest.fixture
def create_comment(client: httpx.AsyncClient) -> Callable[..., Awaitable[Json]]:
    """Comment on a post through the API and return the comment."""

    async def create(post_id: int, author_id: int = 2, content: str = "Nice.") -> Json:
        response = await client.post(
            f"/posts/{post_id}/comments", json={"author_id": author_id, "content": content}
        )
        assert response.status_code == 201, response.text
        body: Json = response.json()
        return body

    return create
