"""Listing posts: filters, search, sorting, keyset pagination and batch reads of authors."""

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import CTE, BindParameter, ColumnClause, Select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.visitors import iterate

from blog_service import repository
from blog_service.models import Post, Tag
from blog_service.repository import PostFilter
from servicekit.database import Database
from servicekit.keyset import SortOrder
from servicekit.testing import (
    StatementLog,
    count_statements,
    database_of,
    next_link,
    plan_nodes,
    walk,
)

CreatePost = Callable[..., Awaitable[dict[str, Any]]]
NEWEST_FIRST = SortOrder("created_at:desc", (Post.created_at, Post.id), descending=True)


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


async def test_a_tag_no_post_has_lists_nothing_and_reads_no_post_for_it(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(title="tagged", tags=["python"])
    await create_post(title="untagged")
    retagged = await create_post(title="retagged", tags=["old"])
    await client.patch(f"/posts/{retagged['id']}", json={"tags": []})

    assert await titles(client, {"tag": "python"}) == ["tagged"]
    assert await titles(client, {"tag": "nosuch"}) == []
    assert await titles(client, {"tag": "old"}) == []  # the tag is stored, but no post has it
    # In an order other than creation's, or in a batch, posts would be read and tested for the
    # tag: its stored count of none answers first.
    with count_statements(database_of(app)) as log:
        assert await titles(client, {"tag": "old", "sort_by": "updated_at"}) == []
        batch = await client.get("/posts/", params={"tag": "old", "author_id": 1, "per_author": 2})
    assert batch.json() == []
    assert log.touched(Post.metadata) == [("SELECT", {"tags"})] * 2  # the tag's, no post
    assert all("post_count" in statement for statement in log.queries)


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


class OneAuthorAndFifty(NamedTuple):
    """What a read of posts answers for author 1 alone, then for authors 1 to 50, and the
    statements each read cost."""

    one: list[dict[str, Any]]
    fifty: list[dict[str, Any]]
    statements_for_one: int
    statements_for_fifty: int


async def read_for_one_author_then_fifty(
    app: FastAPI, client: httpx.AsyncClient, add: Callable[[range], Awaitable[None]], query: str
) -> OneAuthorAndFifty:
    """`GET /posts/?<author_ids>&<query>` for author 1 once `add` stored its posts, then for
    authors 1 to 50 once `add` stored the others'."""
    database = database_of(app)
    await add(range(1, 2))
    with count_statements(database) as one:
        for_one = (await client.get(f"/posts/?author_id=1&{query}")).json()
    await add(range(2, 51))
    authors = "&".join(f"author_id={i}" for i in range(1, 51))
    with count_statements(database) as fifty:
        for_fifty = (await client.get(f"/posts/?{authors}&{query}")).json()
    return OneAuthorAndFifty(for_one, for_fifty, one.count, fifty.count)


async def test_a_page_of_50_authors_costs_the_statements_of_one(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    async def add_posts_with_two_tags(author_ids: range) -> None:
        for author_id in author_ids:
            await create_post(author_id=author_id, tags=["a", f"tag{author_id}"])

    read = await read_for_one_author_then_fifty(app, client, add_posts_with_two_tags, "limit=100")

    assert len(read.one) == 1
    assert len(read.fifty) == 50
    assert all(len(post["tags"]) == 2 for post in read.fifty)
    assert read.statements_for_one == read.statements_for_fifty


# The batch the gateway composes users-with-posts from: the newest k posts of each author.


async def test_per_author_returns_the_newest_k_of_each_author_by_author_then_newest(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    for i in range(4):
        await create_post(title=f"two-{i}", author_id=2)
        await create_post(title=f"one-{i}", author_id=1)
    await create_post(title="three-0", author_id=3)
    await create_post(title="four-0", author_id=4)

    response = await client.get(
        "/posts/", params=[("author_id", 3), ("author_id", 2), ("author_id", 1), ("per_author", 2)]
    )

    assert response.status_code == 200
    assert [(post["author_id"], post["title"]) for post in response.json()] == [
        (1, "one-3"),
        (1, "one-2"),
        (2, "two-3"),
        (2, "two-2"),
        (3, "three-0"),
    ]
    assert "Link" not in response.headers


async def test_per_author_is_not_capped_by_the_page_limit(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    for author_id in range(1, 4):
        await seed(create_post, [f"{author_id}-{i}" for i in range(10)], author_id=author_id)

    response = await client.get(
        "/posts/", params=[("author_id", 1), ("author_id", 2), ("author_id", 3), ("per_author", 9)]
    )

    assert len(response.json()) == 27


async def test_per_author_one_more_than_shown_tells_who_has_more(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await seed(create_post, ["a1", "a2", "a3"], author_id=1)
    await seed(create_post, ["b1", "b2"], author_id=2)

    response = await client.get(
        "/posts/", params=[("author_id", 1), ("author_id", 2), ("per_author", 3)]
    )

    per_author = [post["author_id"] for post in response.json()]
    assert (per_author.count(1), per_author.count(2)) == (3, 2)


async def test_per_author_combines_with_the_filters(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(title="old out", author_id=1, published=True, tags=["x"])
    await create_post(title="new out", author_id=1, published=True, tags=["x"])
    await create_post(title="draft", author_id=1, tags=["x"])
    await create_post(title="untagged", author_id=1, published=True)

    response = await client.get(
        "/posts/", params={"author_id": 1, "per_author": 5, "published": True, "tag": "X"}
    )

    assert [post["title"] for post in response.json()] == ["new out", "old out"]


async def test_per_author_lists_an_author_named_twice_once(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await seed(create_post, ["a1", "a2"], author_id=1)

    response = await client.get(
        "/posts/", params=[("author_id", 1), ("author_id", 1), ("per_author", 5)]
    )

    assert [post["title"] for post in response.json()] == ["a2", "a1"]


async def test_per_author_posts_carry_their_tags(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(author_id=1, tags=["b", "a"])

    response = await client.get("/posts/", params={"author_id": 1, "per_author": 1})

    assert response.json()[0]["tags"] == ["a", "b"]


async def test_per_author_posts_carry_only_their_own_tags_and_untagged_posts_none(
    client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(author_id=1, title="tagged", tags=["z", "m"])
    await create_post(author_id=1, title="untagged")
    await create_post(author_id=2, title="other", tags=["m"])

    response = await client.get(
        "/posts/", params=[("author_id", 1), ("author_id", 2), ("per_author", 5)]
    )

    tags = {post["title"]: post["tags"] for post in response.json()}
    assert tags == {"untagged": [], "tagged": ["m", "z"], "other": ["m"]}


async def test_a_page_or_a_post_reads_tags_in_its_rows_on_postgres_but_not_at_an_offset(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(title="untagged")
    tagged = await create_post(title="tagged", tags=["z", "a"])
    database = database_of(app)

    with count_statements(database) as reads:
        page = (await client.get("/posts/", params={"limit": 1})).json()
        post = (await client.get(f"/posts/{tagged['id']}")).json()
        rare = (await client.get("/posts/", params={"tag": "z", "sort_by": "title"})).json()
    with count_statements(database) as at_offset:
        skipped = (await client.get("/posts/", params={"skip": 1})).json()

    assert [(row["title"], row["tags"]) for row in page] == [("tagged", ["a", "z"])]
    assert post["tags"] == ["a", "z"]
    assert [row["title"] for row in rare] == ["tagged"]
    assert [(row["title"], row["tags"]) for row in skipped] == [("untagged", [])]
    # SQLite (no arrays) reads the tags of each page's posts in a second statement; the tag
    # filter in title order first looks the tag up on either.
    one = database.engine.dialect.name == "postgresql"
    assert len(reads.queries) == (4 if one else 7)
    # In the page's own statement, they would be looked up for every post skipped too.
    assert at_offset.touched(Post.metadata) == [
        ("SELECT", {"posts"}),
        ("SELECT", {"post_tags", "tags"}),
    ]


async def test_per_author_reads_posts_and_tags_in_one_statement_on_postgres(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await create_post(author_id=1, tags=["a"])
    database = database_of(app)

    with count_statements(database) as batch:
        response = await client.get("/posts/", params={"author_id": 1, "per_author": 2})

    assert response.json()[0]["tags"] == ["a"]
    # SQLite has no LATERAL or arrays: it ranks the posts, then reads their tags.
    assert len(batch.queries) == (1 if database.engine.dialect.name == "postgresql" else 2)


async def test_per_author_without_author_ids_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/posts/", params={"per_author": 3})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "per_author"]
    assert "at least one author_id" in error["msg"]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"skip": 0}, "skip"),
        ({"after": "abc"}, "after"),
        ({"limit": 10}, "limit"),
        ({"sort_by": "title"}, "sort_by"),
        ({"order": "asc"}, "order"),
        ({"skip": 5, "after": "abc"}, "skip, after"),
    ],
)
async def test_per_author_with_paging_or_sorting_is_422_and_says_why(
    client: httpx.AsyncClient, extra: dict[str, str | int], named: str
) -> None:
    response = await client.get("/posts/", params={"author_id": 1, "per_author": 3, **extra})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "per_author"]
    assert "not a page" in error["msg"]
    assert error["msg"].endswith(f"cannot be combined with {named}")


@pytest.mark.parametrize("per_author", [0, 51, -1, "two"])
async def test_per_author_outside_1_to_50_is_422(
    client: httpx.AsyncClient, per_author: int | str
) -> None:
    response = await client.get("/posts/", params={"author_id": 1, "per_author": per_author})

    assert response.status_code == 422


async def add_posts(app: FastAPI, author_ids: range, per_author: int) -> None:
    """Store `per_author` tagged posts for each author straight into the database (fast)."""
    async with database_of(app).transaction() as session:
        tag = Tag(name=f"authors {author_ids.start} to {author_ids.stop - 1}")
        session.add_all(
            Post(title=f"{author_id}-{i}", content="c", author_id=author_id, tags=[tag])
            for author_id in author_ids
            for i in range(per_author)
        )


async def test_per_author_for_50_authors_costs_the_statements_of_one(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async def add_twelve_posts_each(author_ids: range) -> None:
        await add_posts(app, author_ids, per_author=12)

    read = await read_for_one_author_then_fifty(app, client, add_twelve_posts_each, "per_author=11")

    assert len(read.one) == 11
    # 550 posts: more than one IN-list's worth, should tags be loaded by chunks of ids.
    assert len(read.fifty) == 550
    assert all(len(post["tags"]) == 1 for post in read.fifty)
    assert read.statements_for_one == read.statements_for_fifty


async def backdate(app: FastAPI, post_id: int, days: int) -> None:
    """Move a post's created_at back by `days`, as an operator's SQL could."""
    async with database_of(app).engine.begin() as connection:
        await connection.execute(
            update(Post)
            .where(Post.id == post_id)
            .values(created_at=datetime(2026, 1, 1, tzinfo=UTC) - timedelta(days=days))
        )


async def test_a_tags_posts_follow_their_creation_times_not_their_ids(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    ids = await seed(create_post, ["a", "b", "c", "d"], tags=["x"])
    await create_post(title="untagged")
    for post_id, days in zip(ids, [2, 0, 3, 1], strict=True):  # b, d, a, c newest first
        await backdate(app, post_id, days)
    late = await create_post(title="late")
    await backdate(app, late["id"], 4)
    await client.patch(f"/posts/{late['id']}", json={"tags": ["x"]})  # tagged after the fact

    newest_first = [row["title"] for row in await walk(client, "/posts/?tag=x&limit=2")]
    oldest_first = [row["title"] for row in await walk(client, "/posts/?tag=x&order=asc&limit=3")]

    assert await titles(client, {"tag": "x"}) == ["b", "d", "a", "c", "late"]
    assert newest_first == ["b", "d", "a", "c", "late"]
    assert oldest_first == ["late", "c", "a", "d", "b"]


async def test_a_page_of_a_tags_posts_reads_a_page_of_its_links_on_postgres(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    for i in range(30):
        await create_post(title=f"p{i}", tags=["x", "y"] if i % 3 else ["y"])

    assert await titles(client, {"tag": "x", "limit": 4}) == ["p29", "p28", "p26", "p25"]
    engine = database_of(app).engine
    if engine.dialect.name != "postgresql":
        return  # what follows is Postgres's plan
    statement, parameters, order = PostFilter(tag="x").page_of_posts(NEWEST_FIRST)
    page = statement.order_by(*order.order_by()).limit(4)
    nodes = await plan_nodes(engine, page, parameters, analyze=True, avoid=("sort",))

    links = [node for node in nodes if node.get("Relation Name") == "post_tags"]
    assert [node["Index Name"] for node in links] == ["ix_post_tags_tag_id_created_at_post_id"]
    assert [node["Actual Rows"] for node in links] == [4]
    assert not [node for node in nodes if node["Node Type"] == "Sort"]


# A rare tag in another order than creation: its posts are read from its links and sorted.

RARE_TAG_PAGES = [
    "/posts/?tag=x&sort_by=title&order=asc&limit=2",
    "/posts/?tag=x&sort_by=title&order=desc&limit=3",
    "/posts/?tag=x&sort_by=updated_at&order=asc&limit=2",
    "/posts/?tag=x&sort_by=updated_at&limit=4",
    "/posts/?tag=x&sort_by=title&published=true&limit=2",
    "/posts/?tag=x&sort_by=title&q=keep&limit=2",
    "/posts/?tag=x&sort_by=title&author_id=1&author_id=3&limit=2",
    "/posts/?tag=x&sort_by=title&skip=1&limit=2",
    "/posts/?tag=x&sort_by=title&author_id=2&limit=1",
    "/posts/?tag=x&author_id=1&author_id=3&limit=1",
    "/posts/?tag=x&author_id=2&order=asc&limit=1",
    "/posts/?tag=x&author_id=4&author_id=4&published=true",
]


async def seed_rare_tag(client: httpx.AsyncClient, create_post: CreatePost) -> None:
    titles_in_order = ["m", "c", "x", "a", "q", "c", "k", "b", "z"]  # "c" twice: ties go by id
    for i, title in enumerate(titles_in_order):
        await create_post(
            title=title,
            content="keep" if i % 2 else "drop",
            author_id=i % 4 + 1,
            published=i % 3 != 0,
            tags=["x", "y"] if i != 4 else ["y"],
        )
    posts = (await client.get("/posts/?limit=100")).json()
    for post in posts[::3]:  # updated in another order than created
        response = await client.patch(f"/posts/{post['id']}", json={"title": post["title"]})
        assert response.status_code == 200, response.text


async def test_a_rare_tags_pages_are_the_pages_of_reading_posts_in_order(
    client: httpx.AsyncClient, create_post: CreatePost, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_rare_tag(client, create_post)

    rare = [await walk(client, url) for url in RARE_TAG_PAGES]
    monkeypatch.setattr(repository, "RARE_TAG_POSTS", -1)  # read in order, tested against a set
    against_set = [await walk(client, url) for url in RARE_TAG_PAGES]
    monkeypatch.setattr(repository, "TAG_SET_POSTS", -1)  # read in order, tested one by one
    in_post_order = [await walk(client, url) for url in RARE_TAG_PAGES]

    assert rare == in_post_order
    assert against_set == in_post_order
    assert [post["title"] for post in rare[0]] == ["a", "b", "c", "c", "k", "m", "x", "z"]
    assert all(rows for rows in rare)
    assert all("x" in post["tags"] for rows in rare for post in rows)


@pytest.fixture
async def rare_tag_database(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> Database:
    """The service's database, seeded by seed_rare_tag."""
    await seed_rare_tag(client, create_post)
    return database_of(app)


async def test_the_tags_stored_count_decides_how_a_page_is_read(
    client: httpx.AsyncClient, rare_tag_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def first_by_title() -> StatementLog:
        with count_statements(rare_tag_database) as log:
            assert await titles(client, {"tag": "x", "sort_by": "title", "limit": 1}) == ["z"]
        return log

    rare = await first_by_title()
    monkeypatch.setattr(repository, "RARE_TAG_POSTS", 7)  # x is on 8 posts
    against_set = await first_by_title()
    monkeypatch.setattr(repository, "TAG_SET_POSTS", 7)
    one_by_one = await first_by_title()
    with count_statements(rare_tag_database) as by_creation:
        await titles(client, {"tag": "x", "limit": 1})

    assert [path_of(log) for log in (rare, against_set, one_by_one, by_creation)] == [
        "sorted apart",
        "tested against the set",
        "tested one by one",
        "tested one by one",
    ]
    assert not any("post_count" in statement for statement in by_creation.statements)


# How each way of reading a tag's posts shows in the SQL, however SQLAlchemy lays it out, quotes
# or aliases it: the tag's posts read apart first (the repository's MATERIALIZED), or each post
# tested IN the set of the tag's links that a subquery reads; else each looked up in the links.
SORTED_APART = re.compile(r"\bMATERIALIZED\b")
AGAINST_THE_SET = re.compile(r"\bIN\s*\(\s*SELECT\b[^()]*\bpost_tags\b", re.IGNORECASE)


def path_of(log: StatementLog) -> str:
    """How the statements in `log` read a tag's posts."""
    if any(SORTED_APART.search(statement) for statement in log.statements):
        return "sorted apart"
    if any(AGAINST_THE_SET.search(statement) for statement in log.statements):
        return "tested against the set"
    return "tested one by one"


async def test_an_unknown_tag_in_another_order_reads_no_posts_but_checks_the_cursor(
    app: FastAPI, client: httpx.AsyncClient, create_post: CreatePost
) -> None:
    await seed_rare_tag(client, create_post)
    newest_cursor = next_link(await client.get("/posts/?limit=1"))
    assert newest_cursor is not None

    with count_statements(database_of(app)) as log:
        assert await titles(client, {"tag": "nosuch", "sort_by": "title"}) == []
    wrong_cursor = await client.get(
        "/posts/",
        params={
            "tag": "nosuch",
            "sort_by": "title",
            "after": httpx.URL(newest_cursor).params["after"],
        },
    )

    assert log.touched(Post.metadata) == [("SELECT", {"tags"})]  # the tag's lookup, nothing else
    assert "post_count" in log.queries[0]
    assert wrong_cursor.status_code == 422, wrong_cursor.text


RARE_TAG_BATCHES = [
    "/posts/?tag=x&author_id=1&author_id=2&author_id=3&per_author=1",
    "/posts/?tag=x&author_id=3&author_id=1&per_author=2",
    "/posts/?tag=x&author_id=1&author_id=2&author_id=3&author_id=4&per_author=5",
    "/posts/?tag=x&author_id=1&author_id=2&author_id=4&published=true&per_author=5",
    "/posts/?tag=x&author_id=2&author_id=3&author_id=4&q=keep&per_author=5",
    "/posts/?tag=x&author_id=9&per_author=5",
    "/posts/?tag=x&author_id=2&per_author=1",
    "/posts/?tag=x&author_id=3&author_id=3&per_author=5",
]


async def test_a_batch_per_author_of_a_tag_on_few_posts_tests_them_as_a_set(
    client: httpx.AsyncClient, rare_tag_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = rare_tag_database

    async def batches() -> tuple[list[Any], str]:
        with count_statements(database) as log:
            answers = [(await client.get(url)).json() for url in RARE_TAG_BATCHES]
        return answers, path_of(log)

    as_set, set_path = await batches()
    monkeypatch.setattr(repository, "TAG_SET_POSTS", 7)  # x is on 8 posts: tested post by post
    one_by_one, one_by_one_path = await batches()

    assert as_set == one_by_one
    assert (set_path, one_by_one_path) == ("tested against the set", "tested one by one")
    assert [len(batch) for batch in as_set] == [3, 4, 8, 4, 4, 0, 1, 2]
    assert all("x" in post["tags"] for batch in as_set for post in batch)
    assert all(len(post["tags"]) == 2 for batch in as_set for post in batch)  # x and y


async def test_a_batch_per_author_of_an_unknown_tag_reads_only_the_tag(
    client: httpx.AsyncClient, rare_tag_database: Database
) -> None:
    with count_statements(rare_tag_database) as log:
        response = await client.get("/posts/?tag=nosuch&author_id=1&author_id=2&per_author=3")

    assert response.status_code == 200, response.text
    assert response.json() == []
    assert log.touched(Post.metadata) == [("SELECT", {"tags"})]  # the tag's lookup, nothing else
    assert "post_count" in log.queries[0]


def test_a_rare_tags_posts_are_read_before_any_other_filter_applies() -> None:
    # A prepared statement's plan cannot know how many posts the authors asked for have:
    # filtering inside the tag's part would let it read every post of theirs instead.
    rare_filter = PostFilter(author_ids=[1, 2], tag="x", published=True, text="keep")
    by_title = SortOrder("title:asc", (Post.title, Post.id))
    statement, parameters, _ = rare_filter.page_of_posts(by_title, {"id": 7, "post_count": 8})
    [tag_posts] = statement.get_final_froms()
    sql = str(statement.compile(dialect=postgresql.psycopg.dialect()))  # type: ignore[no-untyped-call]

    assert isinstance(tag_posts, CTE)
    assert isinstance(tag_posts.element, Select)
    assert SORTED_APART.search(sql)
    # The tag's part filters on the tag alone: every other filter applies to what it read.
    inside = list(iterate(tag_posts.element.whereclause))
    assert {str(each) for each in inside if isinstance(each, ColumnClause)} == {"post_tags.tag_id"}
    assert {each.key for each in inside if isinstance(each, BindParameter)} == {"tag_id"}
    assert parameters == {
        "author_ids": [1, 2],
        "published": True,
        "text": "keep",
        "tag_id": 7,
    }
