"""Idempotency-Keys of posts and comments."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from servicekit.testing.idempotency import assert_replayed, sent_twice


async def test_a_comment_repeated_with_its_key_is_added_once(
    client: httpx.AsyncClient, create_post: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    post = await create_post()
    path = f"/posts/{post['id']}/comments"

    first, repeated = await sent_twice(client, path, {"content": "Nice."})

    assert_replayed(first, repeated)
    assert len((await client.get(path)).json()) == 1
