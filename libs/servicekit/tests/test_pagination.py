"""Keyset cursors: they round-trip the sort values and refuse anything they did not issue."""

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Column, Integer, Numeric, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.database import UTCDateTime
from servicekit.domain import InvalidInput
from servicekit.keyset import SortOrder


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
BY_NAME = SortOrder("name:asc", (Row.name, Row.id))


def forged(order: SortOrder, *values: Any) -> str:
    """A cursor a client made up: well-formed, but with values of its own choosing."""
    payload = json.dumps({"o": order.name, "v": list(values)})
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()


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
    with pytest.raises(InvalidInput) as error:
        BY_PRICE.values_of(cursor)

    assert error.value.problems[0][0] == ("query", "after")


@pytest.mark.parametrize(
    ("order", "values"),
    [
        (BY_NAME, ["\ud800", 1]),  # a lone surrogate: no encoding can send it
        (BY_NAME, ["a", 2**70]),  # wider than any integer column
        (BY_NAME, ["a", -(2**63) - 1]),
        (BY_CREATED, ["0001-01-01T00:00:00+01:00", 1]),  # before year 1 once in UTC
        (BY_CREATED, ["9999-12-31T23:59:59-01:00", 1]),  # after year 9999 once in UTC
        (BY_PRICE, ["sNaN", 1]),
        (BY_PRICE, ["NaN", 1]),
        (BY_PRICE, ["-Infinity", 1]),
        (BY_PRICE, ["1e999999", 1]),
    ],
)
def test_values_no_database_could_compare_are_a_422(order: SortOrder, values: list[Any]) -> None:
    with pytest.raises(InvalidInput) as error:
        order.values_of(forged(order, *values))

    assert error.value.problems[0][0] == ("query", "after")


def test_the_widest_values_a_database_holds_still_round_trip() -> None:
    assert BY_NAME.values_of(forged(BY_NAME, "ünïcode ✓", 2**63 - 1)) == ["ünïcode ✓", 2**63 - 1]
    assert BY_CREATED.values_of(forged(BY_CREATED, "0001-01-01T00:00:00+00:00", 1)) == [
        datetime(1, 1, 1, tzinfo=UTC),
        1,
    ]


def test_a_timestamp_without_a_timezone_is_refused() -> None:
    forged = BY_CREATED.cursor_after(row(created_at=datetime(2026, 1, 2, 3, 4, 5)))

    with pytest.raises(InvalidInput):
        BY_CREATED.values_of(forged)


def test_a_cursor_of_another_ordering_is_refused() -> None:
    with pytest.raises(InvalidInput):
        BY_PRICE.values_of(BY_CREATED.cursor_after(row()))


def test_descending_orderings_continue_below_the_cursor() -> None:
    assert str(BY_CREATED.after()) == "(rows.created_at, rows.id) < (:after_0, :after_1)"
    assert str(BY_PRICE.after()) == "(rows.price, rows.id) > (:after_0, :after_1)"


def test_a_cursor_binds_its_values_as_the_after_parameters() -> None:
    cursor = BY_PRICE.cursor_after(row(price=Decimal("5.10"), id=3))

    assert BY_PRICE.after_parameters(cursor) == {"after_0": Decimal("5.10"), "after_1": 3}


def test_an_ordering_spelled_in_other_columns_sorts_on_them_and_keeps_its_cursors() -> None:
    copy = Table(
        "row_copies",
        Base.metadata,
        Column("row_created_at", UTCDateTime),
        Column("row_id", Integer),
    )
    spelled = BY_CREATED.spelled_in(copy.c.row_created_at, copy.c.row_id)
    cursor = BY_CREATED.cursor_after(row())

    assert [str(clause) for clause in spelled.order_by()] == [
        "row_copies.row_created_at DESC",
        "row_copies.row_id DESC",
    ]
    assert (
        str(spelled.after())
        == "(row_copies.row_created_at, row_copies.row_id) < (:after_0, :after_1)"
    )
    assert spelled.cursor_after(row()) == cursor
    assert spelled.after_parameters(cursor) == BY_CREATED.after_parameters(cursor)
    with pytest.raises(ValueError, match="as many columns"):
        BY_CREATED.spelled_in(copy.c.row_created_at)
