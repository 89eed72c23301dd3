"""What blog does with users' events: a deleted user's posts and comments go, for good.

A background task in each replica follows users' feed (servicekit.events.FeedConsumer): each
event's effect and blog's cursor past it commit together, so each is applied once.
"""

import argparse
import asyncio
import sys
from collections.abc import Sequence

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from blog_service.models import EVENT_CURSORS, PARKED_EVENTS
from blog_service.repository import PostReads
from blog_service.service import post_service
from blog_service.settings import BlogSettings
from servicekit.database import Database
from servicekit.events import CloudEvent, ConsumerSettings, FeedConsumer, Position
from servicekit.metrics import metrics_of
from servicekit.pagination import MAX_LIMIT

USERS_FEED = "users"


async def user_deleted(session: AsyncSession, event: CloudEvent) -> None:
    """Erase what the user wrote, and refuse anything more in their name."""
    await post_service(session).erase_deleted_users([int(event.subject)])


HANDLERS = {"user.deleted": user_deleted}


def users_feed_consumer(app: FastAPI) -> FeedConsumer:
    """The consumer of users' feed for this app's database and settings."""
    return consumer_of(app.state.settings, app.state.database)


def consumer_of(settings: BlogSettings, database: Database) -> FeedConsumer:
    """The consumer of users' feed with these settings, on this database."""
    return FeedConsumer(
        feed=USERS_FEED,
        url=settings.events_url,
        token=settings.events_token.get_secret_value(),
        database=database,
        cursors=EVENT_CURSORS,
        parked=PARKED_EVENTS,
        handlers=HANDLERS,
        settings=ConsumerSettings(
            wait=settings.events_wait,
            attempts=settings.events_attempts,
            parked_retry_interval=settings.events_parked_retry_interval,
        ),
    )


async def follow_users_feed(app: FastAPI) -> None:
    """Follow users' feed for as long as the app serves; its state shows in /health/ready
    and in the metrics."""
    consumer = users_feed_consumer(app)
    app.state.health_details["events"] = consumer.status.details
    metrics_of(app).report_consumer(consumer.feed, consumer.status)
    await consumer.run()


async def resynchronise(settings: BlogSettings, client: httpx.AsyncClient) -> list[int]:
    """Bring blog back in step with users after the feed's retention passed its cursor (410).

    Takes the feed's head, erases what every author users no longer knows wrote (as their
    user.deleted events would have), and moves the cursor to the head; returns the authors
    erased. Deletions published meanwhile come again after the head: erasing twice changes
    nothing. See docs/events.md.
    """
    credential = {"Authorization": f"Bearer {settings.events_token.get_secret_value()}"}
    answer = await client.get(f"{settings.events_url}/head", headers=credential)
    answer.raise_for_status()
    head = Position.parse(answer.json()["cursor"])
    users_url = settings.events_url.removesuffix("/events")
    database = Database.from_settings(settings)
    try:
        known = await PostReads(database).author_ids()
        gone = []
        for start in range(0, len(known), MAX_LIMIT):
            batch = known[start : start + MAX_LIMIT]
            params: list[tuple[str, str | int]] = [("id", i) for i in batch]
            answer = await client.get(f"{users_url}/users/", params=[*params, ("limit", MAX_LIMIT)])
            answer.raise_for_status()
            existing = {user["id"] for user in answer.json()}
            gone += [author_id for author_id in batch if author_id not in existing]
        async with database.transaction() as session:
            if gone:
                await post_service(session).erase_deleted_users(gone)
            await consumer_of(settings, database).move_to(session, head)
    finally:
        await database.dispose()
    return gone


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m blog_service.events",
        description="Resynchronise blog with users' event feed (after a 410: docs/events.md).",
    )
    parser.add_argument("command", choices=["resync"])
    parser.parse_args(argv)

    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await resynchronise(BlogSettings(), client)

    gone = asyncio.run(run())
    print(f"resynchronised: erased the content of {len(gone)} deleted users")
    return 0


if __name__ == "__main__":
    sys.exit(main())
