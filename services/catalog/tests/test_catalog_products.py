"""Creating, reading, updating and deleting products over HTTP, and what the database enforces."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from catalog_service.models import Product
from catalog_service.schemas import PRICE_PATTERN
from servicekit.testing import created, database_of

Body = dict[str, Any]
Make = Callable[..., Awaitable[Body]]


async def product_count(app: FastAPI) -> int:
    async with database_of(app).reader() as session:
        return await session.scalar(select(func.count()).select_from(Product)) or 0


async def test_create_returns_201_with_location_etag_and_the_product(
    client: httpx.AsyncClient, category: Body
) -> None:
    response = await client.post(
        "/products/",
        json={
            "name": "Desk lamp",
            "description": "Warm light",
            "price": "19.90",
            "category_id": category["id"],
            "stock_quantity": 5,
        },
    )

    body = await created(client, response, "/products/")
    assert body["name"] == "Desk lamp"
    assert body["description"] == "Warm light"
    assert body["price"] == "19.90"
    assert body["category_id"] == category["id"]
    assert body["category"] == {"id": category["id"], "name": "Books"}
    assert body["stock_quantity"] == 5
    assert body["is_active"] is True
    assert body["images"] == []


async def test_a_new_product_was_last_updated_when_it_was_created(
    client: httpx.AsyncClient, category: Body
) -> None:
    response = await client.post(
        "/products/", json={"name": "Lamp", "price": "1.00", "category_id": category["id"]}
    )

    product = response.json()
    assert product["updated_at"] == product["created_at"]


async def test_stock_defaults_to_0_and_description_to_none(
    client: httpx.AsyncClient, category: Body
) -> None:
    response = await client.post(
        "/products/", json={"name": "Lamp", "price": 1, "category_id": category["id"]}
    )

    assert response.status_code == 201
    assert (response.json()["stock_quantity"], response.json()["description"]) == (0, None)


@pytest.mark.parametrize(
    ("price", "stored"),
    [
        ("19.90", "19.90"),
        ("19.9", "19.90"),
        (19.99, "19.99"),
        (0, "0.00"),
        ("-0", "0.00"),
        ("0.10", "0.10"),
        (0.1, "0.10"),
        ("99999999.99", "99999999.99"),
        ("19.9900", "19.99"),
    ],
)
async def test_prices_are_stored_exactly_with_two_places(
    client: httpx.AsyncClient, make_product: Make, price: object, stored: str
) -> None:
    product = await make_product(price=price)

    assert product["price"] == stored
    assert (await client.get(f"/products/{product['id']}")).json()["price"] == stored


@pytest.mark.parametrize(
    "price",
    ["-0.01", -1, "19.999", 0.001, "NaN", "Infinity", "-Infinity", "1e400", "100000000.00",
     "abc", "", True, None, [1]],
)  # fmt: skip
async def test_invalid_prices_are_422_and_store_nothing(
    app: FastAPI, client: httpx.AsyncClient, category: Body, price: object
) -> None:
    response = await client.post(
        "/products/", json={"name": "Lamp", "price": price, "category_id": category["id"]}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "price"]
    assert await product_count(app) == 0


async def test_an_unknown_category_is_422_naming_the_field_and_stores_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        "/products/", json={"name": "Lamp", "price": "1.00", "category_id": 999}
    )

    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "type": "value_error",
            "loc": ["body", "category_id"],
            "msg": "category 999 does not exist",
        }
    ]
    assert await product_count(app) == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"colour": "red"},
        {"name": "La\x00mp"},
        {"name": ""},
        {"name": "x" * 201},
        {"description": "x" * 5001},
        {"stock_quantity": -1},
        {"stock_quantity": 1_000_000_001},
        {"stock_quantity": 2**63},
        {"stock_quantity": 1.5},
        {"category_id": 0},
        {"category_id": 2**31},
        {"category_id": "1"},
        {"is_active": "yes"},
        {"id": 5},
        {"version": 9},
    ],
    ids=lambda fields: next(iter(fields)) + "=" + repr(next(iter(fields.values())))[:10],
)
async def test_invalid_bodies_are_422_and_store_nothing(
    app: FastAPI, client: httpx.AsyncClient, category: Body, fields: Body
) -> None:
    body = {"name": "Lamp", "price": "1.00", "category_id": category["id"], **fields}

    response = await client.post("/products/", json=body)

    assert response.status_code == 422
    assert "detail" in response.json()
    assert await product_count(app) == 0


@pytest.mark.parametrize("missing", ["name", "price", "category_id"])
async def test_required_fields_are_required(
    client: httpx.AsyncClient, category: Body, missing: str
) -> None:
    body = {"name": "Lamp", "price": "1.00", "category_id": category["id"]}
    del body[missing]

    response = await client.post("/products/", json=body)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", missing]


async def test_patch_changes_only_the_fields_sent_and_bumps_the_version(
    client: httpx.AsyncClient, make_product: Make
) -> None:
    product = await make_product(description="Warm light", stock_quantity=3)

    response = await client.patch(
        f"/products/{product['id']}", json={"price": "12.5", "is_active": False}
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["price"], body["is_active"], body["version"]) == ("12.50", False, 2)
    assert (body["name"], body["description"], body["stock_quantity"]) == ("Lamp", "Warm light", 3)
    assert body["updated_at"] >= product["updated_at"]
    assert response.headers["ETag"] == '"2"'
    assert (await client.get(f"/products/{product['id']}")).json() == body


async def test_patch_moves_a_product_to_another_category(
    client: httpx.AsyncClient, make_category: Make, make_product: Make
) -> None:
    product = await make_product()
    games = await make_category("Games")

    response = await client.patch(f"/products/{product['id']}", json={"category_id": games["id"]})

    assert response.status_code == 200
    assert response.json()["category_id"] == games["id"]
    assert response.json()["category"] == {"id": games["id"], "name": "Games"}
    stored = (await client.get(f"/products/{product['id']}")).json()
    assert stored["category"] == {"id": games["id"], "name": "Games"}


async def test_patch_to_an_unknown_category_is_422_and_changes_nothing(
    client: httpx.AsyncClient, category: Body, make_product: Make
) -> None:
    product = await make_product()

    response = await client.patch(f"/products/{product['id']}", json={"category_id": 999})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "category_id"]
    stored = (await client.get(f"/products/{product['id']}")).json()
    assert (stored["category_id"], stored["version"]) == (category["id"], 1)


async def test_patch_can_clear_the_description(
    client: httpx.AsyncClient, make_product: Make
) -> None:
    product = await make_product(description="Warm light")

    response = await client.patch(f"/products/{product['id']}", json={"description": None})

    assert response.status_code == 200
    assert (await client.get(f"/products/{product['id']}")).json()["description"] is None


@pytest.mark.parametrize(
    "fields",
    [{"name": None}, {"price": None}, {"price": "-1"}, {"stock_quantity": -1}, {"colour": "red"}],
)
async def test_invalid_patches_are_422_and_change_nothing(
    client: httpx.AsyncClient, make_product: Make, fields: Body
) -> None:
    product = await make_product()

    response = await client.patch(f"/products/{product['id']}", json=fields)

    assert response.status_code == 422
    assert (await client.get(f"/products/{product['id']}")).json() == product


async def test_patch_unknown_product_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.patch("/products/999", json={"name": "Nothing"})).status_code == 404


async def test_delete_is_204_and_the_product_is_gone(
    client: httpx.AsyncClient, make_product: Make
) -> None:
    product = await make_product()

    response = await client.delete(f"/products/{product['id']}")

    assert (response.status_code, response.content) == (204, b"")
    assert (await client.get(f"/products/{product['id']}")).status_code == 404


async def test_delete_unknown_product_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.delete("/products/999")).status_code == 404


async def test_the_database_refuses_negative_stock(
    app: FastAPI, client: httpx.AsyncClient, make_product: Make
) -> None:
    product = await make_product(stock_quantity=2)

    with pytest.raises(IntegrityError):
        async with database_of(app).transaction() as session:
            await session.execute(
                update(Product).where(Product.id == product["id"]).values(stock_quantity=-1)
            )

    assert (await client.get(f"/products/{product['id']}")).json()["stock_quantity"] == 2


async def test_the_database_refuses_a_negative_price_and_an_unknown_category(
    app: FastAPI, client: httpx.AsyncClient, category: Body
) -> None:
    rows = [
        {"name": "Lamp", "price": -1, "category_id": category["id"]},
        {"name": "Lamp", "price": 1, "category_id": 999},
    ]

    for row in rows:
        with pytest.raises(IntegrityError):
            async with database_of(app).transaction() as session:
                await session.execute(insert(Product).values(**row))

    assert await product_count(app) == 0


@pytest.mark.parametrize("price", ["1e2", "+5", " 5", "5 ", "1_000", "0x10", "19.", ".5"])
async def test_a_price_written_otherwise_than_the_schema_says_is_422(
    client: httpx.AsyncClient, category: Body, price: str
) -> None:
    response = await client.post(
        "/products/", json={"name": "Lamp", "price": price, "category_id": category["id"]}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "price"]


def test_the_schema_states_the_price_format_and_a_nonzero_delta(app: FastAPI) -> None:
    schemas = app.openapi()["components"]["schemas"]

    price = schemas["ProductCreate"]["properties"]["price"]
    delta = schemas["StockAdjustment"]["properties"]["delta"]

    assert {"type": "string", "pattern": PRICE_PATTERN} in price["anyOf"]
    assert {"type": "number", "minimum": 0, "maximum": 99999999.99, "multipleOf": 0.01} in price[
        "anyOf"
    ]
    assert delta["not"] == {"const": 0}
