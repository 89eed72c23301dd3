"""servicekit.otlp: the same OTLP request as the exporter's own encoder, and the exporter
around it sending it (to a real HTTP receiver)."""

import logging
from collections.abc import Iterator
from typing import Any, cast

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
    encode_spans as exporters_encoding,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from servicekit.otlp import SpanExporter, encode_spans
from servicekit.testing.otlp import OtlpReceiver


def _bytes(request: ExportTraceServiceRequest) -> bytes:
    return bytes(request.SerializeToString(deterministic=True))


def _spans(provider: TracerProvider) -> list[ReadableSpan]:
    """Spans of every shape a process makes, and some it does not, from `provider`'s
    tracers (one in-memory exporter per provider)."""
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("servicekit")
    other = provider.get_tracer(
        "other", "1.2", schema_url="https://opentelemetry.io/schemas/1.21.0", attributes={"a": 1}
    )
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "value"), ("other", "x")]),
    )
    caller = set_span_in_context(NonRecordingSpan(remote))
    server = tracer.start_span("GET", caller, SpanKind.SERVER)
    server.set_attributes(
        {
            "http.request.method": "GET",
            "url.path": "/users/1",
            "http.response.status_code": 200,
            "ratio": 0.25,
            "flag": True,
            "names": ("a", "b"),
            "numbers": [1, 2, 3],
            "fractions": [0.5, 1.5],
            "flags": [True, False],
            "none": [],
        }
    )
    server.add_event("retry", {"attempt": 2}, timestamp=123)
    server.add_event("plain")
    client = tracer.start_span(
        "GET",
        set_span_in_context(server),
        SpanKind.CLIENT,
        attributes={"url.full": "http://users:8000/users/1", "server.port": 8000},
        links=[Link(remote, {"why": "origin"}), Link(server.get_span_context())],
    )
    client.set_status(StatusCode.ERROR, "ConnectError: refused")
    client.end()
    try:
        raise ValueError("no")
    except ValueError as error:
        server.record_exception(error)
    server.set_status(StatusCode.OK)
    server.end()
    root = other.start_span("apply events", kind=SpanKind.CONSUMER)
    root.end()
    tracer.start_span("internal").end()
    for kind in (SpanKind.PRODUCER, SpanKind.INTERNAL):
        other.start_span("more", kind=kind).end()
    return list(memory.get_finished_spans())


def test_the_request_is_the_exporters_byte_for_byte() -> None:
    spans = _spans(TracerProvider(resource=Resource.create({"service.name": "users"})))
    assert len(spans) == 6
    assert _bytes(encode_spans(spans)) == _bytes(exporters_encoding(spans))
    assert _bytes(encode_spans(spans[:1])) == _bytes(exporters_encoding(spans[:1]))
    assert _bytes(encode_spans([])) == _bytes(exporters_encoding([]))


def test_spans_of_several_resources_and_scopes_are_grouped_as_the_exporter_groups_them() -> None:
    first = _spans(TracerProvider(resource=Resource.create({"service.name": "users"})))
    second = _spans(
        TracerProvider(resource=Resource({"service.name": "blog"}, "https://example.com/s"))
    )
    # A third provider with a resource equal to the first's, but another object.
    third = _spans(TracerProvider(resource=Resource.create({"service.name": "users"})))
    mixed = [span for trio in zip(first, second, third, strict=True) for span in trio]
    encoded = encode_spans(mixed)
    assert _bytes(encoded) == _bytes(exporters_encoding(mixed))
    assert len(encoded.resource_spans) == 2
    assert [len(group.scope_spans) for group in encoded.resource_spans] == [2, 2]


def test_dropped_attributes_events_and_links_are_counted() -> None:
    provider = TracerProvider(
        span_limits=SpanLimits(max_span_attributes=2, max_events=1, max_links=1)
    )
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    link = SpanContext(1, 2, is_remote=False)
    span = provider.get_tracer("t").start_span("limited", links=[Link(link), Link(link)])
    span.set_attributes({"a": 1, "b": 2, "c": 3})
    span.add_event("one")
    span.add_event("two")
    span.end()
    spans = list(memory.get_finished_spans())
    encoded = encode_spans(spans)
    assert encoded.resource_spans[0].scope_spans[0].spans[0].dropped_attributes_count == 1
    assert _bytes(encoded) == _bytes(exporters_encoding(spans))


def test_values_outside_what_spans_hold_are_encoded_or_left_out_as_the_exporter_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A span built by hand (not through a tracer, which cleans its attributes) may hold
    mappings, bytes, None, or a value nothing encodes: that attribute alone is left out."""
    span = ReadableSpan(
        "by hand",
        SpanContext(3, 4, is_remote=False),
        attributes={
            "mapping": cast("Any", {"k": [1, "x", None], 2: {}}),
            "bytes": b"\x00\x01",
            "missing": None,
            "bad": cast("Any", object()),
            "nested bad": [1, cast("Any", object())],
            "after": "kept",
        },
        events=[Event("e", {"bad": cast("Any", object()), "fine": 1}, timestamp=5)],
        start_time=10,
        end_time=20,
    )
    with caplog.at_level(logging.ERROR, logger="servicekit.otlp"):
        encoded = encode_spans([span])
    assert [record.getMessage().split(":")[0] for record in caplog.records] == [
        "Failed to encode key bad",
        "Failed to encode key nested bad",
        "Failed to encode key bad",
    ]
    assert _bytes(encoded) == _bytes(exporters_encoding([span]))
    keys = [pair.key for pair in encoded.resource_spans[0].scope_spans[0].spans[0].attributes]
    assert keys == ["mapping", "bytes", "missing", "after"]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver(0).serving() as receiver:
        yield receiver


def test_the_exporter_sends_the_request_and_says_when_it_was_refused(
    receiver: OtlpReceiver,
) -> None:
    spans = _spans(TracerProvider(resource=Resource.create({"service.name": "users"})))
    exporter = SpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    [(path, received)] = receiver.requests
    assert path == "/v1/traces"
    assert _bytes(received) == _bytes(exporters_encoding(spans))
    assert {span.name for span in receiver.spans} == {span.name for span in spans}
    receiver.status = 400  # not retried: a 4xx other than 429 is final
    assert exporter.export(spans) is SpanExportResult.FAILURE
    exporter.shutdown()  # type: ignore[no-untyped-call]
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert len(receiver.requests) == 2


def test_a_request_over_the_size_limit_is_dropped_unsent(receiver: OtlpReceiver) -> None:
    spans = _spans(TracerProvider())
    exporter = SpanExporter(endpoint=f"{receiver.endpoint}/v1/traces", max_request_size=64)
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert receiver.requests == []
