"""Calls to the services: one pooled HTTP client, explicit timeouts, failures mapped to 5xx."""

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway_service.errors import (
    MAY_HAVE_BEEN_APPLIED,
    BadGateway,
    GatewayTimeout,
    ServiceUnavailable,
    UpstreamResponse,
)
from gateway_service.settings import GatewaySettings
from servicekit.errors import BadRequest
from servicekit.metrics import DURATION_BUCKETS
from servicekit.observability import REQUEST_ID_HEADER, request_id_var

IDEMPOTENT_READS = frozenset({"GET", "HEAD"})
_REQUEST_ID_HEADER = REQUEST_ID_HEADER.lower().encode()

# How a call to a service ended: answered (by status class), or a failure of the connection.
Outcome = Literal["ok", "4xx", "5xx", "timeout", "refused", "broken"]
_ANSWERED: dict[int, Outcome] = {1: "ok", 2: "ok", 3: "ok", 4: "4xx", 5: "5xx"}


class DownstreamMetrics:
    """Each call to a service (each attempt, retries included): how it ended, how long it took."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "gateway_downstream_requests_total",
            "Calls to a service by outcome: ok (2xx, 3xx), 4xx, 5xx, timeout (no answer in "
            "time, or no free connection), refused (could not connect), broken (the connection "
            "broke after the request went out, or the answer was malformed).",
            ("service", "outcome"),
            registry=registry,
        )
        self.duration = Histogram(
            "gateway_downstream_request_duration_seconds",
            "Time from sending a call to a service to reading its whole answer (or failing).",
            ("service",),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )

        # Each label set's child, found without prometheus-client's lock and label checks.
        self._calls: dict[tuple[str, Outcome], Any] = {}
        self._durations: dict[str, Any] = {}

    def observe(self, service: str, outcome: Outcome, seconds: float) -> None:
        calls = self._calls.get((service, outcome))
        if calls is None:
            calls = self._calls[service, outcome] = self.calls.labels(service, outcome)
        duration = self._durations.get(service)
        if duration is None:
            duration = self._durations[service] = self.duration.labels(service)
        calls.inc()
        duration.observe(seconds)


def create_transport(settings: GatewaySettings) -> httpx.AsyncBaseTransport:
    """The connection pool to the services: every keep-alive connection is kept."""
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        # Fewer keep-alive than open connections makes the pool close and reopen connections
        # under load, which is where httpx's throughput collapses.
        max_keepalive_connections=settings.max_connections,
        keepalive_expiry=settings.keepalive_expiry,
    )
    if settings.http_transport == "aiohttp":

        def session() -> aiohttp.ClientSession:
            # The gateway is one client of the services for all of its callers: a cookie that
            # one answer sets must not go out with anybody's later requests, so none is kept.
            # (Made at the first call, inside the event loop, as aiohttp requires.)
            connector = aiohttp.TCPConnector(
                limit=limits.max_connections or 0, keepalive_timeout=limits.keepalive_expiry
            )
            return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

        return AiohttpTransport(limits=limits, client=session)
    return httpx.AsyncHTTPTransport(limits=limits)


def create_http_client(
    settings: GatewaySettings, transport: httpx.AsyncBaseTransport
) -> httpx.AsyncClient:
    """The process's HTTP client over `transport`, with the timeouts from settings."""
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.write_timeout,
        pool=settings.pool_timeout,
    )
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False)


def _never_sent(exc: httpx.TransportError) -> bool:
    """Whether a failure came before the request could reach the service.

    The aiohttp transport reports every broken connection as httpx's ConnectTimeout, one that
    broke after the request went out included (the service may have acted on it); aiohttp's
    own error, its cause, tells the two apart.
    """
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError):
        return isinstance(cause, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
    return True


class Downstream:
    """The services by name, and the one way to call them."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        transport: httpx.AsyncBaseTransport,
        base_urls: Mapping[str, str],
        metrics: DownstreamMetrics | None,
    ) -> None:
        self.client = client
        self.metrics = metrics
        # Calls go straight to the client's transport with the client's timeouts: the
        # client's own layers (redirects, auth, cookies, default headers, event hooks) have
        # nothing to do for them and cost a third of a call's CPU.
        self.transport = transport
        self._timeout = client.timeout.as_dict()
        self.base_urls = dict(base_urls)
        # Called with every request sent to a service (tests count calls this way).
        self.listeners: list[Callable[[httpx.Request], None]] = []
        # Each service's URL, and its path prefix (if it is served under one).
        self._origins = {
            name: (httpx.URL(url), httpx.URL(url).raw_path.rstrip(b"/"))
            for name, url in self.base_urls.items()
        }

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
        origin, prefix = self._origins[service]
        target = prefix + path.encode()
        if query:
            target += b"?" + (query if isinstance(query, bytes) else query.encode())
        try:
            url = origin.copy_with(raw_path=target)
        except (UnicodeDecodeError, httpx.InvalidURL) as exc:
            # uvicorn refuses such request lines itself; other servers may pass them on.
            raise BadRequest("the query string is not valid in a URL") from exc
        request_headers = dict(headers or {})
        request_id = request_id_var.get()
        if request_id:
            request_headers[_REQUEST_ID_HEADER] = request_id.encode()
        request = httpx.Request(
            method,
            url,
            params=params,
            content=content,
            json=json,
            headers=request_headers,
            extensions={"timeout": self._timeout},
        )
        attempts = 2 if method in IDEMPOTENT_READS else 1
        lost = "" if method in IDEMPOTENT_READS else MAY_HAVE_BEEN_APPLIED
        for attempt in range(1, attempts + 1):
            for listener in self.listeners:
                listener(request)
            try:
                return await self._send(service, request)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == attempts:
                    if _never_sent(exc):
                        raise ServiceUnavailable(f"the {service} service is unavailable") from exc
                    raise BadGateway(f"the {service} service broke the connection{lost}") from exc
            except httpx.PoolTimeout as exc:
                raise ServiceUnavailable(
                    f"the gateway has no free connection to the {service} service"
                ) from exc
            except httpx.TimeoutException as exc:
                raise GatewayTimeout(f"the {service} service did not answer in time{lost}") from exc
            except (httpx.TransportError, aiohttp.ClientError) as exc:
                # aiohttp's transport passes on some of aiohttp's own errors (a malformed
                # status line or header, say) instead of mapping them to httpx's.
                raise BadGateway(f"the {service} service broke the connection{lost}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(self, service: str, request: httpx.Request) -> httpx.Response:
        """One attempt: the whole answer, or the transport's error; counted either way."""
        started = time.perf_counter()
        outcome: Outcome | None = None  # None: cancelled, or a bug (not the service's doing)
        try:
            response = await self.transport.handle_async_request(request)
            await response.aread()
            outcome = _ANSWERED.get(response.status_code // 100, "broken")
            return response
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            outcome = "refused" if _never_sent(exc) else "broken"
            raise
        except httpx.TimeoutException:
            outcome = "timeout"
            raise
        except (httpx.TransportError, aiohttp.ClientError):
            outcome = "broken"
            raise
        finally:
            if outcome is not None and self.metrics is not None:
                self.metrics.observe(service, outcome, time.perf_counter() - started)

    async def expect_ok(
        self, service: str, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        """A request whose non-2xx answer is relayed to the client as it is."""
        response = await self.request(service, method, path, **kwargs)
        if not response.is_success:
            raise UpstreamResponse(service, response)
        return response
