"""Routing: every service route through the gateway, status codes and headers passed through."""

import httpx
import pytest

from gateway_service.proxy import ROUTE_TABLE
from servicekit.testing import TEST_EVENTS_TOKEN

ADA = {"email": "ada@example.com", "name": "Ada", "password": "correct horse battery"}


async def test_create_passes_status_body_etag_and_a_location_on_the_gateway(
    gateway: httpx.AsyncClient,
) -> None:
    response = await gateway.post("/users/", json=ADA)

    assert response.status_code == 201
    user = response.json()
    assert user["email"] == "ada@example.com"
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"/users/{user['id']}"
    assert response.headers["Content-Type"] == "application/json"


async def test_client_errors_pass_through_unchanged(gateway: httpx.AsyncClient) -> None:
    await gateway.post("/users/", json=ADA)

    duplicate = await gateway.post("/users/", json=ADA)
    invalid = await gateway.post("/users/", json={"email": "nope"})
    missing = await gateway.get("/users/4242")

    assert (duplicate.status_code, duplicate.json()) == (
        409,
        {"detail": "a user with this email already exists"},
    )
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["body", "email"]
    assert (missing.status_code, missing.json()) == (404, {"detail": "user 4242 not found"})


async def test_if_match_reaches_the_service_and_412_comes_back(gateway: httpx.AsyncClient) -> None:
    user = (await gateway.post("/users/", json=ADA)).json()
    await gateway.patch(f"/users/{user['id']}", json={"name": "Ada L."})

    stale = await gateway.patch(
        f"/users/{user['id']}", json={"name": "X"}, headers={"If-Match": '"1"'}
    )
    current = await gateway.patch(
        f"/users/{user['id']}", json={"name": "Ada Lovelace"}, headers={"If-Match": '"2"'}
    )

    assert stale.status_code == 412
    assert current.status_code == 200
    assert current.headers["ETag"] == '"3"'


async def test_if_none_match_gives_304_through_the_gateway(gateway: httpx.AsyncClient) -> None:
    user = (await gateway.post("/users/", json=ADA)).json()

    response = await gateway.get(f"/users/{user['id']}", headers={"If-None-Match": '"1"'})

    assert response.status_code == 304
    assert response.headers["ETag"] == '"1"'


async def test_query_strings_pass_through_and_links_point_at_the_gateway(
    gateway: httpx.AsyncClient,
) -> None:
    for i in range(3):
        await gateway.post(
            "/users/",
            json={
                "email": f"u{i}@example.com",
                "name": f"U{i}",
                "password": "correct horse battery",
            },
        )

    first = await gateway.get(
        "/users/sorted", params={"sort_by": "name", "order": "desc", "limit": 2}
    )
    second = await gateway.get(first.links["next"]["url"])

    assert [u["name"] for u in first.json()] == ["U2", "U1"]
    assert first.links["next"]["url"].startswith("/users/sorted?")
    assert [u["name"] for u in second.json()] == ["U0"]
    assert "link" not in second.headers


async def test_the_request_id_is_forwarded_and_returned(
    gateway: httpx.AsyncClient, downstream_calls: list[httpx.Request]
) -> None:
    response = await gateway.get("/users/stats", headers={"X-Request-ID": "from-client-7"})

    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "from-client-7"
    assert [call.headers["X-Request-ID"] for call in downstream_calls] == ["from-client-7"]


@pytest.mark.parametrize(
    ("header", "expected_status"),
    [
        ("Accept", 200),
        ("If-None-Match", 200),  # only reads answer 304
        ("If-Match", 412),  # names no version the user has
        ("Content-Type", 415),  # the body is not declared JSON
    ],
)
async def test_header_bytes_beyond_ascii_are_passed_on_not_a_500(
    gateway: httpx.AsyncClient,
    downstream_calls: list[httpx.Request],
    header: str,
    expected_status: int,
) -> None:
    user = (await gateway.post("/users/", json=ADA)).json()

    headers = {b"content-type": b"application/json", header.lower().encode(): b'"\xff\xe9"'}

    response = await gateway.patch(
        f"/users/{user['id']}", content=b'{"name": "Ada L."}', headers=headers
    )

    assert response.status_code == expected_status
    assert (header.lower().encode(), b'"\xff\xe9"') in downstream_calls[-1].headers.raw


@pytest.mark.parametrize(
    "path",
    [
        "/nowhere",
        "/users/abc",
        "/users/1/../../admin",
        "/users/%2e%2e/health/live",
        "//evil.example.com/users/",
        "/http://evil.example.com/",
        "/internal/users",
    ],
)
async def test_paths_outside_the_route_table_are_404_at_the_gateway(
    gateway: httpx.AsyncClient, downstream_calls: list[httpx.Request], path: str
) -> None:
    request = gateway.build_request("GET", "/")
    request.url = request.url.copy_with(raw_path=path.encode())  # exactly as written, unnormalised

    response = await gateway.send(request)

    assert response.status_code == 404
    assert downstream_calls == []


async def test_a_method_the_route_table_does_not_list_is_405_with_allow(
    gateway: httpx.AsyncClient,
) -> None:
    response = await gateway.put("/users/1", json={})

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD, PATCH, DELETE"
    composed = await gateway.put("/users-with-posts")
    assert (composed.status_code, composed.headers["Allow"]) == (405, "GET, HEAD")


async def test_head_answers_with_the_headers_of_get(gateway: httpx.AsyncClient) -> None:
    user = (await gateway.post("/users/", json=ADA)).json()

    response = await gateway.head(f"/users/{user['id']}")

    assert response.status_code == 200
    assert response.headers["ETag"] == '"1"'
    assert response.content == b""


def test_the_route_table_sends_each_path_to_exactly_one_service() -> None:
    owners: dict[str, set[str]] = {}
    for route in ROUTE_TABLE:
        owners.setdefault(route.path_format, set()).add(route.service)

    assert all(len(services) == 1 for services in owners.values())


async def test_catalog_routes_pass_through_with_their_statuses(gateway: httpx.AsyncClient) -> None:
    category = await gateway.post("/categories/", json={"name": "Lamps"})
    product = await gateway.post(
        "/products/",
        json={"name": "Desk lamp", "price": "19.90", "category_id": category.json()["id"],
              "stock_quantity": 1},
    )  # fmt: skip
    product_id = product.json()["id"]

    sold = await gateway.post(f"/products/{product_id}/stock-adjustments", json={"delta": -1})
    oversold = await gateway.post(f"/products/{product_id}/stock-adjustments", json={"delta": -1})
    cheap = await gateway.get("/products/", params={"min_price": 0, "max_price": "19.90"})
    in_use = await gateway.delete(f"/categories/{category.json()['id']}")

    assert category.headers["Location"].startswith("/categories/")
    assert product.headers["Location"] == f"/products/{product_id}"
    assert (sold.status_code, sold.json()["stock_quantity"]) == (200, 0)
    assert oversold.status_code == 409
    assert [p["id"] for p in cheap.json()] == [product_id]
    assert in_use.status_code == 409


@pytest.mark.parametrize("path", ["/events", "/events/head"])
async def test_users_event_feed_is_not_routed(gateway: httpx.AsyncClient, path: str) -> None:
    service_credential = {"Authorization": f"Bearer {TEST_EVENTS_TOKEN}"}

    assert (await gateway.get(path, headers=service_credential)).status_code == 404
