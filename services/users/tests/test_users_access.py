"""Who may do what: every route for anonymous callers, another user, the owner and an admin."""

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from servicekit.testing import TokenIssuer

PASSWORD = "correct horse battery"
PERSONAS = ("anonymous", "other", "owner", "admin")
FULL_RECORD = {
    "id",
    "email",
    "name",
    "is_active",
    "is_admin",
    "created_at",
    "updated_at",
    "version",
}
PUBLIC_PROFILE = {"id", "name", "created_at"}
OWNER_PATH = "/users/{user_id:int}"

# Every route of the app, and the status each persona gets (anonymous, other, owner, admin).
# The owner is the user the path names; on routes without one, the signed-in user.
EXPECTED: dict[tuple[str, str], tuple[int, int, int, int]] = {
    ("GET", "/health/live"): (200, 200, 200, 200),
    ("GET", "/health/ready"): (200, 200, 200, 200),
    ("GET", "/.well-known/jwks.json"): (200, 200, 200, 200),
    ("POST", "/auth/token"): (200, 200, 200, 200),
    ("POST", "/auth/refresh"): (200, 200, 200, 200),
    ("POST", "/auth/logout"): (204, 204, 204, 204),
    ("POST", "/users/"): (201, 201, 201, 201),
    ("GET", "/users/"): (200, 200, 200, 200),
    ("GET", "/users/sorted"): (200, 200, 200, 200),
    ("GET", "/users/search"): (401, 403, 403, 200),
    ("GET", "/users/stats"): (401, 403, 403, 200),
    ("GET", "/users/me"): (401, 200, 200, 200),
    ("GET", OWNER_PATH): (200, 200, 200, 200),
    ("PATCH", OWNER_PATH): (401, 403, 200, 200),
    ("DELETE", OWNER_PATH): (401, 403, 204, 204),
}


@dataclass
class Cast:
    """The users of one test, and the headers each persona sends."""

    owner: dict[str, Any]
    other: dict[str, Any]
    admin: dict[str, Any]
    headers: dict[str, dict[str, str]]
    refresh_token: str


async def sign_up(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    body = {"email": f"{name.lower()}@example.com", "name": name, "password": PASSWORD}
    response = await client.post("/users/", json=body)
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


@pytest.fixture
async def cast(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_issuer: TokenIssuer
) -> Cast:
    owner, other, admin = [await sign_up(anonymous, name) for name in ("Ada", "Bob", "Cy")]
    await client.patch(f"/users/{admin['id']}", json={"is_admin": True})
    login = await anonymous.post(
        "/auth/token", data={"username": "ada@example.com", "password": PASSWORD}
    )
    return Cast(
        owner,
        other,
        admin,
        {
            "anonymous": {},
            "other": token_issuer.headers(other["id"]),
            "owner": token_issuer.headers(owner["id"]),
            "admin": token_issuer.headers(admin["id"], admin=True),
        },
        login.json()["refresh_token"],
    )


def request_for(method: str, path: str, cast: Cast) -> dict[str, Any]:
    """The arguments of a valid request to a route, naming the owner where it names a user."""
    arguments: dict[str, Any] = {"url": path.replace("{user_id:int}", str(cast.owner["id"]))}
    if (method, path) == ("POST", "/users/"):
        arguments["json"] = {"email": "new@example.com", "name": "New", "password": PASSWORD}
    elif (method, path) == ("PATCH", OWNER_PATH):
        arguments["json"] = {"name": "Renamed"}
    elif path == "/auth/token":
        arguments["data"] = {"username": "ada@example.com", "password": PASSWORD}
    elif path == "/auth/refresh":
        arguments["data"] = {"grant_type": "refresh_token", "refresh_token": cast.refresh_token}
    elif path == "/auth/logout":
        arguments["data"] = {"refresh_token": cast.refresh_token}
    return arguments


def test_every_route_of_the_app_is_in_the_table(app: FastAPI) -> None:
    routes = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }

    assert routes == set(EXPECTED)


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED), ids="{0[0]} {0[1]}".format)
async def test_authorization_matrix(
    anonymous: httpx.AsyncClient, cast: Cast, method: str, path: str, persona: str
) -> None:
    expected = EXPECTED[method, path][PERSONAS.index(persona)]

    response = await anonymous.request(
        method, headers=cast.headers[persona], **request_for(method, path, cast)
    )

    assert response.status_code == expected, response.text
    if expected == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


# What each persona sees of a user.

VIEWS = {"anonymous": PUBLIC_PROFILE, "other": PUBLIC_PROFILE, "owner": FULL_RECORD}


@pytest.mark.parametrize("persona", PERSONAS)
async def test_a_user_is_the_whole_record_to_its_owner_and_admins_a_profile_to_others(
    anonymous: httpx.AsyncClient, cast: Cast, persona: str
) -> None:
    expected = VIEWS.get(persona, FULL_RECORD)
    headers = cast.headers[persona]

    one = await anonymous.get(f"/users/{cast.owner['id']}", headers=headers)
    batch = await anonymous.get(f"/users/?id={cast.owner['id']}", headers=headers)
    listed = await anonymous.get("/users/", headers=headers)
    by_name = await anonymous.get("/users/sorted?sort_by=name", headers=headers)

    assert set(one.json()) == expected
    assert one.headers["ETag"] == '"1"'
    assert [set(user) for user in batch.json()] == [expected]
    for page in (listed, by_name):
        [owner] = [user for user in page.json() if user["id"] == cast.owner["id"]]
        assert set(owner) == expected


async def test_a_list_shows_a_signed_in_user_their_own_record_and_others_profiles(
    anonymous: httpx.AsyncClient, cast: Cast
) -> None:
    response = await anonymous.get("/users/", headers=cast.headers["owner"])

    shapes = {user["id"]: set(user) for user in response.json()}
    assert shapes == {
        cast.owner["id"]: FULL_RECORD,
        cast.other["id"]: PUBLIC_PROFILE,
        cast.admin["id"]: PUBLIC_PROFILE,
    }


@pytest.mark.parametrize(
    ("persona", "status"), [("anonymous", 403), ("other", 403), ("admin", 200)]
)
async def test_sorting_by_email_is_for_admins(
    anonymous: httpx.AsyncClient, cast: Cast, persona: str, status: int
) -> None:
    response = await anonymous.get("/users/sorted?sort_by=email", headers=cast.headers[persona])

    assert response.status_code == status


async def test_the_not_modified_answer_holds_for_every_persona(
    anonymous: httpx.AsyncClient, cast: Cast
) -> None:
    response = await anonymous.get(f"/users/{cast.owner['id']}", headers={"If-None-Match": '"1"'})

    assert response.status_code == 304


@pytest.mark.parametrize("change", [{"is_active": False}, {"is_admin": True}])
async def test_only_admins_change_the_account_state(
    anonymous: httpx.AsyncClient, cast: Cast, change: dict[str, bool]
) -> None:
    by_owner = await anonymous.patch(
        f"/users/{cast.owner['id']}", json=change, headers=cast.headers["owner"]
    )
    stored = await anonymous.get(f"/users/{cast.owner['id']}", headers=cast.headers["owner"])
    by_admin = await anonymous.patch(
        f"/users/{cast.owner['id']}", json=change, headers=cast.headers["admin"]
    )

    assert by_owner.status_code == 403
    assert by_owner.json() == {"detail": "only an admin may change is_active or is_admin"}
    assert stored.json()["version"] == 1
    assert by_admin.status_code == 200
    assert by_admin.json() | change == by_admin.json()


async def test_another_users_patch_or_delete_is_403_whether_or_not_the_user_exists(
    anonymous: httpx.AsyncClient, cast: Cast
) -> None:
    headers = cast.headers["other"]

    answers = [
        await anonymous.patch("/users/999", json={"name": "X"}, headers=headers),
        await anonymous.delete("/users/999", headers=headers),
        await anonymous.delete(f"/users/{cast.owner['id']}", headers=headers),
    ]

    assert [answer.status_code for answer in answers] == [403, 403, 403]
    assert (await anonymous.get(f"/users/{cast.owner['id']}")).status_code == 200


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c"], ids=["garbage", "three-parts"])
async def test_an_invalid_token_is_401_even_on_public_routes(
    anonymous: httpx.AsyncClient, token: str
) -> None:
    response = await anonymous.get("/users/", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
