"""What users adds to every service's metrics: refused logins, and the events its feed holds."""

import httpx
from fastapi import FastAPI

from servicekit.testing import Scrape, scrape
from users_service.settings import UsersSettings

# The conftest's sign_up fixture gives every user this password.
PASSWORD = "correct horse battery"
FAILURES = "auth_login_failures_total"
THROTTLED = "auth_login_throttled_total"


async def log_in(client: httpx.AsyncClient, email: str, password: str) -> int:
    response = await client.post("/auth/token", data={"username": email, "password": password})
    return response.status_code


def added(before: Scrape, after: Scrape, name: str) -> float:
    return after.value(name) - before.value(name)


async def test_a_wrong_email_or_password_is_counted_as_a_login_failure(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    await anonymous.post(
        "/users/", json={"email": "ada@example.com", "name": "Ada", "password": PASSWORD}
    )
    before = await scrape(client)

    statuses = [
        await log_in(anonymous, "ada@example.com", "wrong password"),
        await log_in(anonymous, "nobody@example.com", PASSWORD),
        await log_in(anonymous, "ada@example.com", PASSWORD),
    ]
    after = await scrape(client)

    assert statuses == [401, 401, 200]
    assert added(before, after, FAILURES) == 2
    assert added(before, after, THROTTLED) == 0


async def test_a_login_the_throttle_refuses_is_counted_as_throttled_not_failed(
    app: FastAPI, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    settings: UsersSettings = app.state.settings
    allowed = settings.login_failures_per_account
    before = await scrape(client)

    statuses = [
        await log_in(anonymous, "ada@example.com", "wrong password") for _ in range(allowed + 2)
    ]
    after = await scrape(client)

    assert statuses == [401] * allowed + [429, 429]
    assert added(before, after, FAILURES) == allowed
    assert added(before, after, THROTTLED) == 2


async def test_the_events_the_feed_holds_are_counted_at_each_scrape(
    client: httpx.AsyncClient,
) -> None:
    empty = await scrape(client)
    for name in ("Ada", "Bob"):
        body = {"email": f"{name.lower()}@example.com", "name": name, "password": PASSWORD}
        assert (await client.post("/users/", json=body)).status_code == 201

    two_created = await scrape(client)

    assert empty.value("events_outbox_events") == 0
    assert "events_outbox_events" in empty.names
    assert two_created.value("events_outbox_events") == 2
