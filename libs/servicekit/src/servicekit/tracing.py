"""Traces with OpenTelemetry, configured only by the standard `OTEL_*` environment variables.

Tracing is on when the environment names an exporter (`OTEL_TRACES_EXPORTER`: `otlp` or
`console`) or gives an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), and `OTEL_SDK_DISABLED` is not `true`. Then every
request, database statement and call to a service is a span, and W3C `traceparent` carries
the trace from the gateway to the services and through the event feed. The SDK reads the
rest itself: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, the sampler
(`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), the batch processor (`OTEL_BSP_*`), the
exporter's headers and timeouts (`OTEL_EXPORTER_OTLP_*`).

Otherwise nothing is instrumented: no middleware, no engine listener, no exporter thread, so
a process that does not trace pays one boolean test where a span would start.
"""

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import FastAPI
from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, suppress_instrumentation
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import Link, SpanKind
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

# Requests that are not worth a trace: probes and scrapes every few seconds, and the event
# feed's long polls, which look for news several times a second. Their database work is not
# traced either (it would otherwise start a trace of its own per statement).
# OTEL_PYTHON_FASTAPI_EXCLUDED_URLS or OTEL_PYTHON_EXCLUDED_URLS replace this list.
DEFAULT_EXCLUDED_URLS = "/health/,/metrics,/events"
_EXCLUDED_URLS_VARIABLES = ("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")
_TRACER_NAME = "servicekit"

_active = False


def exporters_requested(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The span exporters the environment asks for; none when tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = [
        name.strip().lower()
        for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")
        if name.strip()
    ]
    if named:
        return [name for name in named if name != "none"]
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return ["otlp"] if any(environ.get(variable) for variable in endpoints) else []


def _span_processor(exporter: str, environ: Mapping[str, str]) -> SpanProcessor:
    if exporter in ("otlp", "otlp_proto_http"):
        protocol = environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        )
        if protocol not in (None, "", "http/protobuf"):
            # gRPC would add grpcio, a large native dependency, for what HTTP does as well.
            raise ValueError(f"OTLP protocol {protocol!r} is not supported: use http/protobuf")
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return BatchSpanProcessor(OTLPSpanExporter())
    if exporter == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    raise ValueError(f"OTEL_TRACES_EXPORTER {exporter!r} is not supported: otlp, console or none")


def configure_tracing(service: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Start tracing as the environment asks, naming the process `service` unless
    `OTEL_SERVICE_NAME` names it; whether tracing is on."""
    global _active
    exporters = exporters_requested(environ)
    if not exporters:
        return _active
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: service}))
        provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_*
        for exporter in exporters:
            provider.add_span_processor(_span_processor(exporter, environ))
        trace.set_tracer_provider(provider)
    _active = True
    return True


def tracing_active() -> bool:
    """Whether this process traces."""
    return _active


def flush() -> None:
    """Send the spans still buffered (at shutdown: the batch processor sends on a timer)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()


def _excluded_paths() -> tuple[str, ...]:
    for variable in _EXCLUDED_URLS_VARIABLES:
        if variable in os.environ:
            value = os.environ[variable]
            break
    else:
        value = DEFAULT_EXCLUDED_URLS
    return tuple(path.strip() for path in value.split(",") if path.strip())


class _UntracedPaths:
    """Runs requests to excluded paths with instrumentation suppressed, so their database
    statements do not each start a trace of their own."""

    def __init__(self, app: ASGIApp, paths: tuple[str, ...]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.paths):
            with suppress_instrumentation():
                await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def instrument_app(app: FastAPI) -> None:
    """Trace each request to `app` as a server span named by its route (when tracing is on)."""
    if not _active:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    paths = _excluded_paths()
    app.add_middleware(_UntracedPaths, paths=paths)
    FastAPIInstrumentor.instrument_app(
        app,
        # The instrumentation matches these as regular expressions anywhere in the URL;
        # anchored after the host, they mean the same paths as _UntracedPaths.
        excluded_urls=",".join(f"^https?://[^/]+{path}" for path in paths),
        exclude_spans=["receive", "send"],
    )


def instrument_engine(engine: AsyncEngine) -> None:
    """A span for each statement `engine` runs (when tracing is on)."""
    if not _active:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import get_meter

    # The engine's own listeners, not SQLAlchemyInstrumentor: that one also patches
    # create_engine and Engine.connect for the whole process, adding a span per connect.
    connections = get_meter(_TRACER_NAME).create_up_down_counter("db.client.connections.usage")
    EngineTracer(trace.get_tracer(_TRACER_NAME), engine.sync_engine, connections)  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def statement_span(sql: str, connection_info: Any) -> Iterator[None]:
    """A client span for one statement sent to Postgres outside SQLAlchemy's execution,
    named and described as the engine's statements are."""
    if not is_instrumentation_enabled():
        yield
        return
    database = connection_info.dbname
    operation = sql.split(maxsplit=1)[0] if sql.strip() else "postgresql"
    attributes = {
        "db.system": "postgresql",
        "db.name": database,
        "db.statement": sql,
        "net.peer.name": connection_info.host,
        "net.peer.port": connection_info.port,
    }
    tracer = trace.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(
        f"{operation} {database}", kind=SpanKind.CLIENT, attributes=attributes
    ):
        yield


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, if this process traces and there is one."""
    if not _active:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Work in the background (polls, pruning) traced only where it says so itself."""
    if not _active:
        yield
        return
    with suppress_instrumentation():
        yield


@contextlib.contextmanager
def consumer_span(name: str, traceparents: list[str | None]) -> Iterator[None]:
    """A new trace for applying events, linked to the traces of the changes that produced
    them, with instrumentation on again inside (background work runs `untraced`)."""
    if not _active:
        yield
        return
    links = []
    for traceparent in traceparents:
        if traceparent:
            origin = trace.get_current_span(propagate.extract({"traceparent": traceparent}))
            if origin.get_span_context().is_valid:
                links.append(Link(origin.get_span_context()))
    tracer = trace.get_tracer(_TRACER_NAME)
    span = tracer.start_span(name, context=context.Context(), kind=SpanKind.CONSUMER, links=links)
    token = context.attach(trace.set_span_in_context(span, context.Context()))
    try:
        yield
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        context.detach(token)
        span.end()
