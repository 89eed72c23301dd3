"""HTTP endpoints of the users service: accounts, logins and tokens, and the public keys."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from servicekit.auth import Admin, Caller, SignedIn, SigningKeys
from servicekit.database import SessionDep, get_database
from servicekit.errors import ErrorBody, error_responses
from servicekit.idempotency import IDEMPOTENT, IdempotentRoute
from servicekit.keyset import SortOrder
from servicekit.pagination import MAX_LIMIT
from servicekit.preconditions import IfMatchDep, etag
from servicekit.reads import Row
from servicekit.routes import NOT_MODIFIED, IdPath, IfNoneMatch, PagingDep, created, versioned
from servicekit.schemas import Id, Text
from users_service.events import UserEvents
from users_service.models import User
from users_service.passwords import Passwords
from users_service.repository import RefreshTokenRepository, UserReads, UserRepository
from users_service.schemas import (
    TokenAnswer,
    UserCreate,
    UserRead,
    UserSortField,
    UserStats,
    UserUpdate,
    UserView,
)
from users_service.service import (
    Authentication,
    LoginMetrics,
    UserService,
    check_may_sort_by,
    view_of,
)
from users_service.settings import UsersSettings
from users_service.tokens import AccessTokens

router = APIRouter(prefix="/users", tags=["users"], route_class=IdempotentRoute)
auth_router = APIRouter(prefix="/auth", tags=["auth"])
keys_router = APIRouter(tags=["auth"])

SearchText = Annotated[Annotated[str, Text(max_length=254)] | None, Query()]
RefreshTokenField = Annotated[str, Form(min_length=1, max_length=256)]
BY_ID = SortOrder("id", (User.id,))
TOO_MANY_ATTEMPTS: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorBody, "description": "Too many failed logins; see Retry-After"}
}
# Token answers are credentials: no cache may keep them (RFC 6749, section 5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _passwords(request: Request) -> Passwords:
    passwords: Passwords = request.app.state.passwords
    return passwords


async def _writer(session: SessionDep, request: Request) -> UserService:
    return UserService(
        UserRepository(session),
        RefreshTokenRepository(session),
        _passwords(request),
        UserEvents(session),
    )


async def _authentication(request: Request) -> Authentication:
    state = request.app.state
    access_tokens: AccessTokens = state.access_tokens
    settings: UsersSettings = state.settings
    login_metrics: LoginMetrics = state.login_metrics
    return Authentication(
        get_database(request), _passwords(request), access_tokens, settings, login_metrics
    )


Users = Annotated[UserService, Depends(_writer)]
UsersReader = Annotated[UserReads, Depends(UserReads.of)]
FoundUser = Annotated[Row, Depends(UserReads.found_by("user_id"))]
Auth = Annotated[Authentication, Depends(_authentication)]


def _sort_order(field: UserSortField, direction: Literal["asc", "desc"]) -> SortOrder:
    columns = (User.id,) if field == "id" else (getattr(User, field), User.id)
    return SortOrder.by(field, direction, *columns)


@router.post(
    "/",
    dependencies=[IDEMPOTENT],
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=error_responses(400, 409),
)
async def create_user(
    data: UserCreate, users: Users, request: Request, response: Response, _caller: Caller
) -> User:
    """Sign up (anyone). 409 if the email exists in any letter case."""
    user = await users.create(data)
    created(request, response, user.version, "get_user", user_id=user.id)
    return user


@router.get("/", response_model=list[UserView])
async def list_users(
    users: UsersReader,
    paging: PagingDep,
    caller: Caller,
    ids: Annotated[
        list[Id],
        Query(alias="id", max_length=MAX_LIMIT, description="Only these users (batch read)."),
    ] = [],  # noqa: B006 - FastAPI copies defaults
) -> list[Row]:
    """Users by id, a page at a time; `?id=1&id=2` reads a batch in one query.

    Each user is the whole record for that user and admins, the public profile (id, name,
    created_at) for anyone else.
    """
    result = await users.page(paging.page, BY_ID, ids=ids)
    return [view_of(user, caller) for user in paging.answer(result)]


@router.get("/search", response_model=list[UserRead])
async def search_users(
    users: UsersReader,
    paging: PagingDep,
    _admin: Admin,
    email: SearchText = None,
    name: SearchText = None,
    active_only: bool = True,
) -> list[Row]:
    """Users whose email and name contain the given texts, ignoring case (admins only).

    Only active users unless `active_only=false`, as in the tutorial.
    """
    result = await users.page(paging.page, BY_ID, email=email, name=name, active_only=active_only)
    return paging.answer(result)


@router.get("/stats", response_model=UserStats)
async def user_stats(users: UsersReader, _admin: Admin) -> UserStats:
    """How many users there are, active and inactive (admins only)."""
    total, active = await users.counts()
    return UserStats(total_users=total, active_users=active, inactive_users=total - active)


@router.get("/sorted", response_model=list[UserView], responses=error_responses(403))
async def sorted_users(
    users: UsersReader,
    paging: PagingDep,
    caller: Caller,
    sort_by: UserSortField = "name",
    order: Literal["asc", "desc"] = "asc",
) -> list[Row]:
    """Users sorted by a whitelisted field (by default name, ascending); ties are broken by id.

    Anyone may list: each user is the whole record for that user and admins, the public
    profile for anyone else. Sorting by email is for admins only (403 for anyone else).
    """
    check_may_sort_by(sort_by, caller)
    result = await users.page(paging.page, _sort_order(sort_by, order))
    return [view_of(user, caller) for user in paging.answer(result)]


@router.get("/me", response_model=UserRead, responses=error_responses(404))
async def get_me(users: UsersReader, caller: SignedIn, response: Response) -> Row | Response:
    """The caller's own record; 404 if their account no longer exists."""
    return versioned(await users.require(caller.user_id), response, if_none_match=None)


# `:int` keeps /users/search, /users/stats, /users/sorted and /users/me out of these routes.
@router.get(
    "/{user_id:int}",
    response_model=UserView,
    responses={**NOT_MODIFIED, **error_responses(404)},
)
async def get_user(
    caller: Caller, user: FoundUser, response: Response, if_none_match: IfNoneMatch = None
) -> Row | Response:
    """A user: the whole record for that user and admins, the public profile for others."""
    answer = versioned(user, response, if_none_match)
    if isinstance(answer, Response):
        return answer
    # What the body shows depends on who asks.
    response.headers["Vary"] = "Authorization"
    return view_of(answer, caller)


@router.patch(
    "/{user_id:int}",
    response_model=UserRead,
    responses=error_responses(400, 404, 409, 412),
)
async def update_user(
    user_id: IdPath,
    data: UserUpdate,
    users: Users,
    if_match: IfMatchDep,
    response: Response,
    caller: SignedIn,
) -> User:
    """Change some fields of a user (that user or an admin; `is_active` and `is_admin`: admins).

    A new `password` needs `current_password` unless an admin sets it: missing, 422; wrong,
    403. With If-Match, applies only if the user is still at that version.
    """
    user = await users.update(caller, user_id, data, if_match)
    response.headers["ETag"] = etag(user.version)
    return user


@router.delete(
    "/{user_id:int}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, 409, 412),
)
async def delete_user(
    user_id: IdPath, users: Users, if_match: IfMatchDep, caller: SignedIn
) -> None:
    """Delete a user (that user or an admin); with If-Match, only if still at that version."""
    await users.delete(caller, user_id, if_match)


def _client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


@auth_router.post("/token", response_model=TokenAnswer, responses=TOO_MANY_ATTEMPTS)
async def log_in(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    auth: Auth,
    request: Request,
    response: Response,
    _caller: Caller,
) -> TokenAnswer:
    """OAuth2 password grant: form fields `username` (the email) and `password`.

    401 for a wrong email or password or an inactive user, alike; 429 with Retry-After after
    too many failures for the account or from the client's address.
    """
    answer = await auth.login(form.username, form.password, _client_address(request))
    response.headers.update(NO_STORE)
    return answer


@auth_router.post("/refresh", response_model=TokenAnswer)
async def refresh_tokens(
    grant_type: Annotated[Literal["refresh_token"], Form()],
    refresh_token: RefreshTokenField,
    auth: Auth,
    response: Response,
    _caller: Caller,
) -> TokenAnswer:
    """OAuth2 refresh grant: a new access token and a new refresh token for a live one.

    Each refresh token works once; presenting a spent one revokes every token of its login.
    """
    answer = await auth.refresh(refresh_token)
    response.headers.update(NO_STORE)
    return answer


@auth_router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def log_out(refresh_token: RefreshTokenField, auth: Auth, _caller: Caller) -> None:
    """Revoke a refresh token (form field `refresh_token`); repeating it changes nothing."""
    await auth.logout(refresh_token)


@keys_router.get("/.well-known/jwks.json")
async def public_keys(request: Request, response: Response, _caller: Caller) -> dict[str, Any]:
    """The public keys access tokens are signed with (a JWK Set)."""
    keys: SigningKeys = request.app.state.signing_keys
    settings: UsersSettings = request.app.state.settings
    response.headers["Cache-Control"] = f"public, max-age={settings.jwks_max_age}"
    return keys.public_jwks()
