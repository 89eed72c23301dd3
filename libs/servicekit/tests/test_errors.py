"""Database failures in the shared error model: what a client is told, and whether to retry."""

import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError

from servicekit.database_errors import install_database_error_handlers
from servicekit.errors import install_error_handlers
from servicekit.testing import asgi_client


@pytest.mark.parametrize(
    ("driver_error", "detail"),
    [
        (
            psycopg.errors.DeadlockDetected("deadlock detected"),
            "the request collided with a concurrent one and was undone; repeat it",
        ),
        (
            psycopg.errors.SerializationFailure("could not serialize access"),
            "the request collided with a concurrent one and was undone; repeat it",
        ),
        (psycopg.OperationalError("connection refused"), "database unavailable"),
    ],
)
async def test_a_transaction_the_database_undid_is_told_apart_from_an_outage(
    driver_error: psycopg.Error, detail: str
) -> None:
    app = FastAPI()
    install_error_handlers(app)
    install_database_error_handlers(app)

    @app.get("/write")
    async def write() -> None:
        # What SQLAlchemy raises when the driver does (the statement and its parameters).
        raise OperationalError("UPDATE t SET x = 1", {}, driver_error)

    async with asgi_client(app) as client:
        response = await client.get("/write")

    assert (response.status_code, response.json()) == (503, {"detail": detail})
    assert response.headers["Retry-After"] == "1"
    assert str(driver_error) not in response.text
