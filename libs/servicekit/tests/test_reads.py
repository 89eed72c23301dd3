"""Read-path statements: one per combination of criteria, compiled once, lists as one array."""

from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from servicekit.reads import LIKE_ESCAPE, Criteria, compile_for_driver, escape_like, one_of

ITEMS = Table("items", MetaData(), Column("id", Integer, primary_key=True), Column("name", String))
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
