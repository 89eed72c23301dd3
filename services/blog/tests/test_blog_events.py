"""Users' events applied to blog: a deleted user's content goes, once, and nothing more comes.

The consumer's effects are applied here as its feed would have them delivered; the whole path
(users' feed, blog's consumer as processes) is tested through the gateway's suite.
"""

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from blog_service.events import users_feed_consumer
from blog_service.models import Author, Comment, Post
from servicekit.events import START, CloudEvent, FeedConsumer, Position, Superseded
from servicekit.testing import TokenIssuer, asgi_client, database_of

LEAVING, STAYING = 31, 32
Json = dict[str, Any]


def deleted(user_id: int, position: Position) -> CloudEvent:
    return CloudEvent(
        id=str(position.id),
        source="/users",
        type="user.deleted",
        subject=str(user_id),
        time=datetime.now(UTC),
        data={"id": user_id},
        position=position.cursor(),
    )


@pytest.fixture
def consumer(app: FastAPI, client: httpx.AsyncClient) -> FeedConsumer:
    """Blog's consumer of users' feed, on the test's emptied tables."""
    consumer = users_feed_consumer(app)
    consumer.settings.first_backoff = 0.001
    return consumer


async def created(response: httpx.Response) -> Json:
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


async def count(app: FastAPI, model: type[Any], author_id: int) -> int:
    async with database_of(app).reader() as session:
        statement = select(func.count()).select_from(model).where(model.author_id == author_id)
        return int(await session.scalar(statement) or 0)


async def test_a_deleted_users_posts_and_comments_go_and_others_stay(
    app: FastAPI, client: httpx.AsyncClient, consumer: FeedConsumer
) -> None:
    theirs = await created(await client.post("/posts/", json=_post(LEAVING)))
    others = await created(await client.post("/posts/", json=_post(STAYING)))
    on_theirs = await created(
        await client.post(f"/posts/{theirs['id']}/comments", json=_comment(STAYING))
    )
    their_comment = await created(
        await client.post(f"/posts/{others['id']}/comments", json=_comment(LEAVING))
    )
    kept = await created(
        await client.post(f"/posts/{others['id']}/comments", json=_comment(STAYING))
    )

    await consumer.apply(START, Position(5, 1), deleted(LEAVING, Position(5, 1)))

    assert (await client.get(f"/posts/{theirs['id']}")).status_code == 404
    assert (await client.get(f"/comments/{on_theirs['id']}")).status_code == 404
    assert (await client.get(f"/comments/{their_comment['id']}")).status_code == 404
    assert (await client.get(f"/posts/{others['id']}/comments")).json() == [kept]
    assert await consumer.stored_position() == Position(5, 1)


async def test_nothing_can_be_written_for_a_deleted_user_afterwards(
    app: FastAPI, client: httpx.AsyncClient, consumer: FeedConsumer, token_issuer: TokenIssuer
) -> None:
    post = await created(await client.post("/posts/", json=_post(STAYING)))
    await consumer.apply(START, Position(5, 1), deleted(LEAVING, Position(5, 1)))

    async with asgi_client(app, headers=token_issuer.headers(LEAVING)) as themselves:
        own_post = await themselves.post("/posts/", json={"title": "T", "content": "x"})
        own_comment = await themselves.post(f"/posts/{post['id']}/comments", json={"content": "!"})
    by_an_admin = await client.post("/posts/", json=_post(LEAVING))
    comment_by_an_admin = await client.post(f"/posts/{post['id']}/comments", json=_comment(LEAVING))

    for response in (own_post, own_comment, by_an_admin, comment_by_an_admin):
        assert (response.status_code, response.json()) == (
            404,
            {"detail": f"user {LEAVING} not found"},
        )
    assert await count(app, Post, LEAVING) == await count(app, Comment, LEAVING) == 0


async def test_an_event_delivered_again_is_not_applied_again(
    app: FastAPI, client: httpx.AsyncClient, consumer: FeedConsumer
) -> None:
    event = deleted(LEAVING, Position(5, 1))
    await consumer.apply(START, Position(5, 1), event)
    deleted_at = await _deleted_at(app, LEAVING)

    with pytest.raises(Superseded):
        await consumer.apply(START, Position(5, 1), event)

    assert await consumer.stored_position() == Position(5, 1)
    assert await _deleted_at(app, LEAVING) == deleted_at


async def test_two_replicas_applying_the_same_event_apply_it_once(
    app: FastAPI, client: httpx.AsyncClient, consumer: FeedConsumer
) -> None:
    other_replica = users_feed_consumer(app)
    event = deleted(LEAVING, Position(5, 1))

    outcomes = await asyncio.gather(
        consumer.apply(START, Position(5, 1), event),
        other_replica.apply(START, Position(5, 1), event),
        return_exceptions=True,
    )

    assert sorted(type(outcome).__name__ for outcome in outcomes) == ["NoneType", "Superseded"]
    assert await consumer.stored_position() == Position(5, 1)


async def test_events_blog_does_not_need_only_move_the_cursor(
    client: httpx.AsyncClient, consumer: FeedConsumer
) -> None:
    post = await created(await client.post("/posts/", json=_post(LEAVING)))
    event = deleted(LEAVING, Position(5, 1)).model_copy(update={"type": "user.updated"})

    await consumer.apply(START, Position(5, 1), event)

    assert (await client.get(f"/posts/{post['id']}")).status_code == 200
    assert await consumer.stored_position() == Position(5, 1)


async def test_creates_racing_the_deletion_leave_nothing_behind(
    app: FastAPI, client: httpx.AsyncClient, consumer: FeedConsumer, token_issuer: TokenIssuer
) -> None:
    """Every interleaving: creates before, during and after the erasure, posts and comments."""
    target = await created(await client.post("/posts/", json=_post(STAYING)))
    async with asgi_client(app, headers=token_issuer.headers(LEAVING)) as themselves:

        async def write(i: int) -> int:
            if i % 2:
                comment = {"content": f"comment {i}"}
                response = await themselves.post(f"/posts/{target['id']}/comments", json=comment)
            else:
                post = {"title": f"post {i}", "content": "x", "tags": ["race"]}
                response = await themselves.post("/posts/", json=post)
            return response.status_code

        writes = [asyncio.ensure_future(write(i)) for i in range(200)]
        await asyncio.sleep(0)  # the writes start before the deletion is applied
        await consumer.apply(START, Position(5, 1), deleted(LEAVING, Position(5, 1)))
        statuses = await asyncio.gather(*writes)

    assert set(statuses) <= {201, 404}
    assert await count(app, Post, LEAVING) == await count(app, Comment, LEAVING) == 0
    assert (await client.get("/tags/")).json()[0]["post_count"] == 0


async def test_an_event_that_keeps_failing_is_parked_and_the_next_ones_go_on(
    app: FastAPI,
    client: httpx.AsyncClient,
    consumer: FeedConsumer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    post = await created(await client.post("/posts/", json=_post(STAYING)))
    calls: list[str] = []

    async def failing(session: AsyncSession, event: CloudEvent) -> None:
        calls.append(event.id)
        raise RuntimeError("the handler failed")

    consumer.handlers = {"user.deleted": failing}
    with caplog.at_level(logging.ERROR, "servicekit.events"):
        await consumer._apply_with_retries(START, Position(5, 1), deleted(LEAVING, Position(5, 1)))
    later = deleted(STAYING, Position(5, 2)).model_copy(update={"type": "user.created"})
    await consumer.apply(Position(5, 1), Position(5, 2), later)

    assert calls == ["1"] * consumer.settings.attempts
    assert await consumer.stored_position() == Position(5, 2)  # the next event was applied
    assert consumer.status.details()["parked"] == 1
    assert "parked users event 1 (user.deleted)" in caplog.text
    assert (await client.get(f"/posts/{post['id']}")).status_code == 200  # failing did nothing


async def test_a_parked_event_is_applied_when_tried_again_and_leaves_the_parking(
    app: FastAPI, client: httpx.AsyncClient, consumer: FeedConsumer
) -> None:
    post = await created(await client.post("/posts/", json=_post(LEAVING)))
    handlers = consumer.handlers

    async def failing(session: AsyncSession, event: CloudEvent) -> None:
        raise RuntimeError("the handler failed")

    consumer.handlers = {"user.deleted": failing}
    await consumer._apply_with_retries(START, Position(5, 1), deleted(LEAVING, Position(5, 1)))
    await consumer.retry_parked()
    still_parked = consumer.status.parked
    consumer.handlers = handlers
    await consumer.retry_parked()

    assert still_parked == 1
    assert consumer.status.parked == 0
    assert (await client.get(f"/posts/{post['id']}")).status_code == 404


def _post(author_id: int) -> Json:
    return {"title": "T", "content": "x", "author_id": author_id}


def _comment(author_id: int) -> Json:
    return {"content": "c", "author_id": author_id}


async def _deleted_at(app: FastAPI, author_id: int) -> datetime | None:
    async with database_of(app).reader() as session:
        return await session.scalar(select(Author.deleted_at).where(Author.id == author_id))


async def test_a_page_with_a_failing_event_keeps_nothing_of_the_page(
    app: FastAPI, client: httpx.AsyncClient, consumer: FeedConsumer
) -> None:
    post = await created(await client.post("/posts/", json=_post(LEAVING)))
    handlers = dict(consumer.handlers)

    async def failing(session: AsyncSession, event: CloudEvent) -> None:
        raise RuntimeError("the handler failed")

    consumer.handlers = {**handlers, "user.failing": failing}
    page = [
        (Position(5, 1), deleted(LEAVING, Position(5, 1))),
        (
            Position(5, 2),
            deleted(STAYING, Position(5, 2)).model_copy(update={"type": "user.failing"}),
        ),
    ]

    applied = await consumer._apply_page(START, page)

    assert applied is False
    assert (await client.get(f"/posts/{post['id']}")).status_code == 200
    assert await consumer.stored_position() == START
