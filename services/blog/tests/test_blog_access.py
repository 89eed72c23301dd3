"""Who may call each route of the blog: for every route and each of anonymous, another user,
the owner and an admin, the status expected; and nothing stored changes when a call is refused.

The routes come from the app's own route table, so a route added without an entry here fails
`test_every_route_has_expectations`.
"""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from blog_service.main import create_app
from blog_service.settings import BlogSettings
from servicekit.testing import TokenIssuer
from servicekit.testing.access import (
    ROLES,
    Call,
    anyones,
    assert_anonymous_refused_exactly_where_a_token_is_needed,
    assert_table_covers_routes,
    check_call,
    metrics_scrapers,
    owners,
    role_clients,
    routes_of,
)

OWNER_ID = 11
OTHER_ID = 12
Json = dict[str, Any]

# What "the owner" owns: the post (and its comment) seeded for every test, all by OWNER_ID.
EXPECTED: dict[str, Call] = {
    "GET /health/live": Call("GET", "/health/live", anyones(200)),
    "GET /health/ready": Call("GET", "/health/ready", anyones(200)),
    "GET /metrics": Call("GET", "/metrics", metrics_scrapers()),
    "POST /posts/": Call(
        "POST",
        "/posts/",
        owners(201),
        json={"title": "New", "content": "Words.", "author_id": OWNER_ID},
    ),
    "GET /posts/": Call("GET", "/posts/", anyones(200)),
    "DELETE /posts/": Call("DELETE", "/posts/", owners(204), params={"author_id": OWNER_ID}),
    "GET /posts/{post_id:int}": Call("GET", "/posts/{post_id}", anyones(200)),
    "PATCH /posts/{post_id:int}": Call(
        "PATCH", "/posts/{post_id}", owners(200), json={"title": "Changed"}
    ),
    "DELETE /posts/{post_id:int}": Call("DELETE", "/posts/{post_id}", owners(204)),
    "POST /posts/{post_id:int}/comments": Call(
        "POST",
        "/posts/{post_id}/comments",
        owners(201),
        json={"content": "Me too.", "author_id": OWNER_ID},
    ),
    "GET /posts/{post_id:int}/comments": Call("GET", "/posts/{post_id}/comments", anyones(200)),
    "GET /comments/{comment_id:int}": Call("GET", "/comments/{comment_id}", anyones(200)),
    "DELETE /comments/{comment_id:int}": Call("DELETE", "/comments/{comment_id}", owners(204)),
    "GET /tags/": Call("GET", "/tags/", anyones(200)),
}

ROUTES = routes_of(create_app(BlogSettings()))


def test_every_route_has_expectations() -> None:
    assert_table_covers_routes(EXPECTED, ROUTES)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_anonymous_callers_are_refused_exactly_where_the_rule_needs_a_token(route: str) -> None:
    assert_anonymous_refused_exactly_where_a_token_is_needed(EXPECTED[route], ROUTES[route])


async def _stored(client: httpx.AsyncClient) -> Json:
    """Everything the blog holds, as an admin reads it."""
    posts = (await client.get("/posts/", params={"limit": 100})).json()
    comments = {
        post["id"]: (await client.get(f"/posts/{post['id']}/comments")).json() for post in posts
    }
    tags = (await client.get("/tags/")).json()
    return {"posts": posts, "comments": comments, "tags": tags}


@pytest.fixture
async def seeded(client: httpx.AsyncClient) -> dict[str, int]:
    """The owner's post with a tag and the owner's comment on it, and another user's post."""
    post = await client.post(
        "/posts/",
        json={"title": "Mine", "content": "Words.", "author_id": OWNER_ID, "tags": ["python"]},
    )
    comment = await client.post(
        f"/posts/{post.json()['id']}/comments", json={"content": "Hi.", "author_id": OWNER_ID}
    )
    other = await client.post(
        "/posts/", json={"title": "Theirs", "content": "Words.", "author_id": OTHER_ID}
    )
    assert [post.status_code, comment.status_code, other.status_code] == [201, 201, 201]
    return {"post_id": post.json()["id"], "comment_id": comment.json()["id"]}


@pytest.fixture
async def callers(
    app: FastAPI, client: httpx.AsyncClient, token_issuer: TokenIssuer
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A client per role, on the same app and tables as `client`."""
    async with role_clients(app, token_issuer, owner_id=OWNER_ID, other_id=OTHER_ID) as callers:
        yield callers


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(EXPECTED))
async def test_access_matrix(
    route: str,
    role: str,
    seeded: dict[str, int],
    client: httpx.AsyncClient,
    callers: dict[str, httpx.AsyncClient],
) -> None:
    await check_call(EXPECTED[route], role, callers[role], seeded, lambda: _stored(client))
