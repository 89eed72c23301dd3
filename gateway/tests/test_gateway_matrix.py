"""Who may call each route through the gateway: every route of the gateway (forwarded and
composed) for anonymous callers, another user, the owner and an admin, on the real services.

Each case runs on a world of its own (the services' tables emptied, then seeded), so that a
deletion by one role does not decide what the next one gets. The routes come from the gateway's
route table and app, so a route added without an expectation fails
`test_every_route_of_the_gateway_has_expectations`.
"""

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from gateway_service.proxy import ROUTE_TABLE
from servicekit.testing import TokenIssuer, asgi_client

ROLES = ("anonymous", "another user", "the owner", "an admin")
PASSWORD = "correct horse battery"
READ = (200, 200, 200, 200)
ANYONE_CREATES = (201, 201, 201, 201)
Statuses = tuple[int, int, int, int]


def admins(status: int) -> Statuses:
    return (401, 403, 403, status)


def owners(status: int) -> Statuses:
    return (401, 403, status, status)


def signed_in(status: int) -> Statuses:
    return (401, status, status, status)


@dataclass(frozen=True)
class Call:
    """A request to a route (`{names}` filled from the seeded world), and each role's status."""

    path: str
    statuses: Statuses
    json: Any = None
    form: dict[str, str] | None = None


A_PRODUCT = {"name": "Desk", "price": "9.00", "category_id": "{category_id}"}
EXPECTED: dict[tuple[str, str], Call] = {
    ("GET", "/health/live"): Call("/health/live", READ),
    ("GET", "/health/ready"): Call("/health/ready", READ),
    ("POST", "/users/"): Call(
        "/users/",
        ANYONE_CREATES,
        json={"email": "new@example.com", "name": "New", "password": PASSWORD},
    ),
    ("GET", "/users/"): Call("/users/", READ),
    ("GET", "/users/me"): Call("/users/me", signed_in(200)),
    ("GET", "/users/search"): Call("/users/search?name=o", admins(200)),
    ("GET", "/users/stats"): Call("/users/stats", admins(200)),
    ("GET", "/users/sorted"): Call("/users/sorted", READ),
    ("GET", "/users/{user_id}"): Call("/users/{owner_id}", READ),
    ("PATCH", "/users/{user_id}"): Call("/users/{owner_id}", owners(200), json={"name": "Ann"}),
    ("DELETE", "/users/{user_id}"): Call("/users/{owner_id}", owners(204)),
    ("POST", "/auth/token"): Call(
        "/auth/token", READ, form={"username": "owner@example.com", "password": PASSWORD}
    ),
    ("POST", "/auth/refresh"): Call(
        "/auth/refresh",
        READ,
        form={"grant_type": "refresh_token", "refresh_token": "{refresh_token}"},
    ),
    ("POST", "/auth/logout"): Call(
        "/auth/logout", (204, 204, 204, 204), form={"refresh_token": "{refresh_token}"}
    ),
    ("GET", "/.well-known/jwks.json"): Call("/.well-known/jwks.json", READ),
    ("GET", "/categories/"): Call("/categories/", READ),
    ("POST", "/categories/"): Call("/categories/", admins(201), json={"name": "Garden"}),
    ("GET", "/categories/{category_id}"): Call("/categories/{category_id}", READ),
    ("PATCH", "/categories/{category_id}"): Call(
        "/categories/{category_id}", admins(200), json={"name": "Lighting"}
    ),
    ("DELETE", "/categories/{category_id}"): Call("/categories/{empty_category_id}", admins(204)),
    ("GET", "/categories/{category_id}/products"): Call("/categories/{category_id}/products", READ),
    ("GET", "/products/"): Call("/products/", READ),
    ("POST", "/products/"): Call("/products/", admins(201), json=A_PRODUCT),
    ("POST", "/products/bulk"): Call("/products/bulk", admins(201), json=[A_PRODUCT]),
    ("GET", "/products/{product_id}"): Call("/products/{product_id}", READ),
    ("PATCH", "/products/{product_id}"): Call(
        "/products/{product_id}", admins(200), json={"price": "12.50"}
    ),
    ("DELETE", "/products/{product_id}"): Call("/products/{product_id}", admins(204)),
    ("GET", "/products/{product_id}/images"): Call("/products/{product_id}/images", READ),
    ("POST", "/products/{product_id}/images"): Call(
        "/products/{product_id}/images",
        admins(201),
        json={"image_url": "https://images.example.com/side.png"},
    ),
    ("GET", "/products/{product_id}/images/{image_id}"): Call(
        "/products/{product_id}/images/{image_id}", READ
    ),
    ("PATCH", "/products/{product_id}/images/{image_id}"): Call(
        "/products/{product_id}/images/{image_id}", admins(200), json={"is_primary": False}
    ),
    ("DELETE", "/products/{product_id}/images/{image_id}"): Call(
        "/products/{product_id}/images/{image_id}", admins(204)
    ),
    ("POST", "/products/{product_id}/stock-adjustments"): Call(
        "/products/{product_id}/stock-adjustments", admins(200), json={"delta": -1}
    ),
    ("GET", "/posts/"): Call("/posts/", READ),
    ("POST", "/posts/"): Call("/posts/", signed_in(201), json={"title": "T", "content": "C"}),
    ("GET", "/posts/{post_id}"): Call("/posts/{post_id}?expand=author,comments", READ),
    ("PATCH", "/posts/{post_id}"): Call("/posts/{post_id}", owners(200), json={"title": "U"}),
    ("DELETE", "/posts/{post_id}"): Call("/posts/{post_id}", owners(204)),
    ("GET", "/posts/{post_id}/comments"): Call("/posts/{post_id}/comments", READ),
    ("POST", "/posts/{post_id}/comments"): Call(
        "/posts/{post_id}/comments", signed_in(201), json={"content": "Nice."}
    ),
    ("GET", "/comments/{comment_id}"): Call("/comments/{comment_id}", READ),
    ("DELETE", "/comments/{comment_id}"): Call("/comments/{comment_id}", owners(204)),
    ("GET", "/tags/"): Call("/tags/", READ),
    ("GET", "/users-with-posts"): Call("/users-with-posts", READ),
    ("GET", "/users/{user_id}/posts"): Call("/users/{owner_id}/posts", READ),
    ("POST", "/users/{user_id}/posts"): Call(
        "/users/{owner_id}/posts", owners(201), json={"title": "T", "content": "C"}
    ),
}


def routes_of(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) a client can call: the route table's and the gateway's own."""
    forwarded = {(method, route.path_format) for route in ROUTE_TABLE for method in route.methods}
    own = {
        (method, route.path_format.replace(":int", ""))
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    return forwarded | own


def test_every_route_of_the_gateway_has_expectations(gateway_app: FastAPI) -> None:
    assert routes_of(gateway_app) == set(EXPECTED)


async def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in {200, 201}, response.text
    body: dict[str, Any] = response.json()
    return body


async def _seed(gateway: httpx.AsyncClient) -> dict[str, Any]:
    """Three users (an owner, another user, an admin), the owner's post with the owner's
    comment and a login, and a category with a product and its image, and an empty category."""
    ids: dict[str, Any] = {}
    for name in ("owner", "other", "root"):
        email = f"{name}@example.com"
        user = await _created(
            await gateway.post("/users/", json={"email": email, "name": name, "password": PASSWORD})
        )
        ids[f"{name}_id"] = user["id"]
    login = await _created(
        await gateway.post(
            "/auth/token", data={"username": "owner@example.com", "password": PASSWORD}
        )
    )
    ids["refresh_token"] = login["refresh_token"]
    post = await _created(
        await gateway.post(f"/users/{ids['owner_id']}/posts", json={"title": "P", "content": "C"})
    )
    comment = await _created(
        await gateway.post(
            f"/posts/{post['id']}/comments", json={"content": "Mine.", "author_id": ids["owner_id"]}
        )
    )
    category = await _created(await gateway.post("/categories/", json={"name": "Lamps"}))
    empty = await _created(await gateway.post("/categories/", json={"name": "Empty"}))
    product = await _created(
        await gateway.post(
            "/products/",
            json={
                "name": "Lamp",
                "price": "10.00",
                "category_id": category["id"],
                "stock_quantity": 5,
            },
        )
    )
    image = await _created(
        await gateway.post(
            f"/products/{product['id']}/images",
            json={"image_url": "https://images.example.com/lamp.png", "is_primary": True},
        )
    )
    return ids | {
        "post_id": post["id"],
        "comment_id": comment["id"],
        "category_id": category["id"],
        "empty_category_id": empty["id"],
        "product_id": product["id"],
        "image_id": image["id"],
    }


def _filled(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {key: _filled(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_filled(item, ids) for item in value]
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    return value


def _headers(role: str, ids: dict[str, Any], token_issuer: TokenIssuer) -> dict[str, str]:
    if role == "anonymous":
        return {}
    if role == "an admin":
        return token_issuer.headers(ids["root_id"], admin=True)
    return token_issuer.headers(ids["owner_id" if role == "the owner" else "other_id"])


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(EXPECTED), ids=" ".join)
async def test_each_role_gets_the_expected_status_through_the_gateway(
    gateway: httpx.AsyncClient,
    gateway_app: FastAPI,
    token_issuer: TokenIssuer,
    route: tuple[str, str],
    role: str,
) -> None:
    ids = await _seed(gateway)
    method, _ = route
    call = EXPECTED[route]
    async with asgi_client(
        gateway_app, base_url="http://gateway.test", headers=_headers(role, ids, token_issuer)
    ) as client:
        response = await client.request(
            method,
            call.path.format(**ids),
            json=_filled(call.json, ids),
            data=_filled(call.form, ids),
        )

    assert response.status_code == call.statuses[ROLES.index(role)], response.text
