"""Who may do what: every route for anonymous callers, another user, the owner and an admin."""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from servicekit.testing import TokenIssuer
from servicekit.testing.access import (
    EVERY_PROCESS,
    ROLES,
    Call,
    admins,
    anyones,
    assert_answered_as_expected,
    assert_table_covers_routes,
    owners,
    role_clients,
    routes_of,
    services_only,
    signed_in_users,
)

SignUp = Callable[[httpx.AsyncClient, str], Awaitable[dict[str, Any]]]
PASSWORD = "correct horse battery"
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
OWNERS_SIGN_IN = {"username": "ada@example.com", "password": PASSWORD}
A_NEW_USER = {"email": "new@example.com", "name": "New", "password": PASSWORD}

# The owner is the user the path names; on routes without one, the signed-in user.
EXPECTED: dict[str, Call] = {
    **EVERY_PROCESS,
    "GET /.well-known/jwks.json": Call("GET", "/.well-known/jwks.json", anyones(200)),
    "POST /auth/token": Call("POST", "/auth/token", anyones(200), data=OWNERS_SIGN_IN),
    "POST /auth/refresh": Call(
        "POST",
        "/auth/refresh",
        anyones(200),
        data={"grant_type": "refresh_token", "refresh_token": "{refresh_token}"},
    ),
    "POST /auth/logout": Call(
        "POST", "/auth/logout", anyones(204), data={"refresh_token": "{refresh_token}"}
    ),
    "POST /users/": Call("POST", "/users/", anyones(201), json=A_NEW_USER),
    "GET /users/": Call("GET", "/users/", anyones(200)),
    "GET /users/sorted": Call("GET", "/users/sorted", anyones(200)),
    "GET /users/search": Call("GET", "/users/search", admins(200)),
    "GET /users/stats": Call("GET", "/users/stats", admins(200)),
    "GET /users/me": Call("GET", "/users/me", signed_in_users(200)),
    "GET /users/{user_id:int}": Call("GET", "/users/{user_id}", anyones(200)),
    "PATCH /users/{user_id:int}": Call(
        "PATCH", "/users/{user_id}", owners(200), json={"name": "Renamed"}
    ),
    "DELETE /users/{user_id:int}": Call("DELETE", "/users/{user_id}", owners(204)),
    "GET /events": Call("GET", "/events", services_only()),
    "GET /events/head": Call("GET", "/events/head", services_only()),
}


@dataclass
class Cast:
    """The users of one test; the owner has signed in once, and holds a refresh token."""

    owner: dict[str, Any]
    other: dict[str, Any]
    admin: dict[str, Any]
    refresh_token: str

    @property
    def ids(self) -> dict[str, Any]:
        """What the table's `{names}` stand for."""
        return {"user_id": self.owner["id"], "refresh_token": self.refresh_token}


@pytest.fixture
async def cast(client: httpx.AsyncClient, anonymous: httpx.AsyncClient, sign_up: SignUp) -> Cast:
    owner, other, admin = [await sign_up(anonymous, name) for name in ("Ada", "Bob", "Cy")]
    await client.patch(f"/users/{admin['id']}", json={"is_admin": True})
    login = await anonymous.post("/auth/token", data=OWNERS_SIGN_IN)
    return Cast(owner, other, admin, login.json()["refresh_token"])


@pytest.fixture
async def callers(
    app: FastAPI, cast: Cast, token_issuer: TokenIssuer
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A client per role, on the same app and tables as `client`, signed in as the cast."""
    async with role_clients(
        app,
        token_issuer,
        owner_id=cast.owner["id"],
        other_id=cast.other["id"],
        admin_id=cast.admin["id"],
    ) as callers:
        yield callers


def test_every_route_of_the_app_is_in_the_table(app: FastAPI) -> None:
    assert_table_covers_routes(EXPECTED, routes_of(app))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(EXPECTED))
async def test_authorization_matrix(
    route: str, role: str, cast: Cast, callers: dict[str, httpx.AsyncClient]
) -> None:
    call = EXPECTED[route]

    response = await call.send(callers[role], cast.ids)

    assert_answered_as_expected(response, call, role)


# What each role sees of a user.

VIEWS = {"anonymous": PUBLIC_PROFILE, "another user": PUBLIC_PROFILE, "the owner": FULL_RECORD}


@pytest.mark.parametrize("role", ROLES)
async def test_a_user_is_the_whole_record_to_its_owner_and_admins_a_profile_to_others(
    cast: Cast, callers: dict[str, httpx.AsyncClient], role: str
) -> None:
    expected = VIEWS.get(role, FULL_RECORD)
    caller = callers[role]

    one = await caller.get(f"/users/{cast.owner['id']}")
    batch = await caller.get(f"/users/?id={cast.owner['id']}")
    listed = await caller.get("/users/")
    by_name = await caller.get("/users/sorted?sort_by=name")

    assert set(one.json()) == expected
    assert one.headers["ETag"] == '"1"'
    assert [set(user) for user in batch.json()] == [expected]
    for page in (listed, by_name):
        [owner] = [user for user in page.json() if user["id"] == cast.owner["id"]]
        assert set(owner) == expected


async def test_a_list_shows_a_signed_in_user_their_own_record_and_others_profiles(
    cast: Cast, callers: dict[str, httpx.AsyncClient]
) -> None:
    response = await callers["the owner"].get("/users/")

    shapes = {user["id"]: set(user) for user in response.json()}
    assert shapes == {
        cast.owner["id"]: FULL_RECORD,
        cast.other["id"]: PUBLIC_PROFILE,
        cast.admin["id"]: PUBLIC_PROFILE,
    }


@pytest.mark.parametrize(
    ("role", "status"), [("anonymous", 403), ("another user", 403), ("an admin", 200)]
)
async def test_sorting_by_email_is_for_admins(
    callers: dict[str, httpx.AsyncClient], role: str, status: int
) -> None:
    response = await callers[role].get("/users/sorted?sort_by=email")

    assert response.status_code == status


async def test_the_not_modified_answer_holds_for_every_persona(
    anonymous: httpx.AsyncClient, cast: Cast
) -> None:
    response = await anonymous.get(f"/users/{cast.owner['id']}", headers={"If-None-Match": '"1"'})

    assert response.status_code == 304


@pytest.mark.parametrize("change", [{"is_active": False}, {"is_admin": True}])
async def test_only_admins_change_the_account_state(
    cast: Cast, callers: dict[str, httpx.AsyncClient], change: dict[str, bool]
) -> None:
    by_owner = await callers["the owner"].patch(f"/users/{cast.owner['id']}", json=change)
    stored = await callers["the owner"].get(f"/users/{cast.owner['id']}")
    by_admin = await callers["an admin"].patch(f"/users/{cast.owner['id']}", json=change)

    assert by_owner.status_code == 403
    assert by_owner.json() == {"detail": "only an admin may change is_active or is_admin"}
    assert stored.json()["version"] == 1
    assert by_admin.status_code == 200
    assert by_admin.json() | change == by_admin.json()


async def test_another_users_patch_or_delete_is_403_whether_or_not_the_user_exists(
    anonymous: httpx.AsyncClient, cast: Cast, callers: dict[str, httpx.AsyncClient]
) -> None:
    other = callers["another user"]

    answers = [
        await other.patch("/users/999", json={"name": "X"}),
        await other.delete("/users/999"),
        await other.delete(f"/users/{cast.owner['id']}"),
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
