"""Idempotency-Keys of sign-ups: a sign-up whose answer was lost may be sent again."""

import httpx

from servicekit.testing.idempotency import (
    KEY,
    REPLAYED,
    assert_replayed,
    new_key,
    sent_twice,
)

ADA = {"email": "ada@example.com", "name": "Ada", "password": "correct horse battery"}


async def test_an_anonymous_sign_up_repeated_with_its_key_makes_one_user(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    first, repeated = await sent_twice(anonymous, "/users/", ADA)

    assert_replayed(first, repeated)
    assert [user["email"] for user in (await client.get("/users/")).json()] == [ADA["email"]]


async def test_a_refused_sign_up_keeps_no_key_and_may_be_sent_again(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    key = new_key()
    taken = await client.post("/users/", json=ADA)
    refused = await anonymous.post("/users/", json=ADA, headers={KEY: key})
    assert (await client.delete(taken.headers["Location"])).status_code == 204

    again = await anonymous.post("/users/", json=ADA, headers={KEY: key})

    assert refused.status_code == 409
    assert again.status_code == 201, again.text
    assert REPLAYED not in again.headers
