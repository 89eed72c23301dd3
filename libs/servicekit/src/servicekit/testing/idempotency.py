"""Idempotency-Key behaviour every service promises, as tests a service's suite collects with
the other contracts (servicekit.testing.contracts says how). They create at the service's
`create_path`. sent_twice and assert_replayed serve the tests of the other routes that take a key.
"""

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from servicekit.testing import (
    TEST_ADMIN_ID,
    ServiceUnderTest,
    TokenIssuer,
    database_of,
    libpq_url,
    lock_waits,
    poll,
)

KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
# The headers a repeat answers with as the first answer did.
ANSWER_HEADERS = ("Content-Type", "Location", "ETag")


def new_key() -> str:
    return str(uuid.uuid4())


def answer_of(response: httpx.Response) -> tuple[int, bytes, dict[str, str | None]]:
    """What a repeat must answer as the first attempt did: status, body and headers."""
    return (
        response.status_code,
        response.content,
        {name: response.headers.get(name) for name in ANSWER_HEADERS},
    )


async def sent_twice(
    client: httpx.AsyncClient, path: str, body: Any, again: Any = None, *, key: str | None = None
) -> tuple[httpx.Response, httpx.Response]:
    """POST `body` to `path`, then `again` (`body` once more unless given), with one key (a new
    one unless given)."""
    key = key or new_key()
    first = await client.post(path, json=body, headers={KEY: key})
    repeated = await client.post(path, json=body if again is None else again, headers={KEY: key})
    return first, repeated


def assert_replayed(first: httpx.Response, repeated: httpx.Response, status: int = 201) -> None:
    """The first attempt was applied (`status`); the repeat got its answer, marked as replayed."""
    assert first.status_code == status, first.text
    assert answer_of(repeated) == answer_of(first)
    assert (first.headers.get(REPLAYED), repeated.headers.get(REPLAYED)) == (None, "true")


async def _rows(service: ServiceUnderTest, client: httpx.AsyncClient) -> list[dict[str, Any]]:
    listed = await client.get(service.create_path, params={"limit": 100})
    assert listed.status_code == 200, listed.text
    rows: list[dict[str, Any]] = listed.json()
    return rows


async def _create(
    service: ServiceUnderTest,
    client: httpx.AsyncClient,
    n: int,
    key: str,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        service.create_path, json=service.create_body(n), headers={**(headers or {}), KEY: key}
    )


async def test_a_create_repeated_with_its_key_is_applied_once_and_answered_alike(
    service: ServiceUnderTest, client: httpx.AsyncClient
) -> None:
    first, repeated = await sent_twice(client, service.create_path, service.create_body(1))

    assert_replayed(first, repeated)
    assert len(await _rows(service, client)) == 1


async def test_the_path_without_its_trailing_slash_is_the_same_request(
    service: ServiceUnderTest, client: httpx.AsyncClient
) -> None:
    key = new_key()
    first = await _create(service, client, 1, key)

    repeated = await client.post(
        service.create_path.rstrip("/"), json=service.create_body(1), headers={KEY: key}
    )

    assert answer_of(repeated) == answer_of(first)
    assert len(await _rows(service, client)) == 1


async def test_a_key_repeated_with_another_body_is_422_and_applies_nothing(
    service: ServiceUnderTest, client: httpx.AsyncClient
) -> None:
    first, other = await sent_twice(
        client, service.create_path, service.create_body(1), service.create_body(2)
    )

    assert first.status_code == 201, first.text
    assert other.status_code == 422
    [error] = other.json()["detail"]
    assert error["loc"] == ["header", KEY]
    assert "another body" in error["msg"]
    assert len(await _rows(service, client)) == 1


async def test_the_keys_of_two_callers_are_apart(
    service: ServiceUnderTest, client: httpx.AsyncClient, token_issuer: TokenIssuer
) -> None:
    key = new_key()
    one = token_issuer.headers(TEST_ADMIN_ID + 1, admin=True)
    another = token_issuer.headers(TEST_ADMIN_ID + 2, admin=True)

    first = await _create(service, client, 1, key, one)
    # The same key from someone else: their own request, neither refused nor answered with
    # the first caller's answer.
    second = await _create(service, client, 2, key, another)
    first_again = await _create(service, client, 1, key, one)
    second_again = await _create(service, client, 2, key, another)

    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert first.headers["Location"] != second.headers["Location"]
    assert answer_of(first_again) == answer_of(first)
    assert answer_of(second_again) == answer_of(second)
    assert len(await _rows(service, client)) == 2


@pytest.mark.parametrize(
    "key",
    [b"", b"k" * 256, b"two words", b"tab\tinside", "cl\u00e9".encode()],
    ids=["empty", "too-long", "space", "tab", "not-ascii"],
)
async def test_a_malformed_key_is_422_and_applies_nothing(
    service: ServiceUnderTest, client: httpx.AsyncClient, key: bytes
) -> None:
    response = await client.post(
        service.create_path, json=service.create_body(1), headers={KEY.encode(): key}
    )

    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["header", KEY]]
    assert await _rows(service, client) == []


async def test_a_key_sent_twice_is_422_and_applies_nothing(
    service: ServiceUnderTest, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        service.create_path,
        json=service.create_body(1),
        headers=[(KEY, new_key()), (KEY, new_key())],
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["msg"] == f"send one {KEY}"
    assert await _rows(service, client) == []


async def test_requests_with_one_key_at_once_are_applied_once(
    service: ServiceUnderTest, client: httpx.AsyncClient, app: FastAPI
) -> None:
    key = new_key()
    engine = database_of(app).engine
    if engine.dialect.name == "sqlite":
        # One writer at a time: the second begins once the first has committed.
        answers = await asyncio.gather(*(_create(service, client, 1, key) for _ in range(2)))
    else:
        # Both under way at once: the first holds its key and waits for the service's tables,
        # locked here; the second waits for the first's key. Then the tables are let go.
        url = engine.url.render_as_string(hide_password=False)
        tables = ", ".join(
            t.name for t in service.metadata.sorted_tables if t.name != "idempotency_keys"
        )
        async with await psycopg.AsyncConnection.connect(libpq_url(url)) as holder:
            await holder.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
            first = asyncio.ensure_future(_create(service, client, 1, key))
            await asyncio.to_thread(poll, lambda: lock_waits(url), lambda n: n >= 1, 15, "one")
            second = asyncio.ensure_future(_create(service, client, 1, key))
            await asyncio.to_thread(poll, lambda: lock_waits(url), lambda n: n >= 2, 15, "both")
            await holder.rollback()
        answers = [await first, await second]

    assert [answer.status_code for answer in answers] == [201, 201], answers[1].text
    assert answer_of(answers[0]) == answer_of(answers[1])
    assert sorted(answer.headers.get(REPLAYED, "") for answer in answers) == ["", "true"]
    assert len(await _rows(service, client)) == 1


async def _stored_keys(app: FastAPI) -> list[str]:
    table = app.state.idempotency_keys.table
    async with database_of(app).engine.connect() as connection:
        return list((await connection.execute(select(table.c.key))).scalars())


async def _age_keys(app: FastAPI, by: timedelta) -> None:
    """Make every stored key older by `by`, as time passing would."""
    table = app.state.idempotency_keys.table
    async with database_of(app).engine.begin() as connection:
        stored = (await connection.execute(select(table.c.key, table.c.created_at))).all()
        for key, created_at in stored:
            await connection.execute(
                update(table).where(table.c.key == key).values(created_at=created_at - by)
            )


async def test_an_expired_key_names_a_new_request(
    service: ServiceUnderTest, client: httpx.AsyncClient, app: FastAPI
) -> None:
    key = new_key()
    first = await _create(service, client, 1, key)
    await _age_keys(app, app.state.idempotency_keys.retention + timedelta(minutes=1))

    # Refused while the key was kept (another body); now a request of its own.
    second = await _create(service, client, 2, key)
    second_again = await _create(service, client, 2, key)

    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert REPLAYED not in second.headers
    assert answer_of(second_again) == answer_of(second)
    assert len(await _rows(service, client)) == 2


async def test_expired_keys_are_pruned(
    service: ServiceUnderTest, client: httpx.AsyncClient, app: FastAPI
) -> None:
    keys = app.state.idempotency_keys
    for n in (1, 2):
        assert (await _create(service, client, n, new_key())).status_code == 201
    await _age_keys(app, keys.retention + timedelta(minutes=1))
    kept = new_key()
    assert (await _create(service, client, 3, kept)).status_code == 201

    pruned = await keys.prune(database_of(app))

    assert pruned == 2
    assert await _stored_keys(app) == [kept]
    assert len(await _rows(service, client)) == 3


async def test_every_create_documents_the_key(app: FastAPI) -> None:
    creates = [
        (path, operation)
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if method == "post" and "201" in operation["responses"]
    ]

    assert creates
    for path, operation in creates:
        headers = [p["name"] for p in operation.get("parameters", []) if p["in"] == "header"]
        assert KEY in headers, path


# What `import *` collects (servicekit.testing.contracts re-exports it): the tests.
__all__ = [name for name in dict(globals()) if name.startswith("test_")]
