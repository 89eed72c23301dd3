"""Tags: named on posts, normalised, created on first use, replaced on update, counted."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from servicekit.testing import count_statements, database_of, walk

CreatePost = Callable[..., Awaitable[dict[str, Any]]]


async def tag_counts(client: httpx.AsyncClient) -> list[tuple[str, int]]:
    response = await client.get("/tags/", params={"limit": 100})
    assert response.status_code == 200
    return [(tag["name"], tag["post_count"]) for tag in response.json()]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (["Python", " python ", "PYTHON"], ["python"]),
        (["  Machine \t  Learning\n"], ["machine learning"]),
        (["Straße", "STRASSE"], ["strasse"]),
        (["\uff21\uff44\uff41"], ["ada"]),  # "Ada" in fullwidth letters
        (["web", "Async", "api"], ["api", "async", "web"]),
    ],
    ids=["case-and-spaces", "inner-whitespace", "case-folding", "compatibility-forms", "sorted"],
)
async def test_tag_names_are_normalised_collapsed_and_sorted(
    client: httpx.AsyncClient, create_post: CreatePost, given: list[str], stored: list[str]
) -> None:
    post = await create_post(tags=given)

    assert post["tags"] == stored
    assert (await client.get(f"/posts/{post['id']}")).json()["tags"] == stored
    assert await tag_counts(client) == [(name, 1) for name in stored]


async def test_posts_naming_a_tag_in_different_spellings_share_it(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(tags=["Python"])
    await create_post(tags=["python "])

    assert await tag_counts(client) == [("python", 2)]


@pytest.mark.parametrize(
    "tags",
    [[""], ["   "], ["\t\n"], ["a\x01b"], ["a\x00b"], ["x" * 51], ["ﷺ" * 3], ["\ud800"]],
    ids=[
        "empty",
        "blank",
        "whitespace",
        "control",
        "nul",
        "too-long",
        "too-long-once-normalised",
        "surrogate",
    ],
)
async def test_unusable_tag_names_are_422_and_store_nothing(
    client: httpx.AsyncClient, tags: list[str]
) -> None:
    body = {"title": "T", "content": "C", "author_id": 1, "tags": tags}
    # ASCII-escaped, so a lone surrogate travels as the JSON escape a client could send.
    response = await client.post(
        "/posts/", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert (await client.get("/posts/")).json() == []
    assert await tag_counts(client) == []


async def test_update_replaces_the_set_of_tags(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    post = await create_post(tags=["python", "web"])

    response = await client.patch(f"/posts/{post['id']}", json={"tags": ["Web", "Databases"]})

    assert response.status_code == 200
    assert response.json()["tags"] == ["databases", "web"]
    assert (await client.get(f"/posts/{post['id']}")).json()["tags"] == ["databases", "web"]
    assert await tag_counts(client) == [("databases", 1), ("web", 1), ("python", 0)]


async def test_an_update_without_tags_leaves_them_unchanged(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    post = await create_post(tags=["python"])

    response = await client.patch(f"/posts/{post['id']}", json={"title": "Renamed"})

    assert response.json()["tags"] == ["python"]
    assert (await client.get(f"/posts/{post['id']}")).json()["tags"] == ["python"]


async def test_an_empty_list_removes_every_tag(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    post = await create_post(tags=["python"])

    response = await client.patch(f"/posts/{post['id']}", json={"tags": []})

    assert response.json()["tags"] == []
    assert (await client.get(f"/posts/{post['id']}")).json()["tags"] == []


async def test_changing_only_the_tags_bumps_updated_at_and_the_version(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    post = await create_post(tags=["python"])

    response = await client.patch(f"/posts/{post['id']}", json={"tags": ["python", "web"]})

    body = response.json()
    assert body["version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert body["updated_at"] > post["updated_at"]
    assert (await client.get(f"/posts/{post['id']}")).json() == body


async def test_the_same_tags_spelled_differently_are_no_change(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    post = await create_post(tags=["python", "web"])

    response = await client.patch(f"/posts/{post['id']}", json={"tags": ["WEB", " Python"]})

    assert response.json() == post


async def test_a_tag_update_with_a_stale_if_match_is_412_and_keeps_the_tags(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    post = await create_post(tags=["python"])
    await client.patch(f"/posts/{post['id']}", json={"title": "Renamed"})

    response = await client.patch(
        f"/posts/{post['id']}", json={"tags": ["web"]}, headers={"If-Match": '"1"'}
    )

    assert response.status_code == 412
    assert (await client.get(f"/posts/{post['id']}")).json()["tags"] == ["python"]
    assert await tag_counts(client) == [("python", 1)]


async def test_posts_created_at_once_with_the_same_new_tag_share_one_tag(
    client: httpx.AsyncClient,
) -> None:
    spellings = ["Fresh", "fresh", " FRESH ", "fresh"] * 3

    responses = await asyncio.gather(
        *(
            client.post(
                "/posts/",
                json={"title": f"P{i}", "content": "C", "author_id": 1, "tags": [tag, "Other"]},
            )
            for i, tag in enumerate(spellings)
        )
    )

    assert [response.status_code for response in responses] == [201] * len(spellings)
    assert {tuple(response.json()["tags"]) for response in responses} == {("fresh", "other")}
    assert await tag_counts(client) == [("fresh", 12), ("other", 12)]


async def test_posts_created_at_once_with_new_tags_in_opposite_orders_all_succeed(
    client: httpx.AsyncClient,
) -> None:
    orders = [["alpha", "beta", "gamma"], ["gamma", "beta", "alpha"]] * 4

    responses = await asyncio.gather(
        *(
            client.post(
                "/posts/", json={"title": "T", "content": "C", "author_id": 1, "tags": tags}
            )
            for tags in orders
        )
    )

    assert [response.status_code for response in responses] == [201] * len(orders)
    assert await tag_counts(client) == [("alpha", 8), ("beta", 8), ("gamma", 8)]


async def test_tags_are_listed_by_use_then_by_name(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(tags=["web", "python", "zig"])
    await create_post(tags=["python", "ada"])
    await create_post(tags=["python", "web"])

    assert await tag_counts(client) == [
        ("python", 3),
        ("web", 2),
        ("ada", 1),
        ("zig", 1),
    ]


async def test_the_link_header_leads_through_every_tag_once(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(tags=["a", "b", "c", "d", "e"])
    await create_post(tags=["c", "d"])
    await create_post(tags=["d"])

    rows = await walk(client, "/tags/?limit=2")

    assert [(tag["name"], tag["post_count"]) for tag in rows] == [
        ("d", 3),
        ("c", 2),
        ("a", 1),
        ("b", 1),
        ("e", 1),
    ]


async def test_tags_honour_skip_and_limit(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(tags=["a", "b", "c"])

    response = await client.get("/tags/", params={"skip": 1, "limit": 1})

    assert response.json() == [{"name": "b", "post_count": 1}]


@pytest.mark.parametrize(
    "params",
    [{"limit": 101}, {"limit": 0}, {"after": "garbage"}, {"after": "eyJvIjoidXNlIiwidiI6WzEsMl19"}],
    ids=["limit-too-high", "limit-zero", "garbage-cursor", "cursor-of-wrong-shape"],
)
async def test_bad_tag_list_parameters_are_422(
    client: httpx.AsyncClient, params: dict[str, str | int]
) -> None:
    assert (await client.get("/tags/", params=params)).status_code == 422


async def test_listing_tags_costs_the_same_statements_for_1_and_41_tags(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    database = database_of(app)
    await create_post(tags=["only"])
    with count_statements(database) as one:
        assert len((await client.get("/tags/?limit=100")).json()) == 1
    await create_post(tags=[f"tag{i}" for i in range(20)])
    await create_post(tags=[f"more{i}" for i in range(20)])
    with count_statements(database) as many:
        assert len((await client.get("/tags/?limit=100")).json()) == 41

    assert one.count == many.count


async def test_simultaneous_tag_replacements_with_the_same_if_match_let_exactly_one_win(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    post = await create_post(tags=["start"])

    responses = await asyncio.gather(
        *(
            client.patch(
                f"/posts/{post['id']}", json={"tags": [f"t{i}"]}, headers={"If-Match": '"1"'}
            )
            for i in range(8)
        )
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(200) == 1
    assert set(statuses[1:]) == {412}  # however the race fell: their version was stale
    [winner] = [response.json() for response in responses if response.status_code == 200]
    stored = (await client.get(f"/posts/{post['id']}")).json()
    assert (stored["version"], stored["tags"]) == (2, winner["tags"])
