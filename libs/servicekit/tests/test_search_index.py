"""Substring search indexes: Postgres answers `icontains` from them; SQLite has none."""

from sqlalchemy import Column, Integer, String, Table, bindparam, inspect, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from servicekit.database import make_metadata, substring_search_index
from servicekit.reads import LIKE_ESCAPE, escape_like
from servicekit.testing.plugin import MakeDatabase

METADATA = make_metadata()
NOTES = Table(
    "notes",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("body", String(200), nullable=False),
    substring_search_index("ix_notes_body_trgm", "body"),
)
SEARCH = select(NOTES.c.id).where(NOTES.c.body.icontains(bindparam("q"), escape=LIKE_ESCAPE))


async def test_postgres_can_answer_a_substring_search_from_the_index(
    make_database: MakeDatabase,
) -> None:
    engine = create_async_engine(make_database("postgresql", "search_index"))
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
            await connection.run_sync(METADATA.create_all)
            await connection.execute(NOTES.insert(), [{"body": "Gateway 100%_done"}, {"body": "x"}])
            # A table this small is cheaper to scan; ask whether the index can serve at all.
            await connection.execute(text("SET LOCAL enable_seqscan = off"))
            sql = str(SEARCH.compile(engine.sync_engine))
            plan = "\n".join(
                (await connection.exec_driver_sql(f"EXPLAIN {sql}", {"q": "way"})).scalars()
            )
            found = (await connection.execute(SEARCH, {"q": escape_like("0%_D")})).scalars()

            assert "ix_notes_body_trgm" in plan
            assert list(found) == [1]
    finally:
        await engine.dispose()


async def test_sqlite_gets_no_such_index_and_still_searches(make_database: MakeDatabase) -> None:
    engine = create_async_engine(make_database("sqlite", "search_index"))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(METADATA.create_all)
            await connection.execute(NOTES.insert(), [{"body": "Gateway"}, {"body": "x"}])
            indexes = await connection.run_sync(lambda sync: inspect(sync).get_indexes("notes"))
            found = (await connection.execute(SEARCH, {"q": "WAY"})).scalars()

            assert indexes == []
            assert list(found) == [1]
    finally:
        await engine.dispose()
