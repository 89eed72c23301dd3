"""One error model for every process: `{"detail": ...}`, never SQL, driver text or tracebacks.

The answers to database errors are the services' alone (servicekit.database_errors): a process
without a database never imports the database stack.
"""

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.utils import create_model_field
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from servicekit.domain import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    StaleVersion,
    Throttled,
)

logger = logging.getLogger("servicekit.errors")


class ServiceError(Exception):
    """An error of the HTTP layer itself (credentials, media types, upstreams): its status code
    and detail go out as they are. The services' own rules raise servicekit.domain's errors."""

    status_code: ClassVar[int] = 500
    headers: dict[str, str] | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(ServiceError):
    status_code = 400


class ErrorBody(BaseModel):
    """The body of every error response except validation errors."""

    detail: str


_DESCRIPTIONS = {
    400: "The body is not decodable as JSON",
    401: "No bearer token, or one that is invalid or expired",
    403: "The token's user may not do this",
    404: "Not found",
    409: "Conflicts with the current state",
    412: "If-Match names a version that is no longer current",
    410: "What was asked for is no longer kept",
    503: "A dependency is unavailable, or the service is busy; retry after Retry-After seconds",
}


def error_responses(*status_codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting these error statuses and their body."""
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in status_codes}


def add_error_responses(route: APIRoute, *status_codes: int) -> None:
    """Document these error statuses on a built route, unless it documents them already."""
    for status_code, entry in error_responses(*status_codes).items():
        if status_code in route.responses:
            continue
        route.responses[status_code] = entry
        # What APIRoute derives from `responses` when it is built, for the OpenAPI schema.
        route.response_fields[status_code] = create_model_field(
            name=f"Response_{status_code}_{route.unique_id}",
            type_=entry["model"],
            mode="serialization",
        )


# The one place a refusal of the domain becomes an HTTP status.
DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    Conflict: 409,
    StaleVersion: 412,
    Forbidden: 403,
    Throttled: 429,
}


def error_response(
    status_code: int, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A response in the shared error model."""
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status_code, exc.detail, exc.headers)


async def domain_error(request: Request, exc: Exception) -> JSONResponse:
    """The answer to a refusal of the domain: its status, and a 422 shaped like FastAPI's own."""
    assert isinstance(exc, DomainError)
    if isinstance(exc, InvalidInput):
        problems = [{"type": "value_error", "loc": loc, "msg": msg} for loc, msg in exc.problems]
        return await validation_error(request, RequestValidationError(problems))
    status_code = next(code for kind, code in DOMAIN_STATUS.items() if isinstance(exc, kind))
    headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    return error_response(status_code, exc.detail, headers)


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """The 422 for invalid input, without the input itself."""
    assert isinstance(exc, RequestValidationError)
    # "input" can echo a whole body back; the location and message are what a client needs.
    errors = [
        {key: error[key] for key in ("type", "loc", "msg", "ctx") if key in error}
        for error in exc.errors()
    ]
    return error_response(422, jsonable_encoder(errors, custom_encoder={Exception: str}))


def unexpected_error(exc: Exception) -> JSONResponse:
    """The 500 for an exception nothing handled, logged with its traceback (never sent)."""
    logger.error("unhandled %s", type(exc).__name__, exc_info=exc)
    return error_response(500, "internal server error")


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    # Only for an app without RequestContextMiddleware, which answers these itself.
    return unexpected_error(exc)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> str:
    # Starlette names only the first route that matched the path; a resource often has several.
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    # RequestContextMiddleware answers HEAD wherever GET is served.
    if "GET" in allowed and "HEAD" not in allowed:
        allowed.insert(allowed.index("GET") + 1, "HEAD")
    return ", ".join(allowed)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    if exc.status_code in {204, 304}:
        return Response(status_code=exc.status_code, headers=headers)
    return error_response(exc.status_code, exc.detail, headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into the shared error model.

    A service also registers servicekit.database_errors' handlers for its database's errors.
    """
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
