"""Database errors in the shared error model (servicekit.errors): what a client is told, and
whether to retry. Never SQL or driver text: those are logged, by type only."""

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError

from servicekit.domain import InvalidInput
from servicekit.errors import domain_error, error_response, logger

BUSY = "the service is busy: no database connection became free in time; retry later"

# Postgres ended the transaction to let a concurrent one through (a deadlock it broke, or a
# serialization failure): the database is fine, and the same request may succeed if repeated.
_CONFLICT_STATES = frozenset({"40P01", "40001"})


def _is_connection_failure(exc: DBAPIError) -> bool:
    return exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))


async def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    # Services translate the constraints they know; this is the fallback for the rest.
    logger.warning("unmapped integrity error: %s", type(exc.__cause__ or exc).__name__)
    return error_response(409, "the request conflicts with the current state of the resource")


async def _stale_data(request: Request, _exc: Exception) -> JSONResponse:
    # Another request changed the row between this one's read and its write. With If-Match
    # the client asked for exactly that check: its version is no longer current.
    if request.headers.get("if-match") is not None:
        return error_response(
            412, "the resource has changed since that version; fetch it and retry"
        )
    return error_response(409, "the resource was changed by another request; fetch it and retry")


async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _CONFLICT_STATES:
        logger.warning("transaction aborted by a conflict: %s", type(exc.orig).__name__)
        return error_response(
            503,
            "the request collided with a concurrent one and was undone; repeat it",
            {"Retry-After": "1"},
        )
    if isinstance(exc, DBAPIError) and _is_connection_failure(exc):
        logger.error("database unavailable: %s", type(exc).__name__)
        return error_response(503, "database unavailable", {"Retry-After": "1"})
    logger.exception("database error")
    return error_response(500, "internal server error")


def _pool_exhausted(retry_after: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        # Every connection of a pool stayed lent for the whole pool timeout: the database
        # answers, this process has more work than connections. Not an outage: a client may
        # retry (here or on another replica), and the operator adds capacity, not a database.
        logger.warning("busy: no database connection became free in time (%s)", exc)
        return error_response(503, BUSY, {"Retry-After": str(retry_after)})

    return handler


async def _data_error(request: Request, _exc: Exception) -> JSONResponse:
    # Validation should catch these first; the database is the last line of defence.
    return await domain_error(
        request, InvalidInput.at(("body",), "a value is out of range or malformed")
    )


def install_database_error_handlers(app: FastAPI, *, busy_retry_after: int = 1) -> None:
    """Register the handlers that answer database errors in the shared error model.

    `busy_retry_after` is the `Retry-After` of a 503 for a request that no pooled database
    connection became free for (ServiceSettings.busy_retry_after).
    """
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(StaleDataError, _stale_data)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeoutError, _pool_exhausted(busy_retry_after))
