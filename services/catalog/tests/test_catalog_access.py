"""Who may call each route of the catalog: for every route and each of anonymous, another user,
the owner and an admin, the status expected; and nothing stored changes when a call is refused.

Catalog entries have no owner but the admins: every write is theirs alone, so "the owner" (a
signed-in user who is not an admin) is refused like any other user, and reads are anyone's.
The routes come from the app's own route table, so a route added without an entry here fails
`test_every_route_has_expectations`.
"""

from typing import Any

import httpx
import pytest

from catalog_service.main import create_app
from catalog_service.settings import CatalogSettings
from servicekit.auth import access_rule
from servicekit.testing.access import EVERY_PROCESS, AccessMatrix, Call, admins, anyones, routes_of

OWNER_ID = 41
OTHER_ID = 42
Json = dict[str, Any]
IMAGE_URL = "https://images.example.com/lamp.png"

A_PRODUCT = {"name": "Desk", "price": "99.00", "category_id": "{category_id}"}

EXPECTED: dict[str, Call] = {
    **EVERY_PROCESS,
    "POST /categories/": Call("POST", "/categories/", admins(201), json={"name": "Garden"}),
    "GET /categories/": Call("GET", "/categories/", anyones(200)),
    "GET /categories/{category_id:int}": Call("GET", "/categories/{category_id}", anyones(200)),
    "PATCH /categories/{category_id:int}": Call(
        "PATCH", "/categories/{category_id}", admins(200), json={"name": "Lighting"}
    ),
    "DELETE /categories/{category_id:int}": Call(
        "DELETE", "/categories/{empty_category_id}", admins(204)
    ),
    "GET /categories/{category_id:int}/products": Call(
        "GET", "/categories/{category_id}/products", anyones(200)
    ),
    "POST /products/": Call("POST", "/products/", admins(201), json=A_PRODUCT),
    "POST /products/bulk": Call("POST", "/products/bulk", admins(201), json=[A_PRODUCT]),
    "GET /products/": Call("GET", "/products/", anyones(200)),
    "GET /products/{product_id:int}": Call("GET", "/products/{product_id}", anyones(200)),
    "PATCH /products/{product_id:int}": Call(
        "PATCH", "/products/{product_id}", admins(200), json={"price": "12.50"}
    ),
    "DELETE /products/{product_id:int}": Call("DELETE", "/products/{product_id}", admins(204)),
    "POST /products/{product_id:int}/stock-adjustments": Call(
        "POST", "/products/{product_id}/stock-adjustments", admins(200), json={"delta": -1}
    ),
    "GET /products/{product_id:int}/images": Call(
        "GET", "/products/{product_id}/images", anyones(200)
    ),
    "POST /products/{product_id:int}/images": Call(
        "POST",
        "/products/{product_id}/images",
        admins(201),
        json={"image_url": "https://images.example.com/lamp-side.png"},
    ),
    "GET /products/{product_id:int}/images/{image_id:int}": Call(
        "GET", "/products/{product_id}/images/{image_id}", anyones(200)
    ),
    "PATCH /products/{product_id:int}/images/{image_id:int}": Call(
        "PATCH", "/products/{product_id}/images/{image_id}", admins(200), json={"is_primary": False}
    ),
    "DELETE /products/{product_id:int}/images/{image_id:int}": Call(
        "DELETE", "/products/{product_id}/images/{image_id}", admins(204)
    ),
}


ROUTES = routes_of(create_app(CatalogSettings()))
# Routes of the process rather than of the catalog, each with the rule it takes.
PROCESS_ROUTES = {"GET /metrics": "metrics"}


class TestAccess(AccessMatrix):
    expected = EXPECTED
    routes = ROUTES
    owner_id = OWNER_ID
    other_id = OTHER_ID

    @staticmethod
    async def stored(client: httpx.AsyncClient) -> Json:
        """Everything the catalog holds, as an admin reads it (products carry their images)."""
        categories = (await client.get("/categories/", params={"limit": 100})).json()
        products = (await client.get("/products/", params={"limit": 100})).json()
        return {"categories": categories, "products": products}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_write_is_for_admins_alone(route: str) -> None:
    rule = access_rule(ROUTES[route])

    assert rule == PROCESS_ROUTES.get(route, "anyone" if route.startswith("GET ") else "admin")


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
