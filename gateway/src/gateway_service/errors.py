"""How downstream failures reach clients: a clear status that names the service."""

import httpx

from servicekit.errors import ServiceError

# Added to a write's 502 or 504: its answer was lost, but the service may have applied it.
MAY_HAVE_BEEN_APPLIED = (
    "; the request may have been applied: repeat it with the same Idempotency-Key, which "
    "applies it at most once"
)


class BadGateway(ServiceError):
    status_code = 502


class ServiceUnavailable(ServiceError):
    status_code = 503
    headers = {"Retry-After": "1"}  # noqa: RUF012


class GatewayTimeout(ServiceError):
    status_code = 504


class UpstreamResponse(Exception):
    """A downstream answer a composed view returns to the client as it is (e.g. a 404 or 422)."""

    def __init__(self, service: str, response: httpx.Response) -> None:
        super().__init__(f"{service} answered {response.status_code}")
        self.service = service
        self.response = response
