"""Settings base: every service reads its configuration from environment variables."""

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

Environment = Literal["development", "test", "production"]

# Passwords that only make sense on a developer's machine; other environments refuse them.
DEVELOPMENT_PASSWORDS = frozenset({"postgres", "password", "changeme", "secret"})
MIN_TOKEN_LENGTH = 8


def refuse_weak_token(name: str, token: SecretStr, environment: str) -> None:
    """Refuse a bearer token shorter than MIN_TOKEN_LENGTH, or, outside development, one of the
    development passwords (ValueError naming the setting, never the value)."""
    value = token.get_secret_value()
    if environment != "development" and value in DEVELOPMENT_PASSWORDS:
        raise ValueError(f"{name} is a development password; set a real one for {environment}")
    if len(value) < MIN_TOKEN_LENGTH:
        raise ValueError(f"{name} must have at least {MIN_TOKEN_LENGTH} characters")


class BaseProcessSettings(BaseSettings):
    """Configuration of every process, with or without a database."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    environment: Environment = "development"
    log_level: str = "INFO"

    # Access tokens: where the users service publishes its public keys, and what the tokens
    # must name as their issuer and audience.
    auth_jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    auth_issuer: str = "users"
    auth_audience: str = "api"

    # Requests: bodies larger than this are refused (413) before they are read; a valid bulk
    # of a thousand products with long descriptions fits.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    # The Host names this process answers for ("*.example.com" for subdomains); any other, or
    # none over HTTP/1.1, is 400. Links and Locations are relative references, so any host
    # is safe to answer; a deployment may still name the hosts it serves.
    allowed_hosts: list[str] = Field(default=["*"], min_length=1)

    # The bearer token a Prometheus server sends to scrape `GET /metrics` (servicekit.metrics).
    metrics_token: SecretStr = Field(
        default=SecretStr("changeme"),
        description="The bearer token of GET /metrics; one value for every process.",
    )

    # Off, requests (and the gateway's calls to services) are not counted or timed: the
    # baseline the benchmark measures their cost against. /metrics still answers.
    request_metrics: bool = Field(
        default=True, description="Count and time each request for GET /metrics."
    )

    @model_validator(mode="after")
    def _refuse_development_metrics_token_outside_development(self) -> "BaseProcessSettings":
        refuse_weak_token("metrics_token", self.metrics_token, self.environment)
        return self


class ServiceSettings(BaseProcessSettings):
    """Configuration of a service and its database; subclasses set the env prefix and default."""

    database_url: str
    # Migrations connect with their own role, which owns the schema, where the service's role
    # may only read and write rows (deploy/README.md, "The database roles"); only the migration
    # step is given this URL. Unset, migrations use database_url (`make run`, SQLite).
    migration_database_url: str | None = None
    pool_size: int = Field(default=10, ge=1)
    # Connections beyond pool_size are closed as soon as they are returned, so under a steady
    # load above pool_size every burst opens new ones; waiting briefly for a pooled connection
    # is cheaper than a new Postgres backend.
    max_overflow: int = Field(default=0, ge=0)
    pool_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for a connection.")
    # A request that waited pool_timeout for a connection is a 503 telling the client to retry
    # this much later: the database answers, the process is busy.
    busy_retry_after: int = Field(
        default=1,
        ge=1,
        description="Seconds of the Retry-After of a 503 answered when no database connection "
        "became free within pool_timeout.",
    )
    pool_recycle: int = Field(default=1800, description="Seconds before a connection is replaced.")
    pool_pre_ping: bool = True
    pool_pre_ping_idle: float = Field(
        default=5.0,
        ge=0,
        description="Test a pooled connection before use only once it has been idle this long; "
        "0 tests it at every checkout.",
    )
    statement_timeout_ms: int = Field(default=15_000, ge=0, description="Postgres only; 0 = off.")
    connect_timeout: int = Field(
        default=5,
        ge=2,  # libpq's least
        description="Postgres only: seconds to open a connection, so a server that does not "
        "answer (rather than refuse) fails requests instead of holding them.",
    )
    readiness_interval: float = Field(
        default=2.0,
        ge=0,
        description="Seconds a successful readiness check is reused (servicekit.readiness): "
        "while the database answers, it sees at most one probe connection per interval.",
    )
    sql_echo: bool = False
    # How long a create's Idempotency-Key and first answer are kept (servicekit.idempotency):
    # longer than any client goes on retrying a request.
    idempotency_key_retention: int = Field(
        default=24 * 3600, ge=60, description="Seconds an Idempotency-Key is kept."
    )

    @property
    def migrator_url(self) -> str:
        """The URL migrations connect with: migration_database_url, else database_url."""
        return self.migration_database_url or self.database_url

    @model_validator(mode="after")
    def _refuse_development_secrets_outside_development(self) -> "ServiceSettings":
        if self.environment == "development":
            return self
        for name in ("database_url", "migration_database_url"):
            value = getattr(self, name)
            password = None if value is None else make_url(value).password
            if password is not None and password in DEVELOPMENT_PASSWORDS:
                raise ValueError(
                    f"{name} uses a development password; set a real one for {self.environment}"
                )
        return self


class EventFeedSettings(BaseSettings):
    """The credential of an internal event feed, for the service that serves it and those that
    read it (servicekit.events)."""

    events_token: SecretStr = Field(
        default=SecretStr("changeme"),
        description="The bearer token of the event feed; the same value on both sides.",
    )

    @model_validator(mode="after")
    def _refuse_development_token_outside_development(self) -> "EventFeedSettings":
        environment = getattr(self, "environment", "development")
        refuse_weak_token("events_token", self.events_token, environment)
        return self
