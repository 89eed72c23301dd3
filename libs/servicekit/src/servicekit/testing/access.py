"""Access-matrix tests: for every route of an app and each role, the status the caller gets.

A service's access tests keep what is theirs (the table, the data they seed, how they read what
is stored); this module holds what every such table needs: the roles, a call and the statuses it
gets, the app's own route table to hold the table against, a client per role, and the tests of
a table whose every refused call leaves what is stored as it was (AccessMatrix).
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from servicekit.auth import access_rule
from servicekit.testing import TEST_ADMIN_ID, TokenIssuer, asgi_client

ROLES = ("anonymous", "another user", "the owner", "an admin")
Statuses = tuple[int, int, int, int]  # one per role, in the order of ROLES


# The statuses each access rule gives, named for the rule; `status` is the admitted caller's.
def anyones(status: int) -> Statuses:
    return (status, status, status, status)


def signed_in_users(status: int) -> Statuses:
    return (401, status, status, status)


def owners(status: int) -> Statuses:
    return (401, 403, status, status)


def admins(status: int) -> Statuses:
    return (401, 403, 403, status)


def services_only() -> Statuses:
    """No user's token admits: the route takes the service credential (checked on its own)."""
    return (401, 401, 401, 401)


def metrics_scrapers() -> Statuses:
    """No user's token admits: the route takes the metrics credential (checked on its own)."""
    return (401, 401, 401, 401)


def filled(value: Any, ids: Mapping[str, Any]) -> Any:
    """`value` with each string that is a whole `{name}` replaced by `ids[name]`, at any depth.

    A table is written before the test seeds the rows it names, so it names their ids.
    """
    if isinstance(value, dict):
        return {key: filled(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [filled(item, ids) for item in value]
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    return value


@dataclass(frozen=True)
class Call:
    """One request to a route, and the status each role gets for it.

    `{name}`s in the URL, and values that are a whole `{name}` in the body, form or query,
    stand for the ids the test seeded (see `filled`).
    """

    method: str
    url: str
    statuses: Statuses
    json: Any = None
    data: Mapping[str, Any] | None = None
    params: Mapping[str, Any] | None = None

    def status_for(self, role: str) -> int:
        """The status `role` gets."""
        return self.statuses[ROLES.index(role)]

    async def send(self, client: httpx.AsyncClient, ids: Mapping[str, Any]) -> httpx.Response:
        """Make the request with `client`, its `{name}`s filled from `ids`."""
        return await client.request(
            self.method,
            self.url.format(**ids),
            json=filled(self.json, ids),
            data=filled(self.data, ids),
            params=filled(self.params, ids),
        )


# The routes of every process, which every table holds: probes for anyone, metrics for scrapers.
EVERY_PROCESS = {
    "GET /health/live": Call("GET", "/health/live", anyones(200)),
    "GET /health/ready": Call("GET", "/health/ready", anyones(200)),
    "GET /metrics": Call("GET", "/metrics", metrics_scrapers()),
}


def routes_of(app: FastAPI) -> dict[str, APIRoute]:
    """Every route of `app` by "METHOD path", a route with several methods once for each."""
    return {
        f"{method} {route.path}": route
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods or ())
    }


def assert_table_covers_routes(table: Mapping[str, Call], routes: Mapping[str, APIRoute]) -> None:
    """The table has an entry for every route and for nothing else.

    The routes come from the app, so a route added without expectations fails here.
    """
    assert sorted(routes) == sorted(table)


def assert_anonymous_refused_exactly_where_a_token_is_needed(call: Call, route: APIRoute) -> None:
    """The table's 401 for anonymous callers agrees with the rule the route declares."""
    needs_token = access_rule(route) != "anyone"

    assert (call.status_for("anonymous") == 401) is needs_token


def assert_answered_as_expected(response: httpx.Response, call: Call, role: str) -> None:
    """The status the table gives `role`, and on a 401 the challenge RFC 6750 prescribes."""
    expected = call.status_for(role)
    assert response.status_code == expected, response.text
    if expected == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


def assert_only_admitted_writes_change_state(
    call: Call, role: str, before: object, after: object
) -> None:
    """A refused call or a read leaves what is stored as it was; an admitted write changes it."""
    if call.status_for(role) in (401, 403) or call.method == "GET":
        assert after == before
    else:
        assert after != before


async def check_call(
    call: Call,
    role: str,
    caller: httpx.AsyncClient,
    ids: Mapping[str, Any],
    stored: Callable[[], Awaitable[object]],
) -> None:
    """Make `call` as `role`: the status the table gives, and what is stored changed or not."""
    before = await stored()

    response = await call.send(caller, ids)

    assert_answered_as_expected(response, call, role)
    assert_only_admitted_writes_change_state(call, role, before, await stored())


@asynccontextmanager
async def role_clients(
    app: FastAPI,
    token_issuer: TokenIssuer,
    *,
    owner_id: int,
    other_id: int,
    admin_id: int = TEST_ADMIN_ID,
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A client of `app` per role, each sending its role's token (anonymous callers none)."""
    headers = {
        "anonymous": {},
        "another user": token_issuer.headers(other_id),
        "the owner": token_issuer.headers(owner_id),
        "an admin": token_issuer.headers(admin_id, admin=True),
    }
    async with AsyncExitStack() as stack:
        yield {
            role: await stack.enter_async_context(asgi_client(app, headers=headers[role]))
            for role in ROLES
        }


class AccessMatrix:
    """The tests of a service's access table, for a class of its suite to inherit
    (`class TestAccess(AccessMatrix)`), which names the table (`expected`), the app's `routes`,
    the ids of the owner and of another user, and how to read what is `stored`. The class's
    module provides `seeded`: a fixture of the ids the table's `{name}`s stand for.
    """

    expected: ClassVar[Mapping[str, Call]]
    routes: ClassVar[Mapping[str, APIRoute]]
    owner_id: ClassVar[int]
    other_id: ClassVar[int]

    @staticmethod
    async def stored(client: httpx.AsyncClient) -> object:
        """Everything the service holds, as an admin reads it through `client`."""
        raise NotImplementedError

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """A test of each route of the app (`app_route`) or of the table (`route`)."""
        if "app_route" in metafunc.fixturenames:
            metafunc.parametrize("app_route", sorted(self.routes))
        if "route" in metafunc.fixturenames:
            metafunc.parametrize("route", sorted(self.expected))

    def test_every_route_has_expectations(self) -> None:
        assert_table_covers_routes(self.expected, self.routes)

    def test_anonymous_callers_are_refused_exactly_where_the_rule_needs_a_token(
        self, app_route: str
    ) -> None:
        assert_anonymous_refused_exactly_where_a_token_is_needed(
            self.expected[app_route], self.routes[app_route]
        )

    @pytest.fixture
    async def callers(
        self, app: FastAPI, client: httpx.AsyncClient, token_issuer: TokenIssuer
    ) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
        """A client per role, on the same app and tables as `client`."""
        async with role_clients(
            app, token_issuer, owner_id=self.owner_id, other_id=self.other_id
        ) as callers:
            yield callers

    @pytest.mark.parametrize("role", ROLES)
    async def test_access_matrix(
        self,
        route: str,
        role: str,
        seeded: dict[str, int],
        client: httpx.AsyncClient,
        callers: dict[str, httpx.AsyncClient],
    ) -> None:
        call = self.expected[route]
        await check_call(call, role, callers[role], seeded, lambda: self.stored(client))
