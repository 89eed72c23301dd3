"""Who may call each route of the blog: for every route and each of anonymous, another user,
the owner and an admin, the status expected; and nothing stored changes when a call is refused.

The routes come from the app's own route table, so a route added without an entry here fails
`test_every_route_has_expectations`.
"""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from blog_service.main import create_app
from blog_service.settings import BlogSettings
from servicekit.auth import access_rule
from servicekit.testing import TokenIssuer, asgi_client

OWNER_ID = 11
OTHER_ID = 12
ROLES = ("anonymous", "another user", "the owner", "an admin")
Json = dict[str, Any]


@dataclass(frozen=True)
class Call:
    """One request to a route, and the status each role gets for it, in the order of ROLES.

    What "the owner" owns: the post (and its comment) seeded for every test, all by OWNER_ID.
    """

    method: str
    url: str
    statuses: tuple[int, int, int, int]
    json: Json | None = None
    params: dict[str, Any] = field(default_factory=dict)


READ = (200, 200, 200, 200)
OWNERS_WRITE = (401, 403, 201, 201)
OWNERS_CHANGE = (401, 403, 200, 200)
OWNERS_DELETE = (401, 403, 204, 204)

EXPECTED: dict[str, Call] = {
    "GET /health/live": Call("GET", "/health/live", READ),
    "GET /health/ready": Call("GET", "/health/ready", READ),
    "POST /posts/": Call(
        "POST",
        "/posts/",
        OWNERS_WRITE,
        json={"title": "New", "content": "Words.", "author_id": OWNER_ID},
    ),
    "GET /posts/": Call("GET", "/posts/", READ),
    "DELETE /posts/": Call("DELETE", "/posts/", OWNERS_DELETE, params={"author_id": OWNER_ID}),
    "GET /posts/{post_id:int}": Call("GET", "/posts/{post_id}", READ),
    "PATCH /posts/{post_id:int}": Call(
        "PATCH", "/posts/{post_id}", OWNERS_CHANGE, json={"title": "Changed"}
    ),
    "DELETE /posts/{post_id:int}": Call("DELETE", "/posts/{post_id}", OWNERS_DELETE),
    "POST /posts/{post_id:int}/comments": Call(
        "POST",
        "/posts/{post_id}/comments",
        OWNERS_WRITE,
        json={"content": "Me too.", "author_id": OWNER_ID},
    ),
    "GET /posts/{post_id:int}/comments": Call("GET", "/posts/{post_id}/comments", READ),
    "GET /comments/{comment_id:int}": Call("GET", "/comments/{comment_id}", READ),
    "DELETE /comments/{comment_id:int}": Call("DELETE", "/comments/{comment_id}", OWNERS_DELETE),
    "GET /tags/": Call("GET", "/tags/", READ),
}


def _routes(app: FastAPI) -> dict[str, APIRoute]:
    return {
        f"{method} {route.path}": route
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods or ())
    }


ROUTES = _routes(create_app(BlogSettings()))


def test_every_route_has_expectations() -> None:
    assert sorted(ROUTES) == sorted(EXPECTED)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_anonymous_callers_are_refused_exactly_where_the_rule_needs_a_token(route: str) -> None:
    needs_token = access_rule(ROUTES[route]) != "anyone"

    assert (EXPECTED[route].statuses[0] == 401) is needs_token


@dataclass(frozen=True)
class Seeded:
    post_id: int
    comment_id: int


async def _stored(client: httpx.AsyncClient) -> Json:
    """Everything the blog holds, as an admin reads it."""
    posts = (await client.get("/posts/", params={"limit": 100})).json()
    comments = {
        post["id"]: (await client.get(f"/posts/{post['id']}/comments")).json() for post in posts
    }
    tags = (await client.get("/tags/")).json()
    return {"posts": posts, "comments": comments, "tags": tags}


@pytest.fixture
async def seeded(client: httpx.AsyncClient) -> Seeded:
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
    return Seeded(post.json()["id"], comment.json()["id"])


@pytest.fixture
async def callers(
    app: FastAPI, client: httpx.AsyncClient, token_issuer: TokenIssuer
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A client per role, on the same app and tables as `client`."""
    headers = {
        "anonymous": {},
        "another user": token_issuer.headers(OTHER_ID),
        "the owner": token_issuer.headers(OWNER_ID),
        "an admin": token_issuer.admin_headers(),
    }
    async with AsyncExitStack() as stack:
        yield {
            role: await stack.enter_async_context(asgi_client(app, headers=headers[role]))
            for role in ROLES
        }


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(EXPECTED))
async def test_access_matrix(
    route: str,
    role: str,
    seeded: Seeded,
    client: httpx.AsyncClient,
    callers: dict[str, httpx.AsyncClient],
) -> None:
    call = EXPECTED[route]
    url = call.url.format(post_id=seeded.post_id, comment_id=seeded.comment_id)
    before = await _stored(client)

    response = await callers[role].request(call.method, url, json=call.json, params=call.params)

    expected = call.statuses[ROLES.index(role)]
    assert response.status_code == expected, response.text
    after = await _stored(client)
    if expected in (401, 403) or call.method == "GET":
        assert after == before
    else:
        assert after != before
    if expected == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
