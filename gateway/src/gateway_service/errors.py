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


class CircuitOpen(ServiceUnavailable):
    """The service's circuit is open: it kept failing, and the gateway does not call it now."""

    def __init__(self, service: str, retry_after: int) -> None:
        super().__init__(f"calls to the {service} service are paused: it has been failing")
        self.headers = {"Retry-After": str(retry_after)}


class TooManyCalls(ServiceUnavailable):
    """The service has as many calls in flight as the gateway lets one service have."""

    def __init__(self, service: str) -> None:
        super().__init__(f"the {service} service has too many calls in flight")


class GatewayTimeout(ServiceError):
    status_code = 504


class UpstreamResponse(Exception):
    """A downstream answer a composed view returns to the client as it is (e.g. a 404 or 422)."""

    def __init__(self, service: str, response: httpx.Response) -> None:
        super().__init__(f"{service} answered {response.status_code}")
        self.service = service
        self.response = response
