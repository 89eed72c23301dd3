"""trigram indexes for substring search

Revision ID: d6820164fd87
Revises: 605bfc15c848
Create Date: 2026-12-02 01:30:00.000000

`?name=` on products matches `ILIKE '%text%'`, which without an index reads the whole table.
Postgres only: SQLite has no trigram index.
"""

from collections.abc import Sequence

from servicekit.migrations import create_substring_search_indexes, drop_substring_search_indexes

revision: str = "d6820164fd87"
down_revision: str | None = "605bfc15c848"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


INDEXES = {"ix_products_name_trgm": "name"}


def upgrade() -> None:
    create_substring_search_indexes("products", INDEXES)


def downgrade() -> None:
    drop_substring_search_indexes("products", reversed(INDEXES))
