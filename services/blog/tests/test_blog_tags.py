"""Tags: named on posts, normalised, created on first use, replaced on update, counted."""

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import ScalarSelect, delete, func, select, text, update

from blog_service.models import Tag, post_tags
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


async def test_tags_are_listed_with_their_ids(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(tags=["python", "web"])
    async with database_of(app).engine.connect() as connection:
        rows = (await connection.execute(select(Tag.name, Tag.id))).all()

    response = await client.get("/tags/")

    assert {tag["name"]: tag["id"] for tag in response.json()} == {name: id_ for name, id_ in rows}


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

    assert [(tag["name"], tag["post_count"]) for tag in response.json()] == [("b", 1)]


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


async def recounted(app: FastAPI) -> list[tuple[str, int]]:
    """Every tag with the number of posts linking to it, counted from the links themselves."""
    links = func.count(post_tags.c.post_id)
    statement = (
        select(Tag.name, links)
        .outerjoin(post_tags, post_tags.c.tag_id == Tag.id)
        .group_by(Tag.name)
        .order_by(links.desc(), Tag.name)
    )
    async with database_of(app).engine.connect() as connection:
        return [(name, count) for name, count in await connection.execute(statement)]


async def test_deleting_a_post_uncounts_its_tags(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    post = await create_post(tags=["python", "web"])
    await create_post(tags=["python"])

    assert (await client.delete(f"/posts/{post['id']}")).status_code == 204

    assert await tag_counts(client) == [("python", 1), ("web", 0)]
    assert await tag_counts(client) == await recounted(app)


async def test_erasing_an_authors_posts_uncounts_their_tags(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(author_id=1, tags=["python", "web"])
    await create_post(author_id=1, tags=["web"])
    await create_post(author_id=2, tags=["python"])

    response = await client.delete("/posts/", params={"author_id": 1})

    assert response.status_code == 204
    assert await tag_counts(client) == [("python", 1), ("web", 0)]
    assert await tag_counts(client) == await recounted(app)


async def test_the_counts_are_stored_so_listing_tags_reads_no_link(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(tags=["python"])

    with count_statements(database_of(app)) as log:
        assert await tag_counts(client) == [("python", 1)]

    assert log.statements
    assert not [sql for sql in log.statements if "post_tags" in sql]


async def test_concurrent_retagging_in_crosswise_orders_succeeds_and_counts_true(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    # Each round moves every post to the other's tag at the same time: one update unlinks
    # "a" and links "b" while the other unlinks "b" and links "a". Taking the two tag rows in
    # statement order, each would hold the row the other waits for.
    pairs = [(await create_post(tags=["a"]), await create_post(tags=["b"])) for _ in range(4)]
    created: list[dict[str, Any]] = []

    for round_number in range(6):
        old, new = ("a", "b") if round_number % 2 == 0 else ("b", "a")
        retags = [
            client.patch(f"/posts/{post['id']}", json={"tags": [tag, "shared"]})
            for first, second in pairs
            for post, tag in ((first, new), (second, old))
        ]
        creates = [create_post(tags=["shared", old, new]) for _ in range(2)]
        retagged, made = await asyncio.gather(asyncio.gather(*retags), asyncio.gather(*creates))
        assert [response.status_code for response in retagged] == [200] * len(retags)
        created += made
    deleted = await asyncio.gather(
        *(client.delete(f"/posts/{post['id']}") for post in created[::2])
    )

    assert [response.status_code for response in deleted] == [204] * 6
    assert await tag_counts(client) == [("shared", 14), ("a", 10), ("b", 10)]
    assert await tag_counts(client) == await recounted(app)


async def test_retagging_and_deleting_a_post_at_once_never_deadlock(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    # A deletion takes the post's tags, then the post; an update that changed the post's row
    # before taking its tags would hold what the deletion waits for, and wait for what it holds.
    posts = [await create_post(tags=["a", "b"]) for _ in range(10)]

    responses = await asyncio.gather(
        *(
            request
            for post in posts
            for request in (
                client.patch(f"/posts/{post['id']}", json={"title": "New", "tags": ["b", "c"]}),
                client.delete(f"/posts/{post['id']}"),
            )
        )
    )

    updates, deletes = responses[::2], responses[1::2]
    assert {response.status_code for response in updates} <= {200, 404, 409}
    # A deletion that lost the race to an update is refused as a conflict, not applied.
    assert {response.status_code for response in deletes} <= {204, 409}
    kept = [(await client.get(f"/posts/{post['id']}")).status_code == 200 for post in posts]
    assert kept == [response.status_code == 409 for response in deletes]
    assert await tag_counts(client) == await recounted(app)


async def test_links_changed_by_hand_are_counted_too(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(tags=["a"])
    await create_post(tags=["a", "c"])
    await create_post(tags=["b"])
    engine = database_of(app).engine

    def tag_id(name: str) -> ScalarSelect[int]:
        return select(Tag.id).where(Tag.name == name).scalar_subquery()

    async with engine.begin() as connection:
        await connection.execute(
            update(post_tags).where(post_tags.c.tag_id == tag_id("a")).values(tag_id=tag_id("b"))
        )
    moved = await tag_counts(client)
    async with engine.begin() as connection:
        # SQLite has no TRUNCATE; a DELETE of every row is its nearest statement.
        postgres = connection.dialect.name == "postgresql"
        await connection.execute(text("TRUNCATE post_tags") if postgres else delete(post_tags))
    emptied = await tag_counts(client)

    assert moved == [("b", 3), ("c", 1), ("a", 0)]
    assert emptied == [("a", 0), ("b", 0), ("c", 0)]
    assert emptied == await recounted(app)


def test_the_schema_refuses_control_characters_in_tag_names(app: FastAPI) -> None:
    tags = app.openapi()["components"]["schemas"]["PostCreate"]["properties"]["tags"]
    pattern = re.compile(tags["items"]["pattern"])

    refused = [
        name for name in ["a\x01b", "\x7f", "\t", " ", "ok", " a\tb "] if not pattern.search(name)
    ]

    assert refused == ["a\x01b", "\x7f", "\t", " "]
