"""Idempotency keys in an app of their own: where the key is taken, and how long a repeat waits.

The services' suites check the behaviour of their creates (servicekit.testing.idempotency);
these check what no service route shows: a route whose session is in use before the key is
taken, and a repeat that waits for a first attempt past the statement timeout.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel
from sqlalchemy import Column, Integer, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from servicekit.app import create_service_app
from servicekit.auth import PUBLIC
from servicekit.database import ServiceSettings, SessionDep, make_metadata
from servicekit.idempotency import IDEMPOTENT, IdempotentRoute, idempotency_keys_table
from servicekit.testing import TokenIssuer, asgi_client, database_of, running
from servicekit.testing.idempotency import KEY, REPLAYED, answer_of, new_key
from servicekit.testing.plugin import BACKENDS, MakeDatabase

metadata = make_metadata()
notes = Table(
    "notes", metadata, Column("id", Integer, primary_key=True), Column("text", String(100))
)
KEYS = idempotency_keys_table(metadata)
router = APIRouter(prefix="/notes", route_class=IdempotentRoute)


class Note(BaseModel):
    text: str


async def _count_notes_first(session: SessionDep) -> None:
    await session.execute(select(func.count()).select_from(notes))


async def _add(session: SessionDep, note: Note) -> dict[str, int]:
    result = await session.execute(insert(notes).values(text=note.text).returning(notes.c.id))
    return {"id": result.scalar_one()}


@router.post("/", dependencies=[PUBLIC, IDEMPOTENT], status_code=201)
async def add_note(note: Note, session: SessionDep, request: Request) -> dict[str, int]:
    added = await _add(session, note)
    held: asyncio.Event | None = getattr(request.app.state, "held", None)
    if held is not None:  # the key and the note are written; the transaction stays open
        request.app.state.holding.set()
        await held.wait()
    return added


@router.post(
    "/counted",
    dependencies=[PUBLIC, Depends(_count_notes_first), IDEMPOTENT],
    status_code=201,
)
async def add_counted_note(note: Note, session: SessionDep) -> dict[str, int]:
    return await _add(session, note)


async def _notes(app: FastAPI) -> int:
    async with database_of(app).engine.connect() as connection:
        counted: int = (
            await connection.execute(select(func.count()).select_from(notes))
        ).scalar_one()
    return counted


NotesApp = Callable[..., AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]]


@pytest.fixture
def notes_app(make_database: MakeDatabase, token_issuer: TokenIssuer) -> NotesApp:
    """Runs an app of the notes router on a fresh database of a backend, with settings."""

    @asynccontextmanager
    async def notes_app(
        backend: str, **settings: object
    ) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        url = make_database(backend, "idempotency")
        app = create_service_app(
            name="notes",
            version="0",
            settings=ServiceSettings.model_validate(
                {"database_url": url, "auth_jwks_url": token_issuer.jwks_url, **settings}
            ),
            routers=[router],
            idempotency_keys=KEYS,
        )
        # The tables first: the app prunes keys as soon as it starts.
        engine = create_async_engine(url)
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        await engine.dispose()
        async with running(app), asgi_client(app) as client:
            yield app, client

    return notes_app


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_key_is_taken_when_a_dependency_used_the_session_first(
    notes_app: NotesApp, backend: str
) -> None:
    key = new_key()
    async with notes_app(backend) as (app, client):
        first = await client.post("/notes/counted", json={"text": "one"}, headers={KEY: key})
        repeated = await client.post("/notes/counted", json={"text": "one"}, headers={KEY: key})
        stored = await _notes(app)

    assert first.status_code == 201, first.text
    assert answer_of(repeated) == answer_of(first)
    assert repeated.headers[REPLAYED] == "true"
    assert stored == 1


async def test_a_repeat_that_waits_past_the_statement_timeout_is_409_and_may_come_again(
    notes_app: NotesApp,
) -> None:
    key = new_key()
    async with notes_app("postgresql", statement_timeout_ms=300) as (app, client):
        app.state.held, app.state.holding = asyncio.Event(), asyncio.Event()
        first = asyncio.ensure_future(
            client.post("/notes/", json={"text": "one"}, headers={KEY: key})
        )
        await app.state.holding.wait()
        waited = await client.post("/notes/", json={"text": "one"}, headers={KEY: key})
        app.state.held.set()
        answered = await first
        del app.state.held
        again = await client.post("/notes/", json={"text": "one"}, headers={KEY: key})
        stored = await _notes(app)

    assert waited.status_code == 409
    assert waited.json() == {
        "detail": f"a request with this {KEY} is still in progress; repeat it later, with the "
        "same key"
    }
    assert waited.headers["Retry-After"] == "1"
    assert answered.status_code == 201, answered.text
    assert answer_of(again) == answer_of(answered)
    assert stored == 1
