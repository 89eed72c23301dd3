"""Forged, broken and misused bearer tokens against a catalog write: each is 401 and stores nothing.

Every token here claims an admin, who may create categories: a verifier that let one through
would answer 201.
"""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from servicekit.auth import SigningKey
from servicekit.testing import TEST_ADMIN_ID, TokenIssuer

USER_ID = 31
A_CATEGORY = {"name": "Books"}


def _segment(value: dict[str, Any]) -> str:
    encoded = base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")
    return encoded.decode()


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")

    def decoded(segment: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        )
        return value

    return decoded(header), decoded(payload), signature


def unsigned(issuer: TokenIssuer) -> str:
    """`alg: none`: the admin's claims with no signature at all."""
    header = {"alg": "none", "typ": "JWT", "kid": issuer.keys.current.key_id}
    return f"{_segment(header)}.{_segment(issuer.claims(TEST_ADMIN_ID, admin=True))}."


def _hmac_with_the_public_key(
    name: str, encoding: Encoding, form: PublicFormat
) -> Callable[[TokenIssuer], str]:
    """HS256 keyed with the issuer's public key, which anyone can fetch from the JWKS."""

    def make(issuer: TokenIssuer) -> str:
        secret = issuer.keys.current.private_key.public_key().public_bytes(encoding, form)
        header = {"alg": "HS256", "typ": "JWT", "kid": issuer.keys.current.key_id}
        signing_input = f"{_segment(header)}.{_segment(issuer.claims(TEST_ADMIN_ID, admin=True))}"
        digest = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"

    make.__name__ = f"hmac_with_the_public_key_{name}"
    return make


def tampered(issuer: TokenIssuer) -> str:
    """A user's genuine token with `admin` flipped to true and the signature kept."""
    header, payload, signature = _parts(issuer.token(USER_ID))
    return f"{_segment(header)}.{_segment({**payload, 'admin': True})}.{signature}"


def wrong_issuer(issuer: TokenIssuer) -> str:
    return issuer.token(TEST_ADMIN_ID, admin=True, iss="someone-else")


def wrong_audience(issuer: TokenIssuer) -> str:
    return issuer.token(TEST_ADMIN_ID, admin=True, aud="another-api")


def expired(issuer: TokenIssuer) -> str:
    now = int(time.time())
    return issuer.token(TEST_ADMIN_ID, admin=True, iat=now - 1000, exp=now - 100)


def unknown_key(issuer: TokenIssuer) -> str:
    """Signed by a key the issuer never published."""
    return SigningKey.generate().sign(issuer.claims(TEST_ADMIN_ID, admin=True))


def known_key_id_foreign_signature(issuer: TokenIssuer) -> str:
    """Signed by another key, under the id of the issuer's own."""
    forged = SigningKey(issuer.keys.current.key_id, SigningKey.generate().private_key)
    return forged.sign(issuer.claims(TEST_ADMIN_ID, admin=True))


def _without(claim: str) -> Callable[[TokenIssuer], str]:
    def make(issuer: TokenIssuer) -> str:
        claims = issuer.claims(TEST_ADMIN_ID, admin=True)
        del claims[claim]
        return issuer.keys.current.sign(claims)

    make.__name__ = f"without_{claim}"
    return make


def subject_not_a_user_id(issuer: TokenIssuer) -> str:
    return issuer.token(TEST_ADMIN_ID, admin=True, sub="admin")


def admin_flag_not_a_boolean(issuer: TokenIssuer) -> str:
    return issuer.keys.current.sign({**issuer.claims(USER_ID), "admin": "true"})


def not_a_jwt(_issuer: TokenIssuer) -> str:
    return "not-a-token"


BAD_TOKENS = [
    unsigned,
    _hmac_with_the_public_key("pem", Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
    _hmac_with_the_public_key("raw", Encoding.Raw, PublicFormat.Raw),
    tampered,
    wrong_issuer,
    wrong_audience,
    expired,
    unknown_key,
    known_key_id_foreign_signature,
    *(_without(claim) for claim in ("sub", "exp", "iat", "iss", "aud", "jti")),
    subject_not_a_user_id,
    admin_flag_not_a_boolean,
    not_a_jwt,
]


async def _stored_categories(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    categories: list[dict[str, Any]] = (await client.get("/categories/")).json()
    return categories


async def test_an_admins_genuine_token_creates(
    anonymous: httpx.AsyncClient, token_issuer: TokenIssuer
) -> None:
    # The control for every forgery below: the same request with a genuine admin token.
    response = await anonymous.post(
        "/categories/", json=A_CATEGORY, headers=token_issuer.admin_headers()
    )

    assert response.status_code == 201


async def test_no_token_is_401_with_a_bearer_challenge(
    anonymous: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    response = await anonymous.post("/categories/", json=A_CATEGORY)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert await _stored_categories(client) == []


@pytest.mark.parametrize("make_token", BAD_TOKENS, ids=lambda make: make.__name__)
async def test_a_bad_token_is_401_invalid_token_and_stores_nothing(
    anonymous: httpx.AsyncClient,
    client: httpx.AsyncClient,
    token_issuer: TokenIssuer,
    make_token: Callable[[TokenIssuer], str],
) -> None:
    token = make_token(token_issuer)

    response = await anonymous.post(
        "/categories/", json=A_CATEGORY, headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert await _stored_categories(client) == []


@pytest.mark.parametrize(
    "authorization",
    ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer   ", "Token abc", "bearer-only"],
    ids=["basic", "bearer-without-token", "bearer-blank", "other-scheme", "no-scheme"],
)
async def test_an_authorization_header_without_a_bearer_token_is_401_invalid_token(
    anonymous: httpx.AsyncClient, client: httpx.AsyncClient, authorization: str
) -> None:
    response = await anonymous.post(
        "/categories/", json=A_CATEGORY, headers={"Authorization": authorization}
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert await _stored_categories(client) == []


async def test_a_bad_token_is_401_even_on_a_public_read(
    anonymous: httpx.AsyncClient, token_issuer: TokenIssuer
) -> None:
    response = await anonymous.get(
        "/categories/", headers={"Authorization": f"Bearer {expired(token_issuer)}"}
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_a_users_genuine_token_is_403_on_an_admin_write(
    anonymous: httpx.AsyncClient, client: httpx.AsyncClient, token_issuer: TokenIssuer
) -> None:
    response = await anonymous.post(
        "/categories/", json=A_CATEGORY, headers=token_issuer.headers(USER_ID)
    )

    assert response.status_code == 403
    assert "WWW-Authenticate" not in response.headers
    assert await _stored_categories(client) == []
