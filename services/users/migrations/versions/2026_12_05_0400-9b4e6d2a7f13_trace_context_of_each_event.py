"""trace context of each event

Revision ID: 9b4e6d2a7f13
Revises: 3d7f0a2c9e51
Create Date: 2026-12-05 04:00:00.000000

Each event keeps the W3C `traceparent` of the change that produced it, so a consumer's work can
be linked to the request that caused it. Nullable: events written while tracing is off, and
every event before this revision, have none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9b4e6d2a7f13"
down_revision: str | None = "3d7f0a2c9e51"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox_events", sa.Column("traceparent", sa.String(length=55), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox_events", "traceparent")
