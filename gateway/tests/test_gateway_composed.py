"""Views composed across services, each with a fixed number of downstream calls."""

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway_service.composed import concurrently
from servicekit.testing import ServiceProcess, caught_up


async def create_user(gateway: httpx.AsyncClient, name: str) -> dict[str, Any]:
    response = await gateway.post(
        "/users/",
        json={"email": f"{name}@example.com", "name": name, "password": "correct horse battery"},
    )
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


async def create_post(
    gateway: httpx.AsyncClient, user_id: int, title: str, **fields: Any
) -> dict[str, Any]:
    response = await gateway.post(
        f"/users/{user_id}/posts", json={"title": title, "content": f"About {title}.", **fields}
    )
    assert response.status_code == 201, response.text
    post: dict[str, Any] = response.json()
    return post


async def deleted_user(
    gateway: httpx.AsyncClient, services: dict[str, ServiceProcess], name: str
) -> dict[str, Any]:
    """A user who signed up and was deleted, once blog has applied the deletion."""
    user = await create_user(gateway, name)
    assert (await gateway.delete(f"/users/{user['id']}")).status_code == 204
    caught_up(services["users"], services["blog"])
    return user


@contextmanager
def on_call(app: FastAPI, method: str, path: str, action: Callable[[], object]) -> Iterator[None]:
    """Run `action` just before the gateway sends `method path` to a service."""

    def listener(request: httpx.Request) -> None:
        if (request.method, request.url.path) == (method, path):
            action()

    app.state.downstream.listeners.append(listener)
    try:
        yield
    finally:
        app.state.downstream.listeners.remove(listener)


def delete_directly(service: ServiceProcess, path: str, headers: dict[str, str]) -> None:
    assert httpx.delete(f"{service.url}{path}", headers=headers).status_code == 204


async def test_creating_a_post_for_a_user_sets_the_author_and_points_at_the_gateway(
    gateway: httpx.AsyncClient,
) -> None:
    ada = await create_user(gateway, "ada")

    response = await gateway.post(
        f"/users/{ada['id']}/posts", json={"title": "Engines", "content": "x", "tags": ["Math"]}
    )

    assert response.status_code == 201
    post = response.json()
    assert (post["author_id"], post["tags"]) == (ada["id"], ["math"])
    assert response.headers["Location"] == f"/posts/{post['id']}"
    assert (await gateway.get(f"/posts/{post['id']}")).json() == post


async def test_creating_a_post_for_a_deleted_user_is_404_and_creates_nothing(
    gateway: httpx.AsyncClient, services: dict[str, ServiceProcess]
) -> None:
    gone = await deleted_user(gateway, services, "ada")

    response = await gateway.post(f"/users/{gone['id']}/posts", json={"title": "T", "content": "x"})

    assert (response.status_code, response.json()) == (
        404,
        {"detail": f"user {gone['id']} not found"},
    )
    assert (await gateway.get("/posts/")).json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [({"title": "T", "content": "x", "author_id": 2}, "author_id"), ({"content": "x"}, "title")],
)
async def test_an_invalid_post_body_is_422_naming_the_field(
    gateway: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    ada = await create_user(gateway, "ada")

    response = await gateway.post(f"/users/{ada['id']}/posts", json=body)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == field


async def test_a_users_posts_are_404_for_an_unknown_user(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/users/999/posts")

    assert (response.status_code, response.json()) == (404, {"detail": "user 999 not found"})


async def test_a_users_posts_keep_blogs_filters_and_page_on_the_gateway(
    gateway: httpx.AsyncClient,
) -> None:
    ada = await create_user(gateway, "ada")
    bob = await create_user(gateway, "bob")
    for i in range(3):
        await create_post(gateway, ada["id"], f"ada {i}", published=True)
    await create_post(gateway, ada["id"], "draft")
    await create_post(gateway, bob["id"], "bob's")

    first = await gateway.get(f"/users/{ada['id']}/posts", params={"published": True, "limit": 2})
    second = await gateway.get(first.links["next"]["url"])

    assert [p["title"] for p in first.json() + second.json()] == ["ada 2", "ada 1", "ada 0"]
    assert first.links["next"]["url"].startswith(f"/users/{ada['id']}/posts?")
    assert "link" not in second.headers


async def test_users_with_posts_gives_each_user_their_newest_posts(
    gateway: httpx.AsyncClient,
) -> None:
    ada = await create_user(gateway, "ada")
    bob = await create_user(gateway, "bob")
    await create_user(gateway, "cid")
    for i in range(3):
        await create_post(gateway, ada["id"], f"ada {i}")
    await create_post(gateway, bob["id"], "bob 0")

    response = await gateway.get("/users-with-posts", params={"posts_per_user": 2})

    assert response.status_code == 200
    users = response.json()
    assert [u["name"] for u in users] == ["ada", "bob", "cid"]
    assert [[p["title"] for p in u["posts"]] for u in users] == [["ada 2", "ada 1"], ["bob 0"], []]
    assert [u["has_more_posts"] for u in users] == [True, False, False]


async def test_users_with_posts_pages_through_users_with_a_link_on_the_gateway(
    gateway: httpx.AsyncClient,
) -> None:
    for name in ["ada", "bob", "cid"]:
        user = await create_user(gateway, name)
        await create_post(gateway, user["id"], f"{name}'s post")

    first = await gateway.get("/users-with-posts", params={"limit": 2, "posts_per_user": 1})
    second = await gateway.get(first.links["next"]["url"])

    assert [u["name"] for u in first.json()] == ["ada", "bob"]
    assert first.links["next"]["url"].startswith("/users-with-posts?")
    assert [(u["name"], len(u["posts"])) for u in second.json()] == [("cid", 1)]


async def test_head_on_a_composed_view_has_the_get_headers_and_no_body(
    gateway: httpx.AsyncClient,
) -> None:
    for name in ["ada", "bob"]:
        user = await create_user(gateway, name)
        post = await create_post(gateway, user["id"], f"{name}'s post")

    got = await gateway.get("/users-with-posts", params={"limit": 1})
    head = await gateway.head("/users-with-posts", params={"limit": 1})
    expanded = await gateway.head(f"/posts/{post['id']}", params={"expand": "author"})

    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["Link"] == got.headers["Link"]
    assert head.headers["Content-Length"] == str(len(got.content))
    assert (expanded.status_code, expanded.content) == (200, b"")


@pytest.mark.parametrize("page_size", [1, 50])
async def test_users_with_posts_makes_two_downstream_calls_whatever_the_page_size(
    gateway: httpx.AsyncClient,
    downstream_calls: list[httpx.Request],
    services: dict[str, ServiceProcess],
    page_size: int,
) -> None:
    for i in range(page_size):
        user = await create_user(gateway, f"user{i}")
        await create_post(gateway, user["id"], f"post {i}")
    downstream_calls.clear()

    response = await gateway.get("/users-with-posts", params={"limit": page_size})

    assert len(response.json()) == page_size
    assert all(len(user["posts"]) == 1 for user in response.json())
    assert [(call.url.port, call.url.path) for call in downstream_calls] == [
        (services["users"].port, "/users/"),
        (services["blog"].port, "/posts/"),
    ]


async def test_a_post_created_at_posts_cannot_be_by_a_deleted_user(
    gateway: httpx.AsyncClient, services: dict[str, ServiceProcess]
) -> None:
    ada = await create_user(gateway, "ada")
    gone = await deleted_user(gateway, services, "bob")

    unknown = await gateway.post(
        "/posts/", json={"title": "T", "content": "x", "author_id": gone["id"]}
    )
    not_an_id = await gateway.post("/posts/", json={"title": "T", "content": "x", "author_id": "a"})
    created = await gateway.post(
        "/posts/", json={"title": "T", "content": "x", "author_id": ada["id"]}
    )

    assert (unknown.status_code, unknown.json()) == (
        404,
        {"detail": f"user {gone['id']} not found"},
    )
    assert not_an_id.status_code == 422
    assert not_an_id.json()["detail"][0]["loc"] == ["body", "author_id"]
    assert (created.status_code, created.json()["author_id"]) == (201, ada["id"])
    assert created.headers["Location"] == f"/posts/{created.json()['id']}"
    assert [post["id"] for post in (await gateway.get("/posts/")).json()] == [created.json()["id"]]


CREATES = [
    ("/users/{user}/posts", {"title": "T", "content": "x"}),
    ("/posts/", {"title": "T", "content": "x", "author_id": "{user}"}),
    ("/posts/{post}/comments", {"content": "x", "author_id": "{user}"}),
]


def create_request(
    path: str, fields: dict[str, Any], user_id: int, post_id: int
) -> tuple[str, dict[str, Any]]:
    """A CREATES entry's path and body, for this user and this post."""
    body = {name: user_id if name == "author_id" else value for name, value in fields.items()}
    return path.format(user=user_id, post=post_id), body


@pytest.mark.parametrize(("path", "fields"), CREATES)
@pytest.mark.parametrize(
    "bad", [b'"z": NaN', b'"z": -Infinity', b'"z": 1e400', b'"z": "\\ud800"', b'"z": "\\udc00"']
)
async def test_a_create_with_what_json_cannot_carry_is_blogs_4xx_and_creates_nothing(
    gateway: httpx.AsyncClient, path: str, fields: dict[str, Any], bad: bytes
) -> None:
    ada = await create_user(gateway, "ada")
    post = await create_post(gateway, ada["id"], "Engines")
    target, body = create_request(path, fields, ada["id"], post["id"])
    raw = httpx.Request("POST", "/", json=body).content[:-1] + b", " + bad + b"}"

    response = await gateway.post(target, content=raw, headers={"Content-Type": "application/json"})

    assert response.status_code in {400, 422}, response.text
    assert (await gateway.get("/posts/")).json() == [post]
    assert (await gateway.get(f"/posts/{post['id']}/comments")).json() == []


async def test_a_post_for_a_user_is_the_body_as_sent_with_the_author_added(
    gateway: httpx.AsyncClient,
) -> None:
    ada = await create_user(gateway, "ada")

    response = await gateway.post(
        f"/users/{ada['id']}/posts",
        content=b' \n {"title": "T", "content": "x"}',
        headers={"Content-Type": "application/json"},
    )

    assert (response.status_code, response.json()["author_id"]) == (201, ada["id"])


@pytest.mark.parametrize("raw", [b"{}", b"[]", b"{"])
async def test_a_post_for_a_user_that_is_not_a_whole_post_is_blogs_4xx(
    gateway: httpx.AsyncClient, raw: bytes
) -> None:
    ada = await create_user(gateway, "ada")

    response = await gateway.post(
        f"/users/{ada['id']}/posts", content=raw, headers={"Content-Type": "application/json"}
    )

    assert response.status_code in {400, 422}, response.text
    assert "author_id" not in response.text  # the author was added, or nothing was judged


@pytest.mark.parametrize(("path", "fields"), CREATES)
async def test_a_create_for_a_user_deleted_meanwhile_leaves_nothing_once_blog_applied_it(
    gateway: httpx.AsyncClient,
    gateway_app: FastAPI,
    services: dict[str, ServiceProcess],
    path: str,
    fields: dict[str, Any],
) -> None:
    ada = await create_user(gateway, "ada")
    bob = await create_user(gateway, "bob")
    post = await create_post(gateway, bob["id"], "Looms")
    target, body = create_request(path, fields, ada["id"], post["id"])
    blog_path = f"/posts/{post['id']}/comments" if "comments" in path else "/posts/"

    def delete_ada() -> None:
        delete_directly(services["users"], f"/users/{ada['id']}", dict(gateway.headers))

    # The user goes just before blog creates what they wrote: blog may create it, and then
    # erases it with the rest of their content when it applies the deletion.
    with on_call(gateway_app, "POST", blog_path, delete_ada):
        response = await gateway.post(target, json=body)
    caught_up(services["users"], services["blog"])

    assert response.status_code in {201, 404}
    assert (await gateway.get("/posts/")).json() == [post]
    assert (await gateway.get(f"/posts/{post['id']}/comments")).json() == []


@pytest.mark.parametrize("params", [{"limit": 101}, {"posts_per_user": 50}, {"after": "!"}])
async def test_users_with_posts_refuses_out_of_range_parameters(
    gateway: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    assert (await gateway.get("/users-with-posts", params=params)).status_code == 422


async def test_a_comment_by_a_deleted_author_is_404_and_creates_nothing(
    gateway: httpx.AsyncClient, services: dict[str, ServiceProcess]
) -> None:
    ada = await create_user(gateway, "ada")
    post = await create_post(gateway, ada["id"], "Engines")
    gone = await deleted_user(gateway, services, "bob")

    response = await gateway.post(
        f"/posts/{post['id']}/comments", json={"author_id": gone["id"], "content": "Hi"}
    )

    assert (response.status_code, response.json()) == (
        404,
        {"detail": f"user {gone['id']} not found"},
    )
    assert (await gateway.get(f"/posts/{post['id']}/comments")).json() == []


async def test_a_comment_by_a_known_author_is_created(gateway: httpx.AsyncClient) -> None:
    ada = await create_user(gateway, "ada")
    post = await create_post(gateway, ada["id"], "Engines")

    response = await gateway.post(
        f"/posts/{post['id']}/comments", json={"author_id": ada["id"], "content": "Hi"}
    )

    assert response.status_code == 201
    assert response.headers["Location"].startswith("/comments/")
    assert (await gateway.get(response.headers["Location"])).json() == response.json()


async def test_a_comment_on_an_unknown_post_is_404(gateway: httpx.AsyncClient) -> None:
    ada = await create_user(gateway, "ada")

    response = await gateway.post(
        "/posts/999/comments", json={"author_id": ada["id"], "content": "x"}
    )

    assert response.status_code == 404


async def test_expand_resolves_every_author_in_one_users_call(
    gateway: httpx.AsyncClient, downstream_calls: list[httpx.Request]
) -> None:
    ada = await create_user(gateway, "ada")
    bob = await create_user(gateway, "bob")
    cid = await create_user(gateway, "cid")
    post = await create_post(gateway, ada["id"], "Engines")
    for author in [bob, cid, bob]:
        await gateway.post(
            f"/posts/{post['id']}/comments", json={"author_id": author["id"], "content": "!"}
        )
    downstream_calls.clear()

    response = await gateway.get(f"/posts/{post['id']}", params={"expand": "author,comments"})

    assert response.status_code == 200
    body = response.json()
    assert body["author"]["name"] == "ada"
    assert [c["author"]["name"] for c in body["comments"]] == ["bob", "cid", "bob"]
    # The post's version does not cover its comments and authors: no ETag to validate with.
    assert "ETag" not in response.headers
    assert sorted(call.url.path for call in downstream_calls) == [
        f"/posts/{post['id']}",
        f"/posts/{post['id']}/comments",
        "/users/",
    ]


async def test_expand_shows_an_author_who_no_longer_exists_as_null(
    gateway: httpx.AsyncClient,
) -> None:
    ada = await create_user(gateway, "ada")
    post = await create_post(gateway, ada["id"], "Engines")
    # Removed behind the gateway's back, straight at the users service.
    users_url = gateway._transport.app.state.downstream.base_urls["users"]  # type: ignore[attr-defined]
    async with httpx.AsyncClient(headers=gateway.headers) as users_directly:
        assert (await users_directly.delete(f"{users_url}/users/{ada['id']}")).status_code == 204

    response = await gateway.get(f"/posts/{post['id']}", params={"expand": "author"})

    assert response.json()["author"] is None
    assert "comments" not in response.json()


async def test_a_post_without_expand_is_blogs_answer(gateway: httpx.AsyncClient) -> None:
    ada = await create_user(gateway, "ada")
    post = await create_post(gateway, ada["id"], "Engines")

    response = await gateway.get(f"/posts/{post['id']}")

    assert response.json() == post
    assert response.headers["ETag"] == '"1"'


@pytest.mark.parametrize("expand", ["authors", "author,secrets", "comments;drop"])
async def test_an_unknown_expansion_is_422(gateway: httpx.AsyncClient, expand: str) -> None:
    assert (await gateway.get("/posts/1", params={"expand": expand})).status_code == 422


async def test_expanding_an_unknown_post_is_404(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/posts/999", params={"expand": "author,comments"})

    assert response.status_code == 404


async def test_deleting_a_user_removes_their_posts_and_comments(
    gateway: httpx.AsyncClient, services: dict[str, ServiceProcess]
) -> None:
    ada = await create_user(gateway, "ada")
    bob = await create_user(gateway, "bob")
    adas_post = await create_post(gateway, ada["id"], "Engines")
    bobs_post = await create_post(gateway, bob["id"], "Looms")
    await gateway.post(
        f"/posts/{bobs_post['id']}/comments", json={"author_id": ada["id"], "content": "!"}
    )
    await gateway.post(
        f"/posts/{bobs_post['id']}/comments", json={"author_id": bob["id"], "content": "?"}
    )

    response = await gateway.delete(f"/users/{ada['id']}")
    caught_up(services["users"], services["blog"])

    assert response.status_code == 204
    assert (await gateway.get(f"/users/{ada['id']}")).status_code == 404
    assert (await gateway.get(f"/posts/{adas_post['id']}")).status_code == 404
    comments = (await gateway.get(f"/posts/{bobs_post['id']}/comments")).json()
    assert [c["author_id"] for c in comments] == [bob["id"]]


async def test_a_user_is_deleted_while_blog_is_down_and_their_content_goes_when_it_is_back(
    gateway: httpx.AsyncClient, services: dict[str, ServiceProcess]
) -> None:
    ada = await create_user(gateway, "ada")
    post = await create_post(gateway, ada["id"], "Engines")
    services["blog"].stop()

    response = await gateway.delete(f"/users/{ada['id']}")
    services["blog"].start()
    consumer = caught_up(services["users"], services["blog"])

    assert response.status_code == 204
    assert (await gateway.get(f"/users/{ada['id']}")).status_code == 404
    assert (await gateway.get(f"/posts/{post['id']}")).status_code == 404
    assert consumer["parked"] == 0


async def test_deleting_with_a_stale_if_match_is_412_and_deletes_nothing(
    gateway: httpx.AsyncClient,
) -> None:
    ada = await create_user(gateway, "ada")
    post = await create_post(gateway, ada["id"], "Engines")
    await gateway.patch(f"/users/{ada['id']}", json={"name": "Ada L."})

    response = await gateway.delete(f"/users/{ada['id']}", headers={"If-Match": '"1"'})

    assert response.status_code == 412
    assert (await gateway.get(f"/users/{ada['id']}")).status_code == 200
    assert (await gateway.get(f"/posts/{post['id']}")).status_code == 200


async def test_deleting_with_if_match_sent_twice_judges_both_lines_and_deletes_nothing(
    gateway: httpx.AsyncClient,
) -> None:
    ada = await create_user(gateway, "ada")
    post = await create_post(gateway, ada["id"], "Engines")

    refused = await gateway.delete(
        f"/users/{ada['id']}", headers=[("If-Match", '"7"'), ("If-Match", '"8"')]
    )
    post_after_refusal = await gateway.get(f"/posts/{post['id']}")
    matching = await gateway.delete(
        f"/users/{ada['id']}", headers=[("If-Match", '"7"'), ("If-Match", '"1"')]
    )

    assert refused.status_code == 412
    assert post_after_refusal.status_code == 200
    assert matching.status_code == 204


async def test_deleting_a_user_is_one_call_to_users(
    gateway: httpx.AsyncClient, downstream_calls: list[httpx.Request]
) -> None:
    ada = await create_user(gateway, "ada")
    await create_post(gateway, ada["id"], "Engines")
    downstream_calls.clear()

    response = await gateway.delete(f"/users/{ada['id']}", headers={"If-Match": '"1"'})

    assert response.status_code == 204
    assert [(call.method, call.url.path) for call in downstream_calls] == [
        ("DELETE", f"/users/{ada['id']}"),
    ]
    assert downstream_calls[0].headers["If-Match"] == '"1"'


async def test_deleting_an_unknown_user_is_404(gateway: httpx.AsyncClient) -> None:
    assert (await gateway.delete("/users/999")).status_code == 404


async def test_independent_downstream_calls_run_at_the_same_time() -> None:
    # Each call can only finish once the other has started: run one after the other, they
    # would wait forever (the timeout only bounds a failure).
    started = [asyncio.Event(), asyncio.Event()]

    async def call(me: int) -> int:
        started[me].set()
        await started[1 - me].wait()
        return me

    assert await asyncio.wait_for(concurrently(call(0), call(1)), timeout=5) == [0, 1]
