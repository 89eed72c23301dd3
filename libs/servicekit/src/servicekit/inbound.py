"""What every process demands of a request before it is routed, and how paths are matched.

A `Host` the process may answer for, a body no larger than the configured limit, a JSON body
sent as JSON, and a path matched with or without its trailing slash, without a redirect.
"""

import email.message
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.params import Form
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.errors import ErrorBody, ServiceError

# Statuses whose answers have no content, so nothing to describe with a Content-Type.
_NO_CONTENT = frozenset({204, 304})
_SLASH_TOGGLED = "servicekit.slash_toggled"


class UnsupportedMediaType(ServiceError):
    status_code = 415


def _host_allowed(host: str, allowed_hosts: Sequence[str]) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.lower()
    for pattern in allowed_hosts:
        if pattern == "*" or name == pattern:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


class RequestGuard:
    """Refuses a request without an allowed `Host` (400) or with a body over the limit (413).

    A body is never read whole to learn its size: a `Content-Length` over the limit is refused
    before any of it is read, and a body without one (chunked) is counted as it arrives and
    refused once it passes the limit. 204 and 304 answers go out without a Content-Type.
    One middleware for all of it, so every request pays for one layer.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.allowed_hosts = tuple(host.lower() for host in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host: str | None = None
        declared: int | None = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                declared = int(value)
        # HTTP/1.0 may leave Host out; HTTP/1.1 must send it (RFC 9112, 3.2); HTTP/2 has
        # :authority, which servers present as Host.
        if host is None and scope.get("http_version") == "1.0":
            host = ""
        if host is None or (host and not _host_allowed(host, self.allowed_hosts)):
            await _refuse(400, "missing or disallowed Host header", scope, receive, send)
            return
        if declared is not None and declared > self.max_body_bytes:
            await _refuse(413, self._too_large_detail(), scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # An HTTPException, which FastAPI lets through as it reads a body.
                    raise HTTPException(413, self._too_large_detail())
            return message

        async def send_without_content_type(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in _NO_CONTENT:
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"content-type"]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, counted_receive, send_without_content_type)

    def _too_large_detail(self) -> str:
        return f"the request body is larger than {self.max_body_bytes} bytes"


async def _refuse(status: int, detail: str, scope: Scope, receive: Receive, send: Send) -> None:
    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    # Parsed as FastAPI parses it, so that what passes here is what FastAPI decodes as JSON.
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


UNSUPPORTED_MEDIA_TYPE: dict[int | str, dict[str, Any]] = {
    415: {"model": ErrorBody, "description": "The body is not sent as application/json"}
}


class JsonBodyRoute(APIRoute):
    """A route whose JSON body must be sent as JSON: a body of another media type, or of none,
    is 415.

    FastAPI would otherwise validate the raw bytes of a text or form body against the model
    and answer 422, as if the JSON were wrong rather than absent.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._takes_json():
            self.responses = {**UNSUPPORTED_MEDIA_TYPE, **self.responses}

    def _takes_json(self) -> bool:
        return self.body_field is not None and not isinstance(self.body_field.field_info, Form)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not self._takes_json():
            return handler

        async def json_only(request: Request) -> Response:
            content_type = request.headers.get("content-type")
            # No body and no type: nothing of the wrong type, but a missing body (422).
            if not _is_json(content_type) and (content_type or await request.body()):
                raise UnsupportedMediaType("send the body as application/json")
            return await handler(request)

        return json_only


def serve_either_slash(app: FastAPI) -> None:
    """Answer a path with or without its trailing slash as the route that has the other one.

    Starlette would redirect (307), which many clients do not follow for a POST. Only a path
    no route matches is tried with the slash toggled, so matched requests cost nothing more.
    """
    router = app.router
    router.redirect_slashes = False
    not_found = router.default

    async def toggled_or_not_found(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if scope["type"] == "http" and path != "/" and _SLASH_TOGGLED not in scope:
            other = path[:-1] if path.endswith("/") else f"{path}/"
            toggled = {**scope, "path": other, _SLASH_TOGGLED: True}
            if any(route.matches(toggled)[0] is not Match.NONE for route in router.routes):
                try:
                    await router.app(toggled, receive, send)
                finally:
                    # The route that served it, for the request metrics (servicekit.metrics).
                    if "route" in toggled:
                        scope["route"] = toggled["route"]
                return
        await not_found(scope, receive, send)

    router.default = toggled_or_not_found


def guard_requests(app: FastAPI, *, max_body_bytes: int, allowed_hosts: Sequence[str]) -> None:
    """Install RequestGuard and path matching with either slash; before the outer middleware."""
    serve_either_slash(app)
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes, allowed_hosts=allowed_hosts)
