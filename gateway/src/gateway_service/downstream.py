"""Calls to the services: one pooled HTTP client, explicit timeouts, failures mapped to 5xx."""

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import aiohttp
import httpx
from fastapi import FastAPI
from httpx_aiohttp import AiohttpTransport
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway_service.circuit import Admission, Circuit, CircuitState
from gateway_service.errors import (
    MAY_HAVE_BEEN_APPLIED,
    BadGateway,
    CircuitOpen,
    GatewayTimeout,
    ServiceUnavailable,
    TooManyCalls,
    UpstreamResponse,
)
from gateway_service.settings import GatewaySettings
from servicekit.errors import BadRequest, ServiceError
from servicekit.metrics import Counts, Durations
from servicekit.observability import REQUEST_ID_HEADER, request_id_var

IDEMPOTENT_READS = frozenset({"GET", "HEAD"})
_REQUEST_ID_HEADER = REQUEST_ID_HEADER.lower().encode()

# How a call to a service ended: answered (by status class), or a failure of the connection;
# or why the gateway did not send it: the service's circuit was open, or it had too many calls.
Outcome = Literal["ok", "4xx", "5xx", "timeout", "refused", "broken", "open", "shed"]
Refusal = Literal["open", "shed"]
_ANSWERED: dict[int, Outcome] = {1: "ok", 2: "ok", 3: "ok", 4: "4xx", 5: "5xx"}


class DownstreamMetrics:
    """Each call to a service (each attempt, retries included): how it ended, how long it took;
    and each call the gateway did not send."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counts(
            "gateway_downstream_requests_total",
            "Calls to a service by outcome: ok (2xx, 3xx), 4xx, 5xx, timeout (no answer in "
            "time, or no free connection), refused (could not connect), broken (the connection "
            "broke after the request went out, or the answer was malformed), open (not sent: the "
            "service's circuit was open), shed (not sent: the service had too many calls in "
            "flight).",
            ("service", "outcome"),
            registry,
        )
        self.duration = Durations(
            "gateway_downstream_request_duration_seconds",
            "Time from sending a call to a service to reading its whole answer (or failing).",
            ("service",),
            registry,
        )

    def observe(self, service: str, outcome: Outcome, seconds: float) -> None:
        self.calls.add((service, outcome))
        self.duration.observe((service,), seconds)

    def refused(self, service: str, outcome: Refusal) -> None:
        """A call the gateway did not send (it took no time worth a duration)."""
        self.calls.add((service, outcome))


class CircuitStates(Collector):
    """Each service's circuit state, read at each scrape (nothing before the app has started)."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        downstream: Downstream | None = getattr(self._app.state, "downstream", None)
        if downstream is None:
            return
        states = GaugeMetricFamily(
            "gateway_downstream_circuit_state",
            "Each service's circuit: 0 closed (calls go), 1 open (calls refused with 503), "
            "2 half-open (trial calls go).",
            labels=["service"],
        )
        for service, state in downstream.circuit_states().items():
            states.add_metric([service], int(state))
        yield states


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


Failure = Literal["refused", "connect_timeout", "no_connection", "timeout", "broken"]
# How each failure is counted in gateway_downstream_requests_total (docs/metrics.md).
_FAILURE_OUTCOMES: dict[Failure, Outcome] = {
    "refused": "refused",
    "connect_timeout": "refused",
    "no_connection": "timeout",
    "timeout": "timeout",
    "broken": "broken",
}
# A read is tried again only after a failure that cost no wait: a second try after a timeout
# would make its client wait twice.
_RETRIED: frozenset[Failure] = frozenset({"refused", "broken"})


def _failure(exc: Exception, pool_was_full: bool) -> Failure:
    """What a transport's error means, whichever transport raised it.

    The aiohttp transport reports every failed connection as httpx's ConnectTimeout, one that
    broke after the request went out included (the service may have acted on it); aiohttp's
    own error, its cause, tells them apart. Its connection timeout covers the wait for a free
    connection of the gateway's pool too, which only the calls in flight tell apart.
    """
    if isinstance(exc, httpx.PoolTimeout):
        return "no_connection"
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        cause = exc.__cause__
        if isinstance(cause, aiohttp.ClientConnectorError):
            return "refused"
        if isinstance(cause, aiohttp.ConnectionTimeoutError):
            return "no_connection" if pool_was_full else "connect_timeout"
        if isinstance(cause, aiohttp.ClientError):
            return "broken"
        return "refused" if isinstance(exc, httpx.ConnectError) else "connect_timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return "broken"


class CallFailed(Exception):
    """A call got no answer; `failure` says why (the transport's error is the cause)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure)
        self.failure = failure


def _client_error(service: str, failure: Failure, method: str) -> ServiceError:
    """The gateway's answer to a call that failed, naming the service. A write that may have
    reached the service (502, 504) says it may have been applied."""
    if failure == "refused" or failure == "connect_timeout":
        return ServiceUnavailable(f"the {service} service is unavailable")
    if failure == "no_connection":
        return ServiceUnavailable(f"the gateway has no free connection to the {service} service")
    lost = "" if method in IDEMPOTENT_READS else MAY_HAVE_BEEN_APPLIED
    if failure == "timeout":
        return GatewayTimeout(f"the {service} service did not answer in time{lost}")
    return BadGateway(f"the {service} service broke the connection{lost}")


class _Service:
    """What the gateway keeps for each service: where it is, its circuit, and its calls in
    flight (a semaphore of `max_calls_per_service`)."""

    __slots__ = ("calls", "circuit", "origin", "prefix")

    def __init__(self, url: str, settings: GatewaySettings) -> None:
        self.origin = httpx.URL(url)
        self.prefix = self.origin.raw_path.rstrip(b"/")  # a service may be served under a path
        self.circuit = Circuit(
            settings.circuit_failures, settings.circuit_cooldown, settings.circuit_trial_calls
        )
        self.calls = asyncio.Semaphore(settings.max_calls_per_service)


class Downstream:
    """The services by name, and the one way to call them."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        transport: httpx.AsyncBaseTransport,
        settings: GatewaySettings,
        metrics: DownstreamMetrics | None,
    ) -> None:
        self.client = client
        self.metrics = metrics
        # Calls go straight to the client's transport with the client's timeouts: the
        # client's own layers (redirects, auth, cookies, default headers, event hooks) have
        # nothing to do for them and cost a third of a call's CPU.
        self.transport = transport
        self._timeout = client.timeout.as_dict()
        self.base_urls = settings.service_urls()
        # Called with every request sent to a service (tests count calls this way).
        self.listeners: list[Callable[[httpx.Request], None]] = []
        self._services = {name: _Service(url, settings) for name, url in self.base_urls.items()}
        self._queue_timeout = settings.queue_timeout
        self._max_connections = settings.max_connections
        self._in_flight = 0  # calls to every service, each holding a connection of the pool

    def circuit_states(self) -> dict[str, CircuitState]:
        """Each service's circuit state, by name."""
        return {name: own.circuit.current_state() for name, own in self._services.items()}

    def readiness_checked(self, service: str, state: str) -> None:
        """Tell `service`'s circuit what a readiness check found (see health.py)."""
        circuit = self._services[service].circuit
        if state == "ok":
            circuit.end_cooldown()
        elif state in ("timeout", "unreachable") and self._in_flight < self._max_connections:
            # (With every connection in use, the check may have failed for want of one.)
            circuit.trip()
        # "unavailable": the service answered (its database is down), which it passes on itself.

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
        """Send one request to `service`; a read whose connection was refused or broke is
        tried once more.

        Failures become 503 (unreachable), 504 (too slow) or 502 (broken answer), each naming
        the service, so no client ever waits on a dead service or sees a stack trace. While
        the service's circuit is open, or it has too many calls in flight, the answer is a
        503 with Retry-After at once.
        """
        own = self._services[service]
        target = own.prefix + path.encode()
        if query:
            target += b"?" + (query if isinstance(query, bytes) else query.encode())
        try:
            url = own.origin.copy_with(raw_path=target)
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
        circuit = own.circuit
        admission = circuit.admit()
        if admission is Admission.REFUSED:
            if self.metrics is not None:
                self.metrics.refused(service, "open")
            raise CircuitOpen(service, circuit.retry_after())
        if own.calls.locked():
            await self._wait_for_a_place(service, own, admission)
        else:
            await own.calls.acquire()  # a place is free: this does not wait
        decided = False  # whether the call told the circuit anything
        try:
            attempts = 2 if method in IDEMPOTENT_READS else 1
            for attempt in range(1, attempts + 1):
                for listener in self.listeners:
                    listener(request)
                try:
                    response = await self._send(service, request)
                except CallFailed as exc:
                    # A full pool is the gateway's own state, not the service's failure.
                    if exc.failure != "no_connection":
                        decided = True
                        circuit.failed()
                    if attempt < attempts and exc.failure in _RETRIED:
                        continue
                    raise _client_error(service, exc.failure, method) from exc.__cause__
                decided = True
                circuit.succeeded()
                return response
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            own.calls.release()
            if not decided:
                circuit.abandoned(admission)

    async def _wait_for_a_place(self, service: str, own: _Service, admission: Admission) -> None:
        """Wait up to the queue timeout for one of `service`'s calls in flight to end."""
        try:
            if self._queue_timeout <= 0:
                raise TimeoutError
            async with asyncio.timeout(self._queue_timeout):
                await own.calls.acquire()
        except BaseException as exc:
            own.circuit.abandoned(admission)
            if not isinstance(exc, TimeoutError):
                raise
            if self.metrics is not None:
                self.metrics.refused(service, "shed")
            raise TooManyCalls(service) from None

    async def _send(self, service: str, request: httpx.Request) -> httpx.Response:
        """One attempt: the whole answer, or CallFailed; counted either way."""
        started = time.perf_counter()
        outcome: Outcome | None = None  # None: cancelled, or a bug (not the service's doing)
        pool_was_full = self._in_flight >= self._max_connections
        self._in_flight += 1
        try:
            response = await self.transport.handle_async_request(request)
            await response.aread()
            outcome = _ANSWERED.get(response.status_code // 100, "broken")
            return response
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            # aiohttp's transport passes on some of aiohttp's own errors (a malformed status
            # line or header, say) instead of mapping them to httpx's.
            failure = _failure(exc, pool_was_full)
            outcome = _FAILURE_OUTCOMES[failure]
            raise CallFailed(failure) from exc
        finally:
            self._in_flight -= 1
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
