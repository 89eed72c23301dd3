"""Authors and their content: who a post or comment is by, and who may change or remove it."""

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from servicekit.testing import TEST_ADMIN_ID, TokenIssuer, asgi_client

AUTHOR_ID = 21
READER_ID = 22
Json = dict[str, Any]
SignedInAs = Callable[[int], httpx.AsyncClient]


@pytest.fixture
async def signed_in_as(
    app: FastAPI, client: httpx.AsyncClient, token_issuer: TokenIssuer
) -> AsyncIterator[SignedInAs]:
    """A factory of clients sending a token of the user given, on the tables of `client`."""
    async with AsyncExitStack() as stack:

        def make(user_id: int) -> httpx.AsyncClient:
            user = asgi_client(app, headers=token_issuer.headers(user_id))
            stack.push_async_callback(user.aclose)
            return user

        yield make


@pytest.fixture
def author(signed_in_as: SignedInAs) -> httpx.AsyncClient:
    return signed_in_as(AUTHOR_ID)


@pytest.fixture
def reader(signed_in_as: SignedInAs) -> httpx.AsyncClient:
    return signed_in_as(READER_ID)


def _created(response: httpx.Response) -> Json:
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


async def _post_by(client: httpx.AsyncClient, author_id: int, title: str = "Hello") -> Json:
    body = {"title": title, "content": "Words.", "author_id": author_id}
    return _created(await client.post("/posts/", json=body))


async def _comment_by(client: httpx.AsyncClient, post_id: int, author_id: int) -> Json:
    body = {"content": "Nice.", "author_id": author_id}
    return _created(await client.post(f"/posts/{post_id}/comments", json=body))


async def _stored_posts(client: httpx.AsyncClient) -> list[Json]:
    posts: list[Json] = (await client.get("/posts/", params={"limit": 100})).json()
    return posts


async def _stored_comments(client: httpx.AsyncClient, post_id: int) -> list[Json]:
    comments: list[Json] = (await client.get(f"/posts/{post_id}/comments")).json()
    return comments


# Creating posts and comments.


async def test_a_post_without_author_id_is_by_the_caller(
    author: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    response = await author.post("/posts/", json={"title": "Mine", "content": "Words."})

    assert response.status_code == 201
    assert response.json()["author_id"] == AUTHOR_ID
    assert [post["author_id"] for post in await _stored_posts(client)] == [AUTHOR_ID]


async def test_an_admins_post_without_author_id_is_by_the_admin(client: httpx.AsyncClient) -> None:
    response = await client.post("/posts/", json={"title": "Notice", "content": "Words."})

    assert response.status_code == 201
    assert response.json()["author_id"] == TEST_ADMIN_ID


async def test_a_user_may_name_themselves_as_author(author: httpx.AsyncClient) -> None:
    post = await _post_by(author, AUTHOR_ID)

    assert post["author_id"] == AUTHOR_ID


async def test_a_user_naming_another_author_is_403_and_creates_nothing(
    author: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    body = {"title": "Forged", "content": "Words.", "author_id": READER_ID}

    response = await author.post("/posts/", json={**body, "tags": ["forged"]})

    assert response.status_code == 403
    assert response.json() == {"detail": "only an admin may write as another user"}
    assert await _stored_posts(client) == []
    assert (await client.get("/tags/")).json() == []


async def test_an_admin_may_name_any_author(client: httpx.AsyncClient) -> None:
    post = await _post_by(client, READER_ID)

    assert post["author_id"] == READER_ID


async def test_a_comment_without_author_id_is_by_the_caller(
    reader: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    post = await _post_by(client, AUTHOR_ID)

    response = await reader.post(f"/posts/{post['id']}/comments", json={"content": "Agreed."})

    assert response.status_code == 201
    assert response.json()["author_id"] == READER_ID
    assert [c["author_id"] for c in await _stored_comments(client, post["id"])] == [READER_ID]


async def test_a_user_commenting_as_another_is_403_and_creates_nothing(
    reader: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    post = await _post_by(client, AUTHOR_ID)

    response = await reader.post(
        f"/posts/{post['id']}/comments", json={"content": "Forged.", "author_id": AUTHOR_ID}
    )

    assert response.status_code == 403
    assert await _stored_comments(client, post["id"]) == []


async def test_an_admin_may_comment_as_anyone(client: httpx.AsyncClient) -> None:
    post = await _post_by(client, AUTHOR_ID)

    comment = await _comment_by(client, post["id"], READER_ID)

    assert comment["author_id"] == READER_ID


async def test_commenting_on_a_missing_post_is_404_for_a_user(reader: httpx.AsyncClient) -> None:
    response = await reader.post("/posts/999/comments", json={"content": "Hello?"})

    assert response.status_code == 404


# Changing and deleting posts.


async def test_the_author_may_edit_their_post(
    author: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    post = await _post_by(author, AUTHOR_ID)

    response = await author.patch(f"/posts/{post['id']}", json={"title": "Better"})

    assert response.status_code == 200
    assert (await client.get(f"/posts/{post['id']}")).json()["title"] == "Better"


async def test_another_user_may_not_edit_a_post(
    reader: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    post = await _post_by(client, AUTHOR_ID)

    response = await reader.patch(f"/posts/{post['id']}", json={"title": "Defaced"})

    assert response.status_code == 403
    assert response.json() == {
        "detail": f"only the author of post {post['id']} or an admin may change it"
    }
    assert (await client.get(f"/posts/{post['id']}")).json() == post


async def test_another_users_stale_if_match_is_403_not_412(
    reader: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    # A precondition is judged only for a caller who may change the post: 412 would tell
    # anyone its version.
    post = await _post_by(client, AUTHOR_ID)

    response = await reader.patch(
        f"/posts/{post['id']}", json={"title": "Defaced"}, headers={"If-Match": '"7"'}
    )

    assert response.status_code == 403


async def test_the_author_may_delete_their_post(
    author: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    post = await _post_by(author, AUTHOR_ID)

    response = await author.delete(f"/posts/{post['id']}")

    assert response.status_code == 204
    assert await _stored_posts(client) == []


async def test_another_user_may_not_delete_a_post(
    reader: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    post = await _post_by(client, AUTHOR_ID)

    response = await reader.delete(f"/posts/{post['id']}")

    assert response.status_code == 403
    assert await _stored_posts(client) == [post]


@pytest.mark.parametrize(
    ("method", "body"), [("PATCH", {"title": "Changed"}), ("DELETE", None)], ids=["edit", "delete"]
)
async def test_a_missing_post_is_404_for_any_user(
    reader: httpx.AsyncClient, method: str, body: Json | None
) -> None:
    response = await reader.request(method, "/posts/999", json=body)

    assert response.status_code == 404
    assert response.json() == {"detail": "post 999 not found"}


@pytest.mark.parametrize(
    ("method", "body"), [("PATCH", {"title": "Changed"}), ("DELETE", None)], ids=["edit", "delete"]
)
async def test_a_missing_post_is_401_without_a_token(
    anonymous: httpx.AsyncClient, method: str, body: Json | None
) -> None:
    response = await anonymous.request(method, "/posts/999", json=body)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


# Deleting comments.


@pytest.mark.parametrize("deleter", ["comment-author", "post-author", "admin"])
async def test_the_comment_author_the_post_author_or_an_admin_may_delete_a_comment(
    deleter: str, author: httpx.AsyncClient, reader: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    post = await _post_by(author, AUTHOR_ID)
    comment = await _comment_by(reader, post["id"], READER_ID)
    deleting = {"comment-author": reader, "post-author": author, "admin": client}[deleter]

    response = await deleting.delete(f"/comments/{comment['id']}")

    assert response.status_code == 204
    assert await _stored_comments(client, post["id"]) == []


async def test_another_user_may_not_delete_a_comment(
    author: httpx.AsyncClient, signed_in_as: SignedInAs, client: httpx.AsyncClient
) -> None:
    post = await _post_by(author, AUTHOR_ID)
    comment = await _comment_by(signed_in_as(READER_ID), post["id"], READER_ID)

    response = await signed_in_as(99).delete(f"/comments/{comment['id']}")

    assert response.status_code == 403
    assert await _stored_comments(client, post["id"]) == [comment]


async def test_the_comment_author_may_not_delete_other_comments_on_the_same_post(
    author: httpx.AsyncClient, reader: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    post = await _post_by(client, 99)
    theirs = await _comment_by(author, post["id"], AUTHOR_ID)
    await _comment_by(reader, post["id"], READER_ID)

    response = await reader.delete(f"/comments/{theirs['id']}")

    assert response.status_code == 403
    assert len(await _stored_comments(client, post["id"])) == 2


async def test_deleting_a_missing_comment_is_404_for_any_user(reader: httpx.AsyncClient) -> None:
    response = await reader.delete("/comments/999")

    assert response.status_code == 404
    assert response.json() == {"detail": "comment 999 not found"}


# Deleting everything by some authors.


@pytest.fixture
async def two_authors_content(client: httpx.AsyncClient) -> dict[int, Json]:
    """A post by each of AUTHOR_ID and READER_ID, each commented on by the other."""
    posts = {user: await _post_by(client, user) for user in (AUTHOR_ID, READER_ID)}
    await _comment_by(client, posts[AUTHOR_ID]["id"], READER_ID)
    await _comment_by(client, posts[READER_ID]["id"], AUTHOR_ID)
    return posts


async def test_a_user_may_delete_everything_they_wrote(
    author: httpx.AsyncClient, client: httpx.AsyncClient, two_authors_content: dict[int, Json]
) -> None:
    response = await author.delete("/posts/", params={"author_id": AUTHOR_ID})

    assert response.status_code == 204
    assert await _stored_posts(client) == [two_authors_content[READER_ID]]
    assert await _stored_comments(client, two_authors_content[READER_ID]["id"]) == []


@pytest.mark.parametrize(
    "author_ids", [[READER_ID], [AUTHOR_ID, READER_ID]], ids=["another", "self-and-another"]
)
async def test_a_user_may_not_delete_what_others_wrote(
    author: httpx.AsyncClient,
    client: httpx.AsyncClient,
    two_authors_content: dict[int, Json],
    author_ids: list[int],
) -> None:
    before = await _stored_posts(client)

    response = await author.delete("/posts/", params={"author_id": author_ids})

    assert response.status_code == 403
    assert response.json() == {"detail": "only an admin may delete what other users wrote"}
    assert await _stored_posts(client) == before
    for post in before:
        assert len(await _stored_comments(client, post["id"])) == 1


async def test_an_admin_may_delete_what_anyone_wrote(
    client: httpx.AsyncClient, two_authors_content: dict[int, Json]
) -> None:
    response = await client.delete("/posts/", params={"author_id": [AUTHOR_ID, READER_ID]})

    assert response.status_code == 204
    assert await _stored_posts(client) == []


async def test_deleting_by_author_needs_a_token(
    anonymous: httpx.AsyncClient, client: httpx.AsyncClient, two_authors_content: dict[int, Json]
) -> None:
    response = await anonymous.delete("/posts/", params={"author_id": AUTHOR_ID})

    assert response.status_code == 401
    assert len(await _stored_posts(client)) == 2


# The API's description.


async def test_the_author_of_a_new_post_or_comment_is_optional_in_the_schema(
    client: httpx.AsyncClient,
) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]

    for name in ("PostCreate", "CommentCreate"):
        assert "author_id" in schemas[name]["properties"]
        assert "author_id" not in schemas[name].get("required", [])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/posts/"),
        ("delete", "/posts/"),
        ("patch", "/posts/{post_id}"),
        ("delete", "/posts/{post_id}"),
        ("post", "/posts/{post_id}/comments"),
        ("delete", "/comments/{comment_id}"),
    ],
)
async def test_every_write_documents_401_and_403(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"][path][method]

    assert {"401", "403"} <= set(operation["responses"])
    assert operation["security"] == [{"bearer": []}]
