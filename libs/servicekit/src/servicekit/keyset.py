"""Keyset pagination: orderings, opaque cursors whose cost does not grow with depth, and pages
of SQL statements."""

import base64
import binascii
import dataclasses
import json
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, bindparam, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from servicekit.domain import InvalidInput
from servicekit.pagination import PageRequest
from servicekit.reads import Row

if TYPE_CHECKING:
    from servicekit.database import Database

T = TypeVar("T")
S = TypeVar("S", bound=Select[Any])


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows and the cursor of the next page, if there is one."""

    items: list[T]
    next_cursor: str | None


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


# Cursor values are checked as strictly as any other input: what the database or a driver
# cannot bind (a 65-bit integer, a lone surrogate, a NaN, a year outside 1-9999 once in UTC)
# must be a 422 here, not an error while the query runs.
_BIGINT = 2**63 - 1
_DECIMAL_EXPONENT = 40


def _decode(value: Any, python_type: type[Any]) -> Any:
    if python_type is datetime:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("a timestamp without a timezone")
        return moment.astimezone(UTC)  # OverflowError near the ends of the calendar
    if python_type is Decimal:
        number = Decimal(value)
        if not number.is_finite() or abs(number.adjusted()) > _DECIMAL_EXPONENT:
            raise ValueError("a number that is not finite or out of range")
        return number
    # bool is an int to isinstance, but never a valid id or count.
    if isinstance(value, bool) is not (python_type is bool) or not isinstance(value, python_type):
        raise TypeError(f"expected {python_type.__name__}")
    if isinstance(value, int) and not -_BIGINT <= value <= _BIGINT:
        raise ValueError("an integer out of range")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("NUL in a cursor value")
        value.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate
    return value


@dataclass(frozen=True)
class SortOrder:
    """A deterministic ordering: columns whose last one is unique, all in one direction.

    Keyset pagination compares the row-value of these columns with the cursor's, which an index
    on the same columns answers without reading the rows before it.

    `sorted_by` spells the ordering in other columns holding the same values, for a statement
    whose index has them (a copy in another table, say); cursors still carry `columns`' values,
    so they work with either spelling. `spelled_in` gives such a copy.
    """

    name: str
    columns: tuple[InstrumentedAttribute[Any], ...]
    descending: bool = False
    sorted_by: tuple[ColumnElement[Any], ...] | None = None

    @classmethod
    def by(cls, field: str, direction: str, *columns: InstrumentedAttribute[Any]) -> "SortOrder":
        """An ordering a client chose: `columns` (the last one unique) ascending or, with
        `direction` "desc", descending; named `field:direction` in its cursors."""
        return cls(f"{field}:{direction}", columns, descending=direction == "desc")

    def spelled_in(self, *columns: ColumnElement[Any]) -> "SortOrder":
        """This ordering, sorted and compared on `columns` (one for each of its own)."""
        if len(columns) != len(self.columns):
            raise ValueError("an ordering is spelled in as many columns as it has")
        return dataclasses.replace(self, sorted_by=columns)

    def _keys(self) -> tuple[ColumnElement[Any] | InstrumentedAttribute[Any], ...]:
        return self.sorted_by or self.columns

    def order_by(self) -> list[Any]:
        """The ORDER BY clauses of this ordering."""
        return [column.desc() if self.descending else column.asc() for column in self._keys()]

    def cursor_after(self, row: object) -> str:
        """The opaque cursor that continues the list after `row` (an object or a mapping)."""
        if isinstance(row, Mapping):
            values = [_encode(row[column.key]) for column in self.columns]
        else:
            values = [_encode(getattr(row, column.key)) for column in self.columns]
        payload = json.dumps({"o": self.name, "v": values}, separators=(",", ":"))
        return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()

    def values_of(self, cursor: str) -> list[Any]:
        """The column values a cursor carries; 422 if it is not one of this ordering's."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            payload = json.loads(raw)
            if payload["o"] != self.name or len(payload["v"]) != len(self.columns):
                raise ValueError("cursor of another ordering")
            return [
                _decode(value, column.type.python_type)
                for value, column in zip(payload["v"], self.columns, strict=True)
            ]
        except (
            binascii.Error,
            UnicodeDecodeError,
            ValueError,
            TypeError,
            KeyError,
            InvalidOperation,
            OverflowError,
        ) as exc:
            raise InvalidInput.at(
                ("query", "after"),
                "invalid cursor: use the one from the previous page's Link header "
                "with the same sort order",
            ) from exc

    def after(self) -> ColumnElement[bool]:
        """The WHERE clause selecting the rows after a cursor, whose values bind as parameters.

        Its SQL is the same for every cursor, so a statement using it compiles once; the
        values come from `after_parameters`.
        """
        key = tuple_(*self._keys())
        # Bound with the columns' own types, so e.g. timestamps compare as timestamps on SQLite.
        values = tuple_(
            *(
                bindparam(f"after_{index}", type_=column.type)
                for index, column in enumerate(self._keys())
            )
        )
        return key < values if self.descending else key > values

    def after_parameters(self, cursor: str) -> dict[str, Any]:
        """The parameters of `after()` for a cursor; 422 if it is not one of this ordering's."""
        return {f"after_{index}": value for index, value in enumerate(self.values_of(cursor))}


def _page_statement(statement: S, order: SortOrder, after: bool) -> S:
    if after:
        statement = statement.where(order.after())
    return (
        statement.order_by(*order.order_by())
        .offset(bindparam("page_offset"))
        .limit(bindparam("page_limit"))
    )


def _page_parameters(order: SortOrder, page: PageRequest) -> dict[str, Any]:
    # One more row than asked for tells whether another page follows.
    parameters: dict[str, Any] = {"page_offset": page.skip, "page_limit": page.limit + 1}
    if page.after is not None:
        parameters |= order.after_parameters(page.after)
    return parameters


def _page_of(rows: Sequence[T], order: SortOrder, page: PageRequest) -> Page[T]:
    items = list(rows[: page.limit])
    has_more = len(rows) > page.limit
    return Page(items, order.cursor_after(items[-1]) if has_more and items else None)


# The page statements of a shape (a statement defined once, see servicekit.reads), kept as
# long as the shape itself so that each compiles once.
_PAGE_SHAPES: "weakref.WeakKeyDictionary[Select[Any], dict[tuple[str, bool], Select[Any]]]" = (
    weakref.WeakKeyDictionary()
)


async def fetch_page(
    database: "Database",
    shape: Select[Any],
    order: SortOrder,
    page: PageRequest,
    parameters: Mapping[str, Any] | None = None,
) -> Page[Row]:
    """One page of a Core SELECT on the read path, as dicts; `parameters` bind its own values."""
    after = page.after is not None
    pages = _PAGE_SHAPES.setdefault(shape, {})
    statement = pages.get((order.name, after))
    if statement is None:
        statement = pages[order.name, after] = _page_statement(shape, order, after)
    rows = await database.fetch(statement, {**(parameters or {}), **_page_parameters(order, page)})
    return _page_of(rows, order, page)
