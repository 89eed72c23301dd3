"""Idempotency-Keys of the catalog's creates and stock adjustments."""

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

from servicekit.testing import (
    ServiceProcess,
    TokenIssuer,
    libpq_url,
    lock_waits,
    poll,
    started,
)
from servicekit.testing.idempotency import (
    KEY,
    REPLAYED,
    answer_of,
    assert_replayed,
    new_key,
    sent_twice,
)
from servicekit.testing.plugin import MakeDatabase

Body = dict[str, Any]
Make = Callable[..., Awaitable[Body]]
ALEMBIC_INI = Path(__file__).parents[1] / "alembic.ini"


async def adjust(
    client: httpx.AsyncClient, product_id: int, delta: int, key: str
) -> httpx.Response:
    return await client.post(
        f"/products/{product_id}/stock-adjustments", json={"delta": delta}, headers={KEY: key}
    )


async def stock_of(client: httpx.AsyncClient, product_id: int) -> int:
    stock: int = (await client.get(f"/products/{product_id}")).json()["stock_quantity"]
    return stock


async def test_a_stock_adjustment_repeated_with_its_key_is_applied_once(
    client: httpx.AsyncClient, make_product: Make
) -> None:
    product = await make_product(stock_quantity=10)
    path = f"/products/{product['id']}/stock-adjustments"

    first, repeated = await sent_twice(client, path, {"delta": -3})

    assert_replayed(first, repeated, 200)
    assert first.headers["ETag"] == '"2"'
    assert await stock_of(client, product["id"]) == 7


async def test_a_refused_adjustment_keeps_no_key_and_applies_once_it_can(
    client: httpx.AsyncClient, make_product: Make
) -> None:
    product = await make_product(stock_quantity=1)
    key = new_key()

    refused = await adjust(client, product["id"], -2, key)
    restocked = await adjust(client, product["id"], 5, new_key())
    applied = await adjust(client, product["id"], -2, key)

    assert [refused.status_code, restocked.status_code, applied.status_code] == [409, 200, 200]
    assert REPLAYED not in applied.headers
    assert await stock_of(client, product["id"]) == 4


async def test_a_key_names_one_route_and_its_parameters(
    client: httpx.AsyncClient, make_product: Make
) -> None:
    one, other = await make_product(stock_quantity=5), await make_product(stock_quantity=5)
    key = new_key()
    assert (await adjust(client, one["id"], -1, key)).status_code == 200

    elsewhere = await adjust(client, other["id"], -1, key)
    created = await client.post("/categories/", json={"name": "Lamps"}, headers={KEY: key})

    for refused in elsewhere, created:
        assert refused.status_code == 422
        [error] = refused.json()["detail"]
        assert error["msg"].startswith(
            f"this key was used for POST /products/{one['id']}/stock-adjustments:"
        )
    assert [await stock_of(client, one["id"]), await stock_of(client, other["id"])] == [4, 5]
    assert [category["name"] for category in (await client.get("/categories/")).json()] == ["Books"]


async def test_a_bulk_create_repeated_with_its_key_is_applied_once(
    client: httpx.AsyncClient, category: Body
) -> None:
    items = [
        {"name": f"Lamp {n}", "price": "10.00", "category_id": category["id"]} for n in range(3)
    ]

    first, repeated = await sent_twice(client, "/products/bulk", items)

    assert_replayed(first, repeated)
    assert len((await client.get("/products/")).json()) == 3


async def test_an_image_added_again_with_its_key_is_added_once(
    client: httpx.AsyncClient, make_product: Make
) -> None:
    product = await make_product()
    path = f"/products/{product['id']}/images"

    first, repeated = await sent_twice(client, path, {"image_url": "https://example.com/lamp.png"})

    assert_replayed(first, repeated)
    assert len((await client.get(path)).json()) == 1


async def test_stock_adjustments_document_the_key(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/products/{product_id}/stock-adjustments"]["post"]

    assert KEY in [parameter["name"] for parameter in operation["parameters"]]


async def test_two_replicas_sent_one_request_at_once_apply_it_once(
    make_database: MakeDatabase, token_issuer: TokenIssuer
) -> None:
    url = make_database("postgresql", "catalog_replicas")
    environment = {"CATALOG_ENVIRONMENT": "test", "CATALOG_AUTH_JWKS_URL": token_issuer.jwks_url}
    replicas = {
        name: ServiceProcess("catalog", url, ALEMBIC_INI, environment) for name in ("one", "two")
    }
    admin = token_issuer.admin_headers()
    with started(replicas):
        one, two = (
            httpx.AsyncClient(base_url=replica.url, headers=admin) for replica in replicas.values()
        )
        async with one, two:
            category = (await one.post("/categories/", json={"name": "Lamps"})).json()
            product = (
                await one.post(
                    "/products/",
                    json={"name": "Lamp", "price": "1.00", "category_id": category["id"]}
                    | {"stock_quantity": 5},
                )
            ).json()
            key = new_key()
            # The first replica holds the key and waits for the products table, locked here;
            # the second waits for the first's key. Then the table is let go.
            async with await psycopg.AsyncConnection.connect(libpq_url(url)) as holder:
                await holder.execute("LOCK TABLE products IN EXCLUSIVE MODE")
                first = asyncio.ensure_future(adjust(one, product["id"], -1, key))
                await asyncio.to_thread(poll, lambda: lock_waits(url), lambda n: n >= 1, 15, "one")
                second = asyncio.ensure_future(adjust(two, product["id"], -1, key))
                await asyncio.to_thread(poll, lambda: lock_waits(url), lambda n: n >= 2, 15, "two")
                await holder.rollback()
            answers = [await first, await second]
            stock = await stock_of(one, product["id"])

    assert [answer.status_code for answer in answers] == [200, 200], answers[1].text
    assert answer_of(answers[0]) == answer_of(answers[1])
    assert [answer.headers.get(REPLAYED) for answer in answers] == [None, "true"]
    assert stock == 4
