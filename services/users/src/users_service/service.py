"""The rules of the users service: uniqueness, optimistic locking, not-found."""

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError

from servicekit.errors import Conflict, NotFound
from servicekit.pagination import Page, PageRequest, SortOrder
from servicekit.preconditions import IfMatch
from servicekit.reads import Row
from users_service.models import User
from users_service.repository import UserReads, UserRepository
from users_service.schemas import UserCreate, UserStats, UserUpdate

EMAIL_TAKEN = "a user with this email already exists"


def _not_found(user_id: int) -> NotFound:
    return NotFound(f"user {user_id} not found")


class UserQueries:
    """Reading users."""

    def __init__(self, reads: UserReads) -> None:
        self.reads = reads

    async def get(self, user_id: int) -> Row:
        user = await self.reads.get(user_id)
        if user is None:
            raise _not_found(user_id)
        return user

    async def list(
        self,
        page: PageRequest,
        order: SortOrder,
        *,
        ids: Sequence[int] = (),
        email: str | None = None,
        name: str | None = None,
        active_only: bool = False,
    ) -> Page[Row]:
        return await self.reads.page(
            page, order, ids=ids, email=email, name=name, active_only=active_only
        )

    async def stats(self) -> UserStats:
        return await self.reads.stats()


class UserService:
    """Creating, changing and deleting users."""

    def __init__(self, repository: UserRepository) -> None:
        self.repository = repository

    async def create(self, data: UserCreate) -> User:
        try:
            return await self.repository.add(User(**data.model_dump()))
        except IntegrityError as exc:
            raise Conflict(EMAIL_TAKEN) from exc

    async def _get(self, user_id: int) -> User:
        user = await self.repository.get(user_id)
        if user is None:
            raise _not_found(user_id)
        return user

    async def update(self, user_id: int, data: UserUpdate, if_match: IfMatch) -> User:
        user = await self._get(user_id)
        if_match.check(user.version)
        for field, value in data.changes().items():
            setattr(user, field, value)
        try:
            await self.repository.flush()
        except IntegrityError as exc:
            raise Conflict(EMAIL_TAKEN) from exc
        return user

    async def delete(self, user_id: int, if_match: IfMatch) -> None:
        user = await self._get(user_id)
        if_match.check(user.version)
        await self.repository.delete(user)
