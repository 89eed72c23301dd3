"""fold every letter in the email index

Revision ID: e1a7c3b9d204
Revises: b3f1c2d4e5a6
Create Date: 2026-12-04 19:00:00.000000

SQLite's lower() folded A-Z alone, so the unique index on lower(email) took `Ödön@...` and
`ödön@...` as two addresses. Connections now bring a lower() that folds every letter, as
Postgres's does (servicekit.database.fold_case_like_postgres); this rebuilds the index with
it. On SQLite, addresses that now collide make the upgrade fail: rename one, then migrate
again. Nothing changes on Postgres.
"""

from collections.abc import Sequence

from servicekit.migrations import rebuild_sqlite_indexes

revision: str = "e1a7c3b9d204"
down_revision: str | None = "b3f1c2d4e5a6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    rebuild_sqlite_indexes("uq_users_email_lower")


def downgrade() -> None:
    # The index stays as it is: connections fold every letter whatever the revision.
    pass
