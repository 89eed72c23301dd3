"""tag links carry their post's creation time

Revision ID: 9915a9a480d2
Revises: 14c8c6cff36b
Create Date: 2026-12-02 20:00:00.000000

`GET /posts/?tag=` in order of creation walked the posts newest first and tested each for
the tag: the rarer the tag, the more posts it read (78-110 ms for a tag on 583 of 500,000
posts). Each link now carries its post's created_at, and an index on (tag_id, created_at,
post_id) gives a tag's posts in that order, a page's worth of links at a time.

Triggers keep the copy: a new link (or one moved to another post) takes its post's
created_at, and a post whose created_at changes passes it to its links. Postgres fills the
column before the row is written; SQLite, which cannot change a row in a BEFORE trigger,
right after, which is why the column is nullable. Nothing in the service writes it.

The upgrade adds the column, rewrites every link and builds the new index in one transaction,
and ALTER TABLE holds post_tags against reads as well as writes until it commits: every read of
a post's tags waits meanwhile (11 s for 726,000 links on the bench data). On a larger database,
plan a quiet moment for it, and VACUUM post_tags afterwards to reclaim the old row versions.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from servicekit.database import UTCDateTime

revision: str = "9915a9a480d2"
down_revision: str | None = "14c8c6cff36b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COPY_EVERY_LINK = (
    "UPDATE post_tags SET created_at = "
    "(SELECT posts.created_at FROM posts WHERE posts.id = post_tags.post_id)"
)
POSTGRES = {
    "post_tags_take_created_at": (
        "RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "NEW.created_at := (SELECT created_at FROM posts WHERE id = NEW.post_id); "
        "RETURN NEW; END $$",
        "BEFORE INSERT OR UPDATE OF post_id ON post_tags FOR EACH ROW",
    ),
    "posts_pass_created_at_to_links": (
        "RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "UPDATE post_tags SET created_at = NEW.created_at WHERE post_id = NEW.id; "
        "RETURN NULL; END $$",
        "AFTER UPDATE OF created_at ON posts FOR EACH ROW "
        "WHEN (OLD.created_at IS DISTINCT FROM NEW.created_at)",
    ),
}
_TAKE = (
    "UPDATE post_tags SET created_at = (SELECT created_at FROM posts WHERE id = NEW.post_id) "
    "WHERE post_id = NEW.post_id AND tag_id = NEW.tag_id; END"
)
SQLITE = {
    "post_tags_take_created_at": f"AFTER INSERT ON post_tags BEGIN {_TAKE}",
    "post_tags_take_created_at_when_moved": f"AFTER UPDATE OF post_id ON post_tags BEGIN {_TAKE}",
    "posts_pass_created_at_to_links": "AFTER UPDATE OF created_at ON posts BEGIN "
    "UPDATE post_tags SET created_at = NEW.created_at WHERE post_id = NEW.id; END",
}


def upgrade() -> None:
    op.add_column("post_tags", sa.Column("created_at", UTCDateTime(), nullable=True))
    op.execute(COPY_EVERY_LINK)
    op.create_index(
        "ix_post_tags_tag_id_created_at_post_id", "post_tags", ["tag_id", "created_at", "post_id"]
    )
    op.drop_index("ix_post_tags_tag_id_post_id", table_name="post_tags")
    if op.get_bind().dialect.name == "postgresql":
        for name, (function, when) in POSTGRES.items():
            op.execute(f"CREATE FUNCTION {name}() {function}")
            op.execute(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION {name}()")
    else:
        for name, body in SQLITE.items():
            op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in POSTGRES:
            # Each trigger is its function's only user: CASCADE drops it with the function.
            op.execute(f"DROP FUNCTION {name}() CASCADE")
    else:
        for name in SQLITE:
            op.execute(f"DROP TRIGGER {name}")
    op.create_index("ix_post_tags_tag_id_post_id", "post_tags", ["tag_id", "post_id"])
    op.drop_index("ix_post_tags_tag_id_created_at_post_id", table_name="post_tags")
    op.drop_column("post_tags", "created_at")
