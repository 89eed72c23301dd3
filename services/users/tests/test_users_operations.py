"""What operators rely on: health probes, request ids, access logs, and a clear 503."""

import logging
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from servicekit.testing import asgi_client, running
from users_service.main import create_app
from users_service.settings import UsersSettings

# Nothing listens on port 1: connections are refused at once.
UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/users"


@pytest.fixture
async def no_database() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(UsersSettings(database_url=UNREACHABLE, pool_timeout=1))
    async with running(app), asgi_client(app) as client:
        yield client


async def test_liveness_and_readiness_when_the_database_answers(
    client: httpx.AsyncClient,
) -> None:
    live = await client.get("/health/live")
    ready = await client.get("/health/ready")

    assert (live.status_code, live.json()["status"]) == (200, "ok")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok"}}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/users/1", None),
        ("GET", "/users/", None),
        ("POST", "/users/", {"email": "a@example.com", "name": "A"}),
        ("DELETE", "/users/1", None),
    ],
)
async def test_requests_are_503_without_internals_when_the_database_is_down(
    no_database: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    response = await no_database.request(method, path, json=body)

    assert response.status_code == 503
    assert response.json() == {"detail": "database unavailable"}


async def test_readiness_fails_and_liveness_holds_when_the_database_is_down(
    no_database: httpx.AsyncClient,
) -> None:
    assert (await no_database.get("/health/live")).status_code == 200
    ready = await no_database.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "checks": {"database": "unreachable"}}


async def test_a_request_id_is_returned_as_given(client: httpx.AsyncClient) -> None:
    response = await client.get("/users/stats", headers={"X-Request-ID": "order-42.retry:1"})

    assert response.headers["X-Request-ID"] == "order-42.retry:1"


@pytest.mark.parametrize("given", [None, "bad id with spaces", "x" * 200])
async def test_a_missing_or_unsafe_request_id_is_replaced(
    client: httpx.AsyncClient, given: str | None
) -> None:
    headers = {"X-Request-ID": given} if given else {}

    response = await client.get("/users/stats", headers=headers)

    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


async def test_each_request_is_logged_once_with_its_id_and_outcome(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="access")

    await client.get("/users/404404", headers={"X-Request-ID": "trace-me"})

    [line] = [record for record in caplog.records if record.name == "access"]
    assert line.request_id == "trace-me"  # type: ignore[attr-defined]
    assert line.status == 404  # type: ignore[attr-defined]
    assert line.method == "GET"  # type: ignore[attr-defined]
    assert line.path == "/users/404404"  # type: ignore[attr-defined]


async def test_unknown_routes_and_methods_use_the_error_model(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nowhere")
    wrong_method = await client.put("/users/1", json={})

    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    assert wrong_method.status_code == 405
    assert "detail" in wrong_method.json()


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/users/1", "GET, PATCH, DELETE"),
        ("PATCH", "/users/stats", "GET"),
        ("DELETE", "/users/", "GET, POST"),
    ],
)
async def test_405_lists_every_method_the_resource_supports(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)

    assert response.status_code == 405
    assert response.headers["Allow"] == allow


def test_settings_refuse_a_development_password_in_production() -> None:
    with pytest.raises(ValueError, match="development password"):
        UsersSettings(
            environment="production",
            database_url="postgresql+psycopg://users:postgres@db/users",
        )


def test_settings_read_the_users_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERS_DATABASE_URL", "postgresql+psycopg://u:p@db/users")
    monkeypatch.setenv("USERS_POOL_SIZE", "3")

    settings = UsersSettings()

    assert settings.database_url == "postgresql+psycopg://u:p@db/users"
    assert settings.pool_size == 3


def test_the_embedded_default_is_an_sqlite_file_under_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("USERS_DATABASE_URL", raising=False)
    assert UsersSettings().database_url == "sqlite+aiosqlite:///./var/users.db"
