"""Listing, batch reads, search, stats and sorting, with skip/limit and keyset pagination."""

from typing import Literal, get_args

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from servicekit.testing import count_statements, database_of, next_link, plan_nodes, walk
from users_service.models import User
from users_service.router import _sort_order
from users_service.schemas import UserSortField

PASSWORD = "correct horse battery"


async def seed(client: httpx.AsyncClient, names: list[str], **fields: object) -> list[int]:
    ids = []
    for name in names:
        response = await client.post(
            "/users/",
            json={
                "email": f"{name.lower()}@example.com",
                "name": name,
                "password": PASSWORD,
                **fields,
            },
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def test_list_is_ordered_by_id_and_honours_skip_and_limit(
    client: httpx.AsyncClient,
) -> None:
    ids = await seed(client, [f"user{i}" for i in range(5)])

    response = await client.get("/users/", params={"skip": 1, "limit": 2})

    assert response.status_code == 200
    assert [user["id"] for user in response.json()] == ids[1:3]


async def test_link_header_leads_through_every_page_once(client: httpx.AsyncClient) -> None:
    ids = await seed(client, [f"user{i}" for i in range(7)])

    rows = await walk(client, "/users/?limit=3")

    assert [row["id"] for row in rows] == ids


async def test_the_last_page_has_no_link(client: httpx.AsyncClient) -> None:
    await seed(client, ["Ann", "Ben"])

    response = await client.get("/users/?limit=2")

    assert len(response.json()) == 2
    assert "Link" not in response.headers


@pytest.mark.parametrize("limit", [0, 101, -5])
async def test_limit_outside_1_to_100_is_422(client: httpx.AsyncClient, limit: int) -> None:
    assert (await client.get("/users/", params={"limit": limit})).status_code == 422


@pytest.mark.parametrize("cursor", ["garbage", "eyJvIjoibmFtZTphc2MiLCJ2IjpbMV19", "e30", "!!"])
async def test_an_invalid_cursor_is_422(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get("/users/", params={"after": cursor})

    assert response.status_code == 422


async def test_batch_read_returns_the_existing_users_among_the_ids(
    client: httpx.AsyncClient,
) -> None:
    ids = await seed(client, ["Ann", "Ben", "Cat"])

    response = await client.get("/users/", params=[("id", ids[2]), ("id", ids[0]), ("id", 999)])

    assert response.status_code == 200
    assert [user["id"] for user in response.json()] == [ids[0], ids[2]]


async def test_batch_read_of_more_than_100_ids_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/users/", params=[("id", i) for i in range(1, 102)])

    assert response.status_code == 422


async def test_listing_costs_the_same_statements_for_1_and_50_users(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    database = database_of(app)
    await seed(client, ["Only"])
    with count_statements(database) as one:
        assert len((await client.get("/users/?limit=100")).json()) == 1
    await seed(client, [f"user{i}" for i in range(49)])
    with count_statements(database) as fifty:
        assert len((await client.get("/users/?limit=100")).json()) == 50

    assert one.count == fifty.count
    assert one.touched(User.metadata) == [("SELECT", {"users"})]
    ids = "&".join(f"id={i}" for i in range(1, 51))
    with count_statements(database) as batch:
        assert len((await client.get(f"/users/?{ids}&limit=100")).json()) == 50
    assert batch.count == one.count


async def test_search_matches_email_and_name_ignoring_case(client: httpx.AsyncClient) -> None:
    await seed(client, ["Alice", "Alicia", "Bob"])

    by_name = await client.get("/users/search", params={"name": "ALI"})
    by_email = await client.get("/users/search", params={"email": "BOB@"})
    both = await client.get("/users/search", params={"name": "ali", "email": "cia"})

    assert [u["name"] for u in by_name.json()] == ["Alice", "Alicia"]
    assert [u["name"] for u in by_email.json()] == ["Bob"]
    assert [u["name"] for u in both.json()] == ["Alicia"]


@pytest.mark.parametrize(("text", "expected"), [("50%", ["50% off"]), ("a_b", ["a_b"])])
async def test_search_treats_like_wildcards_literally(
    client: httpx.AsyncClient, text: str, expected: list[str]
) -> None:
    for index, name in enumerate(["50% off", "500 off", "a_b", "axb"]):
        await client.post(
            "/users/", json={"email": f"u{index}@example.com", "name": name, "password": PASSWORD}
        )

    response = await client.get("/users/search", params={"name": text})

    assert [u["name"] for u in response.json()] == expected


async def test_search_active_only_leaves_out_inactive_users(client: httpx.AsyncClient) -> None:
    await seed(client, ["Active"])
    await seed(client, ["Dormant"], is_active=False)

    everyone = await client.get("/users/search", params={"active_only": False})
    active = await client.get("/users/search", params={"active_only": True})

    assert [u["name"] for u in everyone.json()] == ["Active", "Dormant"]
    assert [u["name"] for u in active.json()] == ["Active"]


async def test_search_finds_only_active_users_by_default(client: httpx.AsyncClient) -> None:
    await seed(client, ["Active"])
    await seed(client, ["Dormant"], is_active=False)

    response = await client.get("/users/search")

    assert [u["name"] for u in response.json()] == ["Active"]


async def test_search_with_nul_is_422(client: httpx.AsyncClient) -> None:
    assert (await client.get("/users/search", params={"name": "a\x00b"})).status_code == 422


async def test_search_pages_keep_their_filters(client: httpx.AsyncClient) -> None:
    await seed(client, [f"match{i}" for i in range(5)] + ["other"])

    rows = await walk(client, "/users/search?name=match&limit=2")

    assert [row["name"] for row in rows] == [f"match{i}" for i in range(5)]


async def test_stats_count_active_and_inactive_users(client: httpx.AsyncClient) -> None:
    empty = {"total_users": 0, "active_users": 0, "inactive_users": 0}
    assert (await client.get("/users/stats")).json() == empty
    await seed(client, ["A", "B", "C"])
    await seed(client, ["D"], is_active=False)

    response = await client.get("/users/stats")

    assert response.json() == {"total_users": 4, "active_users": 3, "inactive_users": 1}


@pytest.mark.parametrize("path", ["/users/search", "/users/stats", "/users/sorted"])
async def test_fixed_paths_are_not_taken_for_a_user_id(
    client: httpx.AsyncClient, path: str
) -> None:
    assert (await client.get(path)).status_code == 200


@pytest.mark.parametrize(
    ("sort_by", "order", "expected"),
    [
        ("name", "asc", ["Ann", "Bea", "Bea", "Cid"]),
        ("name", "desc", ["Cid", "Bea", "Bea", "Ann"]),
        ("email", "asc", ["Bea", "Cid", "Ann", "Bea"]),
    ],
)
async def test_sorted_orders_by_the_field_then_id(
    client: httpx.AsyncClient, sort_by: str, order: str, expected: list[str]
) -> None:
    for email, name in [
        ("x@e.com", "Ann"),
        ("b@e.com", "Bea"),
        ("c@e.com", "Cid"),
        ("y@e.com", "Bea"),
    ]:
        await client.post("/users/", json={"email": email, "name": name, "password": PASSWORD})

    rows = await walk(client, f"/users/sorted?sort_by={sort_by}&order={order}&limit=1")

    assert [row["name"] for row in rows] == expected


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("sort_by", get_args(UserSortField))
async def test_every_sort_order_pages_through_an_index_without_sorting(
    app: FastAPI,
    client: httpx.AsyncClient,
    sort_by: UserSortField,
    order: Literal["asc", "desc"],
) -> None:
    await seed(client, ["Cid", "Ann", "Bea"])
    users = (await client.get("/users/")).json()
    first = (await client.get("/users/sorted", params={"sort_by": sort_by, "order": order})).json()
    assert first == sorted(
        users, key=lambda user: (user[sort_by], user["id"]), reverse=order == "desc"
    )
    engine = database_of(app).engine
    if engine.dialect.name != "postgresql":
        return  # what follows is Postgres's plan
    sort_order = _sort_order(sort_by, order)
    page = (
        select(*User.__table__.c)
        .where(sort_order.after())
        .order_by(*sort_order.order_by())
        .limit(2)
    )
    after = sort_order.after_parameters(sort_order.cursor_after(first[0]))

    nodes = await plan_nodes(engine, page, after, analyze=True, avoid=("sort",))

    assert not [node for node in nodes if node["Node Type"] == "Sort"], nodes
    assert [node["Actual Rows"] for node in nodes if "Index Name" in node] == [2]


async def test_sorted_orders_by_name_ascending_by_default(client: httpx.AsyncClient) -> None:
    await seed(client, ["Cid", "Ann", "Bea"])

    rows = await walk(client, "/users/sorted?limit=2")

    assert [row["name"] for row in rows] == ["Ann", "Bea", "Cid"]


async def test_sorted_newest_first_pages_through_all(client: httpx.AsyncClient) -> None:
    ids = await seed(client, [f"user{i}" for i in range(6)])

    rows = await walk(client, "/users/sorted?sort_by=created_at&order=desc&limit=4")

    assert [row["id"] for row in rows] == list(reversed(ids))


@pytest.mark.parametrize(
    "params", [{"sort_by": "password"}, {"sort_by": "name", "order": "sideways"}]
)
async def test_sorting_by_anything_not_whitelisted_is_422(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    assert (await client.get("/users/sorted", params=params)).status_code == 422


async def test_a_cursor_from_another_sort_order_is_422(client: httpx.AsyncClient) -> None:
    await seed(client, ["Ann", "Ben", "Cat"])
    first = await client.get("/users/sorted?sort_by=name&limit=1")
    cursor = str(next_link(first)).split("after=")[1]

    response = await client.get("/users/sorted", params={"sort_by": "email", "after": cursor})

    assert response.status_code == 422
