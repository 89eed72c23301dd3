"""Access tokens (JWTs signed with the current key) and refresh tokens (opaque, stored hashed)."""

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from servicekit.auth import SigningKeys


@dataclass(frozen=True)
class AccessTokens:
    """Signs the access tokens every service verifies."""

    keys: SigningKeys
    issuer: str
    audience: str
    lifetime: int  # seconds

    def issue(self, user_id: int, *, admin: bool) -> str:
        now = int(time.time())
        return self.keys.current.sign(
            {
                "sub": str(user_id),
                "admin": admin,
                "iss": self.issuer,
                "aud": self.audience,
                "iat": now,
                "exp": now + self.lifetime,
                "jti": uuid.uuid4().hex,
            }
        )


def new_refresh_token() -> str:
    """An opaque refresh token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def refresh_token_hash(token: str) -> str:
    """What the database keeps of a refresh token: it is random, so a plain SHA-256 suffices."""
    return hashlib.sha256(token.encode()).hexdigest()
