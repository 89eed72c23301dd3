"""The users table."""

from datetime import datetime

from sqlalchemy import Index, String, func, true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.database import (
    created_at_column,
    make_metadata,
    substring_search_index,
    updated_at_column,
)


class Base(DeclarativeBase):
    metadata = make_metadata()


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(100))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012
    __table_args__ = (
        # Emails are unique whatever their letter case; the database decides under concurrency.
        Index("uq_users_email_lower", func.lower(email), unique=True),
        # Pages sorted by a field read its index in order (keyset pagination by field, id).
        Index("ix_users_name_id", name, id),
        Index("ix_users_email_id", email, id),
        Index("ix_users_created_at_id", created_at, id),
        # /users/search matches a substring of either, in any letter case.
        substring_search_index("ix_users_email_trgm", "email"),
        substring_search_index("ix_users_name_trgm", "name"),
    )
