"""SQL for users: every query the service runs lives here.

Reads are Core SELECTs on the database's read path and return rows as dicts; writes go
through the ORM session of the request's transaction.
"""

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.database import Database
from servicekit.pagination import Page, PageRequest, SortOrder, fetch_page
from servicekit.reads import LIKE_ESCAPE, Row, escape_like, one_of
from users_service.models import User
from users_service.schemas import UserStats

USERS = User.__table__
_BY_ID = select(*USERS.c).where(USERS.c.id == bindparam("user_id"))


@functools.cache
def _users(*, ids: bool, email: bool, name: bool, active_only: bool) -> Select[Any]:
    """The users a list shows, one statement for each combination of filters a list takes."""
    statement = select(*USERS.c)
    if active_only:
        statement = statement.where(USERS.c.is_active)
    if ids:
        statement = statement.where(one_of(USERS.c.id, "ids"))
    if email:
        statement = statement.where(USERS.c.email.icontains(bindparam("email"), escape=LIKE_ESCAPE))
    if name:
        statement = statement.where(USERS.c.name.icontains(bindparam("name"), escape=LIKE_ESCAPE))
    return statement


class UserReads:
    """Queries that only read."""

    def __init__(self, database: Database) -> None:
        self.database = database

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
        shape = _users(
            ids=bool(ids), email=email is not None, name=name is not None, active_only=active_only
        )
        parameters: dict[str, Any] = {"ids": list(ids)} if ids else {}
        if email is not None:
            parameters["email"] = escape_like(email)
        if name is not None:
            parameters["name"] = escape_like(name)
        return await fetch_page(self.database, shape, order, page, parameters)

    async def stats(self) -> UserStats:
        active = func.coalesce(func.sum(case((USERS.c.is_active, 1), else_=0)), 0)
        row = await self.database.fetch_one(
            select(func.count().label("total"), active.label("active")).select_from(USERS)
        )
        assert row is not None  # an aggregate always has a row
        total, active_count = int(row["total"]), int(row["active"])
        return UserStats(total=total, active=active_count, inactive=total - active_count)


class UserRepository:
    """Changes, in the ORM session of the request's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)

    async def add(self, user: User) -> User:
        """Insert a user now, so a conflicting email surfaces here rather than at commit."""
        self.session.add(user)
        await self.session.flush()
        return user

    async def flush(self) -> None:
        await self.session.flush()

    async def delete(self, user: User) -> None:
        await self.session.delete(user)
        await self.session.flush()
