"""fold every letter in the category name index

Revision ID: 7f2d9e0c4b13
Revises: d6820164fd87
Create Date: 2026-12-04 19:00:00.000000

SQLite's lower() folded A-Z alone, so the unique index on lower(name) took `Ärger` and
`ärger` as two categories. Connections now bring a lower() that folds every letter, as
Postgres's does (servicekit.database.fold_case_like_postgres); this rebuilds the index with
it. On SQLite, names that now collide make the upgrade fail: rename one, then migrate again.
Nothing changes on Postgres.
"""

from collections.abc import Sequence

from servicekit.migrations import rebuild_sqlite_indexes

revision: str = "7f2d9e0c4b13"
down_revision: str | None = "d6820164fd87"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    rebuild_sqlite_indexes("uq_categories_name_lower")


def downgrade() -> None:
    # The index stays as it is: connections fold every letter whatever the revision.
    pass
