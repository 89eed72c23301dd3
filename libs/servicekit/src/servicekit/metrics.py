"""Prometheus metrics, served at `GET /metrics` by every process (docs/metrics.md lists them).

Each app keeps its metrics in a registry of its own (`app.state.metrics`), never in
prometheus-client's global one: tests build many apps in one process, and each must count its
own requests. Requests are measured by RequestContextMiddleware, at the cost of adding to a few
numbers; everything else (pools, readiness, the outbox, consumers) is read when Prometheus
scrapes, not kept up to date as it changes.

One uvicorn worker per process: the containers run plain `uvicorn`, and a deployment scales by
replicas, each scraped on its own. With several workers behind one port, a scrape would reach
one worker at random and count its requests alone; prometheus-client's multiprocess mode, which
shares values through files, would be needed then. It is not used.
"""

import asyncio
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.routing import Match, Route
from starlette.types import Scope

from servicekit.auth import METRICS

if TYPE_CHECKING:  # the gateway has no database: the events module is the services' alone
    from servicekit.events import ConsumerStatus

# Counters and histograms would each add a `_created` series, which nothing here reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Each bucket's `le` label as Prometheus writes it, +Inf last.
_BUCKET_BOUNDS = [
    floatToGoString(bound)  # type: ignore[no-untyped-call]
    for bound in (*DURATION_BUCKETS, float("inf"))
]
# The route label of a request no route matched: a label per raw path would grow without bound.
UNMATCHED = "<unmatched>"
# The method label of a method outside this set, for the same reason (any token is a method).
OTHER_METHOD = "_OTHER"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
# What a scrape gives a query, as /health/ready gives the database (READINESS_TIMEOUT).
SCRAPE_QUERY_TIMEOUT = 2.0
OUTBOX_COUNT_CAP = 100_000

Readiness = Callable[[FastAPI], Awaitable[bool]]
Count = Callable[[FastAPI], Awaitable[int]]


def route_template(scope: Scope) -> str:
    """The path template of the route that matched the request (`/users/{user_id}`), or
    UNMATCHED."""
    route = scope.get("route")
    template: str = getattr(route, "path_format", UNMATCHED)
    return template


class _RouteInScope(Route):
    """A Starlette route that names itself in the scope when it matches, as FastAPI's APIRoute
    does: FastAPI's router sets `scope["route"]` for its own routes alone."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def name_routes_in_scope(app: FastAPI) -> None:
    """Make the app's plain Starlette routes (documentation, the gateway's forwarding) report
    their templates to the request metrics; call it once every route is in place."""
    routes = app.router.routes
    for index, route in enumerate(routes):
        if type(route) is Route:
            routes[index] = _RouteInScope(
                route.path,
                route.endpoint,
                methods=route.methods,
                name=route.name,
                include_in_schema=route.include_in_schema,
            )


_Value = TypeVar("_Value")


class _Observations:
    """The durations observed under one label set: a count per bucket (the last for those
    above every bound) and their sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.sum = 0.0


class _Family(Collector, Generic[_Value]):
    """One metric family by label values, kept as plain numbers: added to on the event loop's
    thread and read at a scrape on the same thread. prometheus-client's own metrics take a
    lock for every bucket, sum and value they change, a cost each request would pay for a
    thread-safety none of their callers needs; the exposition is prometheus-client's, the
    same as theirs."""

    def __init__(
        self, name: str, documentation: str, labels: tuple[str, ...], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = labels
        self._values: dict[tuple[str, ...], _Value] = {}
        registry.register(self)


class Durations(_Family[_Observations]):
    """A Prometheus histogram of durations (DURATION_BUCKETS) by label values."""

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        """Count one duration under `labels` (values in the order of the label names)."""
        observed = self._values.get(labels)
        if observed is None:
            observed = self._values[labels] = _Observations()
        # Prometheus' buckets hold what is at most their bound (`le`).
        observed.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        observed.sum += seconds

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labels)
        for labels, observed in list(self._values.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(_BUCKET_BOUNDS, observed.counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric(list(labels), buckets, sum_value=observed.sum)
        yield family


class Counts(_Family[int]):
    """A Prometheus counter by label values."""

    def add(self, labels: tuple[str, ...]) -> None:
        """Count one more under `labels` (values in the order of the label names)."""
        self._values[labels] = self._values.get(labels, 0) + 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labels)
        for labels, count in list(self._values.items()):
            family.add_metric(list(labels), count)
        yield family


class RequestMetrics(Collector):
    """The duration of each request by route, method and status class, and those in flight
    (a number the middleware keeps, read at a scrape)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Durations(
            "http_server_request_duration_seconds",
            "Time from receiving a request to the end of its answer; _count counts requests.",
            ("route", "method", "status_class"),
            registry,
        )
        self.in_flight = 0
        registry.register(self)

    def observe(self, scope: Scope, method: str, status: int, seconds: float) -> None:
        """Count one answered request; `scope` is the one the router matched."""
        method = method if method in _METHODS else OTHER_METHOD
        self.duration.observe((route_template(scope), method, f"{status // 100}xx"), seconds)

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "http_server_requests_in_flight", "Requests being answered now.", value=self.in_flight
        )


class Metrics:
    """The metrics of one app: its registry, with the process's own collectors, the request
    metrics, readiness, and what services add (pools always, the outbox and consumers)."""

    def __init__(self, app: FastAPI, readiness: Readiness) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.requests = RequestMetrics(self.registry)
        self._app = app
        self._readiness = readiness
        self._ready = Gauge(
            "service_ready",
            "1 when the process is ready (the check of /health/ready), 0 otherwise.",
            registry=self.registry,
        )
        self._consumers: dict[str, ConsumerStatus] = {}
        self._count_outbox: Count | None = None
        self._outbox_events: int | None = None
        self.registry.register(_PoolCollector(app))
        self.registry.register(_EventsCollector(self))

    def report_outbox(self, count: Count) -> None:
        """Report the events the app's outbox holds, as `count` counts them at each scrape
        (up to OUTBOX_COUNT_CAP)."""
        self._count_outbox = count

    def report_consumer(self, name: str, status: "ConsumerStatus") -> None:
        """Report a consumer's lag, parked and applied events, read from `status` at scrapes."""
        self._consumers[name] = status

    @property
    def consumers(self) -> Mapping[str, "ConsumerStatus"]:
        return self._consumers

    @property
    def outbox_events(self) -> int | None:
        """What the last scrape counted in the outbox; None if it could not count."""
        return self._outbox_events

    async def exposition(self) -> bytes:
        """Every metric in Prometheus's text format, with what is read at a scrape read now."""
        self._ready.set(1 if await self._readiness(self._app) else 0)
        if self._count_outbox is not None:
            self._outbox_events = await self._counted(self._count_outbox)
        return generate_latest(self.registry)

    async def _counted(self, count: Count) -> int | None:
        try:
            async with asyncio.timeout(SCRAPE_QUERY_TIMEOUT):
                return await count(self._app)
        except Exception:  # the database is down: no value rather than a stale one
            return None


class _PoolCollector(Collector):
    """The app's connection pools, read at each scrape (nothing before the database exists)."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        database = getattr(self._app.state, "database", None)
        if database is None:
            return
        limit = GaugeMetricFamily(
            "db_pool_max_connections",
            "Connections the pool may open (size and overflow).",
            labels=["pool"],
        )
        connections = GaugeMetricFamily(
            "db_pool_connections", "Open connections by state.", labels=["pool", "state"]
        )
        waiting = GaugeMetricFamily(
            "db_pool_waiting", "Callers waiting for a connection now.", labels=["pool"]
        )
        waits = CounterMetricFamily(
            "db_pool_waits", "Acquisitions that had to wait for a connection.", labels=["pool"]
        )
        timeouts = CounterMetricFamily(
            "db_pool_timeouts",
            "Acquisitions that gave up waiting (the pool timeout passed).",
            labels=["pool"],
        )
        for pool, statistics in database.pool_statistics().items():
            limit.add_metric([pool], statistics.limit)
            connections.add_metric([pool, "in_use"], statistics.in_use)
            connections.add_metric([pool, "idle"], statistics.idle)
            waiting.add_metric([pool], statistics.waiting)
            waits.add_metric([pool], statistics.waits)
            timeouts.add_metric([pool], statistics.timeouts)
        yield from (limit, connections, waiting, waits, timeouts)


class _EventsCollector(Collector):
    """The outbox's count from the last scrape, and each consumer's status."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        outbox_events = self._metrics.outbox_events
        if outbox_events is not None:
            yield GaugeMetricFamily(
                "events_outbox_events",
                f"Events the feed holds (counted up to {OUTBOX_COUNT_CAP}).",
                value=outbox_events,
            )
        consumers = self._metrics.consumers
        if not consumers:
            return
        lag_events = GaugeMetricFamily(
            "events_consumer_lag_events",
            "Events the feed held after the consumer's last page (its Events-Remaining).",
            labels=["consumer"],
        )
        lag_seconds = GaugeMetricFamily(
            "events_consumer_lag_seconds",
            "Age of the oldest event of the page being applied; 0 once caught up.",
            labels=["consumer"],
        )
        parked = GaugeMetricFamily(
            "events_consumer_parked", "Events parked after failing.", labels=["consumer"]
        )
        applied = CounterMetricFamily(
            "events_consumer_applied",
            "Events applied by this process since it started.",
            labels=["consumer"],
        )
        for name, status in consumers.items():
            lag_events.add_metric([name], status.events_behind)
            lag_seconds.add_metric([name], status.seconds_behind)
            parked.add_metric([name], status.parked)
            applied.add_metric([name], status.applied)
        yield from (lag_events, lag_seconds, parked, applied)


def metrics_of(app: FastAPI) -> Metrics:
    """The app's Metrics (see install_metrics)."""
    metrics: Metrics = app.state.metrics
    return metrics


def install_metrics(app: FastAPI, readiness: Readiness) -> Metrics:
    """Give the app its metrics (`app.state.metrics`); `readiness` is its /health/ready check."""
    app.state.metrics = Metrics(app, readiness)
    return metrics_of(app)


router = APIRouter(tags=["metrics"], dependencies=[METRICS])


# Counted in the request metrics like any route; left out of the OpenAPI documents, which
# describe what clients call.
@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Every metric of the process, in Prometheus's text format (the metrics credential)."""
    body = await metrics_of(request.app).exposition()
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
