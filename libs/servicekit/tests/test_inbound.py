"""What every process demands of a request before routing it (servicekit.inbound)."""

import pytest
from fastapi import FastAPI

from servicekit.errors import install_error_handlers
from servicekit.inbound import guard_requests
from servicekit.testing import asgi_client


def guarded_app(allowed_hosts: list[str]) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/things/")
    async def list_things() -> list[int]:
        return [1]

    guard_requests(app, max_body_bytes=10, allowed_hosts=allowed_hosts)
    return app


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("api.example.com", 200),
        ("API.example.com:8443", 200),
        ("shop.example.org", 200),
        ("example.org", 400),
        ("evil.example", 400),
        ("api.example.com.evil", 400),
    ],
)
async def test_only_the_allowed_hosts_are_served(host: str, status: int) -> None:
    app = guarded_app(["api.example.com", "*.example.org"])
    async with asgi_client(app) as client:
        response = await client.get("/things/", headers={"Host": host})

    assert response.status_code == status


async def test_an_http_1_0_request_may_leave_out_the_host() -> None:
    app = guarded_app(["api.example.com"])
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    scope = {
        "type": "http", "http_version": "1.0", "method": "GET", "path": "/things/",
        "raw_path": b"/things/", "query_string": b"", "headers": [], "scheme": "http",
        "root_path": "", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
    }  # fmt: skip
    await app(scope, receive, send)  # type: ignore[arg-type]

    assert sent[0]["status"] == 200


async def test_a_path_is_served_without_its_slash_and_an_unknown_one_stays_404() -> None:
    async with asgi_client(guarded_app(["*"])) as client:
        without = await client.get("/things")
        unknown = await client.get("/nothing/")

    assert (without.status_code, without.json()) == (200, [1])
    assert unknown.status_code == 404


async def test_a_body_on_a_route_that_does_not_read_it_is_still_limited() -> None:
    async with asgi_client(guarded_app(["*"])) as client:
        response = await client.request("GET", "/things/", content=b"x" * 11)

    assert response.status_code == 413
