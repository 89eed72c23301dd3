"""Keyset cursors: they round-trip the sort values and refuse anything they did not issue."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Numeric, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.database import UTCDateTime
from servicekit.pagination import SortOrder


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "rows"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(10))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


BY_PRICE = SortOrder("price:asc", (Row.price, Row.id))
BY_CREATED = SortOrder("created_at:desc", (Row.created_at, Row.id), descending=True)


def row(**values: Any) -> Row:
    defaults: dict[str, Any] = {
        "id": 7,
        "name": "n",
        "price": Decimal("19.99"),
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    }
    return Row(**{**defaults, **values})


def test_a_cursor_carries_the_exact_sort_values_of_its_row() -> None:
    assert BY_PRICE.values_of(BY_PRICE.cursor_after(row())) == [Decimal("19.99"), 7]
    assert BY_CREATED.values_of(BY_CREATED.cursor_after(row())) == [
        datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        7,
    ]


def test_a_cursor_is_url_safe() -> None:
    cursor = BY_CREATED.cursor_after(row(name="ü/+?"))

    assert cursor.replace("-", "").replace("_", "").isalnum()


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not-base64!",
        "bm90IGpzb24",  # "not json"
        "eyJvIjoicHJpY2U6YXNjIn0",  # no values
        "eyJvIjoicHJpY2U6YXNjIiwidiI6WyJhYmMiLDFdfQ",  # a price that is not a number
        "eyJvIjoicHJpY2U6YXNjIiwidiI6WyIxIiwidHJ1ZSJdfQ",  # an id that is a string
        "eyJvIjoicHJpY2U6YXNjIiwidiI6WyIxIix0cnVlXX0",  # an id that is a boolean
    ],
)
def test_anything_not_issued_by_the_ordering_is_a_422(cursor: str) -> None:
    with pytest.raises(RequestValidationError) as error:
        BY_PRICE.values_of(cursor)

    assert error.value.errors()[0]["loc"] == ("query", "after")


def test_a_timestamp_without_a_timezone_is_refused() -> None:
    forged = BY_CREATED.cursor_after(row(created_at=datetime(2026, 1, 2, 3, 4, 5)))

    with pytest.raises(RequestValidationError):
        BY_CREATED.values_of(forged)


def test_a_cursor_of_another_ordering_is_refused() -> None:
    with pytest.raises(RequestValidationError):
        BY_PRICE.values_of(BY_CREATED.cursor_after(row()))


def test_descending_orderings_continue_below_the_cursor() -> None:
    clause = BY_CREATED.after(BY_CREATED.cursor_after(row()))

    assert "<" in str(clause)
    assert ">" in str(BY_PRICE.after(BY_PRICE.cursor_after(row())))
