"""The outbox and the event feed: an event for each committed change, in order, never skipped."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from servicekit.database import Database
from servicekit.events import START, Position
from servicekit.testing import TEST_EVENTS_TOKEN, asgi_client, database_of, migrate
from servicekit.testing.plugin import MakeDatabase
from users_service.events import USER_EVENTS
from users_service.settings import UsersSettings

SignUp = Callable[[httpx.AsyncClient, str], Awaitable[dict[str, Any]]]
PASSWORD = "correct horse battery"
SERVICE = {"Authorization": f"Bearer {TEST_EVENTS_TOKEN}"}
ALEMBIC_INI = Path(__file__).parents[1] / "alembic.ini"


@pytest.fixture
async def feed(client: httpx.AsyncClient, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same app presenting the service credential."""
    async with asgi_client(app, headers=SERVICE) as feed:
        yield feed


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(event["type"], event["subject"], event["data"]) for event in events]


async def test_each_change_publishes_its_event_in_order(
    sign_up: SignUp, client: httpx.AsyncClient, feed: httpx.AsyncClient
) -> None:
    ada = await sign_up(client, "Ada")
    await client.patch(f"/users/{ada['id']}", json={"name": "Ada L."})
    await client.patch(f"/users/{ada['id']}", json={"is_active": False})
    await client.delete(f"/users/{ada['id']}")

    response = await feed.get("/events")

    assert response.status_code == 200
    subject = str(ada["id"])
    assert summary(response.json()) == [
        ("user.created", subject, {"id": ada["id"], "name": "Ada", "is_active": True}),
        ("user.updated", subject, {"id": ada["id"], "name": "Ada L.", "is_active": True}),
        ("user.updated", subject, {"id": ada["id"], "name": "Ada L.", "is_active": False}),
        ("user.deleted", subject, {"id": ada["id"]}),
    ]


async def test_events_are_cloudevents_with_a_position_to_continue_from(
    sign_up: SignUp, client: httpx.AsyncClient, feed: httpx.AsyncClient
) -> None:
    await sign_up(client, "Ada")

    (event,) = (await feed.get("/events")).json()

    assert event.keys() == {
        "specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data",
        "position",
    }  # fmt: skip
    assert (event["specversion"], event["source"], event["datacontenttype"]) == (
        "1.0",
        "/users",
        "application/json",
    )
    assert Position.parse(event["position"]).id == int(event["id"])


async def test_changes_that_do_not_concern_other_services_publish_nothing(
    sign_up: SignUp, client: httpx.AsyncClient, feed: httpx.AsyncClient
) -> None:
    ada = await sign_up(client, "Ada")
    await client.patch(f"/users/{ada['id']}", json={"email": "ada@example.org"})
    await client.patch(f"/users/{ada['id']}", json={"name": "Ada"})  # unchanged

    assert [event["type"] for event in (await feed.get("/events")).json()] == ["user.created"]


async def test_a_change_that_fails_publishes_nothing(
    sign_up: SignUp, client: httpx.AsyncClient, feed: httpx.AsyncClient
) -> None:
    ada = await sign_up(client, "Ada")
    duplicate = {"email": "ADA@example.com", "name": "Twin", "password": PASSWORD}

    assert (await client.post("/users/", json=duplicate)).status_code == 409
    stale = await client.delete(f"/users/{ada['id']}", headers={"If-Match": '"9"'})
    assert stale.status_code == 412
    assert [event["type"] for event in (await feed.get("/events")).json()] == ["user.created"]


async def test_the_feed_pages_by_cursor_and_an_empty_page_keeps_it(
    sign_up: SignUp, client: httpx.AsyncClient, feed: httpx.AsyncClient
) -> None:
    for name in ("Ada", "Bob", "Cy"):
        await sign_up(client, name)

    first = await feed.get("/events", params={"limit": 2})
    second = await feed.get(first.links["next"]["url"])
    third = await feed.get(second.links["next"]["url"])

    assert [e["data"]["name"] for e in first.json() + second.json()] == ["Ada", "Bob", "Cy"]
    assert (first.headers["Events-Remaining"], second.headers["Events-Remaining"]) == ("1", "0")
    assert third.json() == []
    assert third.links["next"]["url"] == second.links["next"]["url"]
    after = second.json()[-1]["position"]
    assert (await feed.get("/events", params={"after": after})).json() == []


async def test_a_long_poll_answers_with_the_event_committed_while_it_waits(
    sign_up: SignUp, client: httpx.AsyncClient, feed: httpx.AsyncClient
) -> None:
    waiting = asyncio.ensure_future(feed.get("/events", params={"wait": 10}))
    await sign_up(client, "Ada")

    response = await waiting

    assert summary(response.json())[0][0] == "user.created"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-token"}, {"Authorization": "Basic eDp5"}],
    ids=["anonymous", "wrong credential", "another scheme"],
)
async def test_the_feed_needs_the_service_credential(
    sign_up: SignUp, app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    await sign_up(client, "Ada")
    async with asgi_client(app, headers=headers) as caller:
        response = await caller.get("/events")

    assert response.status_code == 401
    assert "Ada" not in response.text


async def test_an_admins_token_does_not_open_the_feed(client: httpx.AsyncClient) -> None:
    assert (await client.get("/events")).status_code == 401


@pytest.mark.parametrize("after", ["1", "1-", "-1-2", "x-1", "1-99999999999999999999", "9" * 41])
async def test_a_cursor_the_feed_did_not_give_is_422(feed: httpx.AsyncClient, after: str) -> None:
    assert (await feed.get("/events", params={"after": after})).status_code == 422


async def test_a_cursor_behind_retention_is_410_and_the_head_is_where_to_continue(
    sign_up: SignUp, client: httpx.AsyncClient, feed: httpx.AsyncClient, app: FastAPI
) -> None:
    await sign_up(client, "Ada")
    await sign_up(client, "Bob")
    first_event = (await feed.get("/events", params={"limit": 1})).json()[0]
    await USER_EVENTS.prune(database_of(app), timedelta(0))
    await sign_up(client, "Cy")

    behind = await feed.get("/events", params={"after": first_event["position"]})
    from_start = await feed.get("/events")
    head = (await feed.get("/events/head")).json()["cursor"]
    resumed = await feed.get("/events", params={"after": head})

    assert behind.status_code == from_start.status_code == 410
    assert "resynchronise" in behind.json()["detail"]
    assert resumed.json() == []
    assert Position.parse(head) > Position.parse(first_event["position"])


async def test_the_head_of_an_empty_feed_is_its_start(feed: httpx.AsyncClient) -> None:
    assert (await feed.get("/events/head")).json() == {"cursor": START.cursor()}


async def test_pruning_keeps_the_events_within_the_retention(
    sign_up: SignUp, client: httpx.AsyncClient, feed: httpx.AsyncClient, app: FastAPI
) -> None:
    await sign_up(client, "Ada")

    pruned = await USER_EVENTS.prune(database_of(app), timedelta(hours=1))

    assert pruned == 0
    assert len((await feed.get("/events")).json()) == 1


async def test_events_of_transactions_committing_out_of_order_are_all_served(
    make_database: MakeDatabase,
) -> None:
    """The later transaction commits first; a reader in between must not move past the earlier
    one's event, and gets both once it commits."""
    url = make_database("postgresql", "users_feed_order")
    await migrate(ALEMBIC_INI, url)
    database = Database.from_settings(UsersSettings(database_url=url))
    try:
        async with database.transaction() as earlier:
            await USER_EVENTS.add(earlier, "user.created", 1, {"id": 1})
            async with database.transaction() as later:
                await USER_EVENTS.add(later, "user.created", 2, {"id": 2})
            while_earlier_runs = await USER_EVENTS.read(database, START, 100)
        after_both = await USER_EVENTS.read(database, START, 100)
    finally:
        await database.dispose()

    assert while_earlier_runs == []
    assert [event.subject for event in after_both] == ["1", "2"]
    ids = [int(event.id) for event in after_both]
    assert ids == sorted(ids)
