"""Comments on posts: created, listed oldest first a page at a time, read and deleted."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from servicekit.testing import walk

CreatePost = Callable[..., Awaitable[dict[str, Any]]]
CreateComment = Callable[..., Awaitable[dict[str, Any]]]


async def test_create_returns_201_with_location_and_the_comment(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    post = await create_post()

    response = await client.post(
        f"/posts/{post['id']}/comments", json={"author_id": 7, "content": "Well put."}
    )

    assert response.status_code == 201
    body = response.json()
    assert body["post_id"] == post["id"]
    assert body["author_id"] == 7
    assert body["content"] == "Well put."
    assert str(body["created_at"]).endswith(("+00:00", "Z"))
    assert response.headers["Location"] == f"/comments/{body['id']}"
    assert (await client.get(f"/comments/{body['id']}")).json() == body
    assert (await client.get(f"/posts/{post['id']}/comments")).json() == [body]


async def test_commenting_on_an_unknown_post_is_404_and_stores_nothing(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/posts/999/comments", json={"author_id": 7, "content": "Hi"})

    assert response.status_code == 404
    assert response.json() == {"detail": "post 999 not found"}
    assert (await client.get("/comments/1")).status_code == 404


async def test_a_post_without_comments_lists_none(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    post = await create_post()

    response = await client.get(f"/posts/{post['id']}/comments")

    assert (response.status_code, response.json()) == (200, [])


@pytest.mark.parametrize(
    "body",
    [
        {"author_id": 7},
        {"author_id": None, "content": "Hi"},
        {"author_id": 7, "content": ""},
        {"author_id": 7, "content": "x" * 10_001},
        {"author_id": 7, "content": "a\x00b"},
        {"author_id": 0, "content": "Hi"},
        {"author_id": 2**31, "content": "Hi"},
        {"author_id": 7, "content": "Hi", "post_id": 3},
    ],
    ids=["no-content", "null-author", "empty", "too-long", "nul", "author-zero", "huge", "unknown"],
)
async def test_invalid_comments_are_422_and_store_nothing(
    client: httpx.AsyncClient, create_post: CreatePost, body: dict[str, object]
) -> None:
    post = await create_post()

    response = await client.post(f"/posts/{post['id']}/comments", json=body)

    assert response.status_code == 422
    assert (await client.get(f"/posts/{post['id']}/comments")).json() == []


async def test_comments_are_listed_oldest_first_through_every_page(
    client: httpx.AsyncClient, create_post: CreatePost, create_comment: CreateComment
) -> None:
    post = await create_post()
    other = await create_post()
    ids = []
    for i in range(7):
        ids.append((await create_comment(post["id"], content=f"c{i}"))["id"])
        await create_comment(other["id"], content=f"elsewhere {i}")

    rows = await walk(client, f"/posts/{post['id']}/comments?limit=3")

    assert [row["id"] for row in rows] == ids
    assert [row["content"] for row in rows] == [f"c{i}" for i in range(7)]


async def test_comments_honour_skip_and_limit(
    client: httpx.AsyncClient, create_post: CreatePost, create_comment: CreateComment
) -> None:
    post = await create_post()
    for i in range(4):
        await create_comment(post["id"], content=f"c{i}")

    response = await client.get(f"/posts/{post['id']}/comments", params={"skip": 1, "limit": 2})

    assert [row["content"] for row in response.json()] == ["c1", "c2"]


@pytest.mark.parametrize("params", [{"limit": 101}, {"after": "garbage"}, {"skip": -1}])
async def test_bad_comment_list_parameters_are_422(
    client: httpx.AsyncClient, create_post: CreatePost, params: dict[str, str | int]
) -> None:
    post = await create_post()

    response = await client.get(f"/posts/{post['id']}/comments", params=params)

    assert response.status_code == 422


async def test_delete_is_204_and_the_comment_is_gone(
    client: httpx.AsyncClient, create_post: CreatePost, create_comment: CreateComment
) -> None:
    post = await create_post()
    doomed = await create_comment(post["id"], content="doomed")
    kept = await create_comment(post["id"], content="kept")

    response = await client.delete(f"/comments/{doomed['id']}")

    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"/comments/{doomed['id']}")).status_code == 404
    assert (await client.get(f"/posts/{post['id']}/comments")).json() == [kept]


@pytest.mark.parametrize("comment_id", ["0", "2147483648"])
async def test_comment_ids_outside_the_id_range_are_422(
    client: httpx.AsyncClient, comment_id: str
) -> None:
    assert (await client.delete(f"/comments/{comment_id}")).status_code == 422
