"""Integration events: a transactional outbox, its feed over HTTP, and consumers of the feed.

A service that publishes writes each event to its outbox table in the transaction of the change
it describes, so an event exists if and only if its change committed. It serves the outbox as
an ordered feed (`GET /events?after=<cursor>`); a consumer polls the feed, applies each event
and stores its cursor in its own database in the transaction of the effect, so effects happen
once although an event may be delivered more than once. No broker is involved.

Order and completeness on Postgres: ids drawn from a sequence become visible in commit order,
not in id order, so a feed that served `id > cursor` could pass an id whose transaction had not
committed yet and skip it for good. Each event records the id of its transaction (`txid`), and
the feed serves only events of transactions older than the oldest one still in progress
(`pg_snapshot_xmin`): that set never grows behind the cursor. Events come ordered by (txid, id),
a position the cursor names. On SQLite one writer at a time commits, so ids follow commits and
`txid` is 0.
"""

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, Field
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ColumnElement,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    bindparam,
    cast,
    delete,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from servicekit.database import Database, UTCDateTime, insert_with_conflicts, utcnow
from servicekit.domain import InvalidInput
from servicekit.errors import ServiceError
from servicekit.tracing import consumer_span, current_traceparent

logger = logging.getLogger("servicekit.events")
S = TypeVar("S", bound=Select[Any])

SPEC_VERSION = "1.0"
RETENTION_RECHECK = 2.0  # seconds between looks at a feed that answered 410
MAX_POSITION = 2**63 - 1
_CURSOR = re.compile(r"^(\d{1,19})-(\d{1,19})$")


class Gone(ServiceError):
    """The cursor is older than what the feed still keeps: the consumer must resynchronise."""

    status_code = 410


# ---------------------------------------------------------------------------------------------
# Positions and the wire format


@dataclass(frozen=True, order=True)
class Position:
    """Where an event stands in the feed: its transaction, then its id."""

    txid: int
    id: int

    def cursor(self) -> str:
        return f"{self.txid}-{self.id}"

    @classmethod
    def parse(cls, cursor: str) -> "Position":
        """The position a cursor names; 422 if it is not one the feed gave."""
        match = _CURSOR.match(cursor)
        if match is None or max(int(match[1]), int(match[2])) > MAX_POSITION:
            raise InvalidInput.at(
                ("query", "after"), "invalid cursor: use one from the feed's Link header"
            )
        return cls(int(match[1]), int(match[2]))


# Before every event: transaction ids and event ids start at 1 (SQLite's txid is 0).
START = Position(0, 0)


class CloudEvent(BaseModel):
    """An event as the feed serves it: CloudEvents 1.0 in its JSON format."""

    specversion: str = SPEC_VERSION
    id: str = Field(description="Unique within the source: the event's id in its outbox.")
    source: str = Field(description="The service that published it, e.g. `/users`.")
    type: str = Field(description="What happened, e.g. `user.deleted`.")
    subject: str = Field(description="The id of the resource it happened to.")
    time: datetime = Field(description="When the change was made.")
    datacontenttype: str = "application/json"
    data: dict[str, Any]
    position: str = Field(
        description="Extension: the event's place in the feed, a cursor to continue after it."
    )
    traceparent: str | None = Field(
        default=None,
        description="Extension (CloudEvents distributed tracing): the W3C trace context of "
        "the change that produced the event, when that change was traced.",
    )


# ---------------------------------------------------------------------------------------------
# Publishing: the outbox


def outbox_tables(metadata: MetaData) -> tuple[Table, Table]:
    """The outbox (the events) and its horizon (the newest position pruned) in `metadata`."""
    events = Table(
        "outbox_events",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("txid", BigInteger, nullable=False),
        Column("type", String(100), nullable=False),
        Column("subject", String(100), nullable=False),
        Column("data", JSON, nullable=False),
        Column("time", UTCDateTime, nullable=False),
        Column("traceparent", String(55)),
        # Ids are never reused, even once the newest events are pruned (SQLite would reuse).
        sqlite_autoincrement=True,
    )
    # The feed reads in this order, from this index.
    Index("ix_outbox_events_txid_id", events.c.txid, events.c.id)
    horizon = Table(
        "outbox_horizon",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("txid", BigInteger, nullable=False),
        Column("event_id", BigInteger, nullable=False),
    )
    return events, horizon


def _current_txid(dialect: str) -> ColumnElement[int]:
    if dialect == "postgresql":
        return cast(cast(func.pg_current_xact_id(), Text), BigInteger)
    return literal(0, BigInteger)


def _served(statement: S, txid: ColumnElement[int], dialect: str) -> S:
    """`statement` limited to the events the feed serves: on Postgres, those of transactions
    older than the oldest one still running (every committed event elsewhere)."""
    if dialect != "postgresql":
        return statement
    oldest_running = func.pg_snapshot_xmin(func.pg_current_snapshot())
    return statement.where(txid < cast(cast(oldest_running, Text), BigInteger))


class Outbox:
    """Events of one source, written in the transaction of a change and read as a feed."""

    def __init__(self, events: Table, horizon: Table, source: str) -> None:
        self.events = events
        self.horizon = horizon
        self.source = source
        c = events.c
        self._columns = (c.id, c.txid, c.type, c.subject, c.data, c.time, c.traceparent)
        self._published = asyncio.Event()

    def published(self) -> None:
        """Wake the feed requests of this process waiting for events (a commit wrote some)."""
        published, self._published = self._published, asyncio.Event()
        published.set()

    async def wait_for_news(self, seconds: float) -> None:
        """Return once this process commits an event, or after `seconds`.

        Events committed by other processes (replicas) are found by looking again after the
        timeout, which the feed keeps short.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._published.wait(), seconds)

    async def add(
        self, session: AsyncSession, type_: str, subject: object, data: Mapping[str, Any]
    ) -> None:
        """Record an event in the session's transaction: it exists if and only if that commits."""
        dialect = session.get_bind().dialect.name
        session.info.setdefault(_OUTBOXES_WRITTEN, set()).add(self)
        values: dict[str, Any] = {
            "txid": _current_txid(dialect),
            "type": type_,
            "subject": str(subject),
            "data": dict(data),
            "time": utcnow(),
        }
        # Named only when there is one: an untraced process writes the same statement as
        # before the column existed, so it still runs on a schema from before it.
        if (traceparent := current_traceparent()) is not None:
            values["traceparent"] = traceparent
        await session.execute(self.events.insert().values(values))

    def _feed(self, dialect: str) -> Any:
        c = self.events.c
        statement = select(*self._columns).where(
            tuple_(c.txid, c.id) > tuple_(bindparam("after_txid"), bindparam("after_id"))
        )
        return (
            _served(statement, c.txid, dialect)
            .order_by(c.txid, c.id)
            .limit(bindparam("feed_limit"))
        )

    async def check_kept(self, database: Database, after: Position) -> None:
        """410 if events after `after` were pruned: the feed can no longer continue from it."""
        horizon = await self.pruned_up_to(database)
        if horizon is not None and after < horizon:
            raise Gone(
                "events after this cursor are no longer kept: resynchronise the consumer "
                "(see the events documentation) and continue from the feed's head"
            )

    async def read(self, database: Database, after: Position, limit: int) -> list[CloudEvent]:
        """Up to `limit` events after `after`, in feed order (see `check_kept`)."""
        rows = await database.fetch(
            self._feed(database.engine.dialect.name),
            {"after_txid": after.txid, "after_id": after.id, "feed_limit": limit},
        )
        return [self._event(row) for row in rows]

    def _event(self, row: Mapping[str, Any]) -> CloudEvent:
        return CloudEvent(
            id=str(row["id"]),
            source=self.source,
            type=row["type"],
            subject=row["subject"],
            time=row["time"],
            data=row["data"],
            position=Position(row["txid"], row["id"]).cursor(),
            traceparent=row["traceparent"],
        )

    async def head(self, database: Database) -> Position:
        """The position of the newest event served (or pruned): the feed continues after it."""
        c = self.events.c
        statement = select(c.txid, c.id).order_by(c.txid.desc(), c.id.desc()).limit(1)
        row = await database.fetch_one(_served(statement, c.txid, database.engine.dialect.name))
        newest = None if row is None else Position(row["txid"], row["id"])
        pruned = await self.pruned_up_to(database)
        candidates = [p for p in (newest, pruned) if p is not None]
        return max(candidates, default=START)

    async def backlog(self, database: Database, after: Position, cap: int) -> int:
        """How many events the feed holds after `after`, counting up to `cap`."""
        c = self.events.c
        ahead = _served(
            select(c.id).where(tuple_(c.txid, c.id) > (after.txid, after.id)),
            c.txid,
            database.engine.dialect.name,
        )
        counted = select(func.count().label("n")).select_from(ahead.limit(cap).subquery())
        row = await database.fetch_one(counted)
        return 0 if row is None else int(row["n"])

    async def pruned_up_to(self, database: Database) -> Position | None:
        h = self.horizon.c
        row = await database.fetch_one(select(h.txid, h.event_id).where(h.id == 1))
        return None if row is None else Position(row["txid"], row["event_id"])

    async def prune(self, database: Database, older_than: timedelta) -> int:
        """Delete the events older than `older_than` (that the feed has served) and move the
        horizon past them; how many went."""
        c, h = self.events.c, self.horizon.c
        dialect = database.engine.dialect.name
        async with database.transaction() as session:
            old = _served(
                select(c.txid, c.id).where(c.time < utcnow() - older_than), c.txid, dialect
            )
            newest_old = (
                await session.execute(old.order_by(c.txid.desc(), c.id.desc()).limit(1))
            ).one_or_none()
            if newest_old is None:
                return 0
            up_to = Position(newest_old.txid, newest_old.id)
            gone = await session.execute(
                delete(self.events).where(tuple_(c.txid, c.id) <= (up_to.txid, up_to.id))
            )
            insert = insert_with_conflicts(session, self.horizon).values(
                id=1, txid=up_to.txid, event_id=up_to.id
            )
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=[h.id], set_={"txid": up_to.txid, "event_id": up_to.id}
                )
            )
            count: int = getattr(gone, "rowcount", 0)
            return count


_OUTBOXES_WRITTEN = "servicekit_outboxes_written"


@sqlalchemy_event.listens_for(Session, "after_commit")
def _wake_feeds(session: Session) -> None:
    for outbox in session.info.pop(_OUTBOXES_WRITTEN, ()):
        outbox.published()


@sqlalchemy_event.listens_for(Session, "after_rollback")
def _forget_unpublished(session: Session) -> None:
    session.info.pop(_OUTBOXES_WRITTEN, None)


# ---------------------------------------------------------------------------------------------
# Consuming


Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]


def consumer_tables(metadata: MetaData) -> tuple[Table, Table]:
    """A consumer's cursor (one row per feed) and its parked events, in `metadata`."""
    cursors = Table(
        "event_cursors",
        metadata,
        Column("feed", String(100), primary_key=True),
        Column("position", String(40), nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
    )
    parked = Table(
        "parked_events",
        metadata,
        Column("feed", String(100), primary_key=True),
        Column("event_id", String(40), primary_key=True),
        Column("event", JSON, nullable=False),
        Column("error", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("parked_at", UTCDateTime, nullable=False),
    )
    return cursors, parked


class Superseded(Exception):
    """Another replica moved the cursor since this one read it: start again from the stored one."""


class BehindRetention(Exception):
    """The feed no longer keeps the events after the stored cursor (410)."""


@dataclass
class ConsumerStatus:
    """What a consumer reports in its service's readiness details and logs."""

    state: str = "starting"
    position: str | None = None
    events_behind: int = 0
    seconds_behind: float = 0.0
    applied: int = 0
    parked: int = 0
    last_error: str | None = None

    def details(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "cursor": self.position,
            "events_behind": self.events_behind,
            "seconds_behind": round(self.seconds_behind, 3),
            "applied": self.applied,
            "parked": self.parked,
            "last_error": self.last_error,
        }


@dataclass
class ConsumerSettings:
    """How a consumer polls and retries (seconds unless said otherwise)."""

    wait: float = 20.0  # the feed's long poll
    batch: int = 100  # events per request
    attempts: int = 5  # before an event is parked
    first_backoff: float = 0.1
    max_backoff: float = 10.0
    parked_retry_interval: float = 60.0


@dataclass
class FeedConsumer:
    """Applies the events of one feed to a service's database, each exactly once.

    Each event's effect and the cursor past it commit in one transaction, after the stored
    cursor is locked and found where this replica read it: replicas that read the same page
    apply each event once between them (the later ones find the cursor moved and start again
    from it). An event whose handler keeps failing is parked after `attempts` tries (kept in
    `parked_events` with its error, and tried again every `parked_retry_interval`) so that the
    events after it are not held up.
    """

    feed: str
    url: str
    token: str
    database: Database
    cursors: Table
    parked: Table
    handlers: Mapping[str, Handler]
    settings: ConsumerSettings = field(default_factory=ConsumerSettings)
    status: ConsumerStatus = field(default_factory=ConsumerStatus)
    _last_parked_retry: float = 0.0

    async def run(self) -> None:
        """Follow the feed until cancelled; failures of the feed or the database are retried."""
        backoff = self.settings.first_backoff
        timeout = httpx.Timeout(5.0, read=self.settings.wait + 10)
        async with httpx.AsyncClient(timeout=timeout) as client:
            while True:
                try:
                    await self.poll(client)
                    backoff = self.settings.first_backoff
                except asyncio.CancelledError:
                    raise
                except BehindRetention:
                    if self.status.state != "behind retention":
                        logger.error(
                            "the %s feed no longer keeps the events after cursor %s: "
                            "resynchronise (docs/events.md)",
                            self.feed,
                            self.status.position,
                        )
                    self.status.state = "behind retention"
                    # Looks again soon: a resynchronisation moves the stored cursor.
                    await asyncio.sleep(RETENTION_RECHECK)
                except Exception as exc:
                    self.status.state = "retrying"
                    self.status.last_error = _describe(exc)
                    logger.warning("consuming the %s feed failed: %s", self.feed, _describe(exc))
                    await asyncio.sleep(_jittered(backoff))
                    backoff = min(backoff * 2, self.settings.max_backoff)

    async def poll(self, client: httpx.AsyncClient, *, wait: float | None = None) -> int:
        """Read one page of the feed after the stored cursor and apply it; events applied."""
        if time.monotonic() - self._last_parked_retry >= self.settings.parked_retry_interval:
            await self.retry_parked()
        position = await self.stored_position()
        page = await self._fetch(client, position, self.settings.wait if wait is None else wait)
        self.status.state = "following"
        self.status.last_error = None
        self.status.position = position.cursor()
        if page:
            self.status.seconds_behind = max(0.0, (utcnow() - page[0][1].time).total_seconds())
        applied = 0
        try:
            if page and await self._apply_page(position, page):
                applied = len(page)
                self.status.position = page[-1][0].cursor()
            else:  # one at a time, so that a failing event is retried and parked on its own
                for event_position, event in page:
                    await self._apply_with_retries(position, event_position, event)
                    position = event_position
                    self.status.position = position.cursor()
                    applied += 1
        except Superseded:
            logger.info("another replica moved the %s cursor; continuing from it", self.feed)
        self.status.applied += applied
        if applied == len(page) < self.settings.batch:
            self.status.seconds_behind = 0.0  # caught up with what the feed serves
        return applied

    async def _fetch(
        self, client: httpx.AsyncClient, after: Position, wait: float
    ) -> list[tuple[Position, CloudEvent]]:
        params: dict[str, Any] = {"limit": self.settings.batch, "wait": wait}
        if after != START:
            params["after"] = after.cursor()
        answer = await client.get(
            self.url, params=params, headers={"Authorization": f"Bearer {self.token}"}
        )
        if answer.status_code == 410:
            raise BehindRetention
        answer.raise_for_status()
        self.status.events_behind = int(answer.headers.get("Events-Remaining", "0"))
        events = [CloudEvent.model_validate(item) for item in answer.json()]
        return [(Position.parse(event.position), event) for event in events]

    async def _handle(self, session: AsyncSession, event: CloudEvent) -> None:
        handler = self.handlers.get(event.type)
        if handler is not None:  # types this consumer does not need only move the cursor
            await handler(session, event)

    async def _apply_page(
        self, expected: Position, page: list[tuple[Position, CloudEvent]]
    ) -> bool:
        """Apply a whole page and move the cursor past it in one transaction; False (and
        nothing applied) if an event failed."""
        try:
            with consumer_span(
                f"{self.feed} process", [event.traceparent for _position, event in page]
            ):
                async with self.database.transaction() as session:
                    await self._claim(session, expected)
                    for _position, event in page:
                        await self._handle(session, event)
                    await self._advance(session, page[-1][0])
        except Superseded:
            raise
        except Exception as exc:
            logger.info("a page of the %s feed failed (%s); one event at a time", self.feed, exc)
            return False
        return True

    async def _apply_with_retries(
        self, expected: Position, position: Position, event: CloudEvent
    ) -> None:
        backoff = self.settings.first_backoff
        for attempt in range(1, self.settings.attempts + 1):
            try:
                await self.apply(expected, position, event)
                return
            except Superseded:
                raise
            except Exception as exc:
                error = _describe(exc)
                self.status.last_error = error
                logger.warning(
                    "applying %s event %s (%s) failed, attempt %d of %d: %s",
                    self.feed, event.id, event.type, attempt, self.settings.attempts, error,
                )  # fmt: skip
                if attempt == self.settings.attempts:
                    await self.park(expected, position, event, error, attempt)
                    return
                await asyncio.sleep(_jittered(backoff))
                backoff = min(backoff * 2, self.settings.max_backoff)

    async def apply(self, expected: Position, position: Position, event: CloudEvent) -> None:
        """Apply one event and move the cursor past it, in one transaction."""
        with consumer_span(f"{self.feed} process", [event.traceparent]):
            async with self.database.transaction() as session:
                await self._claim(session, expected)
                await self._handle(session, event)
                await self._advance(session, position)

    async def park(
        self, expected: Position, position: Position, event: CloudEvent, error: str, attempts: int
    ) -> None:
        """Keep an event that keeps failing, and move the cursor past it."""
        async with self.database.transaction() as session:
            await self._claim(session, expected)
            await session.execute(
                insert_with_conflicts(session, self.parked)
                .values(
                    feed=self.feed,
                    event_id=event.id,
                    event=event.model_dump(mode="json"),
                    error=error,
                    attempts=attempts,
                    parked_at=utcnow(),
                )
                .on_conflict_do_nothing()
            )
            await self._advance(session, position)
        self.status.parked += 1
        logger.error(
            "parked %s event %s (%s) after %d attempts: %s",
            self.feed, event.id, event.type, attempts, error,
        )  # fmt: skip

    async def retry_parked(self) -> None:
        """Try each parked event again; those that now apply leave the parking."""
        self._last_parked_retry = time.monotonic()
        p = self.parked.c
        rows = await self.database.fetch(
            select(p.event_id, p.event).where(p.feed == bindparam("feed")), {"feed": self.feed}
        )
        still = 0
        for row in rows:
            event = CloudEvent.model_validate(row["event"])
            try:
                async with self.database.transaction() as session:
                    await self._handle(session, event)
                    await session.execute(
                        delete(self.parked).where(p.feed == self.feed, p.event_id == event.id)
                    )
                logger.info("parked %s event %s applied", self.feed, event.id)
            except Exception as exc:
                still += 1
                await self._note_parked_failure(event.id, _describe(exc))
        self.status.parked = still

    async def _note_parked_failure(self, event_id: str, error: str) -> None:
        p = self.parked.c
        async with self.database.transaction() as session:
            await session.execute(
                update(self.parked)
                .where(p.feed == self.feed, p.event_id == event_id)
                .values(error=error, attempts=p.attempts + 1)
            )

    async def stored_position(self) -> Position:
        c = self.cursors.c
        row = await self.database.fetch_one(
            select(c.position).where(c.feed == bindparam("feed")), {"feed": self.feed}
        )
        return START if row is None else Position.parse(row["position"])

    async def _claim(self, session: AsyncSession, expected: Position) -> None:
        """Lock the stored cursor; Superseded unless it is still at `expected`."""
        c = self.cursors.c
        await session.execute(
            insert_with_conflicts(session, self.cursors)
            .values(feed=self.feed, position=START.cursor(), updated_at=utcnow())
            .on_conflict_do_nothing()
        )
        stored = await session.scalar(
            select(c.position).where(c.feed == self.feed).with_for_update()
        )
        if stored is None or Position.parse(stored) != expected:
            raise Superseded

    async def move_to(self, session: AsyncSession, position: Position) -> None:
        """Set the stored cursor, in the session's transaction (a resynchronisation)."""
        await session.execute(
            insert_with_conflicts(session, self.cursors)
            .values(feed=self.feed, position=position.cursor(), updated_at=utcnow())
            .on_conflict_do_update(
                index_elements=["feed"],
                set_={"position": position.cursor(), "updated_at": utcnow()},
            )
        )

    async def _advance(self, session: AsyncSession, position: Position) -> None:
        c = self.cursors.c
        await session.execute(
            update(self.cursors)
            .where(c.feed == self.feed)
            .values(position=position.cursor(), updated_at=utcnow())
        )


def _jittered(seconds: float) -> float:
    # Replicas that failed together do not retry together.
    return seconds * random.uniform(0.5, 1.0)  # noqa: S311 - not for secrets


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def parse_cursor(value: str | None) -> Position:
    """The position an `after` parameter names; the start when none is given."""
    return START if value is None else Position.parse(value)
