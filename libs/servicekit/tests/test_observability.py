"""The request context middleware: request ids, HEAD answered as GET, the access line."""

import logging
from typing import Any

import pytest
from fastapi import FastAPI, Response

from servicekit.errors import install_error_handlers
from servicekit.observability import RequestContextMiddleware, request_id_var


async def call(app: Any, method: str, path: str) -> tuple[int, dict[str, str], bytes, list[str]]:
    """One request straight through the ASGI interface: status, headers, body, message types.

    Not through httpx: its ASGI transport drops a HEAD response's body itself, so a test going
    through it cannot tell whether the middleware did.
    """
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("test", 80),
        "client": ("test", 1),
        "root_path": "",
    }
    await app(scope, receive, send)
    start = messages[0]
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    body = b"".join(message.get("body", b"") for message in messages[1:])
    return start["status"], headers, body, [message["type"] for message in messages]


async def test_head_answers_every_get_route_with_its_headers_and_no_body() -> None:
    app = FastAPI()
    seen: list[str] = []

    @app.get("/things/{thing_id:int}")
    async def get_thing(thing_id: int, response: Response) -> dict[str, int]:
        response.headers["ETag"] = '"3"'
        return {"id": thing_id}

    @app.post("/things/")
    async def add_thing() -> None:
        seen.append("post")

    wrapped = RequestContextMiddleware(app)

    status, get_headers, get_body, _ = await call(wrapped, "GET", "/things/7")
    assert (status, get_body) == (200, b'{"id":7}')
    status, headers, body, types = await call(wrapped, "HEAD", "/things/7")
    assert (status, body) == (200, b"")
    assert types == ["http.response.start", "http.response.body"]
    assert headers["etag"] == '"3"'
    assert headers["content-length"] == get_headers["content-length"] == str(len(get_body))
    assert (await call(wrapped, "HEAD", "/things/"))[0] == 405  # POST only: no GET to mirror
    assert (await call(wrapped, "HEAD", "/nothing"))[0] == 404
    assert seen == []
    assert (await call(app, "HEAD", "/things/7"))[0] == 405  # what FastAPI alone answers


async def test_the_access_line_of_a_head_request_says_head(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> str:
        return "pong"

    with caplog.at_level(logging.INFO, logger="access"):
        status, headers, _, _ = await call(RequestContextMiddleware(app), "HEAD", "/ping")

    [line] = [record for record in caplog.records if record.name == "access"]
    assert (status, line.getMessage()) == (200, "HEAD /ping 200")
    assert headers["x-request-id"]


async def test_an_unhandled_error_is_a_500_with_the_request_id_logged_once_with_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)  # as every app of the system has it
    seen_ids: list[str | None] = []

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    class RequestIds(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                seen_ids.append(request_id_var.get())  # what the log line would carry

    handler = RequestIds()
    logging.getLogger().addHandler(handler)
    try:
        with caplog.at_level(logging.INFO):
            status, headers, body, _ = await call(app, "GET", "/broken")
        records = list(caplog.records)
        again = await call(app, "GET", "/broken")
    finally:
        logging.getLogger().removeHandler(handler)

    assert (status, body) == (500, b'{"detail":"internal server error"}')
    assert headers["content-type"] == "application/json"
    assert len([record for record in records if record.levelno >= logging.ERROR]) == 1
    assert seen_ids[0] == headers["x-request-id"]
    [access] = [record for record in records if record.name == "access"]
    assert access.getMessage() == "GET /broken 500"
    assert list(again[1]) == list(headers)  # nothing carried over from one answer to the next
