"""How downstream failures reach clients: a clear status that names the service."""

import httpx

from servicekit.errors import ServiceError


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
