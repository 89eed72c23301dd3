"""Spans sent over OTLP/HTTP: the OpenTelemetry exporter, with the spans encoded for less CPU.

The exporter's own encoder builds every span, attribute and value as a protobuf message of its
own and then copies each into its parent (keyword arguments to a message's constructor are
copied), and hashes the resource (a JSON dump of its attributes) once per span to group the
spans by resource. A traced request here makes two spans in each process, and their encoding
took more of a process's CPU than making them did. `encode_spans` builds the same request in
place, each field written once into the message that holds it; the bytes it serialises to are
the exporter's own, which a test compares span for span (test_otlp.py).

Everything else is the exporter's: the endpoint, headers, timeout, compression and
certificates from `OTEL_EXPORTER_OTLP_*`, the retries and the request size limit.
"""

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http._common import (
    RequestPayloadTooLargeError,
    _is_request_too_large,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, SpanFlags
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import SpanContext, SpanKind
from opentelemetry.util.types import Attributes

_logger = logging.getLogger(__name__)
# A resource's group in a request: its message, and its scopes' groups in order.
_Group = tuple[Resource, ResourceSpans, list[tuple[InstrumentationScope | None, ScopeSpans]]]

# By the kind's value: an enum member hashes (and reads `.value`) through Python code.
_KINDS = {
    SpanKind.INTERNAL._value_: Span.SpanKind.SPAN_KIND_INTERNAL,
    SpanKind.SERVER._value_: Span.SpanKind.SPAN_KIND_SERVER,
    SpanKind.CLIENT._value_: Span.SpanKind.SPAN_KIND_CLIENT,
    SpanKind.PRODUCER._value_: Span.SpanKind.SPAN_KIND_PRODUCER,
    SpanKind.CONSUMER._value_: Span.SpanKind.SPAN_KIND_CONSUMER,
}
_HAS_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_REMOTE = _HAS_IS_REMOTE | SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


def _flags(parent: SpanContext | None) -> int:
    """Whether the parent (or a link's span) is remote, as OTLP's span flags say it."""
    return _REMOTE if parent is not None and parent.is_remote else _HAS_IS_REMOTE


def _set_value(target: AnyValue, value: Any) -> None:
    """Write `value` into `target`, typed as the exporter types it (bool before int)."""
    kind = type(value)
    if kind is str:
        target.string_value = value
    elif kind is int:
        target.int_value = value
    elif value is None:
        target.SetInParent()  # present, and empty
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, Sequence):
        target.array_value.SetInParent()  # present when empty
        values = target.array_value.values
        for item in value:
            _set_value(values.add(), item)
    elif isinstance(value, Mapping):
        target.kvlist_value.SetInParent()
        pairs = target.kvlist_value.values
        for key, item in value.items():
            pair = pairs.add(key=str(key))
            _set_value(pair.value, item)
    else:
        raise TypeError(f"Invalid type {kind} of value {value}")


def _set_attributes(target: Any, attributes: Attributes) -> None:
    """Add `attributes` to the repeated KeyValue field `target`; one whose value cannot be
    encoded is logged and left out, as the exporter leaves it out."""
    if not attributes:
        return
    # Values as Any: they are told apart below by exact type, which the type checker does not
    # follow into the message's typed fields.
    items: Iterable[tuple[str, Any]] = attributes.items()
    for key, value in items:
        size = len(target)
        try:
            pair: KeyValue = target.add(key=key)
            # Most values are strings and integers: written here rather than by a call.
            kind = type(value)
            if kind is str:
                pair.value.string_value = value
            elif kind is int:
                pair.value.int_value = value
            else:
                _set_value(pair.value, value)
        except Exception as error:
            del target[size:]
            _logger.exception("Failed to encode key %s: %s", key, error)


def _set_span(target: Span, span: ReadableSpan) -> None:
    context = span.context
    target.trace_id = context.trace_id.to_bytes(16, "big")
    target.span_id = context.span_id.to_bytes(8, "big")
    if context.trace_state:
        state = context.trace_state.items()
        target.trace_state = ",".join(f"{key}={value}" for key, value in state)
    parent = span.parent
    if parent is not None:
        target.parent_span_id = parent.span_id.to_bytes(8, "big")
    target.name = span.name
    target.kind = _KINDS[span.kind._value_]
    if span.start_time is not None:
        target.start_time_unix_nano = span.start_time
    if span.end_time is not None:
        target.end_time_unix_nano = span.end_time
    _set_attributes(target.attributes, span.attributes)
    for event in span.events:
        encoded_event = target.events.add(name=event.name, time_unix_nano=event.timestamp)
        _set_attributes(encoded_event.attributes, event.attributes)
        encoded_event.dropped_attributes_count = event.dropped_attributes
    for link in span.links:
        encoded_link = target.links.add(
            trace_id=link.context.trace_id.to_bytes(16, "big"),
            span_id=link.context.span_id.to_bytes(8, "big"),
            flags=_flags(link.context),
        )
        _set_attributes(encoded_link.attributes, link.attributes)
        encoded_link.dropped_attributes_count = link.dropped_attributes
    status = span.status
    target.status.code = status.status_code._value_  # type: ignore[assignment]
    if status.description is not None:
        target.status.message = status.description
    # Zero, the default, is not written (and serialises the same).
    if dropped := span.dropped_attributes:
        target.dropped_attributes_count = dropped
    if dropped := span.dropped_events:
        target.dropped_events_count = dropped
    if dropped := span.dropped_links:
        target.dropped_links_count = dropped
    target.flags = _flags(parent)


def _set_scope(target: ScopeSpans, scope: InstrumentationScope | None) -> None:
    target.scope.SetInParent()
    if scope is None:
        return
    target.scope.name = scope.name
    if scope.version is not None:
        target.scope.version = scope.version
    _set_attributes(target.scope.attributes, scope.attributes)
    if scope.schema_url:
        target.schema_url = scope.schema_url


def encode_spans(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The OTLP request that carries `spans`: grouped by resource, then by instrumentation
    scope, each group in the order its first span came, as the exporter groups them."""
    request = ExportTraceServiceRequest()
    # A process's spans share one resource and a scope or two: each is looked up among the
    # few seen so far, by identity first, rather than hashed.
    resources: list[_Group] = []
    last: tuple[Resource, InstrumentationScope | None, ScopeSpans] | None = None
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope or None
        if last is not None and last[0] is resource and last[1] is scope:
            scope_spans = last[2]
        else:
            scope_spans = _scope_spans(request, resources, resource, scope)
            last = (resource, scope, scope_spans)
        _set_span(scope_spans.spans.add(), span)
    return request


def _scope_spans(
    request: ExportTraceServiceRequest,
    resources: list[_Group],
    resource: Resource,
    scope: InstrumentationScope | None,
) -> ScopeSpans:
    """The group of `resource` and `scope` in `request`, added if it is new."""
    group = next(
        (known for known in resources if known[0] is resource or known[0] == resource), None
    )
    if group is None:
        resource_spans = request.resource_spans.add()
        resource_spans.resource.SetInParent()
        _set_attributes(resource_spans.resource.attributes, resource.attributes)
        if resource.schema_url:
            resource_spans.schema_url = resource.schema_url
        group = (resource, resource_spans, [])
        resources.append(group)
    for known_scope, scope_spans in group[2]:
        if known_scope is scope or known_scope == scope:
            return scope_spans
    added: ScopeSpans = group[1].scope_spans.add()
    _set_scope(added, scope)
    group[2].append((scope, added))
    return added


class SpanExporter(OTLPSpanExporter):
    """OpenTelemetry's OTLP/HTTP span exporter, configured by the same `OTEL_EXPORTER_OTLP_*`
    variables, with its spans encoded by encode_spans."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        # As OTLPSpanExporter.export, but for the encoder.
        if self._shutdown:
            _logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as result:
            try:
                serialized = encode_spans(spans).SerializePartialToString()
            except Exception as error:
                _logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            if _is_request_too_large(serialized, self._max_request_size):
                _logger.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size "
                    "%d bytes.",
                    len(serialized),
                    self._max_request_size,
                )
                result.error = RequestPayloadTooLargeError(
                    f"Serialized span request size {len(serialized)} bytes exceeds "
                    f"max_request_size {self._max_request_size} bytes."
                )
                return SpanExportResult.FAILURE
            sent = self._client.export(serialized)
            if not sent.success:
                result.error = sent.error
                result.error_attrs = (
                    {HTTP_RESPONSE_STATUS_CODE: sent.status_code}
                    if sent.status_code is not None
                    else None
                )
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
