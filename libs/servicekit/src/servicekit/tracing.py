"""Traces with OpenTelemetry, configured only by the standard `OTEL_*` environment variables.

Tracing is on when the environment names an exporter (`OTEL_TRACES_EXPORTER`: `otlp` or
`console`) or gives an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), and `OTEL_SDK_DISABLED` is not `true`. Then every
request, database statement and call to a service is a span, and W3C `traceparent` carries
the trace from the gateway to the services and through the event feed. The SDK reads the
rest itself: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, the sampler
(`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), the batch processor (`OTEL_BSP_*`), the
exporter's headers and timeouts (`OTEL_EXPORTER_OTLP_*`).

Otherwise nothing is instrumented: no middleware, no engine listener (servicekit.database), no
exporter thread, so a process that does not trace pays one boolean test where a span would
start.
"""

import contextlib
import functools
import logging
import os
import random
import re
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from time import time_ns
from typing import Any, Final, NamedTuple, TypeGuard, cast

import httpx
from fastapi.telemetry import TelemetryConfig
from opentelemetry import context, propagate, trace
from opentelemetry.attributes import BoundedAttributes, _clean_attribute_value
from opentelemetry.baggage import _BAGGAGE_KEY
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import _RUNTIME_CONTEXT, _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.instrumentation.utils import (
    _SUPPRESS_INSTRUMENTATION_KEY_PLAIN,
    suppress_instrumentation,
)
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk._shared_internal import BatchProcessor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import (
    ReadableSpan,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import DEFAULT_TRACE_STATE, TraceState
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util import types
from starlette.types import Scope

# Requests that are not worth a trace: probes and scrapes every few seconds, and the event
# feed's long polls, which look for news several times a second. Their database work is not
# traced either (it would otherwise start a trace of its own per statement).
# OTEL_PYTHON_FASTAPI_EXCLUDED_URLS or OTEL_PYTHON_EXCLUDED_URLS replace this list.
DEFAULT_EXCLUDED_URLS = "/health/,/metrics,/events"
_EXCLUDED_URLS_VARIABLES = ("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")
_TRACER_NAME = "servicekit"
# FastAPI's own telemetry starts a span per request (and per dependency, endpoint and
# serialisation) whenever a tracer provider is set. Requests are traced by ServerSpans, which
# costs less per request, so FastAPI's is turned off: `FastAPI(telemetry=FASTAPI_TELEMETRY)`.
FASTAPI_TELEMETRY: Final[TelemetryConfig] = {"tracing": False, "metrics": False, "logs": False}

_active = False
# The SDK builds a new tracer on every get_tracer(): every span comes from the process's one.
_tracer: trace.Tracer | None = None
# The `traceparent` of the request being answered when its trace is not recorded, current in
# place of an OpenTelemetry context (ServerSpans): most requests under a ratio sampler are
# not recorded, and for them all a process needs of their context is what it logs and what
# it passes on, which this header says as it will be written.
_unrecorded: ContextVar[str | None] = ContextVar("unrecorded_traceparent", default=None)
# The trace id of a new trace whose sampler was asked before its span started (ServerSpans),
# for the span the SDK then starts to take (DecidedTraceIds).
_decided_trace_id: ContextVar[int | None] = ContextVar("decided_trace_id", default=None)

# The OpenTelemetry context, read, set and reset where the API's default runtime context
# keeps it (a context variable) rather than through the API, whose every look is three calls
# of Python: a recorded request looks at it a dozen times. Another runtime context
# (OTEL_PYTHON_CONTEXT) is used through the API.
_current_context: Callable[[], context.Context]
_attach: Callable[[context.Context], Token[context.Context]]
_detach: Callable[[Token[context.Context]], None]
if type(_RUNTIME_CONTEXT) is ContextVarsRuntimeContext:
    _current_context = _RUNTIME_CONTEXT._current_context.get
    _attach = _RUNTIME_CONTEXT._current_context.set
    _detach = _RUNTIME_CONTEXT._current_context.reset
else:  # pragma: no cover - only where OTEL_PYTHON_CONTEXT names another
    _current_context, _attach, _detach = context.get_current, context.attach, context.detach


def _instrumentation_enabled(current: context.Context) -> bool:
    """`is_instrumentation_enabled()` in the context `current`, already looked up."""
    return not (
        current.get(_SUPPRESS_INSTRUMENTATION_KEY)
        or current.get(_SUPPRESS_INSTRUMENTATION_KEY_PLAIN)
    )


def _current_span(current: context.Context) -> trace.Span:
    """`trace.get_current_span()` in the context `current`, already looked up."""
    span = current.get(_SPAN_KEY)
    return span if type(span) is RecordedSpan else trace.get_current_span(current)


class DecidedTraceIds(RandomIdGenerator):
    """The SDK's random ids, except that a new trace whose sampler was asked before its span
    started gets the trace id the sampler was asked about.

    Most new traces at the gateway are not recorded under a ratio sampler, and all such a
    trace needs is a `traceparent` to send on: asking the sampler first skips the SDK's
    span for it. A trace the sampler records gets its span from the SDK, with this id.
    """

    def generate_trace_id(self) -> int:
        decided = _decided_trace_id.get()
        return super().generate_trace_id() if decided is None else decided


def _process_tracer() -> trace.Tracer:
    global _tracer
    if _tracer is None:
        _tracer = trace.get_tracer(_TRACER_NAME)
    return _tracer


_logger = logging.getLogger(__name__)
# Attribute values kept as they are given: the SDK's cleaning returns them unchanged.
_PLAIN_VALUES: Final = frozenset({str, bool, int, float})
_UNSET: Final = Status(StatusCode.UNSET)


class RecordedSpan(SdkSpan):
    """A span the sampler records, recorded as the SDK's own `Span` records it, for less work.

    The SDK's span builds bounded containers for its attributes, events and links as it
    starts, cleans each attribute as it is set, and copies itself into a new `ReadableSpan`
    as it ends: for a recorded request, that was most of what tracing it cost beyond
    exporting it (docs/performance.md, "A recorded span"). Here:

    - attributes go into a dict, values of plain types (str, bool, int, float) as they are
      and others cleaned as the SDK cleans them, until the limit on their number
      (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, 128 by default) would drop one; from then on, and
      from the start under a limit on their length, they are the SDK's bounded attributes;
    - events and links get their bounded lists when the first comes;
    - the ended span itself goes to the span processors, rather than a copy: nothing
      changes a span once it has ended; where the SDK's batch processor is the only one,
      straight onto its queue (_batch_queue);
    - a span keeps its ids as numbers, for its children, log lines and `traceparent`
      headers to read without a call each (the SDK's `SpanContext` is a tuple read through
      properties).

    Status, events, exceptions and links and use as a context manager are the SDK's own
    methods. Made by `start_span`, never directly.
    """

    # Fields of the SDK's span that every recorded span starts with alike, read from here
    # until a span sets its own.
    _trace_config = None
    _record_exception = True
    _set_status_on_exception = True
    _record_end_metrics = None
    _status = _UNSET
    _events: Sequence[Any] = ()
    _end_time: int | None = None
    _dropped = 0  # attributes left out while they were kept in a dict
    _hex_ids: tuple[str, str] | None = None

    def __init__(
        self,
        tracer: SdkTracer,
        name: str,
        ids: tuple[int, int, TraceFlags, TraceState | None],
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, types.AnyValue],
        links: Sequence[Link],
    ) -> None:
        # The fields of the SDK's Span and ReadableSpan, as their constructors set them; the
        # SDK's constructor itself is the cost this class avoids.
        trace_id, span_id, flags, trace_state = ids
        self._ids = ids  # trace id, span id, flags and trace state (None: none)
        self._context = SpanContext(trace_id, span_id, False, flags, trace_state)
        self._name = name
        self._parent = parent
        self._kind = kind
        self._resource = tracer.resource
        self._instrumentation_info = tracer.instrumentation_info
        self._instrumentation_scope = tracer._instrumentation_scope
        self._sampler = tracer.sampler
        self._span_processor = tracer.span_processor
        self._limits = tracer._span_limits
        self._lock = threading.Lock()
        count, length = self._limits.max_span_attributes, self._limits.max_span_attribute_length
        self._attributes: dict[str, types.AnyValue] | BoundedAttributes = attributes
        if length is not None or (count is not None and len(attributes) > count):
            # Limits that change values, or already drop some: the SDK's bounded attributes.
            self._attributes = BoundedAttributes(count, attributes, False, length)
        self._links: Sequence[Link] = self._new_links(links) if links else ()
        self._start_time = time_ns()

    def hex_ids(self) -> tuple[str, str]:
        """The trace and span ids in hex, as log lines carry them: formatted once, for the
        several lines a recorded request writes."""
        if self._hex_ids is None:
            self._hex_ids = format(self._ids[0], "032x"), format(self._ids[1], "016x")
        return self._hex_ids

    def traceparent(self) -> str | None:
        """The W3C `traceparent` of this span, when it says all of its context: no trace
        state."""
        trace_id, span_id, flags, trace_state = self._ids
        return None if trace_state else _traceparent(trace_id, span_id, flags)

    def child(
        self,
        tracer: SdkTracer,
        name: str,
        kind: SpanKind,
        attributes: dict[str, types.AnyValue] | None,
    ) -> "RecordedSpan | None":
        """A child of this span, as start_span starts it under this span, when the sampler
        answers a child of a sampled local parent alike (`ParentBased`'s static samplers)
        and records it; None where only asking the sampler tells."""
        trace_id, _, flags, trace_state = self._ids
        if not flags & TraceFlags.SAMPLED or _local_child(tracer.sampler) is not _RECORDED:
            return None
        ids = (trace_id, tracer.id_generator.generate_span_id(), flags, trace_state)
        span = RecordedSpan(tracer, name, ids, self._context, kind, attributes or {}, ())
        _started_with_processors(span, tracer, None)
        return span

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        with self._lock:
            if self._end_time is not None:
                _logger.warning("Setting attribute on ended span.")
                return
            self._set(key, value)

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        with self._lock:
            if self._end_time is not None:
                _logger.warning("Setting attribute on ended span.")
                return
            kept = self._attributes
            for key, value in attributes.items():
                # New keys of plain values while there is room, as _set keeps them, without
                # a call each.
                if (
                    type(kept) is dict
                    and type(value) in _PLAIN_VALUES
                    and type(key) is str
                    and key
                    and key not in kept
                    and len(kept) != self._limits.max_span_attributes
                ):
                    kept[key] = value
                else:
                    self._set(key, value)
                    kept = self._attributes

    def _set(self, key: str, value: types.AnyValue) -> None:
        """Set one attribute as the SDK's bounded attributes set it: in a dict until the
        span's limit on their number would drop one, in the SDK's bounded attributes then."""
        attributes = self._attributes
        if not isinstance(attributes, dict):
            attributes[key] = value
            return
        if not key or not isinstance(key, str):
            _logger.warning("invalid key `%s`. must be non-empty string. Dropping key.", key)
            self._dropped += 1
            return
        if type(value) not in _PLAIN_VALUES:
            value = _clean_attribute_value(value, None)
        if key in attributes:
            del attributes[key]  # set again: now the newest, as the SDK keeps it
        elif len(attributes) == self._limits.max_span_attributes:
            # Full: from here on, the SDK's bounded attributes drop the oldest.
            self._attributes = BoundedAttributes(len(attributes), attributes, False)
            self._attributes[key] = value
            return
        attributes[key] = value

    def update_name(self, name: str) -> None:
        # As the SDK's, which checks the span has not ended through a wrapper: a call more.
        with self._lock:
            if self._end_time is None:
                self._name = name
                return
        _logger.warning("Tried calling %s on an ended span.", "update_name")

    # What was dropped, read as the SDK's span reads it but by exact type: its checks go
    # through the containers' abstract base classes, a call of Python code each.
    @property
    def dropped_attributes(self) -> int:
        attributes = self._attributes
        return self._dropped + (0 if isinstance(attributes, dict) else attributes.dropped)

    @property
    def dropped_events(self) -> int:
        return self._events.dropped if type(self._events) is BoundedList else 0

    @property
    def dropped_links(self) -> int:
        return self._links.dropped if type(self._links) is BoundedList else 0

    def _add_event(self, event: Any) -> None:
        with self._lock:
            self._events = self._appended(self._events, event, self._limits.max_events)

    def _add_link(self, link: Link) -> None:
        with self._lock:
            self._links = self._appended(self._links, link, self._limits.max_links)

    def _appended(self, items: Sequence[Any], item: Any, limit: int | None) -> Sequence[Any]:
        """`items` with `item` added, in the SDK's bounded list of `limit` made at the first;
        `items` as they are once the span has ended (called under the span's lock)."""
        if self._end_time is not None:
            _logger.warning("Tried adding %s to an ended span.", type(item).__name__)
            return items
        bounded = items if type(items) is BoundedList else BoundedList.from_seq(limit, items)
        bounded.append(item)
        return bounded

    def end(self, end_time: int | None = None) -> None:
        with self._lock:
            if self._end_time is not None:
                _logger.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
        if not isinstance(self._attributes, dict):  # not an ABC's check, on every span
            self._attributes._immutable = True  # as the SDK's span leaves them
        queue = _batch_queue(self._span_processor)
        if queue is None:
            self._span_processor._on_ending(self)
            self._span_processor.on_end(self)
        elif self._ids[2] & TraceFlags.SAMPLED:  # what the batch processor exports
            queue.emit(self)


def _batch_queue(processor: SpanProcessor) -> BatchProcessor[ReadableSpan] | None:
    """The queue of the SDK's batch span processor when it is the tracer's only span
    processor (as configure_tracing sets it up): it does nothing as a span starts or is
    ending, and queues a sampled span as it ends, so a recorded span goes straight there."""
    if type(processor) is SynchronousMultiSpanProcessor:
        processors = processor._span_processors
        if len(processors) == 1 and type(processors[0]) is BatchSpanProcessor:
            return processors[0]._batch_processor
    return None


def _started_with_processors(
    span: RecordedSpan, tracer: SdkTracer, parent: context.Context | None
) -> None:
    """Tell the span processors `span` has started, unless only the batch processor would
    be told, which does nothing then."""
    if _batch_queue(tracer.span_processor) is None:
        tracer.span_processor.on_start(span, parent_context=parent)


_RECORDED: Final = Decision.RECORD_AND_SAMPLE
# A sampled span of this process, as a child's parent, for what samplers answer for it.
_LOCAL_SAMPLED: Final = SpanContext(1, 1, is_remote=False, trace_flags=TraceFlags(1))
# Each sampler's answer for a sampled local parent: samplers are made once, with their tracer
# provider, and a process has one or two.
_LOCAL_CHILD_DECISIONS: dict[Sampler, Decision | None] = {}


def _local_child(sampler: Sampler) -> Decision | None:
    """The decision of `sampler` for any child of a sampled span of this process, when it
    answers them all alike (_parents_decision); None when only asking it tells."""
    try:
        return _LOCAL_CHILD_DECISIONS[sampler]
    except KeyError:
        decision = _LOCAL_CHILD_DECISIONS[sampler] = _parents_decision(sampler, _LOCAL_SAMPLED)
        return decision
    except TypeError:  # a sampler that cannot be a key: left to start_span's general path
        return None


def _records_itself(tracer: trace.Tracer) -> TypeGuard[SdkTracer]:
    """Whether spans of `tracer` may be RecordedSpans: an SDK tracer, enabled, that does not
    count its spans in the SDK's own metrics (which RecordedSpan does not feed)."""
    return (
        type(tracer) is SdkTracer
        and tracer._is_enabled()
        and type(tracer._tracer_metrics) is NoOpTracerMetrics
    )


def _parents_decision(sampler: Sampler, parent: SpanContext | None) -> Decision | None:
    """The decision of `ParentBased` for a child of `parent` when it leaves the child to a
    static sampler (as it does by default), which answers every span alike; None when only
    asking the sampler tells.

    The samplers `OTEL_TRACES_SAMPLER` names (`parentbased_traceidratio` and the others) are
    subclasses of `ParentBased` that only set it up: one that answers as it answers is read
    as it is."""
    if parent is None or not _answers_as_parent_based(type(sampler)):
        return None
    sampler = cast("ParentBased", sampler)  # by its type, without an ABC's isinstance
    sampled = parent.trace_flags.sampled
    if parent.is_remote:
        follow = sampler._remote_parent_sampled if sampled else sampler._remote_parent_not_sampled
    else:
        follow = sampler._local_parent_sampled if sampled else sampler._local_parent_not_sampled
    return follow._decision if type(follow) is StaticSampler else None


@functools.cache
def _answers_as_parent_based(kind: type[Sampler]) -> bool:
    """Whether samplers of `kind` are `ParentBased` and answer as it does."""
    return issubclass(kind, ParentBased) and kind.should_sample is ParentBased.should_sample


def start_span(
    tracer: trace.Tracer,
    name: str,
    parent: context.Context | None,
    kind: SpanKind,
    attributes: dict[str, types.AnyValue] | None = None,
    links: Sequence[Link] = (),
    *,
    decided: Decision | None = None,
) -> trace.Span:
    """`tracer.start_span(name, parent, kind, attributes, links)`, as the SDK starts it (ids,
    sampler, span processors), with a RecordedSpan where the sampler records.

    `attributes` (of plain values: str, bool, int, float) becomes the span's: the caller
    hands it over. `decided` is the sampler's answer for a new trace when it was asked
    before the span started (ServerSpans): it answers by the trace id alone, with the
    attributes as given and no trace state."""
    if not _records_itself(tracer):
        return tracer.start_span(name, parent, kind, attributes, links)
    if parent is None and not links:
        # Most spans start under a recorded span of this process: their decision and ids
        # are read from it.
        current = _current_context().get(_SPAN_KEY)
        if type(current) is RecordedSpan and current._end_time is None:
            child = current.child(tracer, name, kind, attributes)
            if child is not None:
                return child
    parent_span: SpanContext | None = trace.get_current_span(parent).get_span_context()
    ids = tracer.id_generator
    if parent_span is not None and parent_span.is_valid:
        trace_id = parent_span.trace_id
        random_id = parent_span.trace_flags.random_trace_id
    else:
        parent_span = None
        trace_id = ids.generate_trace_id()
        random_id = ids.is_trace_id_random()
    decision = decided if parent_span is None else _parents_decision(tracer.sampler, parent_span)
    given: Mapping[str, types.AnyValue] | None
    trace_state: TraceState | None
    if decision is not None:
        # What the sampler would answer: the decision, the attributes as given and the
        # parent's trace state.
        given = attributes
        trace_state = parent_span.trace_state if parent_span is not None else None
    else:
        sampled = tracer.sampler.should_sample(parent, trace_id, name, kind, attributes, links)
        decision, given, trace_state = sampled.decision, sampled.attributes, sampled.trace_state
    flags = TraceFlags.SAMPLED if decision is Decision.RECORD_AND_SAMPLE else TraceFlags.DEFAULT
    if random_id:
        flags |= TraceFlags.RANDOM_TRACE_ID
    if decision is Decision.DROP:
        return NonRecordingSpan(
            SpanContext(trace_id, ids.generate_span_id(), False, TraceFlags(flags), trace_state)
        )
    if trace_state is not None and (trace_state is DEFAULT_TRACE_STATE or not trace_state):
        trace_state = None  # none at all, as the span keeps it
    span_ids = (trace_id, ids.generate_span_id(), TraceFlags(flags), trace_state)
    if attributes is not None and (given is attributes or given == attributes):
        span = RecordedSpan(tracer, name, span_ids, parent_span, kind, attributes, links)
    else:  # the sampler's own attributes
        span = RecordedSpan(tracer, name, span_ids, parent_span, kind, {}, links)
        if given:
            span.set_attributes(given)
    _started_with_processors(span, tracer, parent)
    return span


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
        from servicekit.otlp import SpanExporter

        return BatchSpanProcessor(SpanExporter())
    if exporter == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    raise ValueError(f"OTEL_TRACES_EXPORTER {exporter!r} is not supported: otlp, console or none")


def configure_tracing(service: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Start tracing as the environment asks, naming the process `service` unless
    `OTEL_SERVICE_NAME` names it; whether tracing is on."""
    global _active, _tracer
    exporters = exporters_requested(environ)
    if not exporters:
        return _active
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: service}))
        # The sampler comes from OTEL_TRACES_*.
        provider = TracerProvider(resource=resource, id_generator=DecidedTraceIds())
        for exporter in exporters:
            provider.add_span_processor(_span_processor(exporter, environ))
        trace.set_tracer_provider(provider)
    _tracer = None
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


def _unsampled_child(parent: trace.Span) -> bool:
    """Whether a span started now would belong to a trace that is not recorded: it would
    cost its attributes and ids and be dropped, and what it propagates is the parent's."""
    return not parent.is_recording() and parent.get_span_context().is_valid


def _w3c_propagation() -> bool:
    """Whether the process propagates W3C trace context (with or without W3C baggage) alone,
    as it does unless OTEL_PROPAGATORS names others: then `traceparent` says all of a trace."""
    textmap = propagate.get_global_textmap()
    propagators = textmap._propagators if isinstance(textmap, CompositePropagator) else [textmap]
    kinds = {type(propagator) for propagator in propagators}
    return TraceContextTextMapPropagator in kinds and kinds <= {
        TraceContextTextMapPropagator,
        W3CBaggagePropagator,
    }


def drops_unsampled_callers(provider: trace.TracerProvider) -> bool:
    """Whether the provider's sampler records nothing of a trace its caller did not sample,
    as every `parentbased_*` sampler does by default."""
    sampler = getattr(provider, "sampler", None)
    if not isinstance(sampler, ParentBased):
        return False
    parent = NonRecordingSpan(SpanContext(1, 1, is_remote=True, trace_flags=TraceFlags(0)))
    decision = sampler.should_sample(trace.set_span_in_context(parent), 1, "probe").decision
    return decision is Decision.DROP


# The bits of a trace id that the ratio sampler compares with its bound.
_TRACE_ID_LIMIT: Final = TraceIdRatioBased.TRACE_ID_LIMIT
_SPAN_ID_BITS: Final = (1 << 64) - 1


class Deciding(NamedTuple):
    """How new traces of a tracer are decided before their spans start (_deciding_sampler)."""

    bound: int  # below which a trace id's lower 64 bits make the trace recorded
    ids: IdGenerator  # the tracer's
    decision: Decision  # the sampler's answer for a trace it records


def _deciding_sampler(tracer: trace.Tracer) -> Deciding | None:
    """When a new trace of `tracer` can be decided before its span starts: the bound below
    which a trace id's lower 64 bits make it recorded, the tracer's ids, and what the sampler
    answers for a trace it records.

    That is when the ids take a decided trace id (DecidedTraceIds) and the sampler decides a
    new trace by its trace id alone, so that asking it again when the span starts gives the
    same answer: `TraceIdRatioBased`, or a static sampler, alone or as `ParentBased`'s root.
    Comparing with the ratio sampler's own bound, as it compares, spares every request the
    sampler's answer, which is made of a dozen calls and objects."""
    sampler, ids = getattr(tracer, "sampler", None), getattr(tracer, "id_generator", None)
    if not isinstance(sampler, Sampler) or not isinstance(ids, DecidedTraceIds):
        return None
    root = getattr(sampler, "_root", None) if isinstance(sampler, ParentBased) else sampler
    if type(root) is TraceIdRatioBased:
        return Deciding(root.bound, ids, Decision.RECORD_AND_SAMPLE)
    if type(root) is StaticSampler:
        # The same answer for every trace id: asked once.
        decision = root.should_sample(None, 1, "probe").decision
        bound = 0 if decision is Decision.DROP else _TRACE_ID_LIMIT + 1
        return Deciding(bound, ids, decision)
    return None


_TRACEPARENT = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
# A well-formed version 00 `traceparent` whose caller did not sample (flags with bit 0 clear).
_UNSAMPLED_TRACEPARENT = re.compile(
    rb"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f][02468ace]"
)


def _caller(traceparent: bytes) -> SpanContext | None:
    """The caller's span context when `traceparent` is a well-formed version 00 header, as
    the W3C propagator reads it; None for anything else, left to the propagator."""
    match = _TRACEPARENT.fullmatch(traceparent)
    if match is None:
        return None
    trace_hex, span_hex, flags_hex = match.groups()
    trace_id, span_id, flags = int(trace_hex, 16), int(span_hex, 16), int(flags_hex, 16)
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))


class ServerSpans:
    """A server span for each request, started from the caller's `traceparent`.

    The OpenTelemetry API used directly, rather than the ASGI/FastAPI instrumentation: that
    one finds the route by matching the request a second time, builds its attributes and
    records its own metrics for every request, sampled or not, which made one traced request
    cost a third more. Here a request whose trace is not recorded costs its `traceparent` in
    a context variable, and the name (`GET /users/{user_id}`) comes from the route the router
    matched, once the request is answered.
    """

    def __init__(self) -> None:
        self._tracer = _process_tracer()
        self._excluded = _excluded_paths()
        self._fields = {name.encode() for name in propagate.get_global_textmap().fields}
        # A request in a trace its caller did not sample would get a span that records
        # nothing; with W3C propagation and a sampler that follows its callers, the caller's
        # `traceparent` is made current instead.
        self._w3c = _w3c_propagation()
        self._follow_unsampled = self._w3c and drops_unsampled_callers(trace.get_tracer_provider())
        self._deciding = _deciding_sampler(self._tracer) if self._w3c else None
        # The flags of a new trace that is not recorded, as the SDK would write them, written
        # as its `traceparent` ends.
        flags = (
            TraceFlags.RANDOM_TRACE_ID
            if self._deciding is not None and self._deciding.ids.is_trace_id_random()
            else TraceFlags.DEFAULT
        )
        self._unrecorded_flags = f"-{flags:02x}"
        token = context.attach(context.Context())
        try:
            with suppress_instrumentation():
                self._suppressed = context.get_current()
        finally:
            context.detach(token)

    def start(self, scope: Scope) -> tuple[trace.Span | None, Token[Any]]:
        """The request's span, made current, and the token that restores the context; no
        span for an excluded path, whose work runs with instrumentation suppressed, nor for
        a request whose trace is not recorded, whose `traceparent` is made current instead."""
        if scope["path"].startswith(self._excluded):
            return None, _attach(self._suppressed)
        headers = [(name, value) for name, value in scope["headers"] if name in self._fields]
        caller = None
        if self._w3c and len(headers) == 1 and headers[0][0] == b"traceparent":
            traceparent = headers[0][1]
            if self._follow_unsampled and _UNSAMPLED_TRACEPARENT.fullmatch(traceparent):
                # Not sampled by the caller: nothing here is recorded, and what goes on is
                # the caller's context as it came.
                return None, _unrecorded.set(traceparent.decode("ascii"))
            # Read here, at less cost than through the propagator, as it would read it.
            caller = _caller(traceparent)
        if caller is not None:
            parent = trace.set_span_in_context(NonRecordingSpan(caller), context.Context())
        elif headers:
            carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
            parent = propagate.extract(carrier)
        elif self._deciding is not None:
            return self._start_trace(scope, self._deciding)
        else:
            parent = context.Context()
        span = start_span(
            self._tracer, scope["method"], parent, SpanKind.SERVER, _request_attributes(scope)
        )
        return self._started(span, parent, headers)

    def _start_trace(
        self, scope: Scope, deciding: Deciding
    ) -> tuple[trace.Span | None, Token[Any]]:
        """A new trace, decided first (_deciding_sampler): one the sampler does not
        record goes on as its `traceparent` alone, as the SDK would have written it; one it
        records gets its span from the SDK, under the trace id that was decided."""
        # The trace id and a span id in one draw from `random`, which the SDK's random ids
        # (DecidedTraceIds) draw from too, and in hex by one conversion: most new traces
        # are not recorded, and all they need is their `traceparent`.
        while True:
            ids = random.getrandbits(192)
            trace_id = ids >> 64
            if trace_id and ids & _SPAN_ID_BITS:  # zero is not an id
                break
        if trace_id & _TRACE_ID_LIMIT >= deciding.bound:
            return None, _unrecorded.set(_written_traceparent(ids, self._unrecorded_flags))
        parent = context.Context()
        decided = _decided_trace_id.set(trace_id)
        try:
            span = start_span(
                self._tracer,
                scope["method"],
                parent,
                SpanKind.SERVER,
                _request_attributes(scope),
                decided=deciding.decision,
            )
        finally:
            _decided_trace_id.reset(decided)
        return self._started(span, parent, [])

    def _started(
        self, span: trace.Span, parent: context.Context, headers: list[tuple[bytes, bytes]]
    ) -> tuple[trace.Span | None, Token[Any]]:
        """What `start` returns for `span`, started under `parent`."""
        if not span.is_recording():
            traceparent = self._unrecorded_root(span, headers)
            if traceparent is not None:
                return None, _unrecorded.set(traceparent)
        # As trace.set_span_in_context(span, parent) makes it.
        return span, _attach(context.Context({**parent, _SPAN_KEY: span}))

    def _unrecorded_root(self, span: trace.Span, headers: list[tuple[bytes, bytes]]) -> str | None:
        """The `traceparent` that says all of a new trace the sampler did not record, when
        the request brought no context and propagation is W3C's alone."""
        if headers or not self._w3c:
            return None
        return _plain_traceparent(span)

    @staticmethod
    def end(
        span: trace.Span | None,
        token: Token[Any],
        route: str | None,
        status: int,
        error: BaseException | None = None,
    ) -> None:
        """End what `start` began: `route` is the template of the route that answered, which
        only a recorded span uses."""
        if token.var is _unrecorded:
            _unrecorded.reset(token)
        else:
            _detach(token)
        if span is None:
            return
        if span.is_recording():
            attributes: dict[str, str | int] = {"http.response.status_code": status}
            if route is not None:
                span.update_name(f"{span.name} {route}")  # type: ignore[attr-defined]
                attributes["http.route"] = route
            span.set_attributes(attributes)
            if error is not None:
                span.record_exception(error)
            if status >= 500:
                span.set_status(trace.StatusCode.ERROR)
        span.end()


def _request_attributes(scope: Scope) -> dict[str, types.AnyValue]:
    """A request's attributes as its server span starts."""
    client = scope.get("client")
    attributes: dict[str, types.AnyValue] = {
        "http.request.method": scope["method"],
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
    }
    if client:
        attributes["client.address"] = client[0]
    return attributes


class TracedTransport(httpx.AsyncBaseTransport):
    """`transport` with a client span for each call, whose `traceparent` goes with it.

    The OpenTelemetry API used directly, as for ServerSpans: httpx's instrumentation
    normalises every header and URL of every call, recorded or not. Inside a trace that is
    not sampled, no span is made: the request carries its parent's context, which says so.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport
        self._tracer = _process_tracer()
        self._w3c = _w3c_propagation()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        unrecorded = _unrecorded.get()
        if unrecorded is not None:
            request.headers["traceparent"] = unrecorded
            return await self._transport.handle_async_request(request)
        current = _current_context()
        parent = _current_span(current)
        if _unsampled_child(parent) or not _instrumentation_enabled(current):
            self._inject(request, parent, current)
            return await self._transport.handle_async_request(request)
        url = request.url
        attributes: dict[str, types.AnyValue] = {
            "http.request.method": request.method,
            # The URL as sent, without its query or any user info (either may hold what a
            # trace must not), put together rather than parsed again.
            "url.full": _without_query(url),
            "server.address": url.host,
            "server.port": url.port or (443 if url.scheme == "https" else 80),
        }
        # Nothing runs beneath a call in this process: its span is never made current.
        span = start_span(self._tracer, request.method, None, SpanKind.CLIENT, attributes)
        try:
            self._inject(request, span, current)
            response = await self._transport.handle_async_request(request)
            if span.is_recording():
                span.set_attribute("http.response.status_code", response.status_code)
                if response.status_code >= 400:
                    span.set_status(trace.StatusCode.ERROR)
            return response
        except Exception as exc:
            _failed(span, exc)
            raise
        finally:
            span.end()

    def _inject(self, request: httpx.Request, span: trace.Span, current: context.Context) -> None:
        """The propagation headers of `span`, in the context `current`, on `request`: with no
        baggage or trace state, the `traceparent` the W3C propagator would write, written
        here at a fraction of its cost."""
        if self._w3c and not current.get(_BAGGAGE_KEY):
            traceparent = _plain_traceparent(span)
            if traceparent is not None:
                request.headers["traceparent"] = traceparent
                return
        propagate.inject(request.headers, trace.set_span_in_context(span, current))

    async def aclose(self) -> None:
        await self._transport.aclose()


def _plain_traceparent(span: trace.Span) -> str | None:
    """The W3C `traceparent` of `span` when it says all of the span's context (a valid span
    without trace state), as the propagator would write it; None otherwise."""
    if type(span) is RecordedSpan:
        return span.traceparent()
    ids = span.get_span_context()
    if not ids.is_valid or ids.trace_state:
        return None
    return _traceparent(ids.trace_id, ids.span_id, ids.trace_flags)


def _traceparent(trace_id: int, span_id: int, flags: int) -> str:
    """The W3C `traceparent` of a span, as the propagator writes it for a span without trace
    state."""
    return _written_traceparent(trace_id << 64 | span_id, f"-{flags:02x}")


def _written_traceparent(ids: int, flags: str) -> str:
    """`traceparent` from the trace id and span id as one number (trace id in the upper
    bits) and the flags as written (`-01`): one hex conversion rather than a format each."""
    hexed = ids.to_bytes(24, "big").hex()
    return f"00-{hexed[:32]}-{hexed[32:]}{flags}"


def _without_query(url: httpx.URL) -> str:
    path = url.raw_path.partition(b"?")[0].decode("ascii")
    return f"{url.scheme}://{url.netloc.decode('ascii')}{path}"


def traced_transport(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
    """`transport`, with a client span for each call when this process traces."""
    return TracedTransport(transport) if _active else transport


@dataclass(frozen=True)
class DatabaseAddress:
    """Which database a statement is sent to, as its spans describe it."""

    system: str
    name: str | None
    host: str | None
    port: int | None

    @functools.cached_property
    def where(self) -> dict[str, types.AnyValue]:
        """The attributes of a statement's span that say where it went, after its text."""
        attributes: dict[str, types.AnyValue] = {}
        for key, value in (
            ("db.name", self.name),
            ("net.peer.name", self.host),
            ("net.peer.port", self.port),
        ):
            if value is not None:
                attributes[key] = value
        return attributes


# Where each psycopg connection goes, asked of libpq once (three properties of Python code
# each time otherwise): a connection's database, host and port never change.
_DRIVER_ADDRESSES: "weakref.WeakKeyDictionary[Any, DatabaseAddress]" = weakref.WeakKeyDictionary()


def _statement_traced() -> bool:
    """Whether a statement run now gets a span: instrumentation is on and the trace it is in,
    if any, is recorded."""
    if _unrecorded.get() is not None:
        return False
    current = _current_context()
    return _instrumentation_enabled(current) and not _unsampled_child(_current_span(current))


def start_statement_span(sql: str, database: DatabaseAddress) -> trace.Span | None:
    """A client span for one statement, named `<first word> <database>` as OpenTelemetry's
    database conventions name it; none where it would not be recorded."""
    return _statement_span(sql, database) if _statement_traced() else None


def _statement_span(sql: str, database: DatabaseAddress) -> trace.Span:
    words = sql.split(maxsplit=1)
    verb = words[0] if words else ""
    if verb and database.name:
        name = f"{verb} {database.name}"
    else:
        name = verb or database.name or database.system
    attributes = {"db.system": database.system, "db.statement": sql, **database.where}
    # Nothing runs beneath a statement: its span is never made current.
    return start_span(_process_tracer(), name, None, SpanKind.CLIENT, attributes)


def end_statement_span(span: trace.Span, error: BaseException | None = None) -> None:
    """End a span of start_statement_span, marked failed if the statement raised `error`."""
    if error is not None:
        _failed(span, error)
    span.end()


def start_driver_statement_span(sql: str, driver: Any) -> trace.Span | None:
    """A client span for one statement sent to Postgres on a psycopg connection (`driver`),
    outside SQLAlchemy's execution, named and described as the engine's statements are;
    none where it would not be recorded."""
    if not _statement_traced():  # before asking libpq where the connection goes
        return None
    database = _DRIVER_ADDRESSES.get(driver)
    if database is None:
        info = driver.info
        database = DatabaseAddress("postgresql", info.dbname, info.host, info.port)
        _DRIVER_ADDRESSES[driver] = database
    return _statement_span(sql, database)


def _failed(span: trace.Span, error: BaseException) -> None:
    """Mark `span` failed by `error`, as OpenTelemetry's use_span marks it."""
    if span.is_recording():
        span.record_exception(error)
        span.set_status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")


def log_ids() -> tuple[str, str] | None:
    """The trace and span ids (hex) that log lines written now carry, if this process traces
    and the work is in a trace."""
    if not _active:
        return None
    unrecorded = _unrecorded.get()
    if unrecorded is not None:
        return unrecorded[3:35], unrecorded[36:52]
    span = _current_span(_current_context())
    if type(span) is RecordedSpan:
        return span.hex_ids()
    ids = span.get_span_context()
    if not ids.is_valid:
        return None
    return format(ids.trace_id, "032x"), format(ids.span_id, "016x")


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, if this process traces and there is one."""
    if not _active:
        return None
    unrecorded = _unrecorded.get()
    if unrecorded is not None:
        return unrecorded
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
    span = start_span(_process_tracer(), name, context.Context(), SpanKind.CONSUMER, links=links)
    token = context.attach(trace.set_span_in_context(span, context.Context()))
    outside = _unrecorded.set(None)  # the new trace is current, not a request's
    try:
        yield
    except BaseException as exc:
        _failed(span, exc)
        raise
    finally:
        _unrecorded.reset(outside)
        context.detach(token)
        span.end()
