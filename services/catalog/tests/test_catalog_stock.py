"""Stock adjustments: applied atomically by the database, never below zero, even under a rush."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

Body = dict[str, Any]
Make = Callable[..., Awaitable[Body]]


async def adjust(client: httpx.AsyncClient, product_id: int, delta: object) -> httpx.Response:
    return await client.post(f"/products/{product_id}/stock-adjustments", json={"delta": delta})


async def stored(client: httpx.AsyncClient, product_id: int) -> Body:
    body: Body = (await client.get(f"/products/{product_id}")).json()
    return body


@pytest.mark.parametrize(("delta", "expected"), [(5, 15), (-3, 7), (-10, 0)])
async def test_an_adjustment_changes_the_stock_and_the_version(
    client: httpx.AsyncClient, make_product: Make, delta: int, expected: int
) -> None:
    product = await make_product(stock_quantity=10)

    response = await adjust(client, product["id"], delta)

    assert response.status_code == 200
    body = response.json()
    assert (body["stock_quantity"], body["version"]) == (expected, 2)
    assert response.headers["ETag"] == '"2"'
    assert body["updated_at"] >= product["updated_at"]
    assert await stored(client, product["id"]) == body


async def test_an_adjustment_responds_with_the_whole_product(
    client: httpx.AsyncClient, category: Body, make_product: Make
) -> None:
    product = await make_product(stock_quantity=1)
    await client.post(
        f"/products/{product['id']}/images", json={"image_url": "https://img.example/a.jpg"}
    )

    body = (await adjust(client, product["id"], 1)).json()

    assert body["category"] == {"id": category["id"], "name": "Books"}
    assert [image["image_url"] for image in body["images"]] == ["https://img.example/a.jpg"]


async def test_removing_more_than_is_in_stock_is_409_and_changes_nothing(
    client: httpx.AsyncClient, make_product: Make
) -> None:
    product = await make_product(stock_quantity=3)

    response = await adjust(client, product["id"], -4)

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"insufficient stock: product {product['id']} has 3 in stock, "
        "so 4 cannot be removed"
    }
    assert await stored(client, product["id"]) == product


async def test_stock_cannot_grow_past_one_billion(
    client: httpx.AsyncClient, make_product: Make
) -> None:
    product = await make_product(stock_quantity=1_000_000_000)

    response = await adjust(client, product["id"], 1)

    assert response.status_code == 409
    assert await stored(client, product["id"]) == product


@pytest.mark.parametrize(
    "delta", [0, 1_000_000_001, -1_000_000_001, 2**31, -(2**63), 2**70, 1.5, "1", None, True]
)
async def test_a_delta_that_is_zero_or_not_a_bounded_integer_is_422(
    client: httpx.AsyncClient, make_product: Make, delta: object
) -> None:
    product = await make_product(stock_quantity=3)

    response = await adjust(client, product["id"], delta)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "delta"]
    assert await stored(client, product["id"]) == product


async def test_unknown_fields_are_422(client: httpx.AsyncClient, make_product: Make) -> None:
    product = await make_product(stock_quantity=3)

    response = await client.post(
        f"/products/{product['id']}/stock-adjustments", json={"delta": 1, "reason": "gift"}
    )

    assert response.status_code == 422


async def test_thirty_simultaneous_removals_from_a_stock_of_ten_sell_exactly_ten(
    client: httpx.AsyncClient, make_product: Make
) -> None:
    product = await make_product(stock_quantity=10)

    responses = await asyncio.gather(*(adjust(client, product["id"], -1) for _ in range(30)))

    statuses = [response.status_code for response in responses]
    assert (statuses.count(200), statuses.count(409)) == (10, 20)
    assert sorted(r.json()["stock_quantity"] for r in responses if r.status_code == 200) == list(
        range(10)
    )
    final = await stored(client, product["id"])
    assert (final["stock_quantity"], final["version"]) == (0, 11)


async def test_simultaneous_additions_and_removals_all_count(
    client: httpx.AsyncClient, make_product: Make
) -> None:
    product = await make_product(stock_quantity=20)
    deltas = [3, -2] * 10

    responses = await asyncio.gather(*(adjust(client, product["id"], d) for d in deltas))

    assert {response.status_code for response in responses} == {200}
    assert (await stored(client, product["id"]))["stock_quantity"] == 30
