"""Who may call each route of the blog: for every route and each of anonymous, another user,
the owner and an admin, the status expected; and nothing stored changes when a call is refused.

The routes come from the app's own route table, so a route added without an entry here fails
`test_every_route_has_expectations`.
"""

from typing import Any

import httpx
import pytest

from blog_service.main import create_app
from blog_service.settings import BlogSettings
from servicekit.testing.access import EVERY_PROCESS, AccessMatrix, Call, anyones, owners, routes_of

OWNER_ID = 11
OTHER_ID = 12
Json = dict[str, Any]

# What "the owner" owns: the post (and its comment) seeded for every test, all by OWNER_ID.
EXPECTED: dict[str, Call] = {
    **EVERY_PROCESS,
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


class TestAccess(AccessMatrix):
    expected = EXPECTED
    routes = routes_of(create_app(BlogSettings()))
    owner_id = OWNER_ID
    other_id = OTHER_ID

    @staticmethod
    async def stored(client: httpx.AsyncClient) -> Json:
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
