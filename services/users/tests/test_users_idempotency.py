"""Idempotency-Keys of sign-ups: a sign-up whose answer was lost may be sent again."""

import httpx

from servicekit.testing.idempotency import (
    KEY,
    REPLAYED,
    answer_of,
    new_key,
    test_a_create_repeated_with_its_key_is_applied_once_and_answered_alike,
    test_a_key_repeated_with_another_body_is_422_and_applies_nothing,
    test_a_key_sent_twice_is_422_and_applies_nothing,
    test_a_malformed_key_is_422_and_applies_nothing,
    test_an_expired_key_names_a_new_request,
    test_every_create_documents_the_key,
    test_expired_keys_are_pruned,
    test_requests_with_one_key_at_once_are_applied_once,
    test_the_keys_of_two_callers_are_apart,
    test_the_path_without_its_trailing_slash_is_the_same_request,
)

__all__ = [
    "test_a_create_repeated_with_its_key_is_applied_once_and_answered_alike",
    "test_a_key_repeated_with_another_body_is_422_and_applies_nothing",
    "test_a_key_sent_twice_is_422_and_applies_nothing",
    "test_a_malformed_key_is_422_and_applies_nothing",
    "test_an_expired_key_names_a_new_request",
    "test_every_create_documents_the_key",
    "test_expired_keys_are_pruned",
    "test_requests_with_one_key_at_once_are_applied_once",
    "test_the_keys_of_two_callers_are_apart",
    "test_the_path_without_its_trailing_slash_is_the_same_request",
]

ADA = {"email": "ada@example.com", "name": "Ada", "password": "correct horse battery"}


async def test_an_anonymous_sign_up_repeated_with_its_key_makes_one_user(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    key = new_key()

    first = await anonymous.post("/users/", json=ADA, headers={KEY: key})
    repeated = await anonymous.post("/users/", json=ADA, headers={KEY: key})

    assert first.status_code == 201, first.text
    assert answer_of(repeated) == answer_of(first)
    assert repeated.headers[REPLAYED] == "true"
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
