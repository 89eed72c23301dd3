"""Read-path statements: one per combination of criteria, compiled once, lists as one array."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Column, Integer, MetaData, Numeric, String, Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from servicekit.database import UTCDateTime
from servicekit.reads import LIKE_ESCAPE, Criteria, compile_for_driver, escape_like, one_of

ITEMS = Table(
    "items",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("name", String),
    Column("price", Numeric(10, 2)),
    Column("seen_at", UTCDateTime),
)
LISTS = Criteria(
    select(ITEMS.c.id),
    ids=one_of(ITEMS.c.id, "ids"),
    name=ITEMS.c.name.icontains(bindparam("name"), escape=LIKE_ESCAPE),
)
POSTGRES = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]


def test_criteria_build_one_statement_per_combination_and_pass_the_values_apart() -> None:
    first, first_values = LISTS.select(ids=[1, 2], name=None)
    again, again_values = LISTS.select(name=None, ids=[3])
    other, other_values = LISTS.select(ids=None, name="a")

    assert again is first
    assert (first_values, again_values, other_values) == (
        {"ids": [1, 2]},
        {"ids": [3]},
        {"name": "a"},
    )
    assert other is not first
    assert "name" in str(other.whereclause)


def test_a_list_is_one_array_parameter_on_postgres_and_an_in_list_elsewhere() -> None:
    statement, values = LISTS.select(ids=[1, 2, 3])

    short_sql, short = compile_for_driver(statement, POSTGRES, {"ids": [1]})
    long_sql, long = compile_for_driver(statement, POSTGRES, values)

    assert short_sql == long_sql
    assert "= ANY (%(ids)s::INTEGER[])" in long_sql
    assert (short, long) == ({"ids": [1]}, {"ids": [1, 2, 3]})
    assert "IN (__[POSTCOMPILE_ids])" in str(statement.compile(dialect=sqlite.dialect()))


def test_searched_text_matches_its_wildcards_literally() -> None:
    assert escape_like("50%_off/now") == "50/%/_off//now"


def test_parameters_are_bound_as_the_dialect_binds_their_columns_types() -> None:
    # A Decimal sent as a float would make Postgres compare the column as float8, casting it,
    # and no index on the column could serve the comparison.
    cheap = select(ITEMS.c.id).where(ITEMS.c.price <= bindparam("price"))
    seen = select(ITEMS.c.id).where(ITEMS.c.seen_at >= bindparam("seen_at"))
    moment = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)

    _, price = compile_for_driver(cheap, POSTGRES, {"price": Decimal("0.50")})
    _, seen_at = compile_for_driver(seen, POSTGRES, {"seen_at": moment})

    assert price == {"price": Decimal("0.50")}
    assert type(price["price"]) is Decimal
    assert seen_at == {"seen_at": moment}
    with pytest.raises(ValueError, match="naive"):
        compile_for_driver(seen, POSTGRES, {"seen_at": moment.replace(tzinfo=None)})
