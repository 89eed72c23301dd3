"""Erasing an author: everything a user wrote goes, the day the user is deleted."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

CreatePost = Callable[..., Awaitable[dict[str, Any]]]
CreateComment = Callable[..., Awaitable[dict[str, Any]]]

LEAVING, STAYING = 1, 2


async def exists(client: httpx.AsyncClient, path: str) -> bool:
    status = (await client.get(path)).status_code
    assert status in {200, 404}
    return status == 200


async def test_deleting_by_author_removes_their_posts_and_every_comment_on_them(
    client: httpx.AsyncClient, create_post: CreatePost, create_comment: CreateComment
) -> None:
    theirs = await create_post(author_id=LEAVING)
    on_theirs = await create_comment(theirs["id"], author_id=STAYING)

    response = await client.delete("/posts/", params={"author_id": LEAVING})

    assert response.status_code == 204
    assert response.content == b""
    assert not await exists(client, f"/posts/{theirs['id']}")
    assert not await exists(client, f"/comments/{on_theirs['id']}")


async def test_deleting_by_author_removes_their_comments_on_other_posts(
    client: httpx.AsyncClient, create_post: CreatePost, create_comment: CreateComment
) -> None:
    others = await create_post(author_id=STAYING)
    their_comment = await create_comment(others["id"], author_id=LEAVING)
    kept_comment = await create_comment(others["id"], author_id=STAYING)

    await client.delete("/posts/", params={"author_id": LEAVING})

    assert await exists(client, f"/posts/{others['id']}")
    assert (await client.get(f"/posts/{others['id']}/comments")).json() == [kept_comment]
    assert not await exists(client, f"/comments/{their_comment['id']}")


async def test_deleting_by_author_leaves_other_authors_alone(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(author_id=LEAVING, tags=["shared"])
    kept = await create_post(author_id=STAYING, tags=["shared"])

    await client.delete("/posts/", params={"author_id": LEAVING})

    assert (await client.get("/posts/")).json() == [kept]


async def test_tags_left_unused_stay_with_a_count_of_zero(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(author_id=LEAVING, tags=["theirs", "shared"])
    await create_post(author_id=STAYING, tags=["shared"])

    await client.delete("/posts/", params={"author_id": LEAVING})

    tags = (await client.get("/tags/")).json()
    assert [(tag["name"], tag["post_count"]) for tag in tags] == [("shared", 1), ("theirs", 0)]


async def test_deleting_by_author_is_idempotent(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(author_id=LEAVING)

    first = await client.delete("/posts/", params={"author_id": LEAVING})
    again = await client.delete("/posts/", params={"author_id": LEAVING})
    never_wrote = await client.delete("/posts/", params={"author_id": 999})

    assert [first.status_code, again.status_code, never_wrote.status_code] == [204, 204, 204]
    assert (await client.get("/posts/")).json() == []


async def test_several_authors_can_be_erased_at_once(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    for author_id in (1, 2, 3):
        await create_post(author_id=author_id)

    await client.delete("/posts/", params=[("author_id", 1), ("author_id", 3)])

    assert [post["author_id"] for post in (await client.get("/posts/")).json()] == [2]


async def test_deleting_posts_without_an_author_is_422_and_deletes_nothing(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    post = await create_post()

    for params in ({}, {"author_id": 0}, {"author_id": "all"}):
        assert (await client.delete("/posts/", params=params)).status_code == 422

    assert (await client.get("/posts/")).json() == [post]


async def test_authors_who_commented_on_each_other_are_deleted_at_once_without_deadlock(
    client: httpx.AsyncClient, create_post: CreatePost, create_comment: CreateComment
) -> None:
    for _ in range(8):
        posts = {author: await create_post(author_id=author) for author in (LEAVING, STAYING)}
        for author in LEAVING, STAYING:
            for post in posts.values():
                await create_comment(post["id"], author_id=author)

        deleted = await asyncio.gather(
            *(client.delete("/posts/", params={"author_id": a}) for a in (LEAVING, STAYING))
        )

        assert [response.status_code for response in deleted] == [204, 204], deleted[0].text
        assert (await client.get("/posts/")).json() == []
