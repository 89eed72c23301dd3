"""Calls to the services: one pooled HTTP client, explicit timeouts, failures mapped to 5xx."""

from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from gateway_service.errors import BadGateway, GatewayTimeout, ServiceUnavailable, UpstreamResponse
from gateway_service.settings import GatewaySettings
from servicekit.errors import BadRequest
from servicekit.observability import REQUEST_ID_HEADER, request_id_var

IDEMPOTENT_READS = frozenset({"GET", "HEAD"})
_REQUEST_ID_HEADER = REQUEST_ID_HEADER.lower().encode()


def create_http_client(settings: GatewaySettings) -> httpx.AsyncClient:
    """The process's HTTP client: every keep-alive connection is kept, up to the pool size."""
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        # Fewer keep-alive than open connections makes the pool close and reopen connections
        # under load, which is where httpx's throughput collapses.
        max_keepalive_connections=settings.max_connections,
        keepalive_expiry=30,
    )
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.write_timeout,
        pool=settings.pool_timeout,
    )
    transport: httpx.AsyncBaseTransport = (
        AiohttpTransport(limits=limits)
        if settings.http_transport == "aiohttp"
        else httpx.AsyncHTTPTransport(limits=limits)
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
    )


class Downstream:
    """The services by name, and the one way to call them."""

    def __init__(self, client: httpx.AsyncClient, base_urls: Mapping[str, str]) -> None:
        self.client = client
        self.base_urls = dict(base_urls)

    async def request(
        self,
        service: str,
        method: str,
        path: str,
        *,
        query: str | bytes = b"",
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        content: bytes | None = None,
        json: Any = None,
        headers: Mapping[bytes, bytes] | None = None,
    ) -> httpx.Response:
        """Send one request to `service`; connection failures of reads are retried once.

        Failures become 503 (unreachable), 504 (too slow) or 502 (broken answer), each naming
        the service, so no client ever waits on a dead service or sees a stack trace.
        """
        url = httpx.URL(self.base_urls[service] + path)
        if query:
            try:
                url = url.copy_with(query=query if isinstance(query, bytes) else query.encode())
            except (UnicodeDecodeError, httpx.InvalidURL) as exc:
                # uvicorn refuses such request lines itself; other servers may pass them on.
                raise BadRequest("the query string is not valid in a URL") from exc
        request_headers = dict(headers or {})
        request_id = request_id_var.get()
        if request_id:
            request_headers[_REQUEST_ID_HEADER] = request_id.encode()
        attempts = 2 if method in IDEMPOTENT_READS else 1
        for attempt in range(1, attempts + 1):
            try:
                return await self.client.request(
                    method,
                    url,
                    params=params,
                    content=content,
                    json=json,
                    headers=request_headers,
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == attempts:
                    raise ServiceUnavailable(f"the {service} service is unavailable") from exc
            except httpx.PoolTimeout as exc:
                raise ServiceUnavailable(
                    f"the gateway has no free connection to the {service} service"
                ) from exc
            except httpx.TimeoutException as exc:
                raise GatewayTimeout(f"the {service} service did not answer in time") from exc
            except (httpx.TransportError, aiohttp.ClientError) as exc:
                # aiohttp's transport passes on some of aiohttp's own errors (a malformed
                # status line or header, say) instead of mapping them to httpx's.
                raise BadGateway(f"the {service} service broke the connection") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def expect_ok(
        self, service: str, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        """A request whose non-2xx answer is relayed to the client as it is."""
        response = await self.request(service, method, path, **kwargs)
        if not response.is_success:
            raise UpstreamResponse(service, response)
        return response
