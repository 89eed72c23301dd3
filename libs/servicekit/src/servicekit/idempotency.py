"""Idempotency keys: a create a client repeats with the same `Idempotency-Key` is applied once.

A gateway's 504 or a broken connection does not mean a request failed: the service may have
committed it and lost only the answer. A client that sends `Idempotency-Key` with a create may
repeat the request with the same key and body until it gets an answer; the first attempt that
commits records its answer in the same transaction, and every later one gets that answer back
(status, body, Location, ETag, and `Idempotent-Replayed: true`) without applying anything. This
follows the IETF draft "The Idempotency-Key HTTP Header Field":

- A key names one request of one caller: it is kept per caller (the token's user; anonymous
  callers share one scope, where the body, a password included, must match to replay), with the
  request's method, path and a digest of its body. The same key with another body, path or
  method is 422, and applies nothing.
- The record is the first row the request's transaction writes, when that transaction begins
  (not when the request arrives: users hashes a password before it touches the database).
  A second request with the key while the first is still running waits for it at that row (a
  unique key), then answers as the first did; if it waits past the statement timeout, 409 with
  Retry-After. An answer is recorded when its transaction commits: a refused request (an error
  raised) rolls back, key and all, and may be repeated with the same key once its cause is
  fixed.
- Keys are kept for the `idempotency_key_retention` setting (24 hours by default); an expired
  key names a new request, and a background task deletes expired keys.

A route takes keys by declaring `dependencies=[IDEMPOTENT]` on a router whose route class is
IdempotentRoute; the app must be built with the table (`create_service_app(idempotency_keys=)`).
"""

import asyncio
import hashlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request, Response
from sqlalchemy import (
    JSON,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    delete,
    select,
    update,
)
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from servicekit.auth import Caller
from servicekit.database import (
    Database,
    SessionDep,
    UTCDateTime,
    insert_with_conflicts,
    utcnow,
)
from servicekit.domain import Conflict, InvalidInput
from servicekit.errors import add_error_responses
from servicekit.inbound import JsonBodyRoute

logger = logging.getLogger("servicekit.idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Visible ASCII without spaces: a UUID, a ULID, or the draft's quoted form ("..."), which is
# compared as sent, quotes included.
KEY_PATTERN = r"^[!-~]+$"
# The headers of an answer that are part of it, kept with its status and body.
RECORDED_HEADERS = ("content-type", "location", "etag")
TABLE = "idempotency_keys"
ANONYMOUS = 0  # the caller id of requests without a token (user ids start at 1)
LONGEST_PRUNE_INTERVAL = 3600.0
_QUERY_CANCELED = "57014"  # Postgres: the statement timeout ended a wait
_CLAIM = "servicekit.idempotency_claim"


def idempotency_keys_table(metadata: MetaData) -> Table:
    """The keys and the first answers to them, in `metadata` (see the module's docstring)."""
    keys = Table(
        TABLE,
        metadata,
        Column("caller_id", Integer, primary_key=True, autoincrement=False),
        Column("key", String(MAX_KEY_LENGTH), primary_key=True),
        # "POST /products/7/stock-adjustments": the route's path with its parameters' values.
        Column("request", String(300), nullable=False),
        Column("body_digest", String(64), nullable=False),  # SHA-256 of the body, in hex
        # The answer, written in the transaction that inserted the row, before it commits.
        Column("status", SmallInteger),
        Column("headers", JSON),
        Column("body", LargeBinary),
        Column("created_at", UTCDateTime, nullable=False),
    )
    Index("ix_idempotency_keys_created_at", keys.c.created_at)  # the pruner's range
    return keys


class Replay(Exception):
    """The answer recorded for a repeated request: sent again, and nothing applied."""

    def __init__(self, status: int, headers: Sequence[Sequence[str]], body: bytes) -> None:
        super().__init__(f"a repeat of a request answered {status}")
        self.status = status
        self.headers = headers
        self.body = body

    def response(self) -> Response:
        headers = {name: value for name, value in self.headers}
        headers[REPLAYED_HEADER] = "true"
        return Response(content=self.body, status_code=self.status, headers=headers)


class KeyInProgress(Conflict):
    """Another request with the key is still running after this one waited for it."""

    def __init__(self) -> None:
        super().__init__(
            f"a request with this {HEADER} is still in progress; repeat it later, with the same key"
        )
        self.retry_after = 1


@dataclass(frozen=True)
class IdempotencyKeys:
    """The table of a service's keys, and how long a key is kept."""

    table: Table
    retention: timedelta

    @property
    def prune_interval(self) -> float:
        return min(LONGEST_PRUNE_INTERVAL, self.retention.total_seconds())

    async def prune(self, database: Database) -> int:
        """Delete the keys older than the retention; how many went."""
        async with database.transaction() as session:
            gone = await session.execute(
                delete(self.table).where(self.table.c.created_at < utcnow() - self.retention)
            )
        count: int = getattr(gone, "rowcount", 0)
        return count

    async def keep_pruned(self, app: FastAPI) -> None:
        """Prune now and then, for as long as the app serves (a background task)."""
        while True:
            try:
                pruned = await self.prune(app.state.database)
                if pruned:
                    logger.info("pruned %d expired idempotency keys", pruned)
            except Exception as exc:
                logger.warning("pruning idempotency keys failed: %s", exc)
            await asyncio.sleep(self.prune_interval)


@dataclass
class Claim:
    """A request's key, to be inserted as the first row its transaction writes."""

    keys: IdempotencyKeys
    session: AsyncSession
    caller_id: int
    key: str
    request: str
    body_digest: str
    claimed: bool = field(default=False)

    def _where(self) -> Any:
        c = self.keys.table.c
        return (c.caller_id == self.caller_id) & (c.key == self.key)

    def take(self, connection: Connection) -> None:
        """Insert the key, or raise what a repeat answers: Replay, 422 or KeyInProgress.

        Runs as the transaction begins (synchronously, on its connection). The insert waits
        for a transaction that inserted the same key and is still running.
        """
        table = self.keys.table
        now = utcnow()
        row = {
            "caller_id": self.caller_id,
            "key": self.key,
            "request": self.request,
            "body_digest": self.body_digest,
            "created_at": now,
        }
        insert = insert_with_conflicts(connection, table).values(row).on_conflict_do_nothing()
        # Twice at most: the second time after the row found expired, or pruned meanwhile.
        for _ in range(2):
            try:
                inserted = connection.execute(insert.returning(table.c.key)).first()
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) == _QUERY_CANCELED:
                    raise KeyInProgress from exc
                raise
            if inserted is not None:
                self.claimed = True
                return
            found = connection.execute(select(table).where(self._where())).first()
            if found is None:
                continue
            if found.created_at < now - self.keys.retention:
                connection.execute(
                    delete(table).where(self._where(), table.c.created_at == found.created_at)
                )
                continue
            self._check_same_request(found.request, found.body_digest)
            if found.status is None:  # never committed so; kept for safety
                raise KeyInProgress
            raise Replay(found.status, found.headers, found.body)
        raise KeyInProgress

    def _check_same_request(self, request: str, body_digest: str) -> None:
        if request != self.request:
            raise InvalidInput.at(
                ("header", HEADER),
                f"this key was used for {request}: a key names one request, so send this one "
                "with a new key",
            )
        if body_digest != self.body_digest:
            raise InvalidInput.at(
                ("header", HEADER),
                "this key was used with another body: repeat that request with the same body, "
                "or send this one with a new key",
            )

    async def record(self, response: Response) -> None:
        """Keep the answer with the key, in the request's transaction: they commit together."""
        if not self.claimed:
            return
        headers = [
            [name, response.headers[name]] for name in RECORDED_HEADERS if name in response.headers
        ]
        await self.session.execute(
            update(self.keys.table)
            .where(self._where())
            .values(status=response.status_code, headers=headers, body=bytes(response.body))
        )


@sqlalchemy_event.listens_for(Session, "after_begin")
def _claim_as_the_transaction_begins(
    session: Session, _transaction: SessionTransaction, connection: Connection
) -> None:
    claim: Claim | None = session.info.get(_CLAIM)
    if claim is not None and not claim.claimed:
        claim.take(connection)


def _request_of(request: Request) -> str:
    """The method and path of the matched route, with the values of its parameters: the same
    for a path sent with or without its trailing slash."""
    route = request.scope["route"]
    return f"{request.method} {route.path_format.format(**request.path_params)}"


async def _idempotency_key(
    request: Request,
    session: SessionDep,
    caller: Caller,
    key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            min_length=1,
            max_length=MAX_KEY_LENGTH,
            pattern=KEY_PATTERN,
            description="A key the client makes unique for this request (a UUID, say). "
            "Repeated with the same key and body, the request is applied once and every "
            "repeat gets the first answer, with `Idempotent-Replayed: true`; the same key with "
            "another body is 422. Kept for 24 hours by default.",
        ),
    ] = None,
) -> None:
    if key is None:
        return
    if len(request.headers.getlist(HEADER)) > 1:
        raise InvalidInput.at(("header", HEADER), f"send one {HEADER}")
    keys: IdempotencyKeys = request.app.state.idempotency_keys
    claim = Claim(
        keys,
        session,
        caller_id=ANONYMOUS if caller is None else caller.user_id,
        key=key,
        request=_request_of(request),
        body_digest=hashlib.sha256(await request.body()).hexdigest(),
    )
    request.scope[_CLAIM] = claim
    if session.in_transaction():  # a dependency has used the session already
        connection = await session.connection()
        await connection.run_sync(claim.take)
    else:
        session.info[_CLAIM] = claim


IDEMPOTENT = Depends(_idempotency_key)
"""A route dependency: the route takes an `Idempotency-Key` (its router's route class must be
IdempotentRoute)."""


class IdempotentRoute(JsonBodyRoute):
    """A JsonBodyRoute that keeps the answer of a request sent with an Idempotency-Key in the
    request's transaction, on the routes that declare IDEMPOTENT; others are served as is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.takes_keys():
            add_error_responses(self, 409)  # KeyInProgress

    def takes_keys(self) -> bool:
        return any(d.call is _idempotency_key for d in self.dependant.dependencies)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not self.takes_keys():
            return handler

        async def recorded(request: Request) -> Response:
            # Inside the session's scope: the record commits with the request, or not at all.
            response = await handler(request)
            claim: Claim | None = request.scope.get(_CLAIM)
            if claim is not None:
                await claim.record(response)
            return response

        return recorded


async def _replay(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Replay)
    return exc.response()


def install_idempotency_keys(app: FastAPI, keys: IdempotencyKeys) -> None:
    """Give the app's keyed routes their table, and answer repeats with their first answer."""
    app.state.idempotency_keys = keys
    app.add_exception_handler(Replay, _replay)
