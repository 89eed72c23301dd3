"""outbox of integration events

Revision ID: 3f8d2b6c1a90
Revises: 7c2e9a41d5b3
Create Date: 2026-12-05 02:00:00.000000

The events users publishes, in the transaction of each change, and the newest position pruned.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3f8d2b6c1a90"
down_revision: str | None = "7c2e9a41d5b3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_outbox_events_txid_id", "outbox_events", ["txid", "id"])
    op.create_table(
        "outbox_horizon",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_horizon")),
    )


def downgrade() -> None:
    op.drop_table("outbox_horizon")
    op.drop_index("ix_outbox_events_txid_id", table_name="outbox_events")
    op.drop_table("outbox_events")
