"""The rules of the users service: uniqueness, optimistic locking, not-found, who may do what,
logins, and the life of refresh tokens."""

import math
import uuid
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.exc import IntegrityError

from servicekit.auth import Principal, Unauthorized
from servicekit.database import Database, utcnow
from servicekit.domain import Conflict, Forbidden, InvalidInput, Throttled
from servicekit.preconditions import IfMatch
from servicekit.reads import Row
from users_service.events import UserEvents
from users_service.models import RefreshToken, User
from users_service.passwords import Passwords
from users_service.repository import LoginFailureRepository, RefreshTokenRepository, UserRepository
from users_service.schemas import TokenAnswer, UserCreate, UserProfile, UserUpdate
from users_service.settings import UsersSettings
from users_service.tokens import AccessTokens, new_refresh_token, refresh_token_hash

EMAIL_TAKEN = "a user with this email already exists"
BAD_CREDENTIALS = "incorrect email or password"
BAD_REFRESH_TOKEN = "the refresh token is invalid, expired, revoked or already used"  # noqa: S105
MAX_PASSWORD_LENGTH = 128
TOO_MANY_FAILED_LOGINS = "too many failed logins; try again later"
PROFILE_FIELDS = tuple(UserProfile.model_fields)
ADMIN_FIELDS = frozenset({"is_active", "is_admin"})


def view_of(user: Row, caller: Principal | None) -> Row:
    """The whole record for the user themselves and admins; the public profile for others."""
    if caller is not None and caller.may_act_for(user["id"]):
        return user
    return {field: user[field] for field in PROFILE_FIELDS}


def check_may_sort_by(field: str, caller: Principal | None) -> None:
    """Sorting by email would disclose the order of emails: admins only."""
    if field == "email" and not (caller is not None and caller.is_admin):
        raise Forbidden("only an admin may sort users by email")


@dataclass(frozen=True, slots=True)
class UserService:
    """Creating, changing and deleting users."""

    repository: UserRepository
    refresh_tokens: RefreshTokenRepository
    passwords: Passwords
    events: UserEvents

    async def create(self, data: UserCreate) -> User:
        fields = data.model_dump(exclude={"password"})
        user = User(**fields, password_hash=await self.passwords.hash(data.password))
        try:
            await self.repository.add(user)
        except IntegrityError as exc:
            raise Conflict(EMAIL_TAKEN) from exc
        await self.events.created(user)
        return user

    async def update(
        self, caller: Principal, user_id: int, data: UserUpdate, if_match: IfMatch
    ) -> User:
        """Apply a partial update the caller may make.

        A user changes their own account, admins any; only admins change `is_active` and
        `is_admin`. A new password needs the current one (403 if wrong) unless an admin
        sets it. A new password, or deactivation, revokes every refresh token of the user.
        """
        _check_may_act_for(caller, user_id)
        changes = data.changes()
        if ADMIN_FIELDS & changes.keys() and not caller.is_admin:
            raise Forbidden("only an admin may change is_active or is_admin")
        user = await self.repository.require(user_id)
        if_match.check(user.version)
        new_password = changes.pop("password", None)
        current_password = changes.pop("current_password", None)
        revoke_sessions = changes.get("is_active") is False
        if new_password is not None:
            if not caller.is_admin:
                await self._check_current_password(user, current_password)
            user.password_hash = await self.passwords.hash(new_password)
            revoke_sessions = True
        changed = {field for field, value in changes.items() if getattr(user, field) != value}
        for field, value in changes.items():
            setattr(user, field, value)
        try:
            await self.repository.flush()
        except IntegrityError as exc:
            raise Conflict(EMAIL_TAKEN) from exc
        await self.events.updated(user, changed)
        if revoke_sessions:
            await self.refresh_tokens.revoke_all_of(user.id, utcnow())
        return user

    async def _check_current_password(self, user: User, current_password: str | None) -> None:
        if current_password is None:
            raise InvalidInput.at(
                ("body", "current_password"), "the current password is needed to change it"
            )
        if not await self.passwords.verify(current_password, user.password_hash):
            raise Forbidden("the current password is incorrect")

    async def delete(self, caller: Principal, user_id: int, if_match: IfMatch) -> None:
        """Delete a user (themselves, or any as an admin); their refresh tokens go with them.

        What they wrote elsewhere goes when the other services apply the user.deleted event.
        """
        _check_may_act_for(caller, user_id)
        user = await self.repository.require(user_id)
        if_match.check(user.version)
        await self.repository.delete(user)  # refresh_tokens rows: ON DELETE CASCADE
        await self.events.deleted(user_id)


def _check_may_act_for(caller: Principal, user_id: int) -> None:
    if not caller.may_act_for(user_id):
        raise Forbidden("a user may change only their own account")


class LoginMetrics:
    """Failed and throttled logins, for Prometheus (servicekit.metrics)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.failures = Counter(
            "auth_login_failures_total",
            "Logins refused for a wrong email or password, or an inactive user (401).",
            registry=registry,
        )
        self.throttled = Counter(
            "auth_login_throttled_total",
            "Logins refused after too many failures for the account or address (429).",
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class Authentication:
    """Logins, refresh token rotation and logout.

    Each step runs its own short transactions rather than the request's: a failed login must
    be counted even though the request fails, and no connection is held while a password is
    hashed.
    """

    database: Database
    passwords: Passwords
    access_tokens: AccessTokens
    settings: UsersSettings
    metrics: LoginMetrics

    async def login(self, email: str, password: str, address: str) -> TokenAnswer:
        """Tokens for a correct email and password of an active user; 401 otherwise.

        Unknown emails, wrong passwords and inactive users get the same answer at the same
        cost. Repeated failures per account or per address are 429 for a while.
        """
        now = utcnow()
        limits = {
            f"account:{email.lower()}": self.settings.login_failures_per_account,
            f"address:{address}": self.settings.login_failures_per_address,
        }
        async with self.database.transaction() as session:
            await self._check_throttle(LoginFailureRepository(session), limits)
            user = await UserRepository(session).get_by_email(email)
            password_hash = None if user is None else user.password_hash
        # Longer than any password could be: refused without spending a hash on it.
        correct = len(password) <= MAX_PASSWORD_LENGTH and await self.passwords.verify(
            password, password_hash
        )
        if user is None or not correct or not user.is_active:
            async with self.database.transaction() as session:
                failures = LoginFailureRepository(session)
                await failures.record(limits, now)
                await failures.prune(now - timedelta(seconds=self.settings.login_failure_window))
            self.metrics.failures.inc()
            raise Unauthorized(BAD_CREDENTIALS)
        async with self.database.transaction() as session:
            account_key = next(iter(limits))
            await LoginFailureRepository(session).clear(account_key)
            refresh_token = await self._new_refresh_token(
                RefreshTokenRepository(session), user.id, uuid.uuid4().hex
            )
        return self._answer(user, refresh_token)

    async def _check_throttle(
        self, failures: LoginFailureRepository, limits: dict[str, int]
    ) -> None:
        window = timedelta(seconds=self.settings.login_failure_window)
        now = utcnow()
        waits = []
        for key, limit in limits.items():
            latest = await failures.latest(key, now - window, limit)
            if len(latest) >= limit:
                # Below the limit again once the limit-th newest failure leaves the window.
                waits.append((latest[-1] + window - now).total_seconds())
        if waits:
            self.metrics.throttled.inc()
            raise Throttled(TOO_MANY_FAILED_LOGINS, max(1, math.ceil(max(waits))))

    async def refresh(self, refresh_token: str) -> TokenAnswer:
        """New tokens for a live refresh token, which is spent by this.

        Presenting a spent token again means two parties hold it: the whole family descended
        from its login is revoked, and the answer is 401.
        """
        token_hash = refresh_token_hash(refresh_token)
        now = utcnow()
        async with self.database.transaction() as session:
            tokens = RefreshTokenRepository(session)
            used = await tokens.use(token_hash, now)
            user = None if used is None else await UserRepository(session).get(used[0])
            if used is not None and user is not None and user.is_active:
                new_token = await self._new_refresh_token(tokens, user.id, used[1])
                return self._answer(user, new_token)
            if used is None:
                stored = await tokens.find(token_hash)
                if stored is not None and stored.used_at is not None:
                    await tokens.revoke_family(stored.family_id, now)
        raise Unauthorized(BAD_REFRESH_TOKEN)

    async def logout(self, refresh_token: str) -> None:
        """Revoke a refresh token; one unknown or already revoked changes nothing."""
        async with self.database.transaction() as session:
            await RefreshTokenRepository(session).revoke(
                refresh_token_hash(refresh_token), utcnow()
            )

    async def _new_refresh_token(
        self, tokens: RefreshTokenRepository, user_id: int, family_id: str
    ) -> str:
        token = new_refresh_token()
        now = utcnow()
        await tokens.add(
            RefreshToken(
                user_id=user_id,
                family_id=family_id,
                token_hash=refresh_token_hash(token),
                created_at=now,
                expires_at=now + timedelta(seconds=self.settings.refresh_token_lifetime),
            )
        )
        return token

    def _answer(self, user: User, refresh_token: str) -> TokenAnswer:
        return TokenAnswer(
            access_token=self.access_tokens.issue(user.id, admin=user.is_admin),
            expires_in=self.access_tokens.lifetime,
            refresh_token=refresh_token,
        )
