"""Who may call each route of the catalog: for every route and each of anonymous, another user,
the owner and an admin, the status expected; and nothing stored changes when a call is refused.

Catalog entries have no owner but the admins: every write is theirs alone, so "the owner" (a
signed-in user who is not an admin) is refused like any other user, and reads are anyone's.
The routes come from the app's own route table, so a route added without an entry here fails
`test_every_route_has_expectations`.
"""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from catalog_service.main import create_app
from catalog_service.settings import CatalogSettings
from servicekit.auth import access_rule
from servicekit.testing import TokenIssuer, asgi_client

OWNER_ID = 41
OTHER_ID = 42
ROLES = ("anonymous", "another user", "the owner", "an admin")
Json = dict[str, Any]
IMAGE_URL = "https://images.example.com/lamp.png"


@dataclass(frozen=True)
class Call:
    """One request to a route, and the status each role gets for it, in the order of ROLES."""

    method: str
    url: str
    statuses: tuple[int, int, int, int]
    json: Any = None


READ = (200, 200, 200, 200)


def admins(status: int) -> tuple[int, int, int, int]:
    return (401, 403, 403, status)


A_PRODUCT = {"name": "Desk", "price": "99.00", "category_id": "{category_id}"}

EXPECTED: dict[str, Call] = {
    "GET /health/live": Call("GET", "/health/live", READ),
    "GET /health/ready": Call("GET", "/health/ready", READ),
    "POST /categories/": Call("POST", "/categories/", admins(201), json={"name": "Garden"}),
    "GET /categories/": Call("GET", "/categories/", READ),
    "GET /categories/{category_id:int}": Call("GET", "/categories/{category_id}", READ),
    "PATCH /categories/{category_id:int}": Call(
        "PATCH", "/categories/{category_id}", admins(200), json={"name": "Lighting"}
    ),
    "DELETE /categories/{category_id:int}": Call(
        "DELETE", "/categories/{empty_category_id}", admins(204)
    ),
    "GET /categories/{category_id:int}/products": Call(
        "GET", "/categories/{category_id}/products", READ
    ),
    "POST /products/": Call("POST", "/products/", admins(201), json=A_PRODUCT),
    "POST /products/bulk": Call("POST", "/products/bulk", admins(201), json=[A_PRODUCT]),
    "GET /products/": Call("GET", "/products/", READ),
    "GET /products/{product_id:int}": Call("GET", "/products/{product_id}", READ),
    "PATCH /products/{product_id:int}": Call(
        "PATCH", "/products/{product_id}", admins(200), json={"price": "12.50"}
    ),
    "DELETE /products/{product_id:int}": Call("DELETE", "/products/{product_id}", admins(204)),
    "POST /products/{product_id:int}/stock-adjustments": Call(
        "POST", "/products/{product_id}/stock-adjustments", admins(200), json={"delta": -1}
    ),
    "GET /products/{product_id:int}/images": Call("GET", "/products/{product_id}/images", READ),
    "POST /products/{product_id:int}/images": Call(
        "POST",
        "/products/{product_id}/images",
        admins(201),
        json={"image_url": "https://images.example.com/lamp-side.png"},
    ),
    "GET /products/{product_id:int}/images/{image_id:int}": Call(
        "GET", "/products/{product_id}/images/{image_id}", READ
    ),
    "PATCH /products/{product_id:int}/images/{image_id:int}": Call(
        "PATCH", "/products/{product_id}/images/{image_id}", admins(200), json={"is_primary": False}
    ),
    "DELETE /products/{product_id:int}/images/{image_id:int}": Call(
        "DELETE", "/products/{product_id}/images/{image_id}", admins(204)
    ),
}


def _routes(app: FastAPI) -> dict[str, APIRoute]:
    return {
        f"{method} {route.path}": route
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods or ())
    }


ROUTES = _routes(create_app(CatalogSettings()))


def test_every_route_has_expectations() -> None:
    assert sorted(ROUTES) == sorted(EXPECTED)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_anonymous_callers_are_refused_exactly_where_the_rule_needs_a_token(route: str) -> None:
    needs_token = access_rule(ROUTES[route]) != "anyone"

    assert (EXPECTED[route].statuses[0] == 401) is needs_token


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_write_is_for_admins_alone(route: str) -> None:
    rule = access_rule(ROUTES[route])

    assert rule == ("anyone" if route.startswith("GET ") else "admin")


async def _stored(client: httpx.AsyncClient) -> Json:
    """Everything the catalog holds, as an admin reads it (products carry their images)."""
    categories = (await client.get("/categories/", params={"limit": 100})).json()
    products = (await client.get("/products/", params={"limit": 100})).json()
    return {"categories": categories, "products": products}


@pytest.fixture
async def seeded(client: httpx.AsyncClient) -> dict[str, int]:
    """A category with a product in stock that has a primary image, and an empty category."""
    category = await client.post("/categories/", json={"name": "Lamps"})
    empty = await client.post("/categories/", json={"name": "Empty"})
    product = await client.post(
        "/products/",
        json={
            "name": "Lamp",
            "price": "10.00",
            "category_id": category.json()["id"],
            "stock_quantity": 5,
        },
    )
    image = await client.post(
        f"/products/{product.json()['id']}/images",
        json={"image_url": IMAGE_URL, "is_primary": True},
    )
    responses = [category, empty, product, image]
    assert [response.status_code for response in responses] == [201] * 4
    return {
        "category_id": category.json()["id"],
        "empty_category_id": empty.json()["id"],
        "product_id": product.json()["id"],
        "image_id": image.json()["id"],
    }


@pytest.fixture
async def callers(
    app: FastAPI, client: httpx.AsyncClient, token_issuer: TokenIssuer
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A client per role, on the same app and tables as `client`."""
    headers = {
        "anonymous": {},
        "another user": token_issuer.headers(OTHER_ID),
        "the owner": token_issuer.headers(OWNER_ID),
        "an admin": token_issuer.admin_headers(),
    }
    async with AsyncExitStack() as stack:
        yield {
            role: await stack.enter_async_context(asgi_client(app, headers=headers[role]))
            for role in ROLES
        }


def _filled(value: Any, ids: dict[str, int]) -> Any:
    """A request body with the seeded ids in place of their `{names}`."""
    if isinstance(value, dict):
        return {key: _filled(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_filled(item, ids) for item in value]
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    return value


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(EXPECTED))
async def test_access_matrix(
    route: str,
    role: str,
    seeded: dict[str, int],
    client: httpx.AsyncClient,
    callers: dict[str, httpx.AsyncClient],
) -> None:
    call = EXPECTED[route]
    before = await _stored(client)

    response = await callers[role].request(
        call.method, call.url.format(**seeded), json=_filled(call.json, seeded)
    )

    expected = call.statuses[ROLES.index(role)]
    assert response.status_code == expected, response.text
    after = await _stored(client)
    if expected in (401, 403) or call.method == "GET":
        assert after == before
    else:
        assert after != before
    if expected == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
