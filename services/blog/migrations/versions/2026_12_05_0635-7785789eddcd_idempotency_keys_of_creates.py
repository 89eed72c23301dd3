"""idempotency keys of creates

Revision ID: 7785789eddcd
Revises: c5a9e3f17b28
Create Date: 2026-12-05 06:35:00.000000

The Idempotency-Key of each create sent with one, with the request it named and its first
answer (servicekit.idempotency). A new table: the previous release never reads it.
"""

from collections.abc import Sequence

from servicekit.migrations import create_idempotency_keys_table, drop_idempotency_keys_table

revision: str = "7785789eddcd"
down_revision: str | None = "c5a9e3f17b28"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_idempotency_keys_table()


def downgrade() -> None:
    drop_idempotency_keys_table()
