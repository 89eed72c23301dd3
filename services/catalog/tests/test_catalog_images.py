"""Product images: http(s) URLs, at most one primary image per product, shown with the product."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from catalog_service.models import ProductImage
from servicekit.testing import database_of, walk

Body = dict[str, Any]
Make = Callable[..., Awaitable[Body]]
URL = "https://img.example/lamp.jpg"


async def add_image(
    client: httpx.AsyncClient, product_id: int, url: str = URL, **fields: Any
) -> Body:
    response = await client.post(
        f"/products/{product_id}/images", json={"image_url": url, **fields}
    )
    assert response.status_code == 201, response.text
    body: Body = response.json()
    return body


async def primary_images(client: httpx.AsyncClient, product_id: int) -> list[int]:
    images = (await client.get(f"/products/{product_id}/images")).json()
    return [image["id"] for image in images if image["is_primary"]]


async def image_count(app: FastAPI) -> int:
    async with database_of(app).reader() as session:
        return await session.scalar(select(func.count()).select_from(ProductImage)) or 0


@pytest.fixture
async def product(make_product: Make) -> Body:
    return await make_product()


async def test_add_returns_201_with_location_and_the_image(
    client: httpx.AsyncClient, product: Body
) -> None:
    response = await client.post(f"/products/{product['id']}/images", json={"image_url": URL})

    assert response.status_code == 201
    body = response.json()
    assert (body["product_id"], body["image_url"], body["is_primary"]) == (
        product["id"],
        URL,
        False,
    )
    location = f"/products/{product['id']}/images/{body['id']}"
    assert response.headers["Location"] == location
    assert (await client.get(location)).json() == body


async def test_the_product_shows_its_images_in_the_order_they_were_added(
    client: httpx.AsyncClient, product: Body
) -> None:
    first = await add_image(client, product["id"], "https://img.example/1.jpg")
    second = await add_image(client, product["id"], "http://img.example/2.png", is_primary=True)

    shown = (await client.get(f"/products/{product['id']}")).json()["images"]

    assert shown == [first, {**second, "is_primary": True}]


async def test_adding_an_image_gives_the_product_a_new_etag(
    client: httpx.AsyncClient, product: Body
) -> None:
    await add_image(client, product["id"])

    response = await client.get(f"/products/{product['id']}", headers={"If-None-Match": '"1"'})

    assert response.status_code == 200
    assert response.headers["ETag"] == '"2"'


@pytest.mark.parametrize(
    "url",
    [
        "ftp://img.example/lamp.jpg",
        "javascript:alert(1)",
        "/lamp.jpg",
        "lamp.jpg",
        "https://",
        "https://img.example/la\x00mp.jpg",
        "https://img.example/" + "x" * 2048,
        "https://img.example/" + "é" * 1000,
        "",
    ],
    ids=["ftp", "javascript", "relative", "bare", "no-host", "nul", "long", "long-once-encoded",
         "empty"],
)  # fmt: skip
async def test_urls_that_are_not_http_or_too_long_are_422_and_store_nothing(
    app: FastAPI, client: httpx.AsyncClient, product: Body, url: str
) -> None:
    response = await client.post(f"/products/{product['id']}/images", json={"image_url": url})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "image_url"]
    assert await image_count(app) == 0


async def test_unknown_fields_are_422(client: httpx.AsyncClient, product: Body) -> None:
    response = await client.post(
        f"/products/{product['id']}/images", json={"image_url": URL, "alt": "A lamp"}
    )

    assert response.status_code == 422


async def test_a_new_primary_image_makes_the_previous_one_ordinary(
    client: httpx.AsyncClient, product: Body
) -> None:
    old = await add_image(client, product["id"], is_primary=True)

    new = await add_image(client, product["id"], "https://img.example/new.jpg", is_primary=True)

    assert new["is_primary"] is True
    assert await primary_images(client, product["id"]) == [new["id"]]
    stored_old = (await client.get(f"/products/{product['id']}/images/{old['id']}")).json()
    assert stored_old["is_primary"] is False


async def test_an_ordinary_image_leaves_the_primary_one_alone(
    client: httpx.AsyncClient, product: Body
) -> None:
    primary = await add_image(client, product["id"], is_primary=True)

    await add_image(client, product["id"], "https://img.example/other.jpg")

    assert await primary_images(client, product["id"]) == [primary["id"]]


async def test_primary_images_of_different_products_do_not_interfere(
    client: httpx.AsyncClient, make_product: Make
) -> None:
    lamp, chair = await make_product("Lamp"), await make_product("Chair")

    lamp_image = await add_image(client, lamp["id"], is_primary=True)
    chair_image = await add_image(client, chair["id"], is_primary=True)

    assert await primary_images(client, lamp["id"]) == [lamp_image["id"]]
    assert await primary_images(client, chair["id"]) == [chair_image["id"]]


async def test_patch_makes_an_image_primary_and_the_previous_one_ordinary(
    client: httpx.AsyncClient, product: Body
) -> None:
    old = await add_image(client, product["id"], is_primary=True)
    other = await add_image(client, product["id"], "https://img.example/other.jpg")

    response = await client.patch(
        f"/products/{product['id']}/images/{other['id']}", json={"is_primary": True}
    )

    assert (response.status_code, response.json()["is_primary"]) == (200, True)
    assert await primary_images(client, product["id"]) == [other["id"]]
    assert old["id"] not in await primary_images(client, product["id"])


async def test_patch_of_the_primary_image_to_primary_keeps_it_primary(
    client: httpx.AsyncClient, product: Body
) -> None:
    image = await add_image(client, product["id"], is_primary=True)

    response = await client.patch(
        f"/products/{product['id']}/images/{image['id']}", json={"is_primary": True}
    )

    assert response.status_code == 200
    assert await primary_images(client, product["id"]) == [image["id"]]


async def test_simultaneous_new_primary_images_all_succeed_and_leave_one_primary(
    client: httpx.AsyncClient, product: Body
) -> None:
    responses = await asyncio.gather(
        *(
            client.post(
                f"/products/{product['id']}/images",
                json={"image_url": f"https://img.example/{index}.jpg", "is_primary": True},
            )
            for index in range(8)
        )
    )

    assert [response.status_code for response in responses] == [201] * 8
    assert len(await primary_images(client, product["id"])) == 1


async def test_an_empty_patch_changes_nothing(client: httpx.AsyncClient, product: Body) -> None:
    image = await add_image(client, product["id"])

    response = await client.patch(f"/products/{product['id']}/images/{image['id']}", json={})

    assert (response.status_code, response.json()) == (200, image)
    assert (await client.get(f"/products/{product['id']}")).json()["version"] == 2


async def test_patch_changes_the_url(client: httpx.AsyncClient, product: Body) -> None:
    image = await add_image(client, product["id"])

    response = await client.patch(
        f"/products/{product['id']}/images/{image['id']}",
        json={"image_url": "https://img.example/better.jpg"},
    )

    assert response.json()["image_url"] == "https://img.example/better.jpg"
    stored = await client.get(f"/products/{product['id']}/images/{image['id']}")
    assert stored.json()["image_url"] == "https://img.example/better.jpg"


async def test_the_database_allows_one_primary_image_per_product(
    app: FastAPI, client: httpx.AsyncClient, product: Body
) -> None:
    await add_image(client, product["id"], is_primary=True)

    with pytest.raises(IntegrityError):
        async with database_of(app).transaction() as session:
            await session.execute(
                insert(ProductImage).values(
                    product_id=product["id"], image_url=URL, is_primary=True
                )
            )

    assert await image_count(app) == 1


async def test_the_database_allows_many_ordinary_images_per_product(
    app: FastAPI, product: Body
) -> None:
    async with database_of(app).transaction() as session:
        for _ in range(3):
            await session.execute(
                insert(ProductImage).values(product_id=product["id"], image_url=URL)
            )

    assert await image_count(app) == 3


async def test_images_list_pages_through_every_image(
    client: httpx.AsyncClient, product: Body
) -> None:
    ids = [
        (await add_image(client, product["id"], f"https://img.example/{i}.jpg"))["id"]
        for i in range(5)
    ]

    rows = await walk(client, f"/products/{product['id']}/images?limit=2")

    assert [row["id"] for row in rows] == ids


async def test_a_product_has_at_most_20_images(
    app: FastAPI, client: httpx.AsyncClient, product: Body
) -> None:
    for index in range(20):
        await add_image(client, product["id"], f"https://img.example/{index}.jpg")

    response = await client.post(f"/products/{product['id']}/images", json={"image_url": URL})

    assert response.status_code == 409
    assert "20 images" in response.json()["detail"]
    assert await image_count(app) == 20


async def test_delete_is_204_and_the_image_is_gone(
    client: httpx.AsyncClient, product: Body
) -> None:
    image = await add_image(client, product["id"], is_primary=True)

    response = await client.delete(f"/products/{product['id']}/images/{image['id']}")

    assert (response.status_code, response.content) == (204, b"")
    assert (await client.get(f"/products/{product['id']}/images/{image['id']}")).status_code == 404
    assert (await client.get(f"/products/{product['id']}")).json()["images"] == []


async def test_an_image_is_found_only_under_its_own_product(
    client: httpx.AsyncClient, make_product: Make
) -> None:
    lamp, chair = await make_product("Lamp"), await make_product("Chair")
    image = await add_image(client, lamp["id"])

    wrong = f"/products/{chair['id']}/images/{image['id']}"

    assert (await client.get(wrong)).status_code == 404
    assert (await client.patch(wrong, json={"is_primary": True})).status_code == 404
    response = await client.delete(wrong)
    assert response.status_code == 404
    assert response.json() == {"detail": f"image {image['id']} of product {chair['id']} not found"}
    assert (await client.get(f"/products/{lamp['id']}/images/{image['id']}")).status_code == 200


async def test_a_failed_image_change_leaves_the_product_version_alone(
    client: httpx.AsyncClient, product: Body
) -> None:
    await client.delete(f"/products/{product['id']}/images/999")

    assert (await client.get(f"/products/{product['id']}")).json()["version"] == 1


async def test_deleting_a_product_deletes_its_images(
    app: FastAPI, client: httpx.AsyncClient, product: Body
) -> None:
    await add_image(client, product["id"], is_primary=True)
    await add_image(client, product["id"], "https://img.example/other.jpg")

    response = await client.delete(f"/products/{product['id']}")

    assert response.status_code == 204
    assert await image_count(app) == 0
