"""trigram indexes for substring search

Revision ID: 4c0e36c45c6f
Revises: 55d27c3dc12d
Create Date: 2026-12-02 01:30:00.000000

/users/search matches `ILIKE '%text%'`, which without an index reads the whole table.
Postgres only: SQLite has no trigram index.
"""

from collections.abc import Sequence

from servicekit.migrations import create_substring_search_indexes, drop_substring_search_indexes

revision: str = "4c0e36c45c6f"
down_revision: str | None = "55d27c3dc12d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


INDEXES = {"ix_users_email_trgm": "email", "ix_users_name_trgm": "name"}


def upgrade() -> None:
    create_substring_search_indexes("users", INDEXES)


def downgrade() -> None:
    drop_substring_search_indexes("users", reversed(INDEXES))
