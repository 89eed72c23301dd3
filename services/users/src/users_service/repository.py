"""SQL for users: every query the service runs lives here.

Reads are Core SELECTs on the database's read path and return rows as dicts; writes go
through the ORM session of the request's transaction.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, delete, func, select, update

from servicekit.keyset import Page, SortOrder, fetch_page
from servicekit.pagination import PageRequest
from servicekit.reads import LIKE_ESCAPE, Criteria, Row, escape_like, one_of
from servicekit.repository import Repository, ResourceReads
from users_service.models import LoginFailure, RefreshToken, User

USERS = User.__table__
REFRESH_TOKENS = cast("Table", RefreshToken.__table__)
LOGIN_FAILURES = cast("Table", LoginFailure.__table__)
# Every column but the password hash, which no read of a user needs.
_RECORD = [column for column in USERS.c if column.name != "password_hash"]
_BY_ID = select(*_RECORD).where(USERS.c.id == bindparam("user_id"))


# The lists' optional filters, each a statement compiled once (see servicekit.reads).
_LISTS = Criteria(
    select(*_RECORD),
    ids=one_of(USERS.c.id, "ids"),
    email=USERS.c.email.icontains(bindparam("email"), escape=LIKE_ESCAPE),
    name=USERS.c.name.icontains(bindparam("name"), escape=LIKE_ESCAPE),
    active_only=USERS.c.is_active,
)
_COUNTS = select(
    func.count().label("total"),
    func.coalesce(func.sum(case((USERS.c.is_active, 1), else_=0)), 0).label("active"),
).select_from(USERS)


class UserReads(ResourceReads):
    """Queries that only read users: rows as dicts, without the password hash."""

    noun = "user"

    async def get(self, user_id: int) -> Row | None:
        return await self.database.fetch_one(_BY_ID, {"user_id": user_id})

    async def page(
        self,
        page: PageRequest,
        order: SortOrder,
        *,
        ids: Sequence[int] = (),
        email: str | None = None,
        name: str | None = None,
        active_only: bool = False,
    ) -> Page[Row]:
        """One page of users matching every filter given, in `order`."""
        statement, parameters = _LISTS.select(
            ids=list(ids) or None,
            email=None if email is None else escape_like(email),
            name=None if name is None else escape_like(name),
            active_only=active_only or None,
        )
        return await fetch_page(self.database, statement, order, page, parameters)

    async def counts(self) -> tuple[int, int]:
        """How many users there are, and how many of them are active."""
        row = await self.database.fetch_one(_COUNTS)
        assert row is not None  # an aggregate always has a row
        return int(row["total"]), int(row["active"])


class UserRepository(Repository[User]):
    """Changes to users, in the ORM session of the request's transaction."""

    model = User
    noun = "user"

    async def get_by_email(self, email: str) -> User | None:
        """The user with this email in any letter case (the unique index's expression)."""
        statement = select(User).where(func.lower(User.email) == func.lower(email))
        user: User | None = await self.session.scalar(statement)
        return user


class RefreshTokenRepository(Repository[RefreshToken]):
    """Refresh tokens by the SHA-256 of their value, in the session's transaction."""

    model = RefreshToken
    noun = "refresh token"

    async def use(self, token_hash: str, now: datetime) -> tuple[int, str] | None:
        """Mark a live token used; its (user_id, family_id), or None if it was not live.

        One UPDATE decides: of two requests with the same token, the second finds it used
        (on Postgres it waits for the first to commit, then re-reads the row).
        """
        statement = (
            update(REFRESH_TOKENS)
            .where(
                REFRESH_TOKENS.c.token_hash == token_hash,
                REFRESH_TOKENS.c.used_at.is_(None),
                REFRESH_TOKENS.c.revoked_at.is_(None),
                REFRESH_TOKENS.c.expires_at > now,
            )
            .values(used_at=now)
            .returning(REFRESH_TOKENS.c.user_id, REFRESH_TOKENS.c.family_id)
        )
        row = (await self.session.execute(statement)).one_or_none()
        return None if row is None else (row.user_id, row.family_id)

    async def find(self, token_hash: str) -> Any | None:
        statement = select(REFRESH_TOKENS).where(REFRESH_TOKENS.c.token_hash == token_hash)
        return (await self.session.execute(statement)).one_or_none()

    async def revoke(self, token_hash: str, now: datetime) -> None:
        await self._revoke(REFRESH_TOKENS.c.token_hash == token_hash, now)

    async def revoke_family(self, family_id: str, now: datetime) -> None:
        await self._revoke(REFRESH_TOKENS.c.family_id == family_id, now)

    async def revoke_all_of(self, user_id: int, now: datetime) -> None:
        await self._revoke(REFRESH_TOKENS.c.user_id == user_id, now)

    async def _revoke(self, which: Any, now: datetime) -> None:
        statement = (
            update(REFRESH_TOKENS)
            .where(which, REFRESH_TOKENS.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        await self.session.execute(statement)


class LoginFailureRepository(Repository[LoginFailure]):
    """Failed logins, counted per key (an account or a client address) within a window."""

    model = LoginFailure
    noun = "login failure"

    async def latest(self, key: str, since: datetime, limit: int) -> list[datetime]:
        """The times of the key's latest `limit` failures after `since`, newest first."""
        statement = (
            select(LOGIN_FAILURES.c.failed_at)
            .where(LOGIN_FAILURES.c.key == key, LOGIN_FAILURES.c.failed_at > since)
            .order_by(LOGIN_FAILURES.c.failed_at.desc())
            .limit(limit)
        )
        return list((await self.session.scalars(statement)).all())

    async def record(self, keys: Iterable[str], now: datetime) -> None:
        await self.session.execute(
            LOGIN_FAILURES.insert(), [{"key": key, "failed_at": now} for key in keys]
        )

    async def clear(self, key: str) -> None:
        await self.session.execute(delete(LOGIN_FAILURES).where(LOGIN_FAILURES.c.key == key))

    async def prune(self, before: datetime) -> None:
        """Forget failures that no window counts any more."""
        await self.session.execute(
            delete(LOGIN_FAILURES).where(LOGIN_FAILURES.c.failed_at <= before)
        )
