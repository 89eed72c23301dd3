"""trigram indexes for substring search

Revision ID: 5a22753f064b
Revises: be2ce6c8e37a
Create Date: 2026-12-02 01:30:00.000000

`?q=` on posts matches `ILIKE '%text%'`, which without an index reads the whole table.
Postgres only: SQLite has no trigram index.
"""

from collections.abc import Sequence

from servicekit.migrations import create_substring_search_indexes, drop_substring_search_indexes

revision: str = "5a22753f064b"
down_revision: str | None = "be2ce6c8e37a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


INDEXES = {"ix_posts_title_trgm": "title", "ix_posts_content_trgm": "content"}


def upgrade() -> None:
    create_substring_search_indexes("posts", INDEXES)


def downgrade() -> None:
    drop_substring_search_indexes("posts", reversed(INDEXES))
