"""A client written from the tutorial, through the gateway: its paths, fields and defaults, and
what the gateway refuses before any service sees it."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from gateway_service.main import create_app
from gateway_service.settings import GatewaySettings
from servicekit.testing import TokenIssuer, asgi_client, running

GatewaySettingsFactory = Callable[..., GatewaySettings]
PASSWORD = "correct horse battery"


async def sign_up(gateway: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    body = {"email": f"{name}@example.com", "name": name, "password": PASSWORD, **fields}
    response = await gateway.post("/users/", json=body)
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


async def test_stats_use_the_tutorials_field_names(gateway: httpx.AsyncClient) -> None:
    await sign_up(gateway, "ada")
    await sign_up(gateway, "bob", is_active=False)

    response = await gateway.get("/users/stats")

    assert response.json() == {"total_users": 2, "active_users": 1, "inactive_users": 1}


async def test_search_and_sorted_have_the_tutorials_defaults(gateway: httpx.AsyncClient) -> None:
    await sign_up(gateway, "cid")
    await sign_up(gateway, "ann")
    await sign_up(gateway, "bea", is_active=False)

    searched = await gateway.get("/users/search")
    ordered = await gateway.get("/users/sorted")

    assert [user["name"] for user in searched.json()] == ["cid", "ann"]
    assert [user["name"] for user in ordered.json()] == ["ann", "bea", "cid"]


async def test_tags_carry_their_ids(gateway: httpx.AsyncClient) -> None:
    ada = await sign_up(gateway, "ada")
    await gateway.post(
        f"/users/{ada['id']}/posts", json={"title": "t", "content": "c", "tags": ["x"]}
    )

    [tag] = (await gateway.get("/tags/")).json()

    assert set(tag) == {"id", "name", "post_count"}
    assert isinstance(tag["id"], int)


async def test_the_tutorials_paths_answer_with_or_without_the_trailing_slash(
    gateway: httpx.AsyncClient,
) -> None:
    ada = await sign_up(gateway, "ada")
    post_body = {"title": "Engines", "content": "About engines."}

    created = await gateway.post(f"/users/{ada['id']}/posts/", json=post_body)
    post_id = created.json()["id"]
    answers = {
        "POST /users": (await gateway.post("/users", json={**post_body})).status_code,
        "GET /users": (await gateway.get("/users")).status_code,
        "GET /users/{id}/": (await gateway.get(f"/users/{ada['id']}/")).status_code,
        "GET /users/stats/": (await gateway.get("/users/stats/")).status_code,
        "GET /users/{id}/posts/": (await gateway.get(f"/users/{ada['id']}/posts/")).status_code,
        "GET /posts/{id}/": (await gateway.get(f"/posts/{post_id}/")).status_code,
        "GET /posts": (await gateway.get("/posts")).status_code,
        "GET /tags": (await gateway.get("/tags")).status_code,
        "GET /categories": (await gateway.get("/categories")).status_code,
        "GET /products": (await gateway.get("/products")).status_code,
        "GET /users-with-posts/": (await gateway.get("/users-with-posts/")).status_code,
    }

    assert created.status_code == 201, created.text
    assert answers == {
        "POST /users": 422,  # routed to the sign-up, which wants an email and a password
        **{name: 200 for name in answers if name != "POST /users"},
    }


async def test_links_and_locations_never_copy_the_host(gateway: httpx.AsyncClient) -> None:
    headers = {"Host": "attacker.example"}
    first = await gateway.post(
        "/users/",
        json={"email": "a@example.com", "name": "A", "password": PASSWORD},
        headers=headers,
    )
    await sign_up(gateway, "b")

    listed = await gateway.get("/users/?limit=1", headers=headers)
    composed = await gateway.get("/users-with-posts?limit=1", headers=headers)

    assert first.headers["Location"] == f"/users/{first.json()['id']}"
    assert listed.headers["Link"].startswith("</users/?")
    assert composed.headers["Link"].startswith("</users-with-posts?")


async def test_a_request_without_host_is_400(gateway: httpx.AsyncClient) -> None:
    request = gateway.build_request("GET", "/users/")
    del request.headers["Host"]

    response = await gateway.send(request)

    assert response.status_code == 400


@pytest.fixture
async def guarded_gateway(
    gateway_settings: GatewaySettingsFactory,
    gateway: httpx.AsyncClient,
    token_issuer: TokenIssuer,
) -> AsyncIterator[tuple[httpx.AsyncClient, list[httpx.Request]]]:
    """A gateway for api.example.com alone, taking bodies of 1,000 bytes at most, with the calls
    it sends to the services."""
    app = create_app(gateway_settings(allowed_hosts=["api.example.com"], max_body_bytes=1000))
    calls: list[httpx.Request] = []
    async with (
        running(app),
        asgi_client(
            app, base_url="http://api.example.com", headers=token_issuer.admin_headers()
        ) as client,
    ):
        app.state.downstream.listeners.append(calls.append)
        yield client, calls


async def test_a_host_the_gateway_does_not_serve_is_400(
    guarded_gateway: tuple[httpx.AsyncClient, list[httpx.Request]],
) -> None:
    client, calls = guarded_gateway

    served = await client.get("/tags/")
    refused = await client.get("/tags/", headers={"Host": "other.example"})

    assert (served.status_code, refused.status_code) == (200, 400)
    assert refused.json() == {"detail": "missing or disallowed Host header"}
    assert len(calls) == 1


async def test_a_body_over_the_limit_is_413_and_never_forwarded(
    guarded_gateway: tuple[httpx.AsyncClient, list[httpx.Request]],
) -> None:
    client, calls = guarded_gateway
    body = {"email": "a@example.com", "name": "A", "password": "x" * 1000}

    declared = await client.post("/users/", json=body)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b" " * 400

    streamed = await client.post(
        "/users/", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert "larger than 1000 bytes" in declared.json()["detail"]
    assert calls == []


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_json_body_of_another_media_type_is_415(
    gateway: httpx.AsyncClient, content_type: str | None
) -> None:
    ada = await sign_up(gateway, "ada")
    for path in ("/users/", f"/users/{ada['id']}/posts", "/categories/"):
        request = gateway.build_request("POST", path, content=b'{"name": "x"}')
        if content_type is None:
            request.headers.pop("Content-Type", None)
        else:
            request.headers["Content-Type"] = content_type

        response = await gateway.send(request)

        assert response.status_code == 415, path


async def test_a_204_through_the_gateway_has_no_content_type(gateway: httpx.AsyncClient) -> None:
    category = await gateway.post("/categories/", json={"name": "Lamps"})

    response = await gateway.delete(category.headers["Location"])

    assert response.status_code == 204
    assert "Content-Type" not in response.headers


async def test_a_deleted_users_id_is_not_given_again(gateway: httpx.AsyncClient) -> None:
    first = await sign_up(gateway, "ada")
    assert (await gateway.delete(f"/users/{first['id']}")).status_code == 204

    second = await sign_up(gateway, "bob")

    assert second["id"] != first["id"]


async def test_the_merged_schema_states_expand_and_if_none_match(
    gateway: httpx.AsyncClient,
) -> None:
    document = (await gateway.get("/openapi.json")).json()

    parameters = {p["name"]: p for p in document["paths"]["/posts/{post_id}"]["get"]["parameters"]}

    expand = parameters["expand"]["schema"]["anyOf"][0]
    assert expand["enum"] == ["author", "comments", "author,comments", "comments,author"]
    assert parameters["If-None-Match"]["in"] == "header"


@pytest.mark.parametrize("expand", ["author, comments", " author", "author,author"])
async def test_an_expand_the_schema_does_not_list_is_422(
    gateway: httpx.AsyncClient, expand: str
) -> None:
    assert (await gateway.get("/posts/1", params={"expand": expand})).status_code == 422


async def test_a_name_is_trimmed_before_its_length_is_checked(gateway: httpx.AsyncClient) -> None:
    body = {"email": "a@example.com", "password": PASSWORD}

    accepted = await gateway.post("/users/", json={**body, "name": " " + "x" * 100})
    refused = await gateway.post("/users", json={**body, "name": " " + "x" * 101})

    assert (accepted.status_code, accepted.json()["name"]) == (201, "x" * 100)
    assert refused.status_code == 422
