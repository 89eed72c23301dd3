"""Creating, reading, updating and deleting users over HTTP."""

import re

import httpx
import pytest
from fastapi import FastAPI

from servicekit.testing import created

PASSWORD = "correct horse battery"
ALICE = {"email": "alice@example.com", "name": "Alice", "password": PASSWORD}


async def create(client: httpx.AsyncClient, **fields: object) -> dict[str, object]:
    response = await client.post("/users/", json={**ALICE, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def test_create_returns_201_with_location_etag_and_the_user(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/users/", json=ALICE)

    body = await created(client, response, "/users/")
    assert body["email"] == "alice@example.com"
    assert body["name"] == "Alice"
    assert body["is_active"] is True


async def test_timestamps_are_utc_and_aware(client: httpx.AsyncClient) -> None:
    user = await create(client)

    assert str(user["created_at"]).endswith(("+00:00", "Z"))
    assert str(user["updated_at"]).endswith(("+00:00", "Z"))


async def test_a_new_user_was_last_updated_when_it_was_created(client: httpx.AsyncClient) -> None:
    user = await create(client)

    updated = (await client.patch(f"/users/{user['id']}", json={"name": "Al"})).json()

    assert user["updated_at"] == user["created_at"]
    assert updated["created_at"] == user["created_at"]
    assert updated["updated_at"] > user["updated_at"]


@pytest.mark.parametrize("email", ["alice@example.com", "ALICE@EXAMPLE.COM", "Alice@Example.com"])
async def test_an_email_that_exists_in_any_letter_case_is_409(
    client: httpx.AsyncClient, email: str
) -> None:
    await create(client)

    response = await client.post(
        "/users/", json={"email": email, "name": "Other", "password": PASSWORD}
    )

    assert response.status_code == 409
    assert response.json() == {"detail": "a user with this email already exists"}
    assert (await client.get("/users/stats")).json()["total_users"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"email": "alice@example.com", "name": "Alice", "role": "admin", "password": PASSWORD},
        {"email": "alice@example.com", "name": "Al\x00ice", "password": PASSWORD},
        {"email": "alice@example.com", "name": "", "password": PASSWORD},
        {"email": "alice@example.com", "name": "   ", "password": PASSWORD},
        {"email": "alice@example.com", "name": "x" * 101, "password": PASSWORD},
        {"email": "not-an-email", "name": "Alice", "password": PASSWORD},
        {"name": "Alice", "password": PASSWORD},
        {"email": "alice@example.com", "name": "Alice", "is_active": "maybe", "password": PASSWORD},
        {"email": "alice@example.com", "name": "Alice", "id": 7, "password": PASSWORD},
        {"email": "alice@example.com", "name": "Alice"},
        {"email": "alice@example.com", "name": "Alice", "password": "short"},
        {"email": "alice@example.com", "name": "Alice", "password": "x" * 129},
        {"email": "alice@example.com", "name": "Alice", "password": "pass\x00word"},
    ],
    ids=[
        "unknown-field",
        "nul",
        "empty-name",
        "blank-name",
        "long-name",
        "bad-email",
        "no-email",
        "bad-bool",
        "client-id",
        "no-password",
        "short-password",
        "long-password",
        "nul-password",
    ],
)
async def test_invalid_bodies_are_422_and_store_nothing(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await client.post("/users/", json=body)

    assert response.status_code == 422
    assert "detail" in response.json()
    assert (await client.get("/users/stats")).json()["total_users"] == 0


async def test_a_body_that_is_not_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/users/", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422


async def test_names_are_trimmed(client: httpx.AsyncClient) -> None:
    user = await create(client, name="  Alice  ")

    assert user["name"] == "Alice"


async def test_patch_changes_only_the_fields_sent_and_bumps_the_version(
    client: httpx.AsyncClient,
) -> None:
    user = await create(client)

    response = await client.patch(f"/users/{user['id']}", json={"name": "Alicia"})

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Alicia"
    assert body["email"] == "alice@example.com"
    assert body["version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert body["updated_at"] >= str(user["updated_at"])
    assert (await client.get(f"/users/{user['id']}")).json() == body


async def test_patch_with_null_for_a_required_field_is_422(client: httpx.AsyncClient) -> None:
    user = await create(client)

    response = await client.patch(f"/users/{user['id']}", json={"name": None})

    assert response.status_code == 422
    assert (await client.get(f"/users/{user['id']}")).json()["name"] == "Alice"


async def test_patch_to_an_email_taken_by_another_user_is_409(client: httpx.AsyncClient) -> None:
    await create(client)
    bob = await create(client, email="bob@example.com", name="Bob")

    response = await client.patch(f"/users/{bob['id']}", json={"email": "ALICE@example.com"})

    assert response.status_code == 409
    assert (await client.get(f"/users/{bob['id']}")).json()["email"] == "bob@example.com"


@pytest.mark.parametrize(
    ("lines", "status"), [(('"9"', '"1"'), 200), (('"1"', '"9"'), 200), (('"8"', '"9"'), 412)]
)
async def test_if_match_sent_on_several_lines_is_one_list(
    client: httpx.AsyncClient, lines: tuple[str, str], status: int
) -> None:
    user = await create(client)

    response = await client.patch(
        f"/users/{user['id']}",
        json={"name": "Allie"},
        headers=[("If-Match", line) for line in lines],
    )

    assert response.status_code == status


async def test_letters_beyond_ascii_fold_too_for_uniqueness_and_search(
    client: httpx.AsyncClient,
) -> None:
    await create(client, email="ödön@example.com", name="Ödön Ärger")

    duplicate = await client.post(
        "/users/", json={"email": "ÖDÖN@example.com", "name": "Other", "password": PASSWORD}
    )
    by_name = await client.get("/users/search", params={"name": "äRGER"})
    by_email = await client.get("/users/search", params={"email": "ÖDÖN"})

    assert duplicate.status_code == 409
    assert [user["email"] for user in by_name.json()] == ["ödön@example.com"]
    assert [user["email"] for user in by_email.json()] == ["ödön@example.com"]


async def test_patch_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    response = await client.patch("/users/999", json={"name": "Nobody"})

    assert response.status_code == 404


async def test_delete_is_204_and_the_user_is_gone(client: httpx.AsyncClient) -> None:
    user = await create(client)

    response = await client.delete(f"/users/{user['id']}")

    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"/users/{user['id']}")).status_code == 404


async def test_delete_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.delete("/users/999")).status_code == 404


async def test_a_deleted_users_email_can_be_used_again(client: httpx.AsyncClient) -> None:
    user = await create(client)
    await client.delete(f"/users/{user['id']}")

    response = await client.post("/users/", json=ALICE)

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("name", "status", "stored"),
    [
        (" " + "x" * 100, 201, "x" * 100),
        ("\t" + "x" * 99 + "\n", 201, "x" * 99),
        (" " + "x" * 101, 422, None),
        ("  \u3000 ", 422, None),
    ],
    ids=["100-after-a-space", "99-between-whitespace", "101-after-a-space", "only-whitespace"],
)
async def test_names_are_trimmed_before_their_length_is_checked(
    client: httpx.AsyncClient, name: str, status: int, stored: str | None
) -> None:
    body = {"email": "ada@example.com", "name": name, "password": "correct horse battery"}

    response = await client.post("/users/", json=body)

    assert response.status_code == status, response.text
    if stored is not None:
        assert response.json()["name"] == stored


def test_the_schema_states_the_trimmed_length_of_a_name(app: FastAPI) -> None:
    name = app.openapi()["components"]["schemas"]["UserCreate"]["properties"]["name"]
    pattern = re.compile(name["pattern"])

    assert "maxLength" not in name  # it would count the whitespace that is trimmed
    assert pattern.search(" " + "x" * 100)
    assert not pattern.search(" " + "x" * 101)
    assert not pattern.search(" \t ")
