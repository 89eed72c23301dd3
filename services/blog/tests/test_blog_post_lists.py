"""Listing posts: filters, search, sorting, keyset pagination and batch reads of authors."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from servicekit.testing import count_statements, database_of, next_link, walk

CreatePost = Callable[..., Awaitable[dict[str, Any]]]


async def titles(client: httpx.AsyncClient, params: Any = None) -> list[str]:
    response = await client.get("/posts/", params=params)
    assert response.status_code == 200, response.text
    return [post["title"] for post in response.json()]


async def seed(create_post: CreatePost, names: list[str], **fields: Any) -> list[int]:
    return [(await create_post(title=name, **fields))["id"] for name in names]


async def test_the_default_order_is_newest_first(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await seed(create_post, ["first", "second", "third"])

    assert await titles(client) == ["third", "second", "first"]


async def test_skip_and_limit_take_a_slice(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await seed(create_post, ["p0", "p1", "p2", "p3", "p4"])

    assert await titles(client, {"skip": 1, "limit": 2}) == ["p3", "p2"]


async def test_the_link_header_leads_through_every_post_once(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    ids = await seed(create_post, [f"p{i}" for i in range(7)])

    rows = await walk(client, "/posts/?limit=3")

    assert [row["id"] for row in rows] == list(reversed(ids))


async def test_the_last_page_has_no_link(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await seed(create_post, ["a", "b"])

    response = await client.get("/posts/?limit=2")

    assert len(response.json()) == 2
    assert "Link" not in response.headers


@pytest.mark.parametrize(
    ("sort_by", "order", "expected"),
    [
        ("title", "asc", ["Ant", "Bee", "Bee", "Cat"]),
        ("title", "desc", ["Cat", "Bee", "Bee", "Ant"]),
        ("created_at", "asc", ["Bee", "Cat", "Ant", "Bee"]),
        ("updated_at", "desc", ["Cat", "Bee", "Ant", "Bee"]),
    ],
)
async def test_sorting_by_a_field_then_id_pages_through_all(
    client: httpx.AsyncClient,
    create_post: CreatePost,
    sort_by: str,
    order: str,
    expected: list[str],
) -> None:
    ids = await seed(create_post, ["Bee", "Cat", "Ant", "Bee"])
    await client.patch(f"/posts/{ids[1]}", json={"published": True})

    rows = await walk(client, f"/posts/?sort_by={sort_by}&order={order}&limit=1")

    assert [row["title"] for row in rows] == expected


async def test_equal_titles_are_ordered_by_id(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    ids = await seed(create_post, ["Same", "Same", "Same"])

    ascending = await walk(client, "/posts/?sort_by=title&order=asc&limit=2")
    descending = await walk(client, "/posts/?sort_by=title&order=desc&limit=2")

    assert [row["id"] for row in ascending] == ids
    assert [row["id"] for row in descending] == list(reversed(ids))


@pytest.mark.parametrize(
    "params",
    [
        {"sort_by": "content"},
        {"sort_by": "author_id"},
        {"order": "sideways"},
        {"limit": 101},
        {"limit": 0},
        {"skip": -1},
        {"after": "garbage"},
        {"published": "perhaps"},
        {"author_id": 0},
        {"author_id": 2**31},
        {"author_id": "ada"},
        {"tag": "   "},
        {"q": "a\x00b"},
        {"q": "x" * 201},
    ],
)
async def test_bad_list_parameters_are_422(
    client: httpx.AsyncClient, params: dict[str, str | int]
) -> None:
    assert (await client.get("/posts/", params=params)).status_code == 422


async def test_a_cursor_from_another_sort_order_is_422(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await seed(create_post, ["a", "b", "c"])
    first = await client.get("/posts/?sort_by=title&limit=1")
    cursor = str(next_link(first)).split("after=")[1]

    response = await client.get("/posts/", params={"sort_by": "created_at", "after": cursor})

    assert response.status_code == 422


async def test_author_ids_read_a_batch_of_authors(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(title="by 1", author_id=1)
    await create_post(title="by 2", author_id=2)
    await create_post(title="by 3", author_id=3)

    batch = await titles(client, [("author_id", 3), ("author_id", 1), ("author_id", 999)])

    assert batch == ["by 3", "by 1"]


async def test_more_than_100_author_ids_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/posts/", params=[("author_id", i) for i in range(1, 102)])

    assert response.status_code == 422


async def test_published_filters_both_ways(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(title="draft")
    await create_post(title="out", published=True)

    assert await titles(client, {"published": True}) == ["out"]
    assert await titles(client, {"published": False}) == ["draft"]
    assert await titles(client) == ["out", "draft"]


async def test_the_tag_filter_matches_any_spelling_of_the_tag(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(title="py", tags=["Python", "web"])
    await create_post(title="rs", tags=["rust"])
    await create_post(title="none")

    assert await titles(client, {"tag": " PYTHON "}) == ["py"]
    assert await titles(client, {"tag": "unknown"}) == []


async def test_search_matches_title_or_content_ignoring_case(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(title="Async Python", content="Event loops.")
    await create_post(title="Databases", content="Postgres and PYTHON.")
    await create_post(title="Rust", content="Ownership.")

    assert await titles(client, {"q": "python"}) == ["Databases", "Async Python"]
    assert await titles(client, {"q": "LOOPS"}) == ["Async Python"]


@pytest.mark.parametrize(("text", "expected"), [("50%", ["50% off"]), ("a_b", ["a_b"])])
async def test_search_treats_like_wildcards_literally(
    client: httpx.AsyncClient, create_post: CreatePost, text: str, expected: list[str]
) -> None:
    await seed(create_post, ["50% off", "500 off", "a_b", "axb"])

    assert await titles(client, {"q": text}) == expected


async def test_filters_combine_and_pages_keep_them(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    for i in range(5):
        await create_post(title=f"match {i}", author_id=1, tags=["x"], published=True)
    await create_post(title="match draft", author_id=1, tags=["x"])
    await create_post(title="match other author", author_id=2, tags=["x"], published=True)
    await create_post(title="match untagged", author_id=1, published=True)

    rows = await walk(
        client, "/posts/?author_id=1&tag=x&published=true&q=match&sort_by=title&order=asc&limit=2"
    )

    assert [row["title"] for row in rows] == [f"match {i}" for i in range(5)]


async def test_each_listed_post_carries_its_tags(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(title="a", tags=["web", "python"])
    await create_post(title="b")

    response = await client.get("/posts/")

    assert [(post["title"], post["tags"]) for post in response.json()] == [
        ("b", []),
        ("a", ["python", "web"]),
    ]


async def test_a_page_of_50_authors_costs_the_statements_of_one(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    engine = database_of(app).engine
    await create_post(author_id=1, tags=["a", "b"])
    with count_statements(engine) as one:
        assert len((await client.get("/posts/?author_id=1&limit=100")).json()) == 1
    for author_id in range(2, 51):
        await create_post(author_id=author_id, tags=["a", f"tag{author_id}"])
    authors = "&".join(f"author_id={i}" for i in range(1, 51))
    with count_statements(engine) as fifty:
        page = (await client.get(f"/posts/?{authors}&limit=100")).json()

    assert len(page) == 50
    assert all(len(post["tags"]) == 2 for post in page)
    assert one.count == fifty.count
