"""Users service settings, from `USERS_*` environment variables."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit.database import ServiceSettings
from servicekit.settings import EventFeedSettings


class UsersSettings(ServiceSettings, EventFeedSettings):
    model_config = SettingsConfigDict(env_prefix="USERS_")

    database_url: str = "sqlite+aiosqlite:///./var/users.db"

    # The private JWK Set access tokens are signed with: its first key signs, every key is
    # published. Generated here on first start in development; elsewhere it must exist.
    signing_keys_file: Path = Path("./var/signing-keys.json")
    access_token_lifetime: int = Field(default=900, ge=1, description="Seconds.")
    refresh_token_lifetime: int = Field(default=30 * 24 * 3600, ge=1, description="Seconds.")
    jwks_max_age: int = Field(
        default=300, ge=0, description="Seconds clients may cache /.well-known/jwks.json."
    )

    # argon2id cost: OWASP's recommended minimum (19 MiB, 2 passes, 1 lane). One lane keeps a
    # hash on one thread, so a storm of logins cannot take every core from the requests that
    # only read (docs/performance.md).
    # Hashes made with other parameters still verify: each hash carries its own.
    password_hash_time_cost: int = Field(default=2, ge=1)
    password_hash_memory_cost: int = Field(default=19_456, ge=8, description="KiB.")
    password_hash_parallelism: int = Field(default=1, ge=1)
    # Hashes computed at once, each in a thread: a storm of logins queues here instead of
    # taking every CPU from the requests that only read.
    password_hashing_concurrency: int = Field(default=1, ge=1)

    # Failed logins: this many within the window, per account or per client address, and
    # further attempts are 429 until the oldest counted failure leaves the window.
    login_failures_per_account: int = Field(default=5, ge=1)
    login_failures_per_address: int = Field(default=20, ge=1)
    login_failure_window: int = Field(default=900, ge=1, description="Seconds.")

    # The event feed (users_service.events): how long events are kept, how often old ones are
    # pruned, and how often a long poll looks for new ones.
    events_retention: int = Field(default=7 * 24 * 3600, ge=60, description="Seconds.")
    events_prune_interval: float = Field(default=3600, gt=0, description="Seconds.")
    events_poll_interval: float = Field(default=0.2, gt=0, le=5, description="Seconds.")
