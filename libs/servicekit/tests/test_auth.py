"""servicekit.auth: the keys a verifier fetches, rotation, the verified-token cache, the access
rules every route declares, and the issuer's key file."""

import json
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI

from servicekit import auth
from servicekit.auth import (
    ADMIN_ONLY,
    PUBLIC,
    KeySource,
    Principal,
    RemoteKeys,
    SignedIn,
    SigningKey,
    SigningKeys,
    TokenVerifier,
    Unauthorized,
    require_access_rules,
)
from servicekit.schemas import MAX_ID
from servicekit.testing import TokenIssuer, serving

# Refresh intervals: "fetch whenever a key id is unknown", and "not again during the test".
ALWAYS = 0.0
NOT_AGAIN = 3600.0


@dataclass
class Published:
    """The JWK Set an issuer serves, and how many times it was asked for."""

    jwks: dict[str, Any]
    requests: int = 0


def _jwks_app(published: Published) -> FastAPI:
    app = FastAPI()

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, Any]:
        published.requests += 1
        return published.jwks

    return app


@pytest.fixture
def issuer(tmp_path: Path) -> TokenIssuer:
    return TokenIssuer.create(tmp_path)


@pytest.fixture
def published(issuer: TokenIssuer) -> Published:
    return Published(issuer.keys.public_jwks())


@pytest.fixture
def jwks_url(published: Published) -> Iterator[str]:
    with serving(_jwks_app(published)) as base_url:
        yield f"{base_url}/.well-known/jwks.json"


def _verifier(keys: KeySource, issuer: TokenIssuer) -> TokenVerifier:
    return TokenVerifier(keys, issuer=issuer.issuer, audience=issuer.audience)


def _publish(issuer: TokenIssuer, keys: SigningKeys) -> TokenIssuer:
    """The issuer with `keys`, its JWKS file rewritten to publish them."""
    (issuer.directory / "jwks.json").write_text(json.dumps(keys.public_jwks()))
    return TokenIssuer(keys, issuer.directory)


# Fetching keys.


async def test_a_key_is_fetched_once_and_kept(
    issuer: TokenIssuer, published: Published, jwks_url: str
) -> None:
    keys = RemoteKeys(jwks_url, refresh_interval=ALWAYS)

    for _ in range(3):
        assert await keys.key(issuer.keys.current.key_id) is not None

    assert published.requests == 1


async def _rotated_once_fetched(
    keys: RemoteKeys, issuer: TokenIssuer, published: Published
) -> SigningKeys:
    """The issuer's keys rotated and published, once `keys` has fetched the current one."""
    await keys.key(issuer.keys.current.key_id)
    rotated = issuer.keys.rotated()
    published.jwks = rotated.public_jwks()
    return rotated


async def test_an_unknown_key_id_is_fetched_again(
    issuer: TokenIssuer, published: Published, jwks_url: str
) -> None:
    keys = RemoteKeys(jwks_url, refresh_interval=ALWAYS)
    rotated = await _rotated_once_fetched(keys, issuer, published)

    assert await keys.key(rotated.current.key_id) is not None
    assert published.requests == 2


async def test_unknown_key_ids_fetch_at_most_once_per_refresh_interval(
    issuer: TokenIssuer, published: Published, jwks_url: str
) -> None:
    keys = RemoteKeys(jwks_url, refresh_interval=NOT_AGAIN)
    rotated = await _rotated_once_fetched(keys, issuer, published)

    for made_up in ("a", "b", "c", rotated.current.key_id):
        assert await keys.key(made_up) is None

    assert published.requests == 1


async def test_known_keys_keep_serving_while_the_issuer_is_down(
    issuer: TokenIssuer, published: Published, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(_jwks_app(published)) as base_url:
        keys = RemoteKeys(f"{base_url}/.well-known/jwks.json", refresh_interval=ALWAYS)
        await keys.key(issuer.keys.current.key_id)
    # The server is gone: its port refuses connections.

    assert await keys.key("unknown") is None
    assert await keys.key(issuer.keys.current.key_id) is not None
    assert "could not fetch the token keys" in caplog.text


async def test_known_keys_keep_serving_when_the_key_file_is_gone(
    issuer: TokenIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    keys = RemoteKeys(issuer.jwks_url, refresh_interval=ALWAYS)
    await keys.key(issuer.keys.current.key_id)
    (issuer.directory / "jwks.json").unlink()

    assert await keys.key("unknown") is None
    assert await keys.key(issuer.keys.current.key_id) is not None
    assert "could not fetch the token keys" in caplog.text


async def test_a_key_set_that_is_not_json_keeps_the_keys_known(issuer: TokenIssuer) -> None:
    keys = RemoteKeys(issuer.jwks_url, refresh_interval=ALWAYS)
    await keys.key(issuer.keys.current.key_id)
    (issuer.directory / "jwks.json").write_text("<html>maintenance</html>")

    assert await keys.key("unknown") is None
    assert await keys.key(issuer.keys.current.key_id) is not None


# Rotation.


async def test_tokens_of_the_old_and_the_new_key_verify_after_rotation(
    issuer: TokenIssuer,
) -> None:
    verifier = _verifier(RemoteKeys(issuer.jwks_url, refresh_interval=ALWAYS), issuer)
    await verifier.verify(issuer.token(5))

    rotated = _publish(issuer, issuer.keys.rotated())

    assert (await verifier.verify(rotated.token(6))).user_id == 6
    assert (await verifier.verify(issuer.token(7))).user_id == 7  # a fresh token of the old key


async def test_a_key_rotated_out_no_longer_verifies(issuer: TokenIssuer) -> None:
    verifier = _verifier(RemoteKeys(issuer.jwks_url, refresh_interval=ALWAYS), issuer)
    await verifier.verify(issuer.token(5))
    twice = _publish(issuer, issuer.keys.rotated(keep=2).rotated(keep=2))
    await verifier.verify(twice.token(6))

    assert len(twice.keys.keys) == 2
    with pytest.raises(Unauthorized, match="unknown key"):
        await verifier.verify(issuer.token(7))


# The verified-token cache.


class _Keys(KeySource):
    """Public keys by id, which a test may take away."""

    def __init__(self, keys: SigningKeys) -> None:
        self.known = {key.key_id: key.private_key.public_key() for key in keys.keys}

    async def key(self, key_id: str) -> Any | None:
        return self.known.get(key_id)


async def test_a_verified_token_is_remembered_until_it_expires(
    issuer: TokenIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = _Keys(issuer.keys)
    verifier = _verifier(keys, issuer)
    token = issuer.token(5, exp=int(time.time()) + 60)
    first = await verifier.verify(token)
    keys.known.clear()  # verifying it again would now fail

    assert await verifier.verify(token) == first  # remembered

    later = time.time() + 61  # the clock of the cache alone: past the expiry
    monkeypatch.setattr(auth, "time", SimpleNamespace(time=lambda: later, monotonic=time.monotonic))
    with pytest.raises(Unauthorized):
        await verifier.verify(token)


async def test_an_expired_token_is_refused(issuer: TokenIssuer) -> None:
    verifier = _verifier(_Keys(issuer.keys), issuer)
    now = int(time.time())

    with pytest.raises(Unauthorized, match="expired") as refused:
        await verifier.verify(issuer.token(5, iat=now - 120, exp=now - 60))

    assert refused.value.headers == {"WWW-Authenticate": 'Bearer error="invalid_token"'}


async def test_a_verified_token_names_its_user_and_admin_flag(issuer: TokenIssuer) -> None:
    verifier = _verifier(_Keys(issuer.keys), issuer)
    token = issuer.token(5, admin=True, jti="token-5")

    assert await verifier.verify(token) == Principal(5, True, "token-5")


async def test_the_largest_user_id_is_a_subject(issuer: TokenIssuer) -> None:
    verifier = _verifier(_Keys(issuer.keys), issuer)

    assert (await verifier.verify(issuer.token(MAX_ID))).user_id == MAX_ID


@pytest.mark.parametrize(
    "subject",
    ["0", "-1", " 1", "1.0", "\u0663", str(MAX_ID + 1), "01", "9" * 5000],
    ids=[
        "zero",
        "negative",
        "space",
        "decimal-point",
        "arabic-indic-digit",
        "beyond-max-id",
        "leading-zero",
        "too-long-for-int",
    ],
)
async def test_a_subject_that_is_not_a_user_id_is_refused(
    issuer: TokenIssuer, subject: str
) -> None:
    verifier = _verifier(_Keys(issuer.keys), issuer)

    with pytest.raises(Unauthorized, match="claims are malformed"):
        await verifier.verify(issuer.token(5, sub=subject))


def test_a_principal_may_act_for_itself_and_an_admin_for_anyone() -> None:
    user, admin = Principal(5, False, "a"), Principal(6, True, "b")

    assert user.may_act_for(5)
    assert not user.may_act_for(6)
    assert admin.may_act_for(5)


# Access rules.


@pytest.mark.parametrize(
    ("rules", "refusal"),
    [([], "declares no access rule"), ([PUBLIC, ADMIN_ONLY], "declares more than one access rule")],
    ids=["without-a-rule", "with-two-rules"],
)
def test_a_route_without_exactly_one_access_rule_is_refused(rules: list[Any], refusal: str) -> None:
    app = FastAPI()

    @app.get("/route", dependencies=rules)
    async def route() -> None:
        return None

    with pytest.raises(RuntimeError, match=f"/route {refusal}"):
        require_access_rules(app.routes)


def test_each_rule_documents_its_401_and_403_and_the_bearer_scheme() -> None:
    app = FastAPI()

    @app.get("/public", dependencies=[PUBLIC])
    async def public() -> None:
        return None

    @app.post("/mine")
    async def mine(caller: SignedIn) -> int:
        return caller.user_id

    @app.delete("/everything", dependencies=[ADMIN_ONLY])
    async def everything() -> None:
        return None

    require_access_rules(app.routes)
    paths = app.openapi()["paths"]

    assert "401" in paths["/public"]["get"]["responses"]
    assert "403" not in paths["/public"]["get"]["responses"]
    for operation in (paths["/mine"]["post"], paths["/everything"]["delete"]):
        assert {"401", "403"} <= set(operation["responses"])
        assert operation["security"] == [{"bearer": []}]
    scheme = app.openapi()["components"]["securitySchemes"]["bearer"]
    assert scheme["flows"]["password"]["tokenUrl"] == "/auth/token"


# The issuer's key file.


def test_the_key_file_is_readable_by_its_owner_alone(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing-keys.json"
    keys = SigningKeys((SigningKey.generate(),))

    keys.write(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKeys.load(path).public_jwks() == keys.public_jwks()


def test_rewriting_a_key_file_makes_it_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "signing-keys.json"
    path.write_text("{}")
    path.chmod(0o644)

    SigningKeys((SigningKey.generate(),)).write(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_public_key_set_is_not_a_signing_key_set() -> None:
    public = SigningKeys((SigningKey.generate(),)).public_jwks()

    with pytest.raises(ValueError, match="private JWK"):
        SigningKeys.from_jwks(public)
