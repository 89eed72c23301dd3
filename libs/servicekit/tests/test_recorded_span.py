"""A recorded span (servicekit.tracing.start_span) is what the SDK's own span would be: the
same ids, sampling, attributes, limits, events, links, status and processor calls, whatever
is done to it, and unchanged once it has ended; so is a child started under it, and so are
both where the SDK's batch processor is the only span processor (and they skip the others)."""

import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    TraceState,
)
from opentelemetry.util.types import Attributes

from servicekit.tracing import RecordedSpan, _parents_decision, start_span

REMOTE_SAMPLED = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
REMOTE_NOT_SAMPLED = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0))
LOCAL_SAMPLED = SpanContext(
    0xABC, 0x123, is_remote=False, trace_flags=TraceFlags(3), trace_state=TraceState([("k", "v")])
)


class CountingIds(IdGenerator):
    """Ids from a counter, so that two tracers given their own draw the same ones."""

    def __init__(self) -> None:
        self._next = itertools.count(1)

    def generate_span_id(self) -> int:
        return next(self._next)

    def generate_trace_id(self) -> int:
        return 0x1234 << 64 | next(self._next)


class Tagging(Sampler):
    """A sampler that answers with attributes and trace state of its own."""

    def __init__(self, decision: Decision) -> None:
        self._decision = decision

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        tagged = {**(attributes or {}), "sampler": "tagging", "url.path": "/replaced"}
        return SamplingResult(self._decision, tagged, TraceState([("sampler", "tagging")]))

    def get_description(self) -> str:
        return "tagging"


class Seen(SpanProcessor):
    """What the span processors are given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any]] = []

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        parent = trace.get_current_span(parent_context).get_span_context()
        self.calls.append(("start", span.get_span_context(), parent))

    def on_end(self, span: ReadableSpan) -> None:
        self.calls.append(("end", span.get_span_context(), span.name))


class Pipeline:
    """A tracer provider with counted ids, its span processors and where its spans end up."""

    def __init__(self, sampler: Sampler, limits: SpanLimits | None = None) -> None:
        resource = Resource({"service.name": "users"})
        self.provider = TracerProvider(
            sampler=sampler, resource=resource, id_generator=CountingIds(), span_limits=limits
        )
        self.seen = Seen()
        self.exporter = InMemorySpanExporter()
        self.add_processors()
        self.tracer = self.provider.get_tracer("servicekit", "1.0")

    def add_processors(self) -> None:
        self.provider.add_span_processor(self.seen)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def finished(self) -> list[dict[str, Any]]:
        """What an exporter has been given, in order."""
        return [_as_exported(done) for done in self.exporter.get_finished_spans()]


class Batched(Pipeline):
    """A pipeline whose only span processor is the SDK's batch processor, as deployed."""

    def add_processors(self) -> None:
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))

    def finished(self) -> list[dict[str, Any]]:
        self.provider.force_flush()
        return super().finished()


@contextmanager
def pipelines(
    kind: type[Pipeline], sampler: Sampler, limits: SpanLimits | None
) -> Iterator[tuple[Pipeline, Pipeline]]:
    """Two pipelines of `kind` alike, one for the spans start_span starts and one for the
    SDK's, shut down after (a batch processor runs a thread)."""
    ours, sdks = kind(sampler, limits), kind(sampler, limits)
    try:
        yield ours, sdks
    finally:
        ours.provider.shutdown()
        sdks.provider.shutdown()


def _as_exported(span: ReadableSpan) -> dict[str, Any]:
    """All an exporter reads of a span, but its times."""
    return {
        "name": span.name,
        "context": span.context,
        "parent": span.parent,
        "kind": span.kind,
        "attributes": list((span.attributes or {}).items()),  # in order, as exported
        "dropped_attributes": span.dropped_attributes,
        "events": [
            (event.name, dict(event.attributes or {}), event.dropped_attributes)
            for event in span.events
        ],
        "dropped_events": span.dropped_events,
        "links": [
            (link.context, dict(link.attributes or {}), link.dropped_attributes)
            for link in span.links
        ],
        "dropped_links": span.dropped_links,
        "status": (span.status.status_code, span.status.description),
        "resource": span.resource.attributes,
        "scope": span.instrumentation_scope,
    }


def _exception() -> ValueError:
    try:
        raise ValueError("no such user")
    except ValueError as exc:
        return exc


class Opaque:
    """A value that is not an attribute value, but says what it is."""

    def __str__(self) -> str:
        return "opaque"


def _busy(span: trace.Span) -> None:
    """Everything instrumentation does to a span, valid or not."""
    span.set_attribute("http.response.status_code", 503)
    opaque: Any = Opaque()  # as an untyped caller passes it
    span.set_attributes({"tags": ["a", "b"], "ratio": 0.5, "ok": False, "opaque": opaque})
    span.set_attribute("", "an empty key")
    span.set_attribute("url.path", "/users/2")  # set again: now the newest
    span.set_attribute("db.statement", "SELECT email FROM users WHERE id = %s")
    span.add_event("retry", {"attempt": 2})
    span.record_exception(_exception())
    span.add_link(REMOTE_SAMPLED, {"link": "one"})
    span.add_link(SpanContext(0, 0, is_remote=False))  # not a valid link: left out
    span.update_name("GET /users/{user_id}")
    span.set_status(trace.StatusCode.ERROR, "ValueError: no such user")


def _started(
    start: Callable[..., trace.Span], pipeline: Pipeline, parent: SpanContext | None
) -> trace.Span:
    under = trace.set_span_in_context(NonRecordingSpan(parent)) if parent else Context()
    attributes = {"http.request.method": "GET", "url.path": "/users/1"}
    return start(
        pipeline.tracer, "GET", under, SpanKind.SERVER, dict(attributes), [Link(LOCAL_SAMPLED)]
    )


def _sdk(
    tracer: trace.Tracer,
    name: str,
    parent: Context,
    kind: SpanKind,
    attributes: Attributes,
    links: Sequence[Link],
) -> trace.Span:
    return tracer.start_span(name, parent, kind, attributes, links)


SAMPLERS = {
    "parent-based, always on": ParentBased(ALWAYS_ON),
    "parent-based, ratio": ParentBased(TraceIdRatioBased(0.5)),
    "parent-based, ratio, as OTEL_TRACES_SAMPLER names it": ParentBasedTraceIdRatio(0.5),
    "always on": ALWAYS_ON,
    "always off": ALWAYS_OFF,
    "its own attributes and trace state": Tagging(Decision.RECORD_AND_SAMPLE),
    "recorded, not sampled": ParentBased(Tagging(Decision.RECORD_ONLY)),
}
PARENTS = {
    "none": None,
    "remote, sampled": REMOTE_SAMPLED,
    "remote, not sampled": REMOTE_NOT_SAMPLED,
    "local, sampled, with trace state": LOCAL_SAMPLED,
}
LIMITS = {
    "default limits": None,
    "a limit on the number of attributes": SpanLimits(max_span_attributes=4),
    "no attributes": SpanLimits(max_span_attributes=0),
    "tight limits": SpanLimits(
        max_span_attributes=4,
        max_events=1,
        max_links=1,
        max_event_attributes=2,
        max_link_attributes=0,
        max_span_attribute_length=12,
        max_attribute_length=5,
    ),
}


PIPELINES = {"span processors": Pipeline, "the batch processor alone": Batched}
Test = TypeVar("Test", bound=Callable[..., None])


def across_pipelines_samplers_parents_and_limits(test: Test) -> Test:
    """`test` for every pipeline, sampler, parent and set of limits above."""
    for name, values in (
        ("kind", PIPELINES),
        ("limits", LIMITS),
        ("parent", PARENTS),
        ("sampler", SAMPLERS),
    ):
        test = pytest.mark.parametrize(name, values.values(), ids=values.keys())(test)
    return test


@across_pipelines_samplers_parents_and_limits
def test_a_span_is_exported_as_the_sdks_own_span_would_be(
    sampler: Sampler, parent: SpanContext | None, limits: SpanLimits | None, kind: type[Pipeline]
) -> None:
    with pipelines(kind, sampler, limits) as (ours, sdks):
        span = _started(start_span, ours, parent)
        sdk_span = _started(_sdk, sdks, parent)
        for each in (span, sdk_span):
            _busy(each)
            each.end()

        assert span.get_span_context() == sdk_span.get_span_context()
        assert span.is_recording() is sdk_span.is_recording() is False
        assert isinstance(span, RecordedSpan) is isinstance(sdk_span, SdkSpan)
        assert ours.finished() == sdks.finished()
        assert ours.seen.calls == sdks.seen.calls


def _family(
    start: Callable[..., trace.Span], pipeline: Pipeline, parent: SpanContext | None
) -> tuple[trace.Span, trace.Span]:
    """A request's span, and a child started under it while it is current (as a call or a
    statement starts one), each ended."""
    span = _started(start, pipeline, parent)
    token = context.attach(trace.set_span_in_context(span))
    try:
        child = start(
            pipeline.tracer,
            "SELECT users",
            None,
            SpanKind.CLIENT,
            {"db.system": "postgresql", "db.statement": "SELECT email FROM users"},
            (),
        )
        child.set_attribute("db.statement", "SELECT name FROM users")
        child.set_attributes({"net.peer.port": 5432, "net.peer.name": "db"})
        child.update_name("SELECT names")
        child.end()
    finally:
        context.detach(token)
    span.end()
    return span, child


@across_pipelines_samplers_parents_and_limits
def test_a_child_of_a_current_span_is_exported_as_the_sdks_own_child_would_be(
    sampler: Sampler, parent: SpanContext | None, limits: SpanLimits | None, kind: type[Pipeline]
) -> None:
    with pipelines(kind, sampler, limits) as (ours, sdks):
        span, child = _family(start_span, ours, parent)
        sdk_span, sdk_child = _family(_sdk, sdks, parent)

        assert span.get_span_context() == sdk_span.get_span_context()
        assert child.get_span_context() == sdk_child.get_span_context()
        assert isinstance(child, RecordedSpan) is isinstance(sdk_child, SdkSpan)
        assert ours.finished() == sdks.finished()
        assert ours.seen.calls == sdks.seen.calls


def test_a_span_queued_for_the_batch_processor_alone_skips_the_span_processors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    called: list[str] = []
    for method in ("on_start", "_on_ending", "on_end"):
        monkeypatch.setattr(
            BatchSpanProcessor, method, lambda *args, name=method, **kwargs: called.append(name)
        )
    with pipelines(Batched, ParentBased(ALWAYS_ON), None) as (ours, _):
        span, child = _family(start_span, ours, None)
        ours.provider.force_flush()

        assert called == []
        assert [done.context for done in ours.exporter.get_finished_spans()] == [
            child.get_span_context(),
            span.get_span_context(),
        ]


def test_a_span_is_recorded_by_a_recorded_span_only_where_it_records() -> None:
    recording = Pipeline(ParentBased(ALWAYS_ON))
    dropping = Pipeline(ALWAYS_OFF)

    assert isinstance(_started(start_span, recording, None), RecordedSpan)
    assert isinstance(_started(start_span, dropping, None), NonRecordingSpan)
    assert dropping.seen.calls == []


def test_an_ended_span_is_what_the_processors_were_given_and_stays_so() -> None:
    pipeline = Pipeline(ALWAYS_ON)
    span = _started(start_span, pipeline, None)
    span.set_attribute("http.response.status_code", 200)
    span.end()
    [exported] = pipeline.exporter.get_finished_spans()
    before = _as_exported(exported)
    ended_at = exported.end_time

    _busy(span)
    span.end()

    assert id(exported) == id(span)  # the span itself, not a copy
    assert _as_exported(exported) == before
    assert exported.end_time == ended_at
    assert [call[0] for call in pipeline.seen.calls] == ["start", "end"]


def test_spans_are_the_sdks_own_where_the_tracer_is_not_the_sdks_or_counts_its_spans(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(
        start_span(trace.NoOpTracer(), "GET", None, SpanKind.SERVER), NonRecordingSpan
    )

    # The SDK's own metrics of its spans count the spans its tracer starts.
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    counting = TracerProvider().get_tracer("servicekit")
    span = start_span(counting, "GET", None, SpanKind.SERVER)
    assert isinstance(span, SdkSpan)
    assert not isinstance(span, RecordedSpan)


class _OwnAnswers(ParentBased):
    """A parent-based sampler with answers of its own."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.DROP)


@pytest.mark.parametrize(
    "name", ["parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"]
)
@pytest.mark.parametrize(
    "parent", [REMOTE_SAMPLED, REMOTE_NOT_SAMPLED, LOCAL_SAMPLED], ids=["sampled", "not", "local"]
)
def test_a_child_is_decided_without_asking_the_samplers_the_environment_names(
    monkeypatch: pytest.MonkeyPatch, name: str, parent: SpanContext
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", name)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    sampler = TracerProvider().sampler
    under = trace.set_span_in_context(NonRecordingSpan(parent))
    answer = sampler.should_sample(under, parent.trace_id, "GET").decision

    assert _parents_decision(sampler, parent) is answer
    # Only a sampler that answers as ParentBased does is read without asking it.
    assert _parents_decision(_OwnAnswers(ALWAYS_ON), parent) is None
