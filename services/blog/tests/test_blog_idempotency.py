"""Idempotency-Keys of posts and comments."""

from collections.abc import Awaitable, Callable
from typing import Any

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


async def test_a_comment_repeated_with_its_key_is_added_once(
    client: httpx.AsyncClient, create_post: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    post = await create_post()
    path = f"/posts/{post['id']}/comments"
    key = new_key()

    first = await client.post(path, json={"content": "Nice."}, headers={KEY: key})
    repeated = await client.post(path, json={"content": "Nice."}, headers={KEY: key})

    assert first.status_code == 201, first.text
    assert answer_of(repeated) == answer_of(first)
    assert repeated.headers[REPLAYED] == "true"
    assert len((await client.get(path)).json()) == 1
