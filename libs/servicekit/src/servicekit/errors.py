"""One error model for every service: `{"detail": ...}`, never SQL, driver text or tracebacks."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.utils import create_model_field
from pydantic import BaseModel
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

logger = logging.getLogger("servicekit.errors")


class ServiceError(Exception):
    """An error the client can act on: its status code and detail go out as they are."""

    status_code: ClassVar[int] = 500
    headers: dict[str, str] | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(ServiceError):
    status_code = 400


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class PreconditionFailed(ServiceError):
    status_code = 412


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


def invalid_input(location: tuple[str, ...], message: str) -> RequestValidationError:
    """A 422 for input only the application can judge, shaped like FastAPI's own."""
    return RequestValidationError([{"type": "value_error", "loc": location, "msg": message}])


def _error(status_code: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


def _is_connection_failure(exc: DBAPIError) -> bool:
    return exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return _error(exc.status_code, exc.detail, exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # "input" can echo a whole body back; the location and message are what a client needs.
    errors = [
        {key: error[key] for key in ("type", "loc", "msg", "ctx") if key in error}
        for error in exc.errors()
    ]
    return _error(422, jsonable_encoder(errors, custom_encoder={Exception: str}))


async def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    # Services translate the constraints they know; this is the fallback for the rest.
    logger.warning("unmapped integrity error: %s", type(exc.__cause__ or exc).__name__)
    return _error(409, "the request conflicts with the current state of the resource")


async def _stale_data(request: Request, _exc: Exception) -> JSONResponse:
    # Another request changed the row between this one's read and its write. With If-Match
    # the client asked for exactly that check: its version is no longer current.
    if request.headers.get("if-match") is not None:
        return _error(412, "the resource has changed since that version; fetch it and retry")
    return _error(409, "the resource was changed by another request; fetch it and retry")


# Postgres ended the transaction to let a concurrent one through (a deadlock it broke, or a
# serialization failure): the database is fine, and the same request may succeed if repeated.
_CONFLICT_STATES = frozenset({"40P01", "40001"})


async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _CONFLICT_STATES:
        logger.warning("transaction aborted by a conflict: %s", type(exc.orig).__name__)
        return _error(
            503,
            "the request collided with a concurrent one and was undone; repeat it",
            {"Retry-After": "1"},
        )
    if isinstance(exc, DBAPIError) and _is_connection_failure(exc):
        logger.error("database unavailable: %s", type(exc).__name__)
        return _error(503, "database unavailable", {"Retry-After": "1"})
    logger.exception("database error")
    return _error(500, "internal server error")


BUSY = "the service is busy: no database connection became free in time; retry later"


def _pool_exhausted(retry_after: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        # Every connection of a pool stayed lent for the whole pool timeout: the database
        # answers, this process has more work than connections. Not an outage: a client may
        # retry (here or on another replica), and the operator adds capacity, not a database.
        logger.warning("busy: no database connection became free in time (%s)", exc)
        return _error(503, BUSY, {"Retry-After": str(retry_after)})

    return handler


async def _data_error(request: Request, _exc: Exception) -> JSONResponse:
    # Validation should catch these first; the database is the last line of defence.
    return await _validation_error(
        request, invalid_input(("body",), "a value is out of range or malformed")
    )


def unexpected_error(exc: Exception) -> JSONResponse:
    """The 500 for an exception nothing handled, logged with its traceback (never sent)."""
    logger.error("unhandled %s", type(exc).__name__, exc_info=exc)
    return _error(500, "internal server error")


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
    return _error(exc.status_code, exc.detail, headers)


def install_error_handlers(app: FastAPI, *, busy_retry_after: int = 1) -> None:
    """Register the handlers that turn exceptions into the shared error model.

    `busy_retry_after` is the `Retry-After` of a 503 for a request that no pooled database
    connection became free for (ServiceSettings.busy_retry_after).
    """
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(StaleDataError, _stale_data)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeoutError, _pool_exhausted(busy_retry_after))
    app.add_exception_handler(Exception, _unexpected_error)
