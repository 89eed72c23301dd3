"""Settings base: every process reads its configuration from environment variables.

A service's database settings extend these (servicekit.database.ServiceSettings).
"""

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
