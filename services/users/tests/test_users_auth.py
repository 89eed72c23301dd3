"""Identity: passwords, logins, access and refresh tokens, throttling, keys and the first admin."""

import asyncio
import json
import logging
import stat
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from servicekit.auth import SigningKey, SigningKeys
from servicekit.database import utcnow
from servicekit.testing import database_of
from users_service.admin import create_admin
from users_service.keys import MissingSigningKeys, load_signing_keys, main, rotate
from users_service.models import LoginFailure, RefreshToken, User
from users_service.settings import UsersSettings

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple battery horse"


async def sign_up(
    client: httpx.AsyncClient, name: str, password: str = PASSWORD, **fields: Any
) -> dict[str, Any]:
    body = {"email": f"{name.lower()}@example.com", "name": name, "password": password, **fields}
    response = await client.post("/users/", json=body)
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


async def log_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/auth/token", data={"username": email, "password": password})


async def tokens_of(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> Any:
    response = await log_in(client, email, password)
    assert response.status_code == 200, response.text
    return response.json()


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post(
        "/auth/refresh", data={"grant_type": "refresh_token", "refresh_token": refresh_token}
    )


async def signed_in(client: httpx.AsyncClient, name: str) -> tuple[dict[str, Any], Any]:
    """`name` signed up (see sign_up) and logged in: the user, and the tokens of the login."""
    user = await sign_up(client, name)
    return user, await tokens_of(client, f"{name.lower()}@example.com")


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


async def stored_user(app: FastAPI, user_id: int) -> User | None:
    async with database_of(app).transaction() as session:
        return await session.get(User, user_id)


async def live_refresh_tokens(app: FastAPI, user_id: int) -> int:
    async with database_of(app).transaction() as session:
        statement = select(RefreshToken).where(
            RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
        )
        return len((await session.scalars(statement)).all())


# Passwords


async def test_sign_up_stores_an_argon2id_hash_and_never_answers_the_password(
    anonymous: httpx.AsyncClient, app: FastAPI
) -> None:
    response = await anonymous.post(
        "/users/", json={"email": "ada@example.com", "name": "Ada", "password": PASSWORD}
    )

    assert response.status_code == 201
    assert set(response.json()) == {
        "id", "email", "name", "is_active", "is_admin", "created_at", "updated_at", "version"
    }  # fmt: skip
    assert response.json()["is_admin"] is False
    assert PASSWORD not in response.text
    stored = await stored_user(app, response.json()["id"])
    assert stored is not None
    assert stored.password_hash is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert stored.password_hash not in response.text


async def test_sign_up_cannot_make_an_admin(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post(
        "/users/",
        json={"email": "eve@example.com", "name": "Eve", "password": PASSWORD, "is_admin": True},
    )

    assert response.status_code == 422


async def test_the_password_is_in_no_answer_and_no_log(
    anonymous: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret, other = "s3cret-sauce-never-shown", "an0ther-never-shown"
    answers = [
        await anonymous.post(
            "/users/", json={"email": "ada@example.com", "name": "Ada", "password": secret}
        ),
        await anonymous.post("/users/", json={"email": "x", "name": "X", "password": secret}),
        await anonymous.post(
            "/users/", json={"email": "b@example.com", "name": "B", "password": "short"}
        ),
        await log_in(anonymous, "ada@example.com", secret),
        await log_in(anonymous, "ada@example.com", other),
        await log_in(anonymous, "nobody@example.com", secret),
    ]
    token = answers[3].json()["access_token"]
    answers.append(
        await anonymous.patch(
            f"/users/{answers[0].json()['id']}",
            json={"password": other, "current_password": secret},
            headers=bearer(token),
        )
    )

    assert [answer.status_code for answer in answers] == [201, 422, 422, 200, 401, 401, 200]
    for answer in answers:
        assert secret not in answer.text
        assert other not in answer.text
    assert secret not in caplog.text
    assert other not in caplog.text
    assert "short" not in caplog.text


# Logins


async def test_a_login_answers_bearer_tokens_that_the_service_accepts(
    anonymous: httpx.AsyncClient,
) -> None:
    ada = await sign_up(anonymous, "Ada")

    response = await log_in(anonymous, "ADA@example.com")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert response.headers["Cache-Control"] == "no-store"
    me = await anonymous.get("/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json() == ada


async def test_the_access_token_carries_the_claims_and_a_key_the_jwks_serves(
    anonymous: httpx.AsyncClient,
) -> None:
    ada = await sign_up(anonymous, "Ada")
    token = (await tokens_of(anonymous, "ada@example.com"))["access_token"]

    jwks = await anonymous.get("/.well-known/jwks.json")

    assert jwks.status_code == 200
    assert jwks.headers["Cache-Control"] == "public, max-age=300"
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    [jwk] = [key for key in jwks.json()["keys"] if key["kid"] == header["kid"]]
    assert "d" not in jwk  # public keys only
    claims = jwt.decode(
        token, jwt.PyJWK(jwk).key, algorithms=["EdDSA"], audience="api", issuer="users"
    )
    assert claims["sub"] == str(ada["id"])
    assert claims["admin"] is False
    assert claims["exp"] - claims["iat"] == 900
    assert abs(claims["iat"] - time.time()) < 60
    assert len(claims["jti"]) == 32


@pytest.mark.parametrize(
    ("email", "password"),
    [("ada@example.com", "wrong password"), ("nobody@example.com", PASSWORD)],
    ids=["wrong-password", "unknown-email"],
)
async def test_wrong_credentials_are_one_and_the_same_401(
    anonymous: httpx.AsyncClient, email: str, password: str
) -> None:
    await sign_up(anonymous, "Ada")

    response = await log_in(anonymous, email, password)

    assert response.status_code == 401
    assert response.json() == {"detail": "incorrect email or password"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_an_inactive_user_cannot_log_in(anonymous: httpx.AsyncClient) -> None:
    await sign_up(anonymous, "Ada", is_active=False)

    response = await log_in(anonymous, "ada@example.com")

    assert response.status_code == 401
    assert response.json() == {"detail": "incorrect email or password"}


async def test_a_user_without_a_password_cannot_log_in(
    anonymous: httpx.AsyncClient, app: FastAPI
) -> None:
    await sign_up(anonymous, "Ada")
    async with database_of(app).transaction() as session:
        await session.execute(update(User).values(password_hash=None))

    response = await log_in(anonymous, "ada@example.com")

    assert response.status_code == 401


async def test_users_me_needs_a_token(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/users/me")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_users_me_of_a_deleted_user_is_404(client: httpx.AsyncClient) -> None:
    ada = await sign_up(client, "Ada")
    token = (await tokens_of(client, "ada@example.com"))["access_token"]
    await client.delete(f"/users/{ada['id']}")

    response = await client.get("/users/me", headers=bearer(token))

    assert response.status_code == 404


# Refresh tokens


async def test_a_refresh_token_gives_new_tokens_once(
    anonymous: httpx.AsyncClient, app: FastAPI
) -> None:
    ada, first = await signed_in(anonymous, "Ada")

    rotated = await refresh(anonymous, first["refresh_token"])

    assert rotated.status_code == 200
    body = rotated.json()
    assert body["refresh_token"] != first["refresh_token"]
    assert (await anonymous.get("/users/me", headers=bearer(body["access_token"]))).json() == ada
    async with database_of(app).transaction() as session:
        hashes = (await session.scalars(select(RefreshToken.token_hash))).all()
    assert first["refresh_token"] not in hashes
    assert body["refresh_token"] not in hashes


async def test_reusing_a_spent_refresh_token_revokes_its_whole_family(
    anonymous: httpx.AsyncClient,
) -> None:
    await sign_up(anonymous, "Ada")
    first = await tokens_of(anonymous, "ada@example.com")
    other_login = await tokens_of(anonymous, "ada@example.com")
    second = (await refresh(anonymous, first["refresh_token"])).json()

    reuse = await refresh(anonymous, first["refresh_token"])

    assert reuse.status_code == 401
    assert reuse.headers["WWW-Authenticate"] == "Bearer"
    assert (await refresh(anonymous, second["refresh_token"])).status_code == 401
    assert (await refresh(anonymous, other_login["refresh_token"])).status_code == 200


async def test_two_simultaneous_refreshes_with_one_token_let_exactly_one_succeed(
    anonymous: httpx.AsyncClient,
) -> None:
    await sign_up(anonymous, "Ada")
    token = (await tokens_of(anonymous, "ada@example.com"))["refresh_token"]

    answers = await asyncio.gather(refresh(anonymous, token), refresh(anonymous, token))

    assert sorted(answer.status_code for answer in answers) == [200, 401]


async def test_an_expired_refresh_token_is_401(anonymous: httpx.AsyncClient, app: FastAPI) -> None:
    await sign_up(anonymous, "Ada")
    token = (await tokens_of(anonymous, "ada@example.com"))["refresh_token"]
    async with database_of(app).transaction() as session:
        await session.execute(
            update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1))
        )

    assert (await refresh(anonymous, token)).status_code == 401


@pytest.mark.parametrize(
    "data",
    [{"grant_type": "password", "refresh_token": "x"}, {"grant_type": "refresh_token"}],
    ids=["other-grant", "no-token"],
)
async def test_a_malformed_refresh_request_is_422(
    anonymous: httpx.AsyncClient, data: dict[str, str]
) -> None:
    assert (await anonymous.post("/auth/refresh", data=data)).status_code == 422


async def test_logout_revokes_the_refresh_token_and_may_be_repeated(
    anonymous: httpx.AsyncClient,
) -> None:
    await sign_up(anonymous, "Ada")
    token = (await tokens_of(anonymous, "ada@example.com"))["refresh_token"]

    first = await anonymous.post("/auth/logout", data={"refresh_token": token})
    again = await anonymous.post("/auth/logout", data={"refresh_token": token})

    assert (first.status_code, again.status_code) == (204, 204)
    assert (await refresh(anonymous, token)).status_code == 401


# Changing a password, deactivating


async def test_a_user_changes_their_password_with_the_current_one(
    anonymous: httpx.AsyncClient, app: FastAPI
) -> None:
    ada, tokens = await signed_in(anonymous, "Ada")

    response = await anonymous.patch(
        f"/users/{ada['id']}",
        json={"password": NEW_PASSWORD, "current_password": PASSWORD},
        headers=bearer(tokens["access_token"]),
    )

    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert await live_refresh_tokens(app, ada["id"]) == 0
    assert (await refresh(anonymous, tokens["refresh_token"])).status_code == 401
    assert (await log_in(anonymous, "ada@example.com")).status_code == 401
    assert (await log_in(anonymous, "ada@example.com", NEW_PASSWORD)).status_code == 200


@pytest.mark.parametrize(
    ("current", "status"), [(None, 422), ("not my password", 403)], ids=["missing", "wrong"]
)
async def test_a_password_change_without_the_right_current_password_changes_nothing(
    anonymous: httpx.AsyncClient, app: FastAPI, current: str | None, status: int
) -> None:
    ada, tokens = await signed_in(anonymous, "Ada")
    body = {"password": NEW_PASSWORD, "name": "Eve"}
    if current is not None:
        body["current_password"] = current

    response = await anonymous.patch(
        f"/users/{ada['id']}", json=body, headers=bearer(tokens["access_token"])
    )

    assert response.status_code == status
    assert (await log_in(anonymous, "ada@example.com")).status_code == 200
    assert await live_refresh_tokens(app, ada["id"]) == 2
    stored = await stored_user(app, ada["id"])
    assert stored is not None
    assert stored.name == "Ada"


async def test_a_current_password_alone_is_422(client: httpx.AsyncClient) -> None:
    ada = await sign_up(client, "Ada")

    response = await client.patch(f"/users/{ada['id']}", json={"current_password": PASSWORD})

    assert response.status_code == 422


async def test_an_admin_sets_a_password_without_the_current_one(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ada, tokens = await signed_in(client, "Ada")

    response = await client.patch(f"/users/{ada['id']}", json={"password": NEW_PASSWORD})

    assert response.status_code == 200
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    assert (await log_in(client, "ada@example.com", NEW_PASSWORD)).status_code == 200


async def test_deactivating_a_user_revokes_their_refresh_tokens(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ada, tokens = await signed_in(client, "Ada")

    await client.patch(f"/users/{ada['id']}", json={"is_active": False})

    assert await live_refresh_tokens(app, ada["id"]) == 0
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    assert (await log_in(client, "ada@example.com")).status_code == 401


async def test_deleting_a_user_removes_their_refresh_tokens(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ada, tokens = await signed_in(client, "Ada")

    await client.delete(f"/users/{ada['id']}")

    async with database_of(app).transaction() as session:
        assert (await session.scalars(select(RefreshToken))).all() == []
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401


# Throttling


async def test_five_failures_for_an_account_make_further_logins_429(
    anonymous: httpx.AsyncClient,
) -> None:
    await sign_up(anonymous, "Ada")
    failures = [await log_in(anonymous, "ada@example.com", "wrong password") for _ in range(5)]

    blocked = await log_in(anonymous, "ADA@example.com")  # even with the right password

    assert [failure.status_code for failure in failures] == [401] * 5
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= 900


async def five_failed_logins_of_ada(
    anonymous: httpx.AsyncClient, app: FastAPI, seconds_ago: int
) -> None:
    """Ada signed up, then five logins of hers failed, `seconds_ago` seconds ago."""
    await sign_up(anonymous, "Ada")
    for _ in range(5):
        await log_in(anonymous, "ada@example.com", "wrong password")
    async with database_of(app).transaction() as session:
        await session.execute(
            update(LoginFailure).values(failed_at=utcnow() - timedelta(seconds=seconds_ago))
        )


async def test_the_wait_lasts_until_the_oldest_counted_failure_leaves_the_window(
    anonymous: httpx.AsyncClient, app: FastAPI
) -> None:
    await five_failed_logins_of_ada(anonymous, app, seconds_ago=600)

    blocked = await log_in(anonymous, "ada@example.com")

    assert 295 <= int(blocked.headers["Retry-After"]) <= 300


async def test_failures_older_than_the_window_no_longer_count(
    anonymous: httpx.AsyncClient, app: FastAPI
) -> None:
    await five_failed_logins_of_ada(anonymous, app, seconds_ago=901)

    assert (await log_in(anonymous, "ada@example.com")).status_code == 200


async def test_a_successful_login_clears_the_accounts_failures(
    anonymous: httpx.AsyncClient,
) -> None:
    await sign_up(anonymous, "Ada")
    for _ in range(4):
        await log_in(anonymous, "ada@example.com", "wrong password")
    await tokens_of(anonymous, "ada@example.com")

    later = [await log_in(anonymous, "ada@example.com", "wrong password") for _ in range(4)]

    assert [answer.status_code for answer in later] == [401] * 4


async def test_failures_from_one_address_are_counted_across_accounts(
    anonymous: httpx.AsyncClient, app: FastAPI
) -> None:
    await sign_up(anonymous, "Ada")
    for index in range(20):
        await log_in(anonymous, f"nobody{index}@example.com", "wrong password")

    from_here = await log_in(anonymous, "ada@example.com")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("10.0.0.2", 1234)),
        base_url="http://testserver",
    ) as elsewhere:
        from_elsewhere = await log_in(elsewhere, "ada@example.com")

    assert from_here.status_code == 429
    assert "Retry-After" in from_here.headers
    assert from_elsewhere.status_code == 200


# Signing keys


def test_outside_development_a_missing_key_file_refuses_to_start(tmp_path: Path) -> None:
    settings = UsersSettings(
        environment="production",
        signing_keys_file=tmp_path / "keys.json",
        events_token="a-production-events-token",
        metrics_token="a-production-metrics-token",
    )

    with pytest.raises(MissingSigningKeys, match="USERS_SIGNING_KEYS_FILE"):
        load_signing_keys(settings)


def test_in_development_a_missing_key_file_is_generated_once_for_its_owner(
    tmp_path: Path,
) -> None:
    settings = UsersSettings(signing_keys_file=tmp_path / "var" / "keys.json")

    keys = load_signing_keys(settings)

    assert stat.S_IMODE(settings.signing_keys_file.stat().st_mode) == 0o600
    assert load_signing_keys(settings).current.key_id == keys.current.key_id


def test_replicas_generating_keys_at_once_all_sign_with_the_same_set(tmp_path: Path) -> None:
    settings = UsersSettings(signing_keys_file=tmp_path / "keys.json")
    first, second = SigningKeys((SigningKey.generate(),)), SigningKeys((SigningKey.generate(),))

    kept = [first.write_unless_exists(settings.signing_keys_file)]
    kept.append(second.write_unless_exists(settings.signing_keys_file))

    assert [keys.current.key_id for keys in kept] == [first.current.key_id] * 2
    assert load_signing_keys(settings).current.key_id == first.current.key_id
    assert [path.name for path in tmp_path.iterdir()] == ["keys.json"]  # no draft left behind


def test_rotation_signs_with_a_new_key_and_keeps_the_previous_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = UsersSettings(signing_keys_file=tmp_path / "keys.json")
    before = load_signing_keys(settings)

    after = rotate(settings)

    assert [key.key_id for key in after.keys] == [after.current.key_id, before.current.key_id]
    assert SigningKeys.load(settings.signing_keys_file).current.key_id == after.current.key_id
    monkeypatch.setenv("USERS_SIGNING_KEYS_FILE", str(settings.signing_keys_file))
    assert main(["show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == after.public_jwks()


def test_a_key_is_published_before_it_signs_then_promoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = UsersSettings(signing_keys_file=tmp_path / "keys.json")
    monkeypatch.setenv("USERS_SIGNING_KEYS_FILE", str(settings.signing_keys_file))
    first = load_signing_keys(settings).current.key_id

    assert main(["publish"]) == 0
    published = SigningKeys.load(settings.signing_keys_file)
    assert main(["promote"]) == 0
    promoted = SigningKeys.load(settings.signing_keys_file)

    new = published.keys[1].key_id
    assert [key.key_id for key in published.keys] == [first, new]  # the first one still signs
    assert [key.key_id for key in promoted.keys] == [new, first]  # the first one still verifies


def test_promoting_without_a_published_key_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = UsersSettings(signing_keys_file=tmp_path / "keys.json")
    monkeypatch.setenv("USERS_SIGNING_KEYS_FILE", str(settings.signing_keys_file))
    load_signing_keys(settings)
    before = settings.signing_keys_file.read_bytes()

    assert main(["promote"]) == 1
    assert settings.signing_keys_file.read_bytes() == before


# The first admin


async def test_the_admin_command_creates_an_admin_who_can_log_in(
    anonymous: httpx.AsyncClient, database_url: str
) -> None:
    account = await create_admin(
        UsersSettings(database_url=database_url), email="root@example.com", password=PASSWORD
    )

    token = (await tokens_of(anonymous, "root@example.com"))["access_token"]
    me = await anonymous.get("/users/me", headers=bearer(token))
    assert account.created is True
    assert me.json()["id"] == account.user_id
    assert me.json()["name"] == "root"
    assert me.json()["is_admin"] is True
    assert jwt.decode(token, options={"verify_signature": False})["admin"] is True


async def test_the_admin_command_promotes_an_existing_user(
    anonymous: httpx.AsyncClient, app: FastAPI, database_url: str
) -> None:
    ada, tokens = await signed_in(anonymous, "Ada")

    account = await create_admin(
        UsersSettings(database_url=database_url), email="ADA@example.com", password=NEW_PASSWORD
    )

    assert (account.user_id, account.created) == (ada["id"], False)
    stored = await stored_user(app, ada["id"])
    assert stored is not None
    assert stored.is_admin
    assert stored.name == "Ada"
    assert (await refresh(anonymous, tokens["refresh_token"])).status_code == 401
    assert (await log_in(anonymous, "ada@example.com", NEW_PASSWORD)).status_code == 200
