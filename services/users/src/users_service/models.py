"""The users table, the refresh tokens issued to users, the failed logins being counted, the
outbox of the events the service publishes, and the keys of sign-ups."""

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, false, func, true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.database import (
    NEVER_REUSE_IDS,
    UTCDateTime,
    Versioned,
    created_at_column,
    make_metadata,
    substring_search_index,
)
from servicekit.events import outbox_tables
from servicekit.idempotency import idempotency_keys_table


class Base(DeclarativeBase):
    metadata = make_metadata()


class User(Versioned, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(100))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=false())
    # An argon2id hash; None for accounts created before passwords, which cannot log in.
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)

    __table_args__ = (
        # Emails are unique whatever their letter case; the database decides under concurrency.
        Index("uq_users_email_lower", func.lower(email), unique=True),
        # Pages sorted by a field read its index in order (keyset pagination by field, id).
        Index("ix_users_name_id", name, id),
        Index("ix_users_email_id", email, id),
        Index("ix_users_created_at_id", "created_at", id),
        # /users/search matches a substring of either, in any letter case.
        substring_search_index("ix_users_email_trgm", "email"),
        substring_search_index("ix_users_name_trgm", "name"),
        NEVER_REUSE_IDS,
    )


class RefreshToken(Base):
    """A refresh token, stored as the SHA-256 of the opaque value the client holds.

    Each is used once; its successor joins its family, so reusing a spent one can revoke
    every token descended from the same login.
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[str] = mapped_column(String(32), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class LoginFailure(Base):
    """One failed login, counted under the account and the client address it came from."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(300))
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        # Counting a key's failures within the window, and pruning the old ones.
        Index("ix_login_failures_key_failed_at", key, failed_at),
        Index("ix_login_failures_failed_at", failed_at),
    )


# The events users publishes (servicekit.events), written in the transaction of each change.
OUTBOX_EVENTS, OUTBOX_HORIZON = outbox_tables(Base.metadata)


# The Idempotency-Keys of creates and their first answers (servicekit.idempotency).
IDEMPOTENCY_KEYS = idempotency_keys_table(Base.metadata)
