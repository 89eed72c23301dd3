"""never reuse deleted ids

Revision ID: 8b4e1d6a2f07
Revises: 7f2d9e0c4b13
Create Date: 2026-12-05 02:00:00.000000

SQLite gave a new row the largest id plus one, so the id of the newest row, once deleted, went
to the next one: a client still holding it (and its ETag) reached another resource. The tables
whose ids clients hold are rebuilt with AUTOINCREMENT, their rows, indexes and triggers kept.
Postgres identities never give an id twice: nothing changes there.
"""

from collections.abc import Sequence

from servicekit.migrations import never_reuse_sqlite_ids, reuse_sqlite_ids

revision: str = "8b4e1d6a2f07"
down_revision: str | None = "7f2d9e0c4b13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("categories", "products", "product_images")


def upgrade() -> None:
    never_reuse_sqlite_ids(*TABLES)


def downgrade() -> None:
    reuse_sqlite_ids(*TABLES)
