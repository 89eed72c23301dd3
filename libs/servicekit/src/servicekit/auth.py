"""Bearer tokens: who is calling, and the access rule every route declares.

The users service issues access tokens: JWTs signed with Ed25519 (EdDSA), whose public keys it
serves as a JWK Set. Every process verifies them itself against those keys, fetched once and
kept, so a service reached inside the network is as guarded as one reached through the gateway,
and keeps working while users is down.

Every route declares one rule, as a dependency: `Caller` (anyone; a token, if sent, must be
valid), `SignedIn` or `Admin`; internal routes take a credential instead of a user's token
(`SERVICE_ONLY`, `METRICS`). `require_access_rules` refuses to build an app with a route that
declares none, so a route cannot be added and forgotten. Rules that depend on the resource (the
author of a post) are the service's own, raised as `Forbidden`.
"""

import asyncio
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordBearer
from jwt.algorithms import OKPAlgorithm

from servicekit.domain import Forbidden
from servicekit.errors import ServiceError, add_error_responses
from servicekit.schemas import MAX_ID
from servicekit.settings import BaseProcessSettings

logger = logging.getLogger("servicekit.auth")

ALGORITHM = "EdDSA"  # the only one accepted: no "none", no HMAC made with a public key
REQUIRED_CLAIMS = ("sub", "exp", "iat", "iss", "aud", "jti")
# Where a client gets a token; relative, so it holds on the gateway and on the users service.
TOKEN_URL = "/auth/token"  # noqa: S105 - a path, not a secret


class Unauthorized(ServiceError):
    """No usable credentials: 401 with the challenge RFC 6750 prescribes."""

    status_code = 401

    def __init__(self, detail: str, *, invalid_token: bool = False) -> None:
        super().__init__(detail)
        challenge = 'Bearer error="invalid_token"' if invalid_token else "Bearer"
        self.headers = {"WWW-Authenticate": challenge}


class KeysUnavailable(ServiceError):
    """A token names a key not known yet, and the users service cannot be asked for it.

    Not a 401: the token may well be valid, and the client should retry rather than log in
    again (which would fail too).
    """

    status_code = 503
    headers = {"Retry-After": "1"}  # noqa: RUF012 - read-only

    def __init__(self) -> None:
        super().__init__("the users service is unavailable")


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller of a request."""

    user_id: int
    is_admin: bool
    token_id: str

    def may_act_for(self, user_id: int) -> bool:
        """Whether the caller is that user, or an admin."""
        return self.is_admin or self.user_id == user_id


# Signing keys (the users service, and tests that stand in for it).


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> "SigningKey":
        return cls(uuid.uuid4().hex, Ed25519PrivateKey.generate())

    def private_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = OKPAlgorithm.to_jwk(self.private_key, as_dict=True)
        return {**jwk, "kid": self.key_id, "alg": ALGORITHM, "use": "sig"}

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = OKPAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.key_id, "alg": ALGORITHM, "use": "sig"}

    def sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(
            dict(claims), self.private_key, algorithm=ALGORITHM, headers={"kid": self.key_id}
        )


@dataclass(frozen=True)
class SigningKeys:
    """The keys a token issuer holds: the first signs, every one is published.

    Rotation: put a new key first and keep the old ones until the tokens they signed expire;
    verifiers learn the new key the first time they meet its id.
    """

    keys: tuple[SigningKey, ...]

    @property
    def current(self) -> SigningKey:
        return self.keys[0]

    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.keys]}

    def private_jwks(self) -> dict[str, Any]:
        return {"keys": [key.private_jwk() for key in self.keys]}

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> "SigningKeys":
        keys = []
        for jwk in jwks.get("keys", []):
            key = jwt.PyJWK(jwk, algorithm=ALGORITHM).key
            if not isinstance(key, Ed25519PrivateKey) or not jwk.get("kid"):
                raise ValueError("every signing key must be an Ed25519 private JWK with a kid")
            keys.append(SigningKey(jwk["kid"], key))
        if not keys:
            raise ValueError("the key set holds no key")
        return cls(tuple(keys))

    @classmethod
    def load(cls, path: Path) -> "SigningKeys":
        return cls.from_jwks(json.loads(path.read_text()))

    def write(self, path: Path) -> None:
        """Write the private key set, readable by its owner alone."""
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(self.private_jwks(), file, indent=2)
        path.chmod(0o600)  # O_CREAT's mode does not apply to a file that existed

    def write_unless_exists(self, path: Path) -> "SigningKeys":
        """Write the key set to `path` unless another process wrote one first; the one kept.

        Replicas that start together against a shared volume all try: the file appears whole
        (written aside, then linked into place, which fails if it exists), and each replica
        signs with whichever set won.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        self.write(draft)
        try:
            os.link(draft, path)
        except FileExistsError:
            return SigningKeys.load(path)
        finally:
            draft.unlink()
        return self

    def rotated(self, keep: int = 2) -> "SigningKeys":
        """A new current key, with the newest `keep - 1` of the present ones kept."""
        return SigningKeys((SigningKey.generate(), *self.keys[: keep - 1]))

    def with_new_key_published(self) -> "SigningKeys":
        """A new key, published but not signing yet, after the current one; older ones go.

        With several replicas, a key is published by all of them before any signs with it:
        otherwise a verifier meeting the new key id could fetch the set from a replica that
        does not know it yet.
        """
        return SigningKeys((self.current, SigningKey.generate()))

    def promoted(self) -> "SigningKeys":
        """The newest published key signs; the one that signed until now stays published."""
        if len(self.keys) < 2:
            raise ValueError("there is no published key to promote")
        return SigningKeys((self.keys[-1], *self.keys[:-1]))


# Verification.


class KeySource:
    """Where a verifier finds public keys by id."""

    async def key(self, key_id: str) -> Any | None:
        raise NotImplementedError

    async def prefetch(self) -> None:
        """Learn the keys before the first request needs them, if that can be done."""

    @property
    def unreachable(self) -> bool:
        """Whether the last attempt to learn the keys failed."""
        return False


class LocalKeys(KeySource):
    """The issuer's own keys, in the issuer's process."""

    def __init__(self, keys: SigningKeys) -> None:
        self._keys = {key.key_id: key.private_key.public_key() for key in keys.keys}

    async def key(self, key_id: str) -> Any | None:
        return self._keys.get(key_id)


class RemoteKeys(KeySource):
    """A JWK Set fetched from a URL (http(s) or file), kept, and fetched again for an unknown id.

    Fetches are at least `refresh_interval` seconds apart, so tokens naming made-up key ids
    cannot turn into a stream of requests to the issuer; after a failed one, `retry_interval`.
    A failed fetch keeps the keys known, so a service goes on verifying tokens while the users
    service is down.
    """

    def __init__(
        self,
        url: str,
        *,
        refresh_interval: float = 10.0,
        retry_interval: float = 1.0,
        timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.refresh_interval = refresh_interval
        self.retry_interval = retry_interval
        self.timeout = timeout
        self._keys: dict[str, Any] = {}
        self._fetched_at = -float("inf")
        self._failed = False
        self._lock = asyncio.Lock()

    @property
    def unreachable(self) -> bool:
        return self._failed

    async def prefetch(self) -> None:
        async with self._lock:
            if not self._keys:
                await self._fetch()

    async def key(self, key_id: str) -> Any | None:
        if key_id in self._keys:
            return self._keys[key_id]
        async with self._lock:
            if key_id not in self._keys and self._may_fetch():
                await self._fetch()
        return self._keys.get(key_id)

    def _may_fetch(self) -> bool:
        interval = self.retry_interval if self._failed else self.refresh_interval
        return time.monotonic() - self._fetched_at >= interval

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        self._failed = True
        try:
            jwks = await self._read()
            keys = {
                jwk["kid"]: jwt.PyJWK(jwk, algorithm=ALGORITHM).key
                for jwk in jwks.get("keys", [])
                if jwk.get("kid") and jwk.get("alg", ALGORITHM) == ALGORITHM
            }
        except Exception as exc:  # the keys known so far keep serving
            logger.warning("could not fetch the token keys from %s: %s", self.url, exc)
            return
        self._keys, self._failed = keys, False

    async def _read(self) -> dict[str, Any]:
        parts = urlsplit(self.url)
        if parts.scheme == "file":
            text = await asyncio.to_thread(Path(parts.path).read_text)
            value: dict[str, Any] = json.loads(text)
            return value
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            answer = await client.get(self.url)
            answer.raise_for_status()
            fetched: dict[str, Any] = answer.json()
            return fetched


class TokenVerifier:
    """Turns a bearer token into a Principal, or raises Unauthorized.

    A verified token is remembered until it expires (up to `cache_size` of them): a client
    sends the same token with every request, and a signature check costs more than the rest of
    a small read.
    """

    def __init__(
        self, keys: KeySource, *, issuer: str, audience: str, cache_size: int = 10_000
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.cache_size = cache_size
        self._verified: dict[str, tuple[Principal, float]] = {}

    async def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires_at = cached
            if time.time() < expires_at:
                return principal
            del self._verified[token]
        principal, expires_at = await self._verify(token)
        if len(self._verified) >= self.cache_size:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[token] = (principal, expires_at)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _invalid("the token is malformed") from None
        if header.get("alg") != ALGORITHM:
            raise _invalid("the token is not signed with an accepted algorithm")
        key_id = header.get("kid")
        key = await self.keys.key(key_id) if isinstance(key_id, str) else None
        if key is None:
            if self.keys.unreachable:
                raise KeysUnavailable
            raise _invalid("the token is signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise _invalid("the token has expired") from None
        except jwt.InvalidTokenError:
            raise _invalid("the token is invalid") from None
        user_id, admin = _user_id(claims["sub"]), claims.get("admin", False)
        if user_id is None or not isinstance(admin, bool):
            raise _invalid("the token's claims are malformed")
        return Principal(user_id, admin, str(claims["jti"])), float(claims["exp"])


def _user_id(subject: Any) -> int | None:
    """The user id a `sub` claim names, or None: an id in its one spelling, `str(user_id)`.

    `str.isdecimal` alone admits digits of any script (Arabic-Indic three is 3), leading zeros,
    and strings too long for `int()` to convert; and an id beyond MAX_ID would reach the
    database.
    """
    if not (isinstance(subject, str) and subject.isascii() and subject.isdecimal()):
        return None
    if len(subject) > len(str(MAX_ID)):
        return None
    user_id = int(subject)
    return user_id if 1 <= user_id <= MAX_ID and str(user_id) == subject else None


def _invalid(detail: str) -> Unauthorized:
    return Unauthorized(detail, invalid_token=True)


def install_token_verifier(app: FastAPI, verifier: TokenVerifier) -> None:
    app.state.token_verifier = verifier


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer` header; None without the header."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _invalid("the Authorization header must be `Bearer <token>`")
    return token


async def _verified(request: Request) -> Principal | None:
    token = bearer_token(request)
    if token is None:
        return None
    verifier: TokenVerifier = request.app.state.token_verifier
    return await verifier.verify(token)


async def authenticate(request: Request, *, required: bool) -> Principal | None:
    """The caller of a request: None without a token, unless one is `required` (401 then)."""
    principal = await _verified(request)
    if principal is None and required:
        raise Unauthorized("sign in: this needs a bearer token")
    return principal


# The rules. `_documented` is the OAuth2 scheme OpenAPI shows (and Swagger UI's Authorize button
# uses); the token itself is read and judged by `_verified`.
_documented = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False, scheme_name="bearer")


async def anyone(request: Request) -> Principal | None:
    """Rule: no token needed; one that is sent must be valid."""
    return await _verified(request)


async def signed_in(
    request: Request, _scheme: Annotated[str | None, Depends(_documented)]
) -> Principal:
    """Rule: a valid token is needed."""
    principal = await authenticate(request, required=True)
    assert principal is not None
    return principal


async def admin(principal: Annotated[Principal, Depends(signed_in)]) -> Principal:
    """Rule: an admin's token is needed."""
    if not principal.is_admin:
        raise Forbidden("only an admin may do this")
    return principal


def _require_credential(request: Request, expected: str | None, credential: str) -> None:
    """401 unless the bearer token is `expected` (compared in constant time); with nothing
    expected, nobody is admitted."""
    presented = bearer_token(request)
    if expected is None or presented is None:
        raise Unauthorized(f"this route needs the {credential}")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized(f"this route needs the {credential}")


async def service(request: Request) -> None:
    """Rule: the bearer token is the service credential the app was given
    (`app.state.service_token`): for internal routes other services call, such as an event feed.
    Without a credential configured, nobody is admitted."""
    expected: str | None = getattr(request.app.state, "service_token", None)
    _require_credential(request, expected, "service credential")


async def metrics_scraper(request: Request) -> None:
    """Rule: the bearer token is the process's `metrics_token` setting: for `GET /metrics`.

    Not a user's token, nor open on the network: the gateway is public, and its /metrics is
    its own. Every process takes the same rule and the same setting, so a Prometheus server
    scrapes the gateway and every service with one credential.
    """
    settings = getattr(request.app.state, "settings", None)
    expected = None if settings is None else settings.metrics_token.get_secret_value()
    _require_credential(request, expected, "metrics credential")


# As route parameters, for handlers that use the caller:
Caller = Annotated[Principal | None, Depends(anyone)]
SignedIn = Annotated[Principal, Depends(signed_in)]
Admin = Annotated[Principal, Depends(admin)]
# As `dependencies=[...]` of routes that only need the check:
PUBLIC = Depends(anyone)
SIGNED_IN = Depends(signed_in)
ADMIN_ONLY = Depends(admin)
SERVICE_ONLY = Depends(service)
METRICS = Depends(metrics_scraper)

ACCESS_RULES: dict[Callable[..., Any], str] = {
    anyone: "anyone",
    signed_in: "signed_in",
    admin: "admin",
    service: "service",
    metrics_scraper: "metrics",
}
_RULE_RESPONSES = {
    "anyone": (401,),
    "signed_in": (401, 403),
    "admin": (401, 403),
    "service": (401,),
    "metrics": (401,),
}


def access_rule(route: APIRoute) -> str | None:
    """The rule a route declares: the name of its one access dependency, or None."""
    rules = {
        ACCESS_RULES[dependency.call]
        for dependency in route.dependant.dependencies
        if dependency.call in ACCESS_RULES
    }
    if len(rules) > 1:
        raise RuntimeError(f"{route.path} declares more than one access rule: {sorted(rules)}")
    return next(iter(rules), None)


def require_access_rules(routes: Iterable[Any]) -> None:
    """Refuse routes without an access rule, and document each rule's 401 and 403."""
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        rule = access_rule(route)
        if rule is None:
            raise RuntimeError(
                f"{sorted(route.methods or ())} {route.path} declares no access rule "
                "(Caller, SignedIn or Admin)"
            )
        add_error_responses(route, *_RULE_RESPONSES[rule])


def remote_token_verifier(settings: BaseProcessSettings) -> TokenVerifier:
    """A verifier of the users service's tokens, with its keys fetched from the JWKS URL."""
    return TokenVerifier(
        RemoteKeys(settings.auth_jwks_url),
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
    )
