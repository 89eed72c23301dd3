"""Scenario 10: users' event feed and blog's consumer of it.

On databases of their own (bench_events_users, bench_events_blog), with users and blog as
processes, it measures:

- the feed: events per second a client reads through `GET /events` (pages of 100);
- blog's consumer: events per second it applies (events it only moves its cursor past);
- the lag from `DELETE /users/{id}` to the last of that user's posts and comments gone, with
  blog up, and once blog is back after being down while users were deleted;
- what following the feed costs blog while idle: `GET /posts/{id}` on a blog that follows the
  feed and on one that does not, alternating rounds on the same database.
"""

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import URL

from bench.load import run_wrk
from bench.run import SIGNING_KEYS, Server, _libpq, database_url, recreate_databases, serve
from servicekit.auth import SigningKey, SigningKeys

TOKEN = "bench-events-credential"  # noqa: S105 - the bench's own, on its own databases
FEED_EVENTS = 20_000
LAG_USERS = 20
POSTS_PER_USER = 3
IDLE_ROUNDS = 3
CHEAP_HASHING = {
    "USERS_PASSWORD_HASH_TIME_COST": "1",
    "USERS_PASSWORD_HASH_MEMORY_COST": "1024",
}
Say = Callable[[str], None]


DATABASES = "bench_events"


def _url(server: URL, service: str) -> str:
    return database_url(server, service, DATABASES).render_as_string(hide_password=False)


class System:
    """Users and blog for the scenario: a blog that follows the feed, one that does not."""

    def __init__(self, server: URL, stack: ExitStack, workers: int) -> None:
        self.server = server
        self.stack = stack
        self.workers = workers
        if not SIGNING_KEYS.exists():
            SigningKeys((SigningKey.generate(),)).write(SIGNING_KEYS)
        self.users = stack.enter_context(
            serve(
                "events-users",
                "users_service.main:create_app",
                {
                    "USERS_DATABASE_URL": _url(server, "users"),
                    "USERS_SIGNING_KEYS_FILE": str(SIGNING_KEYS),
                    "USERS_EVENTS_TOKEN": TOKEN,
                    **CHEAP_HASHING,
                },
                workers,
                "/health/ready",
            )
        )
        self.feed = f"{self.users.url}/events"

    def blog_environment(self, consume: bool) -> dict[str, str]:
        return {
            "BLOG_DATABASE_URL": _url(self.server, "blog"),
            "BLOG_AUTH_JWKS_URL": f"{self.users.url}/.well-known/jwks.json",
            "BLOG_EVENTS_URL": self.feed,
            "BLOG_EVENTS_TOKEN": TOKEN,
            "BLOG_CONSUME_EVENTS": str(consume).lower(),
        }

    @contextmanager
    def blog(self, consume: bool = True) -> Iterator[Server]:
        name = "events-blog" if consume else "events-blog-idle"
        with serve(
            name,
            "blog_service.main:create_app",
            self.blog_environment(consume),
            self.workers,
            "/health/ready",
        ) as blog:
            yield blog

    def head(self) -> str:
        answer = httpx.get(f"{self.feed}/head", headers={"Authorization": f"Bearer {TOKEN}"})
        answer.raise_for_status()
        cursor: str = answer.json()["cursor"]
        return cursor


def _consumer(blog: Server) -> dict[str, Any]:
    details: dict[str, Any] = httpx.get(f"{blog.url}/health/ready").json().get("details", {})
    events: dict[str, Any] = details.get("events", {})
    return events


def _wait_until(condition: Callable[[], bool], timeout: float = 120) -> float:
    """Seconds until `condition` holds, looking every 5 ms."""
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout:
            raise RuntimeError("the condition did not hold in time")
        time.sleep(0.005)  # polling what is measured, not synchronising a test
    return time.perf_counter() - started


def feed_throughput(system: System) -> float:
    """Events per second a client reads from the feed, in pages of 100."""
    with psycopg.connect(_libpq(database_url(system.server, "users", DATABASES))) as db:
        db.execute(
            "INSERT INTO outbox_events (txid, type, subject, data, time) "
            "SELECT pg_current_xact_id()::text::bigint, 'user.updated', g::text, "
            "json_build_object('id', g, 'name', 'n' || g, 'is_active', true), now() "
            "FROM generate_series(1, %s) AS g",
            (FEED_EVENTS,),
        )
    read = 0
    started = time.perf_counter()
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        params = {"limit": 100}
        while True:
            page = client.get(system.feed, params=params)
            page.raise_for_status()
            events = page.json()
            if not events:
                break
            read += len(events)
            params = {"limit": 100, "after": events[-1]["position"]}
    return read / (time.perf_counter() - started)


def apply_throughput(system: System, blog: Server) -> float:
    """Events per second blog applies, from its start to the feed's head."""
    head = system.head()
    seconds = _wait_until(lambda: _consumer(blog).get("cursor") == head)
    return FEED_EVENTS / seconds


def _authors(
    system: System,
    blog: Server,
    prefix: str,
    count: int = LAG_USERS,
    posts: int = POSTS_PER_USER,
) -> list[dict[str, Any]]:
    """`count` users, each with `posts` posts, comments on them by another, and a token."""
    authors = []
    with httpx.Client() as client:
        for i in range(count):
            email, password = f"{prefix}{i}@example.com", "bench-password"
            user = client.post(
                f"{system.users.url}/users/",
                json={"email": email, "name": f"{prefix}{i}", "password": password},
            ).json()
            token = client.post(
                f"{system.users.url}/auth/token", data={"username": email, "password": password}
            ).json()["access_token"]
            authors.append(
                {**user, "headers": {"Authorization": f"Bearer {token}"}, "comments_on_others": []}
            )
        for i, author in enumerate(authors):
            author["posts"] = [
                client.post(
                    f"{blog.url}/posts/",
                    json={"title": f"post {n}", "content": "x", "tags": ["lag"]},
                    headers=author["headers"],
                ).json()["id"]
                for n in range(posts)
            ]
            commenter = authors[i - 1]
            for post_id in author["posts"]:
                comment = client.post(
                    f"{blog.url}/posts/{post_id}/comments",
                    json={"content": "!"},
                    headers=commenter["headers"],
                ).json()
                commenter["comments_on_others"].append(comment["id"])
    return authors


def _gone(client: httpx.Client, blog: Server, author: dict[str, Any]) -> bool:
    posts = client.get(f"{blog.url}/posts/", params={"author_id": author["id"]}).json()
    if posts:
        return False
    return all(
        client.get(f"{blog.url}/comments/{comment_id}").status_code == 404
        for comment_id in author["comments_on_others"]
    )


def lag_with_blog_up(system: System, blog: Server) -> list[float]:
    """Seconds from each user's DELETE to the last of their content gone, one at a time."""
    authors = _authors(system, blog, "up")
    lags = []
    with httpx.Client() as client:
        for author in authors:
            started = time.perf_counter()
            client.delete(
                f"{system.users.url}/users/{author['id']}", headers=author["headers"]
            ).raise_for_status()
            while not _gone(client, blog, author):
                time.sleep(0.005)  # polling what is measured
            lags.append(time.perf_counter() - started)
    return lags


def lag_after_blog_was_down(system: System) -> dict[str, float]:
    """Users deleted while blog is down: seconds from blog's start, and from its readiness,
    to the last of their content gone."""
    with system.blog() as blog:
        authors = _authors(system, blog, "down")
        _wait_until(lambda: _consumer(blog).get("cursor") == system.head())
    with httpx.Client() as client:
        for author in authors:
            client.delete(
                f"{system.users.url}/users/{author['id']}", headers=author["headers"]
            ).raise_for_status()
    started = time.perf_counter()
    with system.blog() as blog, httpx.Client() as client:
        ready = time.perf_counter() - started
        for author in authors:
            while not _gone(client, blog, author):
                time.sleep(0.005)  # polling what is measured
        done = time.perf_counter() - started
    return {"users": len(authors), "from_start_s": done, "from_ready_s": done - ready}


def idle_cost(system: System, seconds: float, connections: int) -> dict[str, Any]:
    """GET /posts/{id} on blog following the feed and on blog not following it."""
    rounds: dict[str, list[float]] = {"following": [], "not_following": []}
    with system.blog() as blog:
        (author,) = _authors(system, blog, "reader", count=1, posts=50)
    paths = [f"/posts/{post_id}" for post_id in author["posts"]]
    for _ in range(IDLE_ROUNDS):
        for key, consume in (("following", True), ("not_following", False)):
            with system.blog(consume) as blog:
                run_wrk(blog.url, paths, connections=connections, seconds=1)
                result = run_wrk(blog.url, paths, connections=connections, seconds=seconds)
                if result.failed:
                    raise RuntimeError(f"{result.failed} requests failed: {result.errors}")
                rounds[key].append(result.rps)
    following = statistics.median(rounds["following"])
    not_following = statistics.median(rounds["not_following"])
    return {
        "rps_following": following,
        "rps_not_following": not_following,
        "ratio": following / not_following,
        "rounds": rounds,
    }


def run(server: URL, workers: int, seconds: float, connections: int, say: Say) -> dict[str, Any]:
    """Every measurement of the scenario."""
    say("10. events: fresh bench_events_users and bench_events_blog")
    recreate_databases(server, DATABASES, ("users", "blog"))
    with ExitStack() as stack:
        system = System(server, stack, workers)
        say(f"10. events: reading {FEED_EVENTS:,} events from the feed")
        feed = feed_throughput(system)
        with system.blog() as blog:
            say("10. events: blog applying them")
            applied = apply_throughput(system, blog)
            say(f"10. events: lag of {LAG_USERS} deletions with blog up")
            lags = lag_with_blog_up(system, blog)
        say(f"10. events: lag of {LAG_USERS} deletions made while blog was down")
        after_down = lag_after_blog_was_down(system)
        say("10. events: blog's throughput following the feed and not")
        idle = idle_cost(system, seconds, connections)
    return {
        "feed_events_per_s": feed,
        "applied_events_per_s": applied,
        "lag_blog_up_s": {
            "median": statistics.median(lags),
            "max": max(lags),
            "samples": len(lags),
        },
        "lag_after_blog_was_down": after_down,
        "idle_cost": idle,
    }
