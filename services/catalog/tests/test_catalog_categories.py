"""Creating, reading, listing, updating and deleting categories over HTTP."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from servicekit.testing import created, next_link, walk

Body = dict[str, Any]
Make = Callable[..., Awaitable[Body]]


async def test_create_returns_201_with_location_etag_and_the_category(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/categories/", json={"name": "Books", "description": "Paper and ink"}
    )

    body = await created(client, response, "/categories/")
    assert body["name"] == "Books"
    assert body["description"] == "Paper and ink"


async def test_a_new_category_was_last_updated_when_it_was_created(
    client: httpx.AsyncClient,
) -> None:
    category = (await client.post("/categories/", json={"name": "Books"})).json()

    assert category["updated_at"] == category["created_at"]


async def test_a_description_is_optional(client: httpx.AsyncClient) -> None:
    response = await client.post("/categories/", json={"name": "Books"})

    assert response.status_code == 201
    assert response.json()["description"] is None


async def test_a_name_differing_in_the_case_of_a_letter_beyond_ascii_is_409(
    client: httpx.AsyncClient, make_category: Make
) -> None:
    await make_category("Ärger")

    response = await client.post("/categories/", json={"name": "äRGER"})

    assert response.status_code == 409


@pytest.mark.parametrize("name", ["Books", "BOOKS", "books", "  Books  "])
async def test_a_name_that_exists_in_any_letter_case_is_409(
    client: httpx.AsyncClient, make_category: Make, name: str
) -> None:
    await make_category("Books")

    response = await client.post("/categories/", json={"name": name})

    assert response.status_code == 409
    assert response.json() == {"detail": "a category with this name already exists"}
    assert len((await client.get("/categories/")).json()) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Books", "colour": "red"},
        {"name": "Bo\x00oks"},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 101},
        {"name": "Books", "description": "x" * 1001},
        {"name": 7},
        {},
    ],
    ids=["unknown-field", "nul", "empty", "blank", "long-name", "long-description", "int", "none"],
)
async def test_invalid_bodies_are_422_and_store_nothing(
    client: httpx.AsyncClient, body: Body
) -> None:
    response = await client.post("/categories/", json=body)

    assert response.status_code == 422
    assert "detail" in response.json()
    assert (await client.get("/categories/")).json() == []


async def test_patch_changes_only_the_fields_sent_and_bumps_the_version(
    client: httpx.AsyncClient, make_category: Make
) -> None:
    category = await make_category("Books", description="Paper")

    response = await client.patch(f"/categories/{category['id']}", json={"name": "Novels"})

    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["description"], body["version"]) == ("Novels", "Paper", 2)
    assert response.headers["ETag"] == '"2"'
    assert (await client.get(f"/categories/{category['id']}")).json() == body


async def test_patch_can_clear_the_description(
    client: httpx.AsyncClient, make_category: Make
) -> None:
    category = await make_category("Books", description="Paper")

    response = await client.patch(f"/categories/{category['id']}", json={"description": None})

    assert response.status_code == 200
    assert (await client.get(f"/categories/{category['id']}")).json()["description"] is None


async def test_patch_with_null_name_is_422(client: httpx.AsyncClient, category: Body) -> None:
    response = await client.patch(f"/categories/{category['id']}", json={"name": None})

    assert response.status_code == 422
    assert (await client.get(f"/categories/{category['id']}")).json()["name"] == "Books"


async def test_patch_to_a_name_taken_by_another_category_is_409(
    client: httpx.AsyncClient, make_category: Make
) -> None:
    await make_category("Books")
    games = await make_category("Games")

    response = await client.patch(f"/categories/{games['id']}", json={"name": "BOOKS"})

    assert response.status_code == 409
    assert (await client.get(f"/categories/{games['id']}")).json()["name"] == "Games"


async def test_patch_may_change_the_letter_case_of_its_own_name(
    client: httpx.AsyncClient, category: Body
) -> None:
    response = await client.patch(f"/categories/{category['id']}", json={"name": "BOOKS"})

    assert response.status_code == 200
    assert response.json()["name"] == "BOOKS"


@pytest.mark.parametrize(
    ("change", "status", "etag", "shown_name"),
    [({"name": "Novels"}, 200, '"2"', "Novels"), ({"description": "Paper"}, 304, '"1"', "Books")],
    ids=["renaming-gives-new-etags", "changing-only-the-description-leaves-them-alone"],
)
async def test_a_category_change_changes_product_etags_only_if_the_products_show_it(
    client: httpx.AsyncClient,
    category: Body,
    make_product: Make,
    change: Body,
    status: int,
    etag: str,
    shown_name: str,
) -> None:
    product = await make_product()

    await client.patch(f"/categories/{category['id']}", json=change)

    response = await client.get(f"/products/{product['id']}", headers={"If-None-Match": '"1"'})
    assert (response.status_code, response.headers["ETag"]) == (status, etag)
    shown = (await client.get(f"/products/{product['id']}")).json()["category"]
    assert shown == {"id": category["id"], "name": shown_name}


async def test_delete_is_204_and_the_category_is_gone(
    client: httpx.AsyncClient, category: Body
) -> None:
    response = await client.delete(f"/categories/{category['id']}")

    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"/categories/{category['id']}")).status_code == 404


async def test_deleting_a_category_that_has_products_is_409_and_keeps_it(
    client: httpx.AsyncClient, category: Body, make_product: Make
) -> None:
    product = await make_product()

    response = await client.delete(f"/categories/{category['id']}")

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"category {category['id']} still has products; "
        "move or delete them before deleting it"
    }
    assert (await client.get(f"/categories/{category['id']}")).status_code == 200
    assert (await client.get(f"/products/{product['id']}")).status_code == 200


async def test_a_category_can_be_deleted_once_its_products_are_gone(
    client: httpx.AsyncClient, category: Body, make_product: Make
) -> None:
    product = await make_product()
    await client.delete(f"/products/{product['id']}")

    response = await client.delete(f"/categories/{category['id']}")

    assert response.status_code == 204


async def test_delete_unknown_category_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.delete("/categories/999")).status_code == 404


async def test_list_is_ordered_by_id_and_pages_through_every_category(
    client: httpx.AsyncClient, make_category: Make
) -> None:
    ids = [(await make_category(name))["id"] for name in ["Toys", "Books", "Games", "Art"]]

    rows = await walk(client, "/categories/?limit=3")

    assert [row["id"] for row in rows] == ids


@pytest.mark.parametrize(
    ("order", "expected"),
    [("asc", ["Art", "Books", "Games", "Toys"]), ("desc", ["Toys", "Games", "Books", "Art"])],
)
async def test_list_sorted_by_name_pages_in_that_order(
    client: httpx.AsyncClient, make_category: Make, order: str, expected: list[str]
) -> None:
    for name in ["Toys", "Books", "Games", "Art"]:
        await make_category(name)

    rows = await walk(client, f"/categories/?sort_by=name&order={order}&limit=1")

    assert [row["name"] for row in rows] == expected


@pytest.mark.parametrize("params", [{"sort_by": "price"}, {"order": "up"}])
async def test_sorting_by_anything_not_whitelisted_is_422(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    assert (await client.get("/categories/", params=params)).status_code == 422


async def test_category_products_lists_only_that_categorys_products(
    client: httpx.AsyncClient, make_category: Make, make_product: Make
) -> None:
    games = await make_category("Games")
    lamp = await make_product("Lamp")
    chess = await make_product("Chess", category_id=games["id"])
    dice = await make_product("Dice", category_id=games["id"])

    response = await client.get(f"/categories/{games['id']}/products")

    assert response.status_code == 200
    assert [p["id"] for p in response.json()] == [chess["id"], dice["id"]]
    assert lamp["id"] not in {p["id"] for p in response.json()}


async def test_category_products_are_paginated_and_sortable(
    client: httpx.AsyncClient, category: Body, make_product: Make
) -> None:
    for name, price in [("A", "3.00"), ("B", "1.00"), ("C", "2.00"), ("D", "1.00")]:
        await make_product(name, price=price)

    first = await client.get(f"/categories/{category['id']}/products?sort_by=price&limit=2")
    rows = await walk(client, f"/categories/{category['id']}/products?sort_by=price&limit=2")

    assert len(first.json()) == 2
    assert next_link(first) is not None
    assert [row["name"] for row in rows] == ["B", "D", "C", "A"]


async def test_products_of_an_empty_category_is_an_empty_list(
    client: httpx.AsyncClient, category: Body
) -> None:
    response = await client.get(f"/categories/{category['id']}/products")

    assert (response.status_code, response.json()) == (200, [])
