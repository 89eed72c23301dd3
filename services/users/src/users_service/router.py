"""HTTP endpoints of the users service."""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status

from servicekit.auth import PUBLIC, SIGNED_IN
from servicekit.database import SessionDep, get_database
from servicekit.errors import error_responses
from servicekit.pagination import MAX_LIMIT, PageDep, SortOrder, set_next_link
from servicekit.preconditions import IfMatchDep, etag, not_modified
from servicekit.reads import Row
from servicekit.schemas import MAX_ID, Id, Text
from users_service.models import User
from users_service.repository import UserReads, UserRepository
from users_service.schemas import UserCreate, UserRead, UserSortField, UserStats, UserUpdate
from users_service.service import UserQueries, UserService

router = APIRouter(prefix="/users", tags=["users"])

UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
SearchText = Annotated[Annotated[str, Text(max_length=254)] | None, Query()]
BY_ID = SortOrder("id", (User.id,))


async def _writer(session: SessionDep) -> UserService:
    return UserService(UserRepository(session))


async def _reader(request: Request) -> UserQueries:
    return UserQueries(UserReads(get_database(request)))


Users = Annotated[UserService, Depends(_writer)]
UsersReader = Annotated[UserQueries, Depends(_reader)]


def _sort_order(field: UserSortField, direction: Literal["asc", "desc"]) -> SortOrder:
    columns = (User.id,) if field == "id" else (getattr(User, field), User.id)
    return SortOrder(f"{field}:{direction}", columns, descending=direction == "desc")


@router.post(
    "/",
    dependencies=[PUBLIC],
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=error_responses(400, 409),
)
async def create_user(data: UserCreate, users: Users, request: Request, response: Response) -> User:
    """Create a user. 409 if the email exists in any letter case."""
    user = await users.create(data)
    response.headers["Location"] = str(request.url_for("get_user", user_id=user.id))
    response.headers["ETag"] = etag(user.version)
    return user


@router.get("/", dependencies=[PUBLIC], response_model=list[UserRead])
async def list_users(
    users: UsersReader,
    page: PageDep,
    request: Request,
    response: Response,
    ids: Annotated[
        list[Id],
        Query(alias="id", max_length=MAX_LIMIT, description="Only these users (batch read)."),
    ] = [],  # noqa: B006 - FastAPI copies defaults
) -> list[Row]:
    """Users by id, a page at a time; `?id=1&id=2` reads a batch in one query."""
    result = await users.list(page, BY_ID, ids=ids)
    set_next_link(request, response, result.next_cursor)
    return result.items


@router.get("/search", dependencies=[PUBLIC], response_model=list[UserRead])
async def search_users(
    users: UsersReader,
    page: PageDep,
    request: Request,
    response: Response,
    email: SearchText = None,
    name: SearchText = None,
    active_only: bool = False,
) -> list[Row]:
    """Users whose email and name contain the given texts, ignoring case."""
    result = await users.list(page, BY_ID, email=email, name=name, active_only=active_only)
    set_next_link(request, response, result.next_cursor)
    return result.items


@router.get("/stats", dependencies=[PUBLIC], response_model=UserStats)
async def user_stats(users: UsersReader) -> UserStats:
    """How many users there are, active and inactive."""
    return await users.stats()


@router.get("/sorted", dependencies=[PUBLIC], response_model=list[UserRead])
async def sorted_users(
    users: UsersReader,
    page: PageDep,
    request: Request,
    response: Response,
    sort_by: UserSortField = "id",
    order: Literal["asc", "desc"] = "asc",
) -> list[Row]:
    """Users sorted by a whitelisted field; ties are broken by id."""
    result = await users.list(page, _sort_order(sort_by, order))
    set_next_link(request, response, result.next_cursor)
    return result.items


# `:int` keeps /users/search, /users/stats and /users/sorted out of these routes for any method.
@router.get(
    "/{user_id:int}",
    dependencies=[PUBLIC],
    response_model=UserRead,
    responses={304: {"description": "Not modified (If-None-Match)"}, **error_responses(404)},
)
async def get_user(
    user_id: UserId,
    users: UsersReader,
    response: Response,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Row | Response:
    user = await users.get(user_id)
    if unchanged := not_modified(if_none_match, user["version"]):
        return unchanged
    response.headers["ETag"] = etag(user["version"])
    return user


@router.patch(
    "/{user_id:int}",
    dependencies=[SIGNED_IN],
    response_model=UserRead,
    responses=error_responses(400, 404, 409, 412),
)
async def update_user(
    user_id: UserId, data: UserUpdate, users: Users, if_match: IfMatchDep, response: Response
) -> User:
    """Change some fields of a user; with If-Match, only if the user is still at that version."""
    user = await users.update(user_id, data, if_match)
    response.headers["ETag"] = etag(user.version)
    return user


@router.delete(
    "/{user_id:int}",
    dependencies=[SIGNED_IN],
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, 409, 412),
)
async def delete_user(user_id: UserId, users: Users, if_match: IfMatchDep) -> None:
    """Delete a user; with If-Match, only if the user is still at that version."""
    await users.delete(user_id, if_match)
