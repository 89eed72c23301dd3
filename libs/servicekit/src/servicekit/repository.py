"""The two halves every resource's data access is made of.

`Repository` changes entities in the ORM session of the request's transaction; `Reads` (and
`ResourceReads`, for a resource with an id) runs Core SELECTs on the database's read path and
returns rows as dicts (servicekit.reads). A service subclasses them per resource and adds only
the queries that resource needs.
"""

import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Generic, Self, TypeVar

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from servicekit.database import Database, get_database
from servicekit.domain import found
from servicekit.reads import Row
from servicekit.routes import IdPath

M = TypeVar("M", bound=DeclarativeBase)


class Repository(Generic[M]):
    """Changes to one kind of entity. Subclasses set `model` and `noun` ("category")."""

    model: type[M]
    noun: ClassVar[str]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, key: int) -> M | None:
        return await self.session.get(self.model, key)

    async def require(self, key: int) -> M:
        """The entity with this key; NotFound ("category 7 not found") if there is none."""
        return found(await self.get(key), self.noun, key)

    async def add(self, entity: M) -> M:
        """Insert now, so a broken constraint surfaces here rather than at commit."""
        self.session.add(entity)
        await self.session.flush()
        return entity

    async def flush(self) -> None:
        """Send the changes made to loaded entities, so a broken constraint surfaces here."""
        await self.session.flush()

    async def delete(self, entity: M) -> None:
        await self.session.delete(entity)
        await self.session.flush()


class Reads:
    """Queries that only read, on the database's read path."""

    def __init__(self, database: Database) -> None:
        self.database = database

    @classmethod
    async def of(cls, request: Request) -> Self:
        """A dependency: these reads on the process's database (a coroutine: FastAPI would run
        a plain function in its thread pool)."""
        return cls(get_database(request))


class ResourceReads(Reads, ABC):
    """Reads of one kind of resource with an id. Subclasses set `noun` and define `get`."""

    noun: ClassVar[str]

    @abstractmethod
    async def get(self, key: int) -> Row | None:
        """The resource as its responses show it, or None."""

    async def require(self, key: int) -> Row:
        return found(await self.get(key), self.noun, key)

    @classmethod
    def found_by(cls, parameter: str) -> Callable[..., Awaitable[Row]]:
        """A dependency: the resource whose id is the path `parameter`, or a 404.

        `Annotated[Row, Depends(CategoryReads.found_by("category_id"))]` declares the path
        parameter (an id, 1 to MAX_ID) and loads the resource in one step.
        """

        async def dependency(request: Request, **path: int) -> Row:
            return await cls(get_database(request)).require(path[parameter])

        # FastAPI reads the parameters off the signature: the path id under its own name.
        signature = inspect.Signature(
            [
                inspect.Parameter(
                    "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
                ),
                inspect.Parameter(parameter, inspect.Parameter.KEYWORD_ONLY, annotation=IdPath),
            ]
        )
        wrapped: Any = dependency
        wrapped.__signature__ = signature
        return dependency
