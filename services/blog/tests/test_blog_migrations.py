"""The blog migrations' own cases: what their revisions fill in from the rows already there.
What every service's migrations promise runs from test_blog_contracts.py."""

from datetime import UTC, datetime

from sqlalchemy import column, insert, select, table
from sqlalchemy.ext.asyncio import create_async_engine

from blog_service.models import Post, Tag, post_tags
from servicekit.testing import ServiceUnderTest, migrate

BEFORE_STORED_COUNTS = "5a22753f064b"
BEFORE_LINK_TIMES = "14c8c6cff36b"


async def test_storing_tag_counts_counts_the_links_already_there(
    service: ServiceUnderTest, empty_database: str
) -> None:
    await migrate(service.alembic_ini, empty_database, BEFORE_STORED_COUNTS)
    engine = create_async_engine(empty_database)
    try:
        # Tags as they were at that revision: no post_count yet.
        tags_then = table("tags", column("id"), column("name"))
        async with engine.begin() as connection:
            await connection.execute(
                insert(Post),
                [{"id": i, "title": "T", "content": "C", "author_id": 1} for i in (1, 2, 3)],
            )
            await connection.execute(
                insert(tags_then), [{"id": 1, "name": "python"}, {"id": 2, "name": "web"}]
            )
            await connection.execute(
                insert(post_tags),
                [
                    {"post_id": 1, "tag_id": 1},
                    {"post_id": 2, "tag_id": 1},
                    {"post_id": 3, "tag_id": 2},
                ],
            )

        await migrate(service.alembic_ini, empty_database)

        async with engine.connect() as connection:
            counts = (
                await connection.execute(select(Tag.name, Tag.post_count).order_by(Tag.id))
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in counts] == [("python", 2), ("web", 1)]


async def test_links_already_there_take_their_posts_creation_times(
    service: ServiceUnderTest, empty_database: str
) -> None:
    await migrate(service.alembic_ini, empty_database, BEFORE_LINK_TIMES)
    engine = create_async_engine(empty_database)
    created = [datetime(2026, 3, day, tzinfo=UTC) for day in (1, 2)]
    try:
        links_then = table("post_tags", column("post_id"), column("tag_id"))
        async with engine.begin() as connection:
            await connection.execute(
                insert(Post),
                [
                    {"id": i, "title": "T", "content": "C", "author_id": 1, "created_at": at}
                    for i, at in enumerate(created, start=1)
                ],
            )
            await connection.execute(insert(Tag), [{"id": 1, "name": "python"}])
            await connection.execute(
                insert(links_then), [{"post_id": 1, "tag_id": 1}, {"post_id": 2, "tag_id": 1}]
            )

        await migrate(service.alembic_ini, empty_database)

        async with engine.connect() as connection:
            copied = await connection.scalars(
                select(post_tags.c.created_at).order_by(post_tags.c.post_id)
            )
            stored = list(copied)
    finally:
        await engine.dispose()
    assert stored == created
