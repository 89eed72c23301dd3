"""never reuse deleted ids

Revision ID: 3d7f0a2c9e51
Revises: 3f8d2b6c1a90
Create Date: 2026-12-05 03:00:00.000000

SQLite gave a new row the largest id plus one, so the id of the newest row, once deleted, went
to the next one: a client still holding it (and its ETag) reached another resource. The tables
whose ids clients hold are rebuilt with AUTOINCREMENT, their rows, indexes and triggers kept.
Postgres identities never give an id twice: nothing changes there.
"""

from collections.abc import Sequence

from servicekit.migrations import never_reuse_sqlite_ids, reuse_sqlite_ids

revision: str = "3d7f0a2c9e51"
down_revision: str | None = "3f8d2b6c1a90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("users",)


def upgrade() -> None:
    never_reuse_sqlite_ids(*TABLES)


def downgrade() -> None:
    reuse_sqlite_ids(*TABLES)
