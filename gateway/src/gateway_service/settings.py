"""Gateway settings, from `GATEWAY_*` environment variables."""

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from servicekit.settings import BaseProcessSettings


class GatewaySettings(BaseProcessSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    users_url: str = "http://127.0.0.1:8001"
    catalog_url: str = "http://127.0.0.1:8002"
    blog_url: str = "http://127.0.0.1:8003"

    connect_timeout: float = Field(default=0.5, gt=0, description="Seconds to open a connection.")
    read_timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for a response.")
    write_timeout: float = Field(default=10.0, gt=0, description="Seconds to send a request.")
    pool_timeout: float = Field(default=2.0, gt=0, description="Seconds to wait for a free slot.")
    max_connections: int = Field(default=512, ge=1, description="Open connections, all services.")
    # Well below the services' own idle timeout (UVICORN_TIMEOUT_KEEP_ALIVE, 75 s in the images
    # and the Procfile; uvicorn's default is 5 s): a request sent on a connection the service is
    # closing gets no answer, and a write is not retried (it may have been applied). The margin
    # covers a service's event loop that is late to read, as one paused or starved of CPU is.
    keepalive_expiry: float = Field(
        default=4.0, gt=0, description="Seconds an idle connection to a service is kept."
    )
    # A hung service holds each call for the read timeout; these let its clients learn of it at
    # once, and keep its calls from taking the connections the other services need.
    circuit_failures: int = Field(
        default=5, ge=1, description="Consecutive failed calls to a service that open its circuit."
    )
    circuit_cooldown: float = Field(
        default=5.0, gt=0, description="Seconds an open circuit refuses calls before a trial."
    )
    circuit_trial_calls: int = Field(
        default=1, ge=1, description="Calls let through at once while a circuit is half-open."
    )
    max_calls_per_service: int = Field(
        default=256, ge=1, description="Calls in flight to one service at most."
    )
    queue_timeout: float = Field(
        default=0.1,
        ge=0,
        description="Seconds a call waits for its service's calls in flight to drop below the "
        "limit (0: refused at once).",
    )
    http_transport: Literal["httpx", "aiohttp"] = Field(
        default="aiohttp",
        description="httpx's own pool, or aiohttp's connector behind the httpx API.",
    )
    openapi_cache_seconds: float = Field(default=30.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _keys_from_the_users_service(cls, data: Any) -> Any:
        # Tokens are the users service's: its keys are where it answers, unless set apart.
        if isinstance(data, dict) and "auth_jwks_url" not in data and "users_url" in data:
            return {**data, "auth_jwks_url": f"{data['users_url']}/.well-known/jwks.json"}
        return data

    @field_validator("users_url", "catalog_url", "blog_url")
    @classmethod
    def _http_origin(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    def service_urls(self) -> dict[str, str]:
        """The base URL of each downstream service, by name."""
        return {"users": self.users_url, "catalog": self.catalog_url, "blog": self.blog_url}
