"""User deletion across services, by users' events: blog erases a deleted user's content itself,
whether it was up, paused or killed when the user went."""

import asyncio
import os
import signal
import sys
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import MetaData

from servicekit.database import Database, ServiceSettings
from servicekit.events import Outbox, outbox_tables
from servicekit.testing import ServiceProcess, caught_up, consumer_reaches


async def sign_up_and_post(gateway: httpx.AsyncClient, name: str) -> tuple[int, int]:
    """A new user with a post and a comment on it; their id and the post's."""
    body = {"email": f"{name}@example.com", "name": name, "password": "correct horse battery"}
    user = (await gateway.post("/users/", json=body)).json()
    post = (
        await gateway.post(f"/users/{user['id']}/posts", json={"title": name, "content": "x"})
    ).json()
    comment = {"author_id": user["id"], "content": "mine"}
    assert (await gateway.post(f"/posts/{post['id']}/comments", json=comment)).status_code == 201
    return user["id"], post["id"]


async def remaining_posts(gateway: httpx.AsyncClient) -> list[Any]:
    posts: list[Any] = (await gateway.get("/posts/")).json()
    return posts


async def test_deleting_users_while_blog_is_killed_erases_their_content_once_it_is_back(
    gateway: httpx.AsyncClient, services: dict[str, ServiceProcess]
) -> None:
    leaving = [await sign_up_and_post(gateway, name) for name in ("ada", "bob", "cy")]
    staying = await sign_up_and_post(gateway, "dee")
    caught_up(services["users"], services["blog"])
    blog = services["blog"]
    assert blog.process is not None
    blog.process.send_signal(signal.SIGKILL)
    blog.process.wait()

    statuses = [(await gateway.delete(f"/users/{user_id}")).status_code for user_id, _ in leaving]
    blog.start()
    consumer = caught_up(services["users"], blog)

    assert statuses == [204, 204, 204]
    assert [post["id"] for post in await remaining_posts(gateway)] == [staying[1]]
    # The new process applied the three deletions, and nothing it had applied before.
    assert (consumer["applied"], consumer["parked"]) == (3, 0)


async def test_deleting_a_user_while_blog_is_paused_erases_their_content_once_it_resumes(
    gateway: httpx.AsyncClient, services: dict[str, ServiceProcess]
) -> None:
    user_id, post_id = await sign_up_and_post(gateway, "ada")
    caught_up(services["users"], services["blog"])
    blog = services["blog"].process
    assert blog is not None
    blog.send_signal(signal.SIGSTOP)
    try:
        deleted = await gateway.delete(f"/users/{user_id}")
    finally:
        blog.send_signal(signal.SIGCONT)
    caught_up(services["users"], services["blog"])

    assert deleted.status_code == 204
    assert (await gateway.get(f"/posts/{post_id}")).status_code == 404


async def test_the_blog_consumer_shows_its_place_and_lag_in_readiness(
    gateway: httpx.AsyncClient, services: dict[str, ServiceProcess]
) -> None:
    await sign_up_and_post(gateway, "ada")

    consumer = caught_up(services["users"], services["blog"])

    assert consumer["state"] == "following"
    assert consumer.keys() >= {"cursor", "events_behind", "seconds_behind", "parked"}
    assert consumer["events_behind"] == 0


async def test_a_consumer_behind_retention_says_so_and_resync_brings_it_back(
    gateway: httpx.AsyncClient, services: dict[str, ServiceProcess]
) -> None:
    leaving, post_id = await sign_up_and_post(gateway, "ada")
    _, kept_post_id = await sign_up_and_post(gateway, "bob")
    caught_up(services["users"], services["blog"])
    services["blog"].stop()
    assert (await gateway.delete(f"/users/{leaving}")).status_code == 204
    # Users prunes every event, the deletion among them, while blog is away.
    users_database = Database.from_settings(
        ServiceSettings(database_url=services["users"].database_url)
    )
    try:
        await Outbox(*outbox_tables(MetaData()), source="/users").prune(
            users_database, timedelta(0)
        )
    finally:
        await users_database.dispose()
    services["blog"].start()
    consumer_reaches(services["blog"], lambda events: events.get("state") == "behind retention")
    still_there = (await gateway.get(f"/posts/{post_id}")).status_code

    resync = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "blog_service.events", "resync",
        env={
            **os.environ,
            **services["blog"].environment,
            "BLOG_DATABASE_URL": services["blog"].database_url,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    output, errors = await resync.communicate()
    consumer = caught_up(services["users"], services["blog"])

    assert still_there == 200
    assert resync.returncode == 0, errors.decode()
    assert "erased the content of 1 deleted users" in output.decode()
    assert consumer["state"] == "following"
    assert (await gateway.get(f"/posts/{post_id}")).status_code == 404
    assert (await gateway.get(f"/posts/{kept_post_id}")).status_code == 200
