"""Who may call each route through the gateway: every route of the gateway (forwarded and
composed) for anonymous callers, another user, the owner and an admin, on the real services.

Each case runs on a world of its own (the services' tables emptied, then seeded), so that a
deletion by one role does not decide what the next one gets. The routes come from the gateway's
route table and app, so a route added without an expectation fails
`test_every_route_of_the_gateway_has_expectations`.
"""

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from gateway_service.proxy import ROUTE_TABLE
from servicekit.testing import TokenIssuer, asgi_client
from servicekit.testing.access import (
    EVERY_PROCESS,
    ROLES,
    Call,
    admins,
    anyones,
    assert_answered_as_expected,
    owners,
    signed_in_users,
)

PASSWORD = "correct horse battery"
READ = anyones(200)


A_PRODUCT = {"name": "Desk", "price": "9.00", "category_id": "{category_id}"}
EXPECTED: dict[str, Call] = {
    **EVERY_PROCESS,
    "POST /users/": Call(
        "POST",
        "/users/",
        anyones(201),
        json={"email": "new@example.com", "name": "New", "password": PASSWORD},
    ),
    "GET /users/": Call("GET", "/users/", READ),
    "GET /users/me": Call("GET", "/users/me", signed_in_users(200)),
    "GET /users/search": Call("GET", "/users/search?name=o", admins(200)),
    "GET /users/stats": Call("GET", "/users/stats", admins(200)),
    "GET /users/sorted": Call("GET", "/users/sorted", READ),
    "GET /users/{user_id}": Call("GET", "/users/{owner_id}", READ),
    "PATCH /users/{user_id}": Call("PATCH", "/users/{owner_id}", owners(200), json={"name": "Ann"}),
    "DELETE /users/{user_id}": Call("DELETE", "/users/{owner_id}", owners(204)),
    "POST /auth/token": Call(
        "POST", "/auth/token", READ, data={"username": "owner@example.com", "password": PASSWORD}
    ),
    "POST /auth/refresh": Call(
        "POST",
        "/auth/refresh",
        READ,
        data={"grant_type": "refresh_token", "refresh_token": "{refresh_token}"},
    ),
    "POST /auth/logout": Call(
        "POST", "/auth/logout", (204, 204, 204, 204), data={"refresh_token": "{refresh_token}"}
    ),
    "GET /.well-known/jwks.json": Call("GET", "/.well-known/jwks.json", READ),
    "GET /categories/": Call("GET", "/categories/", READ),
    "POST /categories/": Call("POST", "/categories/", admins(201), json={"name": "Garden"}),
    "GET /categories/{category_id}": Call("GET", "/categories/{category_id}", READ),
    "PATCH /categories/{category_id}": Call(
        "PATCH", "/categories/{category_id}", admins(200), json={"name": "Lighting"}
    ),
    "DELETE /categories/{category_id}": Call(
        "DELETE", "/categories/{empty_category_id}", admins(204)
    ),
    "GET /categories/{category_id}/products": Call(
        "GET", "/categories/{category_id}/products", READ
    ),
    "GET /products/": Call("GET", "/products/", READ),
    "POST /products/": Call("POST", "/products/", admins(201), json=A_PRODUCT),
    "POST /products/bulk": Call("POST", "/products/bulk", admins(201), json=[A_PRODUCT]),
    "GET /products/{product_id}": Call("GET", "/products/{product_id}", READ),
    "PATCH /products/{product_id}": Call(
        "PATCH", "/products/{product_id}", admins(200), json={"price": "12.50"}
    ),
    "DELETE /products/{product_id}": Call("DELETE", "/products/{product_id}", admins(204)),
    "GET /products/{product_id}/images": Call("GET", "/products/{product_id}/images", READ),
    "POST /products/{product_id}/images": Call(
        "POST",
        "/products/{product_id}/images",
        admins(201),
        json={"image_url": "https://images.example.com/side.png"},
    ),
    "GET /products/{product_id}/images/{image_id}": Call(
        "GET", "/products/{product_id}/images/{image_id}", READ
    ),
    "PATCH /products/{product_id}/images/{image_id}": Call(
        "PATCH", "/products/{product_id}/images/{image_id}", admins(200), json={"is_primary": False}
    ),
    "DELETE /products/{product_id}/images/{image_id}": Call(
        "DELETE", "/products/{product_id}/images/{image_id}", admins(204)
    ),
    "POST /products/{product_id}/stock-adjustments": Call(
        "POST", "/products/{product_id}/stock-adjustments", admins(200), json={"delta": -1}
    ),
    "GET /posts/": Call("GET", "/posts/", READ),
    "POST /posts/": Call(
        "POST", "/posts/", signed_in_users(201), json={"title": "T", "content": "C"}
    ),
    "GET /posts/{post_id}": Call("GET", "/posts/{post_id}?expand=author,comments", READ),
    "PATCH /posts/{post_id}": Call("PATCH", "/posts/{post_id}", owners(200), json={"title": "U"}),
    "DELETE /posts/{post_id}": Call("DELETE", "/posts/{post_id}", owners(204)),
    "GET /posts/{post_id}/comments": Call("GET", "/posts/{post_id}/comments", READ),
    "POST /posts/{post_id}/comments": Call(
        "POST", "/posts/{post_id}/comments", signed_in_users(201), json={"content": "Nice."}
    ),
    "GET /comments/{comment_id}": Call("GET", "/comments/{comment_id}", READ),
    "DELETE /comments/{comment_id}": Call("DELETE", "/comments/{comment_id}", owners(204)),
    "GET /tags/": Call("GET", "/tags/", READ),
    "GET /users-with-posts": Call("GET", "/users-with-posts", READ),
    "GET /users/{user_id}/posts": Call("GET", "/users/{owner_id}/posts", READ),
    "POST /users/{user_id}/posts": Call(
        "POST", "/users/{owner_id}/posts", owners(201), json={"title": "T", "content": "C"}
    ),
}


def routes_of(app: FastAPI) -> set[str]:
    """Every "METHOD path" a client can call: the route table's and the gateway's own."""
    forwarded = {
        f"{method} {route.path_format}" for route in ROUTE_TABLE for method in route.methods
    }
    own = {
        f"{method} {route.path_format.replace(':int', '')}"
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


def _headers(role: str, ids: dict[str, Any], token_issuer: TokenIssuer) -> dict[str, str]:
    if role == "anonymous":
        return {}
    if role == "an admin":
        return token_issuer.headers(ids["root_id"], admin=True)
    return token_issuer.headers(ids["owner_id" if role == "the owner" else "other_id"])


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(EXPECTED))
async def test_each_role_gets_the_expected_status_through_the_gateway(
    gateway: httpx.AsyncClient,
    gateway_app: FastAPI,
    token_issuer: TokenIssuer,
    route: str,
    role: str,
) -> None:
    ids = await _seed(gateway)
    call = EXPECTED[route]
    async with asgi_client(
        gateway_app, base_url="http://gateway.test", headers=_headers(role, ids, token_issuer)
    ) as client:
        response = await call.send(client, ids)

    assert_answered_as_expected(response, call, role)
