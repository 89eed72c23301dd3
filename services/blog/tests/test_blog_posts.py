"""Creating, reading, updating and deleting posts over HTTP."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from servicekit.testing import created

CreatePost = Callable[..., Awaitable[dict[str, Any]]]
CreateComment = Callable[..., Awaitable[dict[str, Any]]]

A_POST = {"title": "Hello", "content": "First words.", "author_id": 1}


async def stored_posts(client: httpx.AsyncClient) -> list[dict[str, object]]:
    response = await client.get("/posts/", params={"limit": 100})
    assert response.status_code == 200
    posts: list[dict[str, object]] = response.json()
    return posts


async def test_create_returns_201_with_location_etag_and_the_post(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/posts/", json={**A_POST, "tags": ["news"]})

    body = await created(client, response, "/posts/")
    assert body["title"] == "Hello"
    assert body["content"] == "First words."
    assert body["author_id"] == 1
    assert body["published"] is False
    assert body["tags"] == ["news"]
    assert (await client.get(f"/posts/{body['id']}")).headers["ETag"] == '"1"'


async def test_timestamps_are_utc_and_aware(create_post: CreatePost) -> None:
    post = await create_post()

    assert str(post["created_at"]).endswith(("+00:00", "Z"))
    assert str(post["updated_at"]).endswith(("+00:00", "Z"))


async def test_a_new_post_was_last_updated_when_it_was_created(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    post = await create_post()

    updated = (await client.patch(f"/posts/{post['id']}", json={"title": "Later"})).json()

    assert post["updated_at"] == post["created_at"]
    assert updated["created_at"] == post["created_at"]
    assert updated["updated_at"] > post["updated_at"]


async def test_a_post_can_be_created_published(create_post: CreatePost) -> None:
    post = await create_post(published=True)

    assert post["published"] is True


async def test_titles_are_trimmed_and_content_is_kept_as_sent(create_post: CreatePost) -> None:
    post = await create_post(title="  Hello  ", content="  indented\n")

    assert post["title"] == "Hello"
    assert post["content"] == "  indented\n"


@pytest.mark.parametrize(
    "body",
    [
        {**A_POST, "rating": 5},
        {**A_POST, "id": 7},
        {**A_POST, "title": "He\x00llo"},
        {**A_POST, "title": ""},
        {**A_POST, "title": "   "},
        {**A_POST, "title": "x" * 201},
        {**A_POST, "content": ""},
        {**A_POST, "content": "x" * 50_001},
        {**A_POST, "author_id": None},
        {**A_POST, "author_id": 0},
        {**A_POST, "author_id": 2**31},
        {**A_POST, "author_id": 10**30},
        {**A_POST, "author_id": "1"},
        {**A_POST, "published": "yes"},
        {**A_POST, "tags": "python"},
        {**A_POST, "tags": [None]},
        {**A_POST, "tags": [f"tag{i}" for i in range(21)]},
    ],
    ids=[
        "unknown-field",
        "client-id",
        "nul",
        "empty-title",
        "blank-title",
        "long-title",
        "empty-content",
        "long-content",
        "null-author",
        "author-zero",
        "author-beyond-int32",
        "huge-author",
        "author-as-string",
        "bad-bool",
        "tags-not-a-list",
        "null-tag",
        "too-many-tags",
    ],
)
async def test_invalid_bodies_are_422_and_store_nothing(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await client.post("/posts/", json=body)

    assert response.status_code == 422
    assert "detail" in response.json()
    assert await stored_posts(client) == []


async def test_a_body_that_is_not_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/posts/", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422


async def test_patch_changes_only_the_fields_sent_and_bumps_the_version(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    post = await create_post(tags=["news"])

    response = await client.patch(f"/posts/{post['id']}", json={"title": "Hello again"})

    assert response.status_code == 200
    body = response.json()
    assert body["title"] == "Hello again"
    assert body["content"] == post["content"]
    assert body["tags"] == ["news"]
    assert body["version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert body["updated_at"] > post["updated_at"]
    assert body["created_at"] == post["created_at"]
    assert (await client.get(f"/posts/{post['id']}")).json() == body


async def test_patch_publishes_a_post(client: httpx.AsyncClient, create_post: CreatePost) -> None:
    post = await create_post()

    response = await client.patch(f"/posts/{post['id']}", json={"published": True})

    assert response.json()["published"] is True
    assert (await client.get(f"/posts/{post['id']}")).json()["published"] is True


@pytest.mark.parametrize(
    "body",
    [{"title": None}, {"tags": None}, {"title": ""}, {"author_id": 2}, {"version": 5}],
    ids=["null-title", "null-tags", "empty-title", "author", "version"],
)
async def test_invalid_patches_are_422_and_change_nothing(
    client: httpx.AsyncClient, create_post: CreatePost, body: dict[str, object]
) -> None:
    post = await create_post(tags=["news"])

    response = await client.patch(f"/posts/{post['id']}", json=body)

    assert response.status_code == 422
    assert (await client.get(f"/posts/{post['id']}")).json() == post


async def test_an_empty_patch_changes_nothing(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    post = await create_post()

    response = await client.patch(f"/posts/{post['id']}", json={})

    assert response.status_code == 200
    assert response.json() == post


async def test_delete_is_204_and_the_post_is_gone(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    post = await create_post()

    response = await client.delete(f"/posts/{post['id']}")

    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"/posts/{post['id']}")).status_code == 404


async def test_delete_unknown_post_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.delete("/posts/999")).status_code == 404


async def test_deleting_a_post_deletes_its_comments_and_tag_links(
    client: httpx.AsyncClient, create_post: CreatePost, create_comment: CreateComment
) -> None:
    post = await create_post(tags=["news"])
    other = await create_post(tags=["news"])
    doomed = await create_comment(post["id"])
    kept = await create_comment(other["id"])

    assert (await client.delete(f"/posts/{post['id']}")).status_code == 204

    assert (await client.get(f"/comments/{doomed['id']}")).status_code == 404
    assert (await client.get(f"/comments/{kept['id']}")).status_code == 200
    tags = (await client.get("/tags/")).json()
    assert [(tag["name"], tag["post_count"]) for tag in tags] == [("news", 1)]
