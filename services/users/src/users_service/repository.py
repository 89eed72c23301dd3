"""SQL for users: every query the service runs lives here."""

from collections.abc import Sequence

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.pagination import Page, PageRequest, SortOrder, paginate
from users_service.models import User
from users_service.schemas import UserStats


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)

    async def page(
        self,
        page: PageRequest,
        order: SortOrder,
        *,
        ids: Sequence[int] = (),
        email: str | None = None,
        name: str | None = None,
        active_only: bool = False,
    ) -> Page[User]:
        """One page of users matching every filter given, in `order`."""
        statement = select(User)
        if ids:
            statement = statement.where(User.id.in_(ids))
        if email is not None:
            statement = statement.where(User.email.icontains(email, autoescape=True))
        if name is not None:
            statement = statement.where(User.name.icontains(name, autoescape=True))
        if active_only:
            statement = statement.where(User.is_active)
        return await paginate(self.session, statement, order, page)

    async def stats(self) -> UserStats:
        active = func.coalesce(func.sum(case((User.is_active, 1), else_=0)), 0)
        total, active_count = (await self.session.execute(select(func.count(), active))).one()
        return UserStats(total=total, active=active_count, inactive=total - active_count)

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
