"""The events users publishes, and the feed that serves them to other services.

Types, each with the user's id as its subject:

- `user.created`: data `{"id", "name", "is_active"}`.
- `user.updated`: the same fields, when the name or the active state changed.
- `user.deleted`: data `{"id"}`; a user's last event.

Each is written to the outbox in the transaction of its change (servicekit.events). Emails and
other private fields stay out of the payloads: consumers need to know who, not how to reach them.
"""

import asyncio
import logging
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.auth import SERVICE_ONLY
from servicekit.database import Database, get_database
from servicekit.errors import error_responses
from servicekit.events import START, CloudEvent, Outbox, parse_cursor
from servicekit.metrics import OUTBOX_COUNT_CAP
from servicekit.pagination import MAX_LIMIT, set_next_link
from users_service.models import OUTBOX_EVENTS, OUTBOX_HORIZON, User
from users_service.settings import UsersSettings

logger = logging.getLogger("users_service.events")

USER_EVENTS = Outbox(OUTBOX_EVENTS, OUTBOX_HORIZON, source="/users")
CREATED, UPDATED, DELETED = "user.created", "user.updated", "user.deleted"
# A user.updated event is published when one of these changed.
PUBLISHED_FIELDS = frozenset({"name", "is_active"})
# At most this many events are counted behind a consumer's page (Events-Remaining).
BACKLOG_COUNT_CAP = 10_000


def _profile(user: User) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "is_active": user.is_active}


class UserEvents:
    """The events of changes made in a session, written in its transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def created(self, user: User) -> None:
        await USER_EVENTS.add(self.session, CREATED, user.id, _profile(user))

    async def updated(self, user: User, changed: set[str]) -> None:
        if changed & PUBLISHED_FIELDS:
            await USER_EVENTS.add(self.session, UPDATED, user.id, _profile(user))

    async def deleted(self, user_id: int) -> None:
        await USER_EVENTS.add(self.session, DELETED, user_id, {"id": user_id})


router = APIRouter(prefix="/events", tags=["events"], dependencies=[SERVICE_ONLY])


class FeedHead(BaseModel):
    cursor: str


def _settings(request: Request) -> UsersSettings:
    settings: UsersSettings = request.app.state.settings
    return settings


@router.get(
    "",
    response_model=list[CloudEvent],
    response_model_exclude_none=True,  # extensions without a value are left out
    responses=error_responses(410),
)
async def read_events(
    request: Request,
    response: Response,
    after: Annotated[
        str | None,
        Query(
            max_length=40,
            pattern=r"^\d{1,19}-\d{1,19}$",
            description="The `position` of the last event applied (or the Link header's "
            "cursor): events after it. Omitted: from the oldest event kept.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = MAX_LIMIT,
    wait: Annotated[
        float,
        Query(ge=0, le=30, description="Seconds to wait for an event when there is none yet."),
    ] = 0,
) -> list[CloudEvent]:
    """Users' events in order, for other services (the service credential; not routed by the
    gateway). CloudEvents in JSON; each has a `position`, the cursor to continue after it.

    Never skips an event: on Postgres it serves only the events of transactions older than the
    oldest still in progress. `Link: rel="next"` continues after the page (after the same
    cursor when the page is empty); `Events-Remaining` counts what the feed holds after it (up
    to 10,000). 410 when events after the cursor were pruned (see the events documentation).
    """
    database = get_database(request)
    position = parse_cursor(after)
    settings = _settings(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    await USER_EVENTS.check_kept(database, position)
    while True:
        events = await USER_EVENTS.read(database, position, limit)
        if events or loop.time() >= deadline:
            break
        # Woken at once by a commit of this process; other replicas' are found by looking again.
        await USER_EVENTS.wait_for_news(min(settings.events_poll_interval, deadline - loop.time()))
    last = parse_cursor(events[-1].position) if events else position
    remaining = await USER_EVENTS.backlog(database, last, BACKLOG_COUNT_CAP)
    response.headers["Events-Remaining"] = str(remaining)
    response.headers["Cache-Control"] = "no-store"
    set_next_link(request, response, last.cursor())
    return events


@router.get("/head", response_model=FeedHead)
async def feed_head(request: Request) -> FeedHead:
    """The cursor after the newest event served: where a consumer that has just
    resynchronised continues from."""
    return FeedHead(cursor=(await USER_EVENTS.head(get_database(request))).cursor())


async def events_held(app: FastAPI) -> int:
    """The events the feed holds now (up to OUTBOX_COUNT_CAP), for the `events_outbox_events`
    metric: what retention keeps, and what a consumer starting afresh would read."""
    return await USER_EVENTS.backlog(app.state.database, START, OUTBOX_COUNT_CAP)


async def prune_events(app: FastAPI) -> None:
    """Delete events older than the retention, now and then, for as long as the app serves."""
    settings: UsersSettings = app.state.settings
    retention = timedelta(seconds=settings.events_retention)
    while True:
        database: Database = app.state.database
        try:
            pruned = await USER_EVENTS.prune(database, retention)
            if pruned:
                logger.info("pruned %d events older than %s", pruned, retention)
        except Exception as exc:
            logger.warning("pruning events failed: %s", exc)
        await asyncio.sleep(settings.events_prune_interval)
