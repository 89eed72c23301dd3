"""authors and the event consumer

Revision ID: c41e7a9d3b52
Revises: 9915a9a480d2
Create Date: 2026-12-05 02:00:00.000000

`authors` records which users were deleted (users' user.deleted events), and is the row a
create locks so that nothing is written for an author whose content is being erased.
`event_cursors` and `parked_events` are the consumer's place in users' feed and the events it
could not apply. Existing authors get their rows at their next post or comment.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c41e7a9d3b52"
down_revision: str | None = "9915a9a480d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "authors",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authors")),
    )
    op.create_table(
        "event_cursors",
        sa.Column("feed", sa.String(length=100), nullable=False),
        sa.Column("position", sa.String(length=40), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("feed", name=op.f("pk_event_cursors")),
    )
    op.create_table(
        "parked_events",
        sa.Column("feed", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("feed", "event_id", name=op.f("pk_parked_events")),
    )


def downgrade() -> None:
    op.drop_table("parked_events")
    op.drop_table("event_cursors")
    op.drop_table("authors")
