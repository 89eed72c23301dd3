"""Scenario 12's monolith answers the gateway's `/users-with-posts` pages, byte for byte in
JSON and `Link`, from its one copy of the users and blog services' rows.

Users and blog run as processes on databases of their own, seeded as the bench seeds them (at
a small scale); the gateway and the monolith run as the bench runs them.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine

from bench import monolith
from bench.run import Server, serve, users_with_posts_path
from bench.seed import Scale, seed_users_and_blog
from servicekit.testing import (
    TEST_EVENTS_TOKEN,
    ServiceProcess,
    TokenIssuer,
    free_port,
    libpq_url,
    next_link,
    started,
)
from servicekit.testing.plugin import MakeDatabase

REPOSITORY = Path(__file__).parents[2]
SCALE = Scale().scaled(0.001)  # 100 users, 500 posts: authors with none, a few, and many


@dataclass(frozen=True)
class System:
    gateway: Server
    monolith: Server
    monolith_dsn: str


@pytest.fixture(scope="module")
def system(make_database: MakeDatabase, token_issuer: TokenIssuer) -> Iterator[System]:
    """Users and blog seeded and serving, the monolith holding their copy, both in front."""
    users = ServiceProcess(
        "users",
        make_database("postgresql", "monolith_users"),
        REPOSITORY / "services" / "users" / "alembic.ini",
        {
            "USERS_ENVIRONMENT": "test",
            "USERS_SIGNING_KEYS_FILE": str(token_issuer.keys_file),
            "USERS_EVENTS_TOKEN": TEST_EVENTS_TOKEN,
        },
    )
    blog = ServiceProcess(
        "blog",
        make_database("postgresql", "monolith_blog"),
        REPOSITORY / "services" / "blog" / "alembic.ini",
        {
            "BLOG_ENVIRONMENT": "test",
            "BLOG_AUTH_JWKS_URL": f"{users.url}/.well-known/jwks.json",
            "BLOG_EVENTS_TOKEN": TEST_EVENTS_TOKEN,
            "BLOG_CONSUME_EVENTS": "false",
        },
    )
    target = libpq_url(make_database("postgresql", "monolith"))
    with started({"users": users, "blog": blog}):
        users_database, blog_database = (
            create_engine(users.database_url),
            create_engine(blog.database_url),
        )
        seed_users_and_blog(users_database, blog_database, SCALE)
        users_database.dispose()
        blog_database.dispose()
        assert not monolith.holds(target, SCALE.users, SCALE.posts)
        sources = {"users": libpq_url(users.database_url), "blog": libpq_url(blog.database_url)}
        monolith.copy(target, sources)
        gateway_environment = {
            "GATEWAY_USERS_URL": users.url,
            "GATEWAY_BLOG_URL": blog.url,
            "GATEWAY_CATALOG_URL": "http://127.0.0.1:1",  # not read here
        }
        with (
            serve(
                "test-gateway",
                "gateway_service.main:create_app",
                gateway_environment,
                1,
                "/health/live",
                free_port(),
            ) as gateway,
            serve(
                "test-monolith",
                "bench.monolith:create_app",
                {"BENCH_MONOLITH_DSN": target},
                1,
                "/health/live",
                free_port(),
            ) as copy,
        ):
            yield System(gateway, copy, target)


def _every_page(gateway: Server, first: str) -> list[str]:
    pages = [first]
    with httpx.Client(base_url=gateway.url) as client:
        while (following := next_link(client.get(pages[-1]))) is not None:
            pages.append(following)
    return pages


def test_the_copy_holds_the_seeded_users_and_posts(system: System) -> None:
    assert monolith.holds(system.monolith_dsn, SCALE.users, SCALE.posts)
    assert not monolith.holds(system.monolith_dsn, SCALE.users, SCALE.posts + 1)


def test_the_monolith_answers_every_page_as_the_gateway_does(system: System) -> None:
    pages = _every_page(system.gateway, users_with_posts_path(None))
    pages += _every_page(system.gateway, "/users-with-posts?limit=7&posts_per_user=1")
    pages.append(users_with_posts_path(SCALE.users - 3))
    shown = [
        user
        for page in pages
        for user in httpx.get(system.gateway.url + page).json()
        if "posts_per_user" not in page
    ]
    # The pages hold every kind of user the view tells apart.
    assert any(not user["posts"] for user in shown)
    assert any(user["has_more_posts"] for user in shown)
    assert any(user["posts"] and not user["has_more_posts"] for user in shown)
    assert any(len(post["tags"]) > 1 for user in shown for post in user["posts"])

    assert monolith.differences(system.gateway.url, system.monolith.url, pages) == []


def test_a_page_that_differs_from_the_gateways_is_told(system: System) -> None:
    page = users_with_posts_path(None)
    shown = httpx.get(system.gateway.url + page).json()
    first_post = next(post for user in shown for post in user["posts"])
    with psycopg.connect(system.monolith_dsn) as database:
        database.execute("UPDATE posts SET title = 'changed' WHERE id = %s", (first_post["id"],))
    try:
        differences = monolith.differences(system.gateway.url, system.monolith.url, [page])
    finally:
        with psycopg.connect(system.monolith_dsn) as database:
            database.execute(
                "UPDATE posts SET title = %s WHERE id = %s", (first_post["title"], first_post["id"])
            )

    assert differences == [f"body: {page}"]


@pytest.mark.parametrize(
    "query", ["after=not-a-cursor", "limit=0", "limit=101", "limit=x", "posts_per_user=50"]
)
def test_the_monolith_refuses_a_page_the_gateway_refuses(system: System, query: str) -> None:
    page = f"/users-with-posts?{query}"
    assert httpx.get(system.monolith.url + page).status_code == 422
    assert monolith.differences(system.gateway.url, system.monolith.url, [page]) == []
