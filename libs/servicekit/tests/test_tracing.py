"""Which environments turn tracing on (only the standard OTEL_* variables decide), and what
the trace context of a request that is not sampled costs and carries."""

import random
from collections.abc import Sequence
from types import SimpleNamespace

import httpx
import pytest
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.instrumentation.utils import (
    _SUPPRESS_INSTRUMENTATION_KEY_PLAIN,
    is_instrumentation_enabled,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.util.types import Attributes
from starlette.types import Scope

import servicekit.tracing as tracing_module
from servicekit.tracing import (
    _UNSAMPLED_TRACEPARENT,
    DatabaseAddress,
    DecidedTraceIds,
    RecordedSpan,
    ServerSpans,
    TracedTransport,
    _caller,
    _decided_trace_id,
    _deciding_sampler,
    _without_query,
    configure_tracing,
    current_traceparent,
    drops_unsampled_callers,
    end_statement_span,
    exporters_requested,
    log_ids,
    start_driver_statement_span,
    start_span,
    start_statement_span,
)

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}


async def _sent() -> httpx.Request:
    """The request a traced client sends for a call made now."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=TracedTransport(httpx.MockTransport(answer))) as client:
        await client.get("http://users/users/1")
    return sent[0]


@pytest.mark.parametrize(
    ("environment", "exporters"),
    [
        ({}, []),
        (ENDPOINT, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, []),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, []),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "false"}, ["otlp"]),
    ],
)
def test_tracing_is_on_only_when_the_environment_names_an_exporter_or_an_endpoint(
    environment: dict[str, str], exporters: list[str]
) -> None:
    assert exporters_requested(environment) == exporters


def test_nothing_configured_leaves_tracing_off() -> None:
    assert configure_tracing("users", {}) is False


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "'zipkin' is not supported"),
        ({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "'grpc' is not supported"),
    ],
)
def test_an_exporter_the_process_cannot_run_stops_it_at_start_with_the_reason(
    environment: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        configure_tracing("users", environment)


@pytest.mark.parametrize(
    ("sampler", "drops"),
    [
        (ParentBased(ALWAYS_ON), True),
        (ParentBased(TraceIdRatioBased(0.1)), True),
        (ALWAYS_ON, False),
        (ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON), False),
    ],
)
def test_requests_skip_their_span_only_under_a_sampler_that_drops_what_callers_did_not_sample(
    sampler: Sampler, drops: bool
) -> None:
    assert drops_unsampled_callers(TracerProvider(sampler=sampler)) is drops


def _unsampled(trace_state: TraceState | None = None) -> NonRecordingSpan:
    return NonRecordingSpan(
        SpanContext(
            0x5B8EFFF798038103D269B633813FC60C,
            0xEEE19B7EC3C1B174,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.RANDOM_TRACE_ID),
            trace_state=trace_state,
        )
    )


@pytest.mark.parametrize(
    ("span", "items"),
    [
        (_unsampled(), {}),
        (_unsampled(TraceState([("vendor", "value")])), {}),
        (_unsampled(), {"tenant": "a"}),
    ],
    ids=["plain", "trace-state", "baggage"],
)
async def test_a_call_in_a_trace_not_sampled_carries_the_headers_the_propagators_write(
    span: NonRecordingSpan, items: dict[str, str]
) -> None:
    current = trace.set_span_in_context(span)
    for name, value in items.items():
        current = baggage.set_baggage(name, value, current)
    token = context.attach(current)
    try:
        sent = await _sent()
        expected: dict[str, str] = {}
        propagate.inject(expected)
    finally:
        context.detach(token)

    assert expected["traceparent"] == "00-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174-02"
    assert {name: sent.headers.get(name) for name in expected} == expected


TRACE_ID, SPAN_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


@pytest.mark.parametrize(
    ("traceparent", "read_here"),
    [
        (f"00-{TRACE_ID}-{SPAN_ID}-01", True),
        (f"00-{TRACE_ID}-{SPAN_ID}-00", True),
        (f"00-{TRACE_ID}-{SPAN_ID}-03", True),
        (f"00-{TRACE_ID.upper()}-{SPAN_ID}-01", False),
        (f"00-{'0' * 32}-{SPAN_ID}-01", False),
        (f"00-{TRACE_ID}-{'0' * 16}-01", False),
        (f"ff-{TRACE_ID}-{SPAN_ID}-01", False),
        (f"01-{TRACE_ID}-{SPAN_ID}-01-extra", False),
        (f"00-{TRACE_ID}-{SPAN_ID}-01-extra", False),
        (f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01", False),
        ("", False),
    ],
)
def test_a_traceparent_read_without_the_propagator_reads_as_the_propagator_reads_it(
    traceparent: str, read_here: bool
) -> None:
    caller = _caller(traceparent.encode())
    extracted = trace.get_current_span(propagate.extract({"traceparent": traceparent}))

    assert (caller is not None) is read_here
    if caller is not None:  # anything else is left to the propagator
        assert caller == extracted.get_span_context()


@pytest.mark.parametrize(
    "traceparent",
    [
        f"00-{TRACE_ID}-{SPAN_ID}-00",
        f"00-{TRACE_ID}-{SPAN_ID}-02",
        f"00-{TRACE_ID}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{SPAN_ID}-03",
        f"00-{TRACE_ID}-{SPAN_ID}-0A",
        f"00-{TRACE_ID.upper()}-{SPAN_ID}-00",
        f"00-{'0' * 32}-{SPAN_ID}-00",
        f"00-{TRACE_ID}-{'0' * 16}-00",
        f"ff-{TRACE_ID}-{SPAN_ID}-00",
        f"00-{TRACE_ID}-{SPAN_ID}-00-extra",
        f"00-{TRACE_ID[:-1]}-{SPAN_ID}-00",
    ],
)
def test_a_caller_is_taken_not_to_have_sampled_exactly_when_the_propagator_reads_so(
    traceparent: str,
) -> None:
    extracted = trace.get_current_span(propagate.extract({"traceparent": traceparent}))
    caller = extracted.get_span_context()

    unsampled = caller.is_valid and not caller.trace_flags.sampled
    assert bool(_UNSAMPLED_TRACEPARENT.fullmatch(traceparent.encode())) is unsampled


@pytest.fixture
def tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process traces (as configure_tracing would leave it), with nothing exported."""
    monkeypatch.setattr(tracing_module, "_active", True)


def _request(*headers: tuple[str, str]) -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": "/users/1",
        "scheme": "http",
        "client": ("127.0.0.1", 50000),
        "headers": [(name.encode(), value.encode()) for name, value in headers],
    }


async def _sent_traceparent() -> str | None:
    traceparent: str | None = (await _sent()).headers.get("traceparent")
    return traceparent


POSTGRES = DatabaseAddress("postgresql", "users", "127.0.0.1", 5432)


@pytest.mark.usefixtures("tracing")
async def test_a_request_its_caller_did_not_sample_runs_in_the_callers_context() -> None:
    traceparent = f"00-{TRACE_ID}-{SPAN_ID}-00"
    spans = ServerSpans()
    spans._follow_unsampled = True  # as under a parentbased_* sampler

    span, token = spans.start(_request(("traceparent", traceparent)))
    try:
        assert span is None
        assert log_ids() == (TRACE_ID, SPAN_ID)
        assert await _sent_traceparent() == traceparent
        assert current_traceparent() == traceparent
        assert start_statement_span("SELECT 1", POSTGRES) is None
    finally:
        ServerSpans.end(span, token, "/users/{user_id}", 200)

    assert log_ids() is None
    assert current_traceparent() is None


@pytest.mark.usefixtures("tracing")
async def test_a_new_trace_the_sampler_does_not_record_goes_on_as_not_sampled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0)))
    monkeypatch.setattr(tracing_module, "_tracer", provider.get_tracer("test"))
    spans = ServerSpans()

    span, token = spans.start(_request())
    try:
        ids = log_ids()
        sent = await _sent_traceparent()
        assert span is None
        assert ids is not None
        trace_id, span_id = ids
        assert int(trace_id, 16)
        assert int(span_id, 16)
        assert sent is not None
        extracted = trace.get_current_span(propagate.extract({"traceparent": sent}))
        assert extracted.get_span_context().trace_id == int(trace_id, 16)
        assert extracted.get_span_context().span_id == int(span_id, 16)
        assert not extracted.get_span_context().trace_flags.sampled
        assert start_statement_span("SELECT 1", POSTGRES) is None
    finally:
        ServerSpans.end(span, token, "/users/{user_id}", 200)

    assert log_ids() is None


@pytest.mark.usefixtures("tracing")
async def test_a_new_trace_is_decided_before_its_span_starts_and_recorded_under_that_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sampler = ParentBased(TraceIdRatioBased(0.5))
    ids = DecidedTraceIds()
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, id_generator=ids)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing_module, "_tracer", provider.get_tracer("test"))
    spans = ServerSpans()
    unrecorded: list[str] = []

    for _ in range(64):
        span, token = spans.start(_request())
        try:
            if span is None:
                sent = await _sent_traceparent()
                assert sent is not None
                unrecorded.append(sent)
                assert log_ids() == (sent[3:35], sent[36:52])
        finally:
            ServerSpans.end(span, token, "/users/{user_id}", 200)
        assert _decided_trace_id.get() is None

    recorded = exporter.get_finished_spans()
    assert recorded
    assert unrecorded
    assert len(recorded) + len(unrecorded) == 64
    for finished in recorded:
        assert finished.context is not None
        assert finished.parent is None
        decision = sampler.should_sample(None, finished.context.trace_id, "GET").decision
        assert decision is Decision.RECORD_AND_SAMPLE
    random_flag = TraceFlags.RANDOM_TRACE_ID if ids.is_trace_id_random() else 0
    assert len({traceparent[3:35] for traceparent in unrecorded}) == len(unrecorded)
    assert len({traceparent[36:52] for traceparent in unrecorded}) == len(unrecorded)
    for traceparent in unrecorded:
        extracted = trace.get_current_span(propagate.extract({"traceparent": traceparent}))
        context_sent = extracted.get_span_context()
        assert context_sent.is_valid
        assert context_sent.trace_flags == random_flag  # not sampled, as the SDK writes it
        decision = sampler.should_sample(None, context_sent.trace_id, "GET").decision
        assert decision is Decision.DROP
    # Outside a request's decision, the ids are the SDK's own random ones.
    assert ids.generate_trace_id() != ids.generate_trace_id()


@pytest.mark.usefixtures("tracing")
@pytest.mark.parametrize(
    "sampler",
    [
        ParentBased(TraceIdRatioBased(1.0)),
        TraceIdRatioBased(1.0),
        ParentBased(ALWAYS_ON),
        ALWAYS_ON,
        StaticSampler(Decision.RECORD_ONLY),
    ],
)
def test_a_new_trace_decided_first_starts_as_its_sampler_answers_without_asking_it_again(
    monkeypatch: pytest.MonkeyPatch, sampler: Sampler
) -> None:
    provider = TracerProvider(sampler=sampler, id_generator=DecidedTraceIds())
    monkeypatch.setattr(tracing_module, "_tracer", provider.get_tracer("test"))
    spans = ServerSpans()
    root = getattr(sampler, "_root", sampler)
    answers = type(root).should_sample
    asked: list[int] = []

    def should_sample(self: Sampler, parent: object, trace_id: int, *args: object) -> object:
        asked.append(trace_id)
        return answers(self, parent, trace_id, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(type(root), "should_sample", should_sample)
    span, token = spans.start(_request())
    ServerSpans.end(span, token, "/users/{user_id}", 200)
    monkeypatch.undo()

    assert asked == []
    assert span is not None
    ids = span.get_span_context()
    answer = sampler.should_sample(None, ids.trace_id, "GET")
    assert answer.decision is not Decision.DROP
    assert ids.trace_flags.sampled is (answer.decision is Decision.RECORD_AND_SAMPLE)
    # A new trace's trace state: empty.
    assert not ids.trace_state
    assert not answer.trace_state


@pytest.mark.usefixtures("tracing")
def test_log_lines_carry_the_ids_of_the_span_current_when_they_are_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = TracerProvider(sampler=ALWAYS_ON)
    monkeypatch.setattr(tracing_module, "_tracer", provider.get_tracer("test"))
    spans = ServerSpans()
    span, token = spans.start(_request())
    assert span is not None
    try:
        ids = span.get_span_context()
        written = (format(ids.trace_id, "032x"), format(ids.span_id, "016x"))
        assert log_ids() == log_ids() == written
        inner = provider.get_tracer("test").start_span("inner")
        with trace.use_span(inner, end_on_exit=True):
            inner_ids = inner.get_span_context()
            assert log_ids() == (written[0], format(inner_ids.span_id, "016x"))
        assert log_ids() == written
    finally:
        ServerSpans.end(span, token, "/users/{user_id}", 200)
    assert log_ids() is None


class _CoinToss(Sampler):
    """A sampler whose decision does not follow from the trace id alone."""

    def should_sample(
        self,
        parent_context: context.Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        return SamplingResult(
            Decision.DROP if random.random() < 0.5 else Decision.RECORD_AND_SAMPLE
        )

    def get_description(self) -> str:
        return "coin toss"


@pytest.mark.parametrize(
    ("sampler", "ids", "decides"),
    [
        (ParentBased(TraceIdRatioBased(0.1)), DecidedTraceIds(), True),
        (TraceIdRatioBased(0.1), DecidedTraceIds(), True),
        (ParentBased(ALWAYS_ON), DecidedTraceIds(), True),
        (ALWAYS_OFF, DecidedTraceIds(), True),
        (ParentBased(_CoinToss()), DecidedTraceIds(), False),
        (_CoinToss(), DecidedTraceIds(), False),
        (ParentBased(TraceIdRatioBased(0.1)), RandomIdGenerator(), False),
    ],
)
def test_a_new_trace_is_decided_first_only_where_asking_again_gives_the_same_answer(
    sampler: Sampler, ids: RandomIdGenerator, decides: bool
) -> None:
    tracer = TracerProvider(sampler=sampler, id_generator=ids).get_tracer("test")

    assert (_deciding_sampler(tracer) is not None) is decides


@pytest.mark.parametrize(
    "sampler",
    [
        ParentBased(TraceIdRatioBased(0.1)),
        TraceIdRatioBased(0.5),
        TraceIdRatioBased(1.0),
        TraceIdRatioBased(0.0),
        ParentBased(ALWAYS_ON),
        ParentBased(ALWAYS_OFF),
        ALWAYS_ON,
        ALWAYS_OFF,
    ],
)
def test_a_new_trace_decided_first_gets_the_answer_its_sampler_gives(sampler: Sampler) -> None:
    tracer = TracerProvider(sampler=sampler, id_generator=DecidedTraceIds()).get_tracer("test")
    deciding = _deciding_sampler(tracer)
    assert deciding is not None
    bound = deciding.bound
    limit = TraceIdRatioBased.TRACE_ID_LIMIT
    # Random ids, and those at the edges of what the ratio sampler compares.
    trace_ids = [random.getrandbits(128) | 1 for _ in range(2_000)]
    trace_ids += [1, limit, limit + 1, (1 << 128) - 1, (5 << 64) | 1]
    if TraceIdRatioBased in {type(sampler), type(getattr(sampler, "_root", None))}:
        trace_ids += [max(1, bound - 1), bound, bound + 1]

    for trace_id in trace_ids:
        recorded = sampler.should_sample(None, trace_id, "GET").decision is not Decision.DROP
        assert (trace_id & limit < bound) is recorded


def test_a_calls_url_in_its_span_is_as_sent_without_its_query_or_user_info() -> None:
    url = httpx.URL("http://reader:secret@users:8001/tags/caf%C3%A9/posts?token=abc")

    assert _without_query(url) == "http://users:8001/tags/caf%C3%A9/posts"


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """Every span this process's tracer starts, recorded and kept here once it ends."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing_module, "_tracer", provider.get_tracer("test"))
    return exporter


@pytest.mark.usefixtures("tracing")
async def test_a_call_that_fails_ends_its_span_marked_failed_with_the_error(
    recorded: InMemorySpanExporter,
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=TracedTransport(httpx.MockTransport(refuse))) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://users:8001/users/1?token=abc")

    [span] = recorded.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["url.full"] == "http://users:8001/users/1"
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description == "ConnectError: connection refused"
    assert [event.name for event in span.events] == ["exception"]


@pytest.mark.usefixtures("tracing")
def test_a_statement_sent_to_the_driver_is_a_span_that_says_where_it_went_and_how_it_ended(
    recorded: InMemorySpanExporter,
) -> None:
    class Driver:
        info = SimpleNamespace(dbname="users", host="127.0.0.1", port=5432)

    span = start_driver_statement_span("SELECT email FROM users", Driver())
    assert span is not None
    end_statement_span(span, RuntimeError("canceling statement due to statement timeout"))

    [finished] = recorded.get_finished_spans()
    assert finished.name == "SELECT users"
    assert dict(finished.attributes or {}) == {
        "db.system": "postgresql",
        "db.statement": "SELECT email FROM users",
        "db.name": "users",
        "net.peer.name": "127.0.0.1",
        "net.peer.port": 5432,
    }
    assert finished.status.status_code is trace.StatusCode.ERROR
    assert [event.name for event in finished.events] == ["exception"]


def _contexts() -> dict[str, context.Context]:
    tracer = TracerProvider().get_tracer("test")
    sdk_span = tracer.start_span("GET")
    recorded = start_span(tracer, "GET", context.Context(), trace.SpanKind.SERVER)
    assert type(recorded) is RecordedSpan
    return {
        "empty": context.Context(),
        "suppressed": context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True),
        "suppressed by the plain key": context.set_value(_SUPPRESS_INSTRUMENTATION_KEY_PLAIN, True),
        "a span not recorded": trace.set_span_in_context(_unsampled()),
        "the SDK's recorded span": trace.set_span_in_context(sdk_span),
        "a RecordedSpan": trace.set_span_in_context(recorded),
        "something else as the span": context.set_value(_SPAN_KEY, "not a span"),
        "baggage": baggage.set_baggage("tenant", "a"),
    }


CONTEXTS = _contexts()


@pytest.mark.parametrize("current", CONTEXTS.values(), ids=CONTEXTS.keys())
def test_the_context_read_without_the_api_is_what_the_api_reads(current: context.Context) -> None:
    token = context.attach(current)
    try:
        read = tracing_module._current_context()
        assert read is context.get_current()
        assert tracing_module._instrumentation_enabled(read) is is_instrumentation_enabled()
        assert tracing_module._current_span(read) is trace.get_current_span()
    finally:
        context.detach(token)


@pytest.mark.usefixtures("tracing")
@pytest.mark.parametrize("items", [{}, {"tenant": "a"}], ids=["alone", "with baggage"])
async def test_a_call_under_a_recorded_span_carries_its_own_span_as_the_parent(
    recorded: InMemorySpanExporter, items: dict[str, str]
) -> None:
    span, token = ServerSpans().start(_request())
    assert span is not None
    current = context.get_current()
    for name, value in items.items():
        current = baggage.set_baggage(name, value, current)
    inner = context.attach(current)
    try:
        sent = await _sent()
    finally:
        context.detach(inner)
        ServerSpans.end(span, token, "/users/{user_id}", 200)

    call, server = recorded.get_finished_spans()
    assert call.parent == server.context
    assert call.context is not None
    assert sent.headers["traceparent"] == (
        f"00-{call.context.trace_id:032x}-{call.context.span_id:016x}"
        f"-{call.context.trace_flags:02x}"
    )
    assert sent.headers.get("baggage") == (",".join(f"{k}={v}" for k, v in items.items()) or None)
