"""Who may call what through the gateway: tokens are judged before any service is called."""

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from gateway_service.main import create_app
from gateway_service.proxy import ROUTE_TABLE, SIGNED_IN
from gateway_service.settings import GatewaySettings
from servicekit.auth import access_rule
from servicekit.testing import ServiceProcess, TokenIssuer, asgi_client, running


def _concrete(path: str) -> str:
    """A path of the table with every parameter set to 1."""
    parts = [("1" if part.startswith("{") else part) for part in path.split("/")]
    return "/".join(parts)


SIGNED_IN_ROUTES = [
    (method, _concrete(route.path_format))
    for route in ROUTE_TABLE
    for method, rule in sorted(route.rules.items())
    if rule == SIGNED_IN
]


@pytest.fixture
async def anonymous(gateway_app: FastAPI, gateway: httpx.AsyncClient) -> Any:
    async with asgi_client(gateway_app, base_url="http://gateway.test") as client:
        yield client


def test_every_route_of_the_gateway_declares_who_may_call_it(gateway_app: FastAPI) -> None:
    composed = [route for route in gateway_app.routes if isinstance(route, APIRoute)]
    assert composed
    assert all(access_rule(route) is not None for route in composed)
    assert all(route.rules for route in ROUTE_TABLE)


@pytest.mark.parametrize(("method", "path"), SIGNED_IN_ROUTES)
async def test_a_signed_in_route_without_a_token_is_401_and_reaches_no_service(
    anonymous: httpx.AsyncClient, downstream_calls: list[httpx.Request], method: str, path: str
) -> None:
    response = await anonymous.request(method, path, json={})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert downstream_calls == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/users/1/posts"),
        ("POST", "/posts/"),
        ("POST", "/posts/1/comments"),
        ("DELETE", "/users/1"),
    ],
)
async def test_a_composed_write_without_a_token_is_401_and_reaches_no_service(
    anonymous: httpx.AsyncClient, downstream_calls: list[httpx.Request], method: str, path: str
) -> None:
    response = await anonymous.request(method, path, json={"title": "t", "content": "c"})

    assert response.status_code == 401
    assert downstream_calls == []


@pytest.mark.parametrize(
    "path", ["/users/", "/posts/", "/users-with-posts", "/posts/1?expand=author", "/tags/"]
)
async def test_a_bad_token_is_401_even_where_none_is_needed(
    anonymous: httpx.AsyncClient,
    downstream_calls: list[httpx.Request],
    token_issuer: TokenIssuer,
    path: str,
) -> None:
    expired = token_issuer.token(7, exp=1)

    response = await anonymous.get(path, headers={"Authorization": f"Bearer {expired}"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.json() == {"detail": "the token has expired"}
    assert downstream_calls == []


async def test_public_reads_need_no_token(anonymous: httpx.AsyncClient) -> None:
    for path in ("/users/", "/posts/", "/users-with-posts", "/tags/", "/categories/"):
        assert (await anonymous.get(path)).status_code == 200, path


async def test_the_token_goes_on_to_the_service_unchanged(
    anonymous: httpx.AsyncClient, downstream_calls: list[httpx.Request], token_issuer: TokenIssuer
) -> None:
    headers = token_issuer.headers(7)

    response = await anonymous.post("/categories/", json={"name": "Lamps"}, headers=headers)

    assert response.status_code == 403  # catalog's own rule: only admins write the catalog
    assert [call.headers["Authorization"] for call in downstream_calls] == [
        headers["Authorization"]
    ]


async def test_the_merged_document_declares_the_bearer_scheme_per_operation(
    gateway: httpx.AsyncClient,
) -> None:
    document = (await gateway.get("/openapi.json")).json()

    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"]["flows"]["password"]["tokenUrl"] == "/auth/token"
    create_category = document["paths"]["/categories/"]["post"]
    assert create_category["security"] == [{"bearer": []}]
    assert {"401", "403"} <= create_category["responses"].keys()
    assert "security" not in document["paths"]["/categories/"]["get"]
    delete_user = document["paths"]["/users/{user_id}"]["delete"]
    assert delete_user["security"] == [{"bearer": []}]


async def test_cached_keys_keep_verifying_tokens_while_the_users_service_is_down(
    gateway: httpx.AsyncClient, services: dict[str, ServiceProcess]
) -> None:
    assert (await gateway.get("/users/me")).status_code == 404  # the keys are now known
    services["users"].stop()

    response = await gateway.post("/categories/", json={"name": "Lamps"})

    assert response.status_code == 201, response.text


async def test_a_token_meets_503_when_no_key_is_known_and_the_users_service_is_down(
    gateway_settings: Callable[..., GatewaySettings],
    services: dict[str, ServiceProcess],
    token_issuer: TokenIssuer,
) -> None:
    services["users"].stop()
    app = create_app(gateway_settings())
    async with running(app), asgi_client(app, headers=token_issuer.admin_headers()) as client:
        signed_in = await client.post("/categories/", json={"name": "Lamps"})

    # Not 401: the token may be valid, and logging in again would fail too.
    assert (signed_in.status_code, signed_in.json()) == (
        503,
        {"detail": "the users service is unavailable"},
    )
    assert signed_in.headers["Retry-After"] == "1"
