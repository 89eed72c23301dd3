"""create users

Revision ID: 55d27c3dc12d
Revises:
Create Date: 2026-11-25 09:58:54.812701
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "55d27c3dc12d"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True)
    op.create_index("ix_users_created_at_id", "users", ["created_at", "id"])
    op.create_index("ix_users_name_id", "users", ["name", "id"])


def downgrade() -> None:
    op.drop_index("ix_users_name_id", table_name="users")
    op.drop_index("ix_users_created_at_id", table_name="users")
    op.drop_index("uq_users_email_lower", table_name="users")
    op.drop_table("users")
