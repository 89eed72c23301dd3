"""Request ids and structured logs: one JSON line per request, the request id in every line
(and, when the process traces, the trace and span ids)."""

import logging
import re
import sys
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import pydantic_core
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.errors import unexpected_error
from servicekit.metrics import UNMATCHED, RequestMetrics, route_template
from servicekit.tracing import ServerSpans, log_ids, tracing_active

REQUEST_ID_HEADER = "X-Request-ID"
# Ids from clients are echoed into logs and headers, so only a safe, bounded alphabet is kept.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
access_logger = logging.getLogger("access")

_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "taskName",
    "request_id",
    "trace_id",
    "span_id",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}
_handler: logging.Handler | None = None


class JsonFormatter(logging.Formatter):
    """Formats records as one JSON object per line, with any `extra` fields and the request id."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        trace_id = getattr(record, "trace_id", None)
        if trace_id is not None:
            entry["trace_id"] = trace_id
            entry["span_id"] = getattr(record, "span_id", None)
        entry.update(
            (key, value) for key, value in record.__dict__.items() if key not in _RECORD_ATTRIBUTES
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # pydantic-core writes a line in a third of the stdlib encoder's time (one per request).
        return pydantic_core.to_json(entry, fallback=str).decode()


def _stamp_request_id(
    factory: Callable[..., logging.LogRecord],
) -> Callable[..., logging.LogRecord]:
    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.request_id = request_id_var.get()
        ids = log_ids()
        if ids is not None:
            record.trace_id, record.span_id = ids
        return record

    make_record.stamps_request_id = True  # type: ignore[attr-defined]
    return make_record


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record, uvicorn's included, to stderr as JSON lines with the request id."""
    global _handler
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "stamps_request_id", False):
        logging.setLogRecordFactory(_stamp_request_id(factory))
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(JsonFormatter(service))
    root.addHandler(_handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Requests are logged once, by RequestContextMiddleware, with their id; the HTTP clients'
    # own line per outgoing request would double the gateway's log (and its cost).
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))


def _request_id_from(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Takes or makes the request id, returns it, and logs one access line per request.

    It also answers HEAD wherever GET is served: GET's status and headers, and no body. Every
    general-purpose server supports HEAD (RFC 9110, 9.3.2), but FastAPI registers a GET route
    for GET alone, so HEAD would be 405. The app routes and answers the GET it mirrors; the
    body is dropped here rather than trusting every ASGI server to drop it, and the access
    line says HEAD. Done here rather than in a middleware of its own, which would add one more
    layer to every request. An exception that nothing handled becomes the 500 of the shared
    error model, `{"detail": "internal server error"}`. With `metrics`, each request is also
    counted there, by the template of the route that served it (servicekit.metrics). When
    the process traces, each request is a server span (servicekit.tracing), current from
    before the request is routed until after its access line is written.
    """

    def __init__(self, app: ASGIApp, metrics: RequestMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.spans = ServerSpans() if tracing_active() else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id_from(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        head = scope["method"] == "HEAD"
        responded = False
        # The scope the router fills in, with the route it matched.
        routed = {**scope, "method": "GET"} if head else scope
        error: Exception | None = None
        if self.metrics is not None:
            self.metrics.in_flight += 1
        if self.spans is not None:
            span, span_token = self.spans.start(scope)

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status = message["status"]
                responded = True
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            elif head:
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app(routed, receive, send_with_request_id)
        except Exception as exc:
            # Answered here, inside the request's context, rather than by Starlette's outermost
            # handler: the 500 carries the request id like any answer, is logged once with it,
            # and the connection stays open.
            error = exc
            if responded:
                raise
            await unexpected_error(exc)(scope, receive, send_with_request_id)
        finally:
            duration = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.in_flight -= 1
                self.metrics.observe(routed, scope["method"], status, duration)
            access_logger.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(duration * 1000, 2),
                    "client": scope["client"][0] if scope.get("client") else None,
                },
            )
            if self.spans is not None:
                route = None  # named only in a span that is recorded
                if span is not None and span.is_recording():
                    template = route_template(routed)
                    route = None if template == UNMATCHED else template
                self.spans.end(span, span_token, route, status, error)
            request_id_var.reset(token)
