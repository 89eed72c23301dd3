"""Bulk creation: up to 1,000 products in one transaction, all or nothing, in batched INSERTs."""

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from catalog_service.models import Product
from servicekit.testing import count_statements, database_of

Body = dict[str, Any]


async def product_count(app: FastAPI) -> int:
    async with database_of(app).reader() as session:
        return await session.scalar(select(func.count()).select_from(Product)) or 0


def items(count: int, category_id: int) -> list[Body]:
    return [
        {"name": f"Item {index}", "price": f"{index}.99", "category_id": category_id}
        for index in range(count)
    ]


async def test_bulk_create_returns_201_and_every_product_in_the_order_given(
    client: httpx.AsyncClient, category: Body
) -> None:
    body = items(3, category["id"])
    body[1] |= {"description": "The middle one", "stock_quantity": 7, "is_active": False}

    response = await client.post("/products/bulk", json=body)

    assert response.status_code == 201
    created = response.json()
    assert [product["name"] for product in created] == ["Item 0", "Item 1", "Item 2"]
    assert [product["price"] for product in created] == ["0.99", "1.99", "2.99"]
    assert created[1]["description"] == "The middle one"
    assert (created[1]["stock_quantity"], created[1]["is_active"]) == (7, False)
    assert created[0]["category"] == {"id": category["id"], "name": "Books"}
    assert all(product["images"] == [] and product["version"] == 1 for product in created)
    ids = [product["id"] for product in created]
    assert ids == sorted(ids)
    for product in created:
        assert (await client.get(f"/products/{product['id']}")).json() == product


async def test_bulk_created_products_were_last_updated_when_they_were_created(
    client: httpx.AsyncClient, category: Body
) -> None:
    response = await client.post("/products/bulk", json=items(50, category["id"]))

    assert response.status_code == 201
    assert all(product["updated_at"] == product["created_at"] for product in response.json())


@pytest.mark.parametrize(
    "text", ['say "hi", {ok}', "back\\slash \\N", "NULL", "zero-width \u200b, ünïcødé ✓"]
)
async def test_bulk_create_stores_text_exactly_as_given(
    client: httpx.AsyncClient, category: Body, text: str
) -> None:
    body = [
        {"name": f"{text} 1", "description": text, "price": "1.00", "category_id": category["id"]},
        {"name": f"{text} 2", "price": "2.00", "category_id": category["id"]},
    ]

    response = await client.post("/products/bulk", json=body)

    assert response.status_code == 201
    created = response.json()
    assert [(product["name"], product["description"]) for product in created] == [
        (f"{text} 1", text),
        (f"{text} 2", None),
    ]
    stored = (await client.get(f"/products/{created[0]['id']}")).json()
    assert (stored["name"], stored["description"]) == (f"{text} 1", text)


async def test_bulk_create_of_1000_products_stores_them_all(
    app: FastAPI, client: httpx.AsyncClient, category: Body
) -> None:
    response = await client.post("/products/bulk", json=items(1000, category["id"]))

    assert response.status_code == 201
    assert len({product["id"] for product in response.json()}) == 1000
    assert await product_count(app) == 1000


async def test_bulk_insert_statements_do_not_grow_with_the_number_of_products(
    app: FastAPI, client: httpx.AsyncClient, category: Body
) -> None:
    database = database_of(app)
    with count_statements(database) as ten:
        assert (await client.post("/products/bulk", json=items(10, category["id"]))).is_success
    with count_statements(database) as thousand:
        assert (await client.post("/products/bulk", json=items(1000, category["id"]))).is_success

    assert thousand.count == ten.count
    assert thousand.touched(Product.metadata) == [
        ("SELECT", {"categories"}),
        ("INSERT", {"products"}),
    ]
    assert thousand.count <= 3  # (BEGIN,) the categories, the INSERT


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"price": "-1"}, "price"),
        ({"price": "1.234"}, "price"),
        ({"name": ""}, "name"),
        ({"stock_quantity": -5}, "stock_quantity"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_one_bad_item_is_422_naming_its_index_and_nothing_is_stored(
    app: FastAPI, client: httpx.AsyncClient, category: Body, bad: Body, field: str
) -> None:
    body = items(5, category["id"])
    body[3] |= bad

    response = await client.post("/products/bulk", json=body)

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["body", 3, field]]
    assert await product_count(app) == 0


async def test_unknown_categories_are_422_naming_every_index_and_nothing_is_stored(
    app: FastAPI, client: httpx.AsyncClient, category: Body
) -> None:
    body = items(5, category["id"])
    body[1]["category_id"] = 998
    body[4]["category_id"] = 999

    response = await client.post("/products/bulk", json=body)

    assert response.status_code == 422
    assert [(error["loc"], error["msg"]) for error in response.json()["detail"]] == [
        (["body", 1, "category_id"], "category 998 does not exist"),
        (["body", 4, "category_id"], "category 999 does not exist"),
    ]
    assert await product_count(app) == 0


async def test_categories_are_checked_with_one_query_for_the_whole_batch(
    app: FastAPI, client: httpx.AsyncClient, make_category: Any
) -> None:
    categories = [await make_category(f"Category {index}") for index in range(10)]
    body = [item for c in categories for item in items(10, c["id"])]

    with count_statements(database_of(app)) as log:
        assert (await client.post("/products/bulk", json=body)).status_code == 201

    assert log.touched(Product.metadata) == [("SELECT", {"categories"}), ("INSERT", {"products"})]


@pytest.mark.parametrize(
    "body",
    [[], {"name": "Lamp"}, "products", None],
    ids=["empty", "object", "string", "null"],
)
async def test_a_body_that_is_not_a_list_of_products_is_422(
    client: httpx.AsyncClient, body: object
) -> None:
    assert (await client.post("/products/bulk", json=body)).status_code == 422


async def test_more_than_1000_products_is_422_and_stores_nothing(
    app: FastAPI, client: httpx.AsyncClient, category: Body
) -> None:
    response = await client.post("/products/bulk", json=items(1001, category["id"]))

    assert response.status_code == 422
    assert await product_count(app) == 0


async def test_bulk_is_not_taken_for_a_product_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/products/bulk")

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
