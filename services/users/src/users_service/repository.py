"""SQL for users: every query the service runs lives here.

Reads are Core SELECTs on the database's read path and return rows as dicts; writes go
through the ORM session of the request's transaction.
"""

from collections.abc import Sequence

from sqlalchemy import bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.database import Database
from servicekit.pagination import Page, PageRequest, SortOrder, fetch_page
from servicekit.reads import LIKE_ESCAPE, Criteria, Row, escape_like, one_of
from users_service.models import User
from users_service.schemas import UserStats

USERS = User.__table__
_BY_ID = select(*USERS.c).where(USERS.c.id == bindparam("user_id"))


# The lists' optional filters, each a statement compiled once (see servicekit.reads).
_LISTS = Criteria(
    select(*USERS.c),
    ids=one_of(USERS.c.id, "ids"),
    email=USERS.c.email.icontains(bindparam("email"), escape=LIKE_ESCAPE),
    name=USERS.c.name.icontains(bindparam("name"), escape=LIKE_ESCAPE),
    active_only=USERS.c.is_active,
)
_STATS = select(
    func.count().label("total"),
    func.coalesce(func.sum(case((USERS.c.is_active, 1), else_=0)), 0).label("active"),
).select_from(USERS)


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
        statement, parameters = _LISTS.select(
            ids=list(ids) or None,
            email=None if email is None else escape_like(email),
            name=None if name is None else escape_like(name),
            active_only=active_only or None,
        )
        return await fetch_page(self.database, statement, order, page, parameters)

    async def stats(self) -> UserStats:
        row = await self.database.fetch_one(_STATS)
        assert row is not None  # an aggregate always has a row
        total, active = int(row["total"]), int(row["active"])
        return UserStats(total=total, active=active, inactive=total - active)


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
