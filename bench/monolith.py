"""The monolith: `/users-with-posts` as one process over one database would answer it.

The gateway composes the page from two services, each over its own database. The monolith a
user could have written instead holds the bench's users and posts (copied once from the
services' databases, `copy`) in one database, `bench_monolith`, and answers the same page, with
the same JSON and the same `Link` header, in one SQL round trip: a bare Starlette app, one psycopg
pool, one prepared statement, like bench/ceiling.py.

    BENCH_MONOLITH_DSN=postgresql://postgres@127.0.0.1:5432/bench_monolith \
        uvicorn bench.monolith:create_app --factory --port 18101
"""

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, LiteralString

import httpx
import psycopg
import pydantic_core
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.ceiling import bare_app, connection_pool
from gateway_service.composed import MAX_POSTS_PER_USER
from servicekit.domain import InvalidInput
from servicekit.keyset import SortOrder
from servicekit.pagination import MAX_LIMIT, set_next_link
from users_service.models import User

DATABASE = "bench_monolith"
# The users service's order of its list, whose cursors the page reads and writes.
BY_ID = SortOrder("id", (User.id,))
DEFAULT_LIMIT = 20  # the services' default page
DEFAULT_POSTS_PER_USER = 5


@dataclass(frozen=True)
class Table:
    """A table of the monolith, as the page needs it, and where its rows come from."""

    name: LiteralString
    columns: LiteralString
    service: str  # whose database the rows come from
    source: LiteralString  # the same columns, read from there
    keys: tuple[LiteralString, ...]  # the services' keys, and the index of authors' newest posts


TABLES = (
    Table(
        "users",
        "id integer, email text, name text, is_active boolean, created_at timestamptz, "
        "updated_at timestamptz, version integer",
        "users",
        "SELECT id, email, name, is_active, created_at, updated_at, version FROM users",
        ("ALTER TABLE users ADD PRIMARY KEY (id)",),
    ),
    Table(
        "posts",
        "id integer, title text, content text, author_id integer, published boolean, "
        "created_at timestamptz, updated_at timestamptz, version integer",
        "blog",
        "SELECT id, title, content, author_id, published, created_at, updated_at, version "
        "FROM posts",
        (
            "ALTER TABLE posts ADD PRIMARY KEY (id)",
            "CREATE INDEX posts_author_id_created_at_id ON posts (author_id, created_at, id)",
        ),
    ),
    Table(
        "tags",
        "id integer, name text",
        "blog",
        "SELECT id, name FROM tags",
        ("ALTER TABLE tags ADD PRIMARY KEY (id)",),
    ),
    Table(
        "post_tags",
        "post_id integer, tag_id integer",
        "blog",
        "SELECT post_id, tag_id FROM post_tags",
        ("ALTER TABLE post_tags ADD PRIMARY KEY (post_id, tag_id)",),
    ),
)

# A page of users after the cursor, each with their newest posts and one more (which says
# whether there are more), each post with its tags by name, and whether a user follows the
# page: the gateway's users call, blog call and users' look-ahead row, in one statement.
PAGE = """
WITH page AS (
    SELECT id, name, created_at FROM users WHERE id > %(after)s ORDER BY id LIMIT %(limit)s
)
SELECT page.id, page.name, page.created_at,
       post.id, post.title, post.content, post.author_id, post.published,
       post.created_at, post.updated_at, post.version,
       ARRAY(
           SELECT tags.name FROM post_tags JOIN tags ON tags.id = post_tags.tag_id
           WHERE post_tags.post_id = post.id ORDER BY tags.name
       ),
       EXISTS (SELECT FROM users WHERE users.id > (SELECT max(id) FROM page))
FROM page
LEFT JOIN LATERAL (
    SELECT * FROM posts WHERE posts.author_id = page.id
    ORDER BY posts.created_at DESC, posts.id DESC LIMIT %(posts)s
) AS post ON true
ORDER BY page.id, post.created_at DESC, post.id DESC
"""
POST_FIELDS = (
    "id",
    "title",
    "content",
    "author_id",
    "published",
    "created_at",
    "updated_at",
    "version",
    "tags",
)


def copy(target: str, sources: Mapping[str, str]) -> None:
    """Fill the database at `target` with the users and posts of the users and blog services'
    databases (`sources`, by service), replacing what it held.

    In one transaction: an interrupted copy leaves nothing that `holds` would take for one.
    """
    with psycopg.connect(target) as database:
        for table in TABLES:
            name = sql.Identifier(table.name)
            database.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
            database.execute(sql.SQL("CREATE TABLE {} ({})").format(name, sql.SQL(table.columns)))
            with (
                psycopg.connect(sources[table.service]) as source,
                source.cursor().copy(
                    sql.SQL("COPY ({}) TO STDOUT").format(sql.SQL(table.source))
                ) as rows_out,
                database.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(name)) as rows_in,
            ):
                for block in rows_out:
                    rows_in.write(block)
            # Keys and indexes built once over all the rows cost less than kept row by row.
            for statement in table.keys:
                database.execute(statement)
    with psycopg.connect(target, autocommit=True) as database:
        database.execute("VACUUM ANALYZE")


def holds(dsn: str, users: int, posts: int) -> bool:
    """Whether the database at `dsn` holds a whole copy of `users` users and `posts` posts."""
    try:
        with psycopg.connect(dsn) as database:
            counts = database.execute(
                "SELECT (SELECT count(*) FROM users WHERE id <= %s), (SELECT count(*) FROM posts)",
                (users,),
            ).fetchone()
    except psycopg.Error:
        return False
    return counts == (users, posts)


def users_with_posts(rows: Iterable[tuple[Any, ...]], per_user: int) -> list[dict[str, Any]]:
    """The page's users as the gateway shows them, from PAGE's rows (`per_user` + 1 a user)."""
    users: list[dict[str, Any]] = []
    user: dict[str, Any] = {}
    for row in rows:
        if not users or user["id"] != row[0]:
            user = {"id": row[0], "name": row[1], "created_at": row[2]}
            user["posts"], user["has_more_posts"] = [], False
            users.append(user)
        if row[3] is None:  # a user without posts
            continue
        if len(user["posts"]) == per_user:
            user["has_more_posts"] = True
        else:
            user["posts"].append(dict(zip(POST_FIELDS, row[3:12], strict=True)))
    return users


def differences(gateway: str, monolith: str, paths: Iterable[str]) -> list[str]:
    """Each of `paths` on which the monolith's answer differs from the gateway's, with what
    differs: the status, or for a page, its `Link` header or its JSON (a refusal's wording is
    the gateway's own)."""
    found = []
    with httpx.Client(timeout=30) as client:
        for path in paths:
            expected, answer = client.get(gateway + path), client.get(monolith + path)
            if answer.status_code != expected.status_code:
                found.append(f"status {answer.status_code}, not {expected.status_code}: {path}")
            elif expected.status_code != 200:
                continue
            elif answer.headers.get("Link") != expected.headers.get("Link"):
                found.append(f"Link header: {path}")
            elif answer.json() != expected.json():
                found.append(f"body: {path}")
    return found


def _whole_number(query: Mapping[str, str], name: str, default: int, most: int) -> int:
    value = int(query.get(name, default))
    if not 1 <= value <= most:
        raise ValueError(f"{name} out of range")
    return value


def _page_asked(query: Mapping[str, str]) -> tuple[int, int, int]:
    """The id the page starts after, its size and the posts shown per user, as the gateway
    takes them; ValueError or InvalidInput (a bad cursor) if they are not valid."""
    limit = _whole_number(query, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    per_user = _whole_number(query, "posts_per_user", DEFAULT_POSTS_PER_USER, MAX_POSTS_PER_USER)
    cursor = query.get("after")
    after: int = BY_ID.values_of(cursor)[0] if cursor else 0
    return after, limit, per_user


def create_app() -> Starlette:
    """The monolith app, on the database named by BENCH_MONOLITH_DSN."""
    pool = connection_pool(os.environ["BENCH_MONOLITH_DSN"])

    async def page(request: Request) -> Response:
        try:
            after, limit, per_user = _page_asked(request.query_params)
        except (ValueError, InvalidInput):
            return Response('{"detail":"invalid page"}', 422, media_type="application/json")
        async with pool.connection() as connection:
            result = await connection.execute(
                PAGE, {"after": after, "limit": limit, "posts": per_user + 1}, prepare=True
            )
            rows = await result.fetchall()
        users = users_with_posts(rows, per_user)
        response = Response(pydantic_core.to_json(users), media_type="application/json")
        more = bool(rows) and rows[0][-1]
        set_next_link(request, response, BY_ID.cursor_after(users[-1]) if more else None)
        return response

    return bare_app(pool, Route("/users-with-posts", page))
