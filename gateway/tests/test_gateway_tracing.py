"""One trace across processes: the gateway, users and blog as real processes exporting their
spans over OTLP to a receiver in the test, as they would to a collector."""

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from servicekit.testing import (
    TEST_EVENTS_TOKEN,
    TEST_METRICS_TOKEN,
    ServiceProcess,
    TokenIssuer,
    free_port,
    poll,
    started,
)
from servicekit.testing.otlp import CLIENT, CONSUMER, SERVER, OtlpReceiver, ReceivedSpan

# Spans of requests are named by the method and the template of the route that answered.
DELETION = "DELETE /users/{user_id}"


@dataclass
class TracedSystem:
    gateway: httpx.Client
    receiver: OtlpReceiver
    gateway_log: Path
    services: Mapping[str, ServiceProcess]

    def log_lines(self, request_id: str) -> dict[str, list[dict[str, Any]]]:
        """The gateway's and users' log lines of one request, by process, once each process
        has written its access line (written after the answer is sent, so it may come later
        than the answer)."""
        logs = {"gateway": self.gateway_log, "users": self.services["users"].log_file}

        def read() -> dict[str, list[dict[str, Any]]]:
            return {
                process: [
                    line
                    for line in map(json.loads, filter(None, log.read_text().splitlines()))
                    if line.get("request_id") == request_id
                ]
                for process, log in logs.items()
                if log is not None
            }

        return poll(read, lambda lines: all(lines.values()), 10, f"the log lines of {request_id}")


@pytest.fixture(scope="module")
def traced(
    make_services: Callable[..., dict[str, ServiceProcess]],
    gateway_process: Callable[..., AbstractContextManager[int]],
    token_issuer: TokenIssuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TracedSystem]:
    with OtlpReceiver(free_port()).serving() as receiver:
        tracing = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "20",  # milliseconds: spans reach the test soon
        }
        processes = make_services("traced", tracing, names=("users", "blog"))
        processes["users"].log_file = tmp_path_factory.mktemp("users") / "stderr.log"
        with started(processes):
            log = tmp_path_factory.mktemp("gateway") / "stderr.log"
            users, blog = processes["users"].url, processes["blog"].url
            environment = {
                **tracing,
                "GATEWAY_ENVIRONMENT": "test",
                "GATEWAY_METRICS_TOKEN": TEST_METRICS_TOKEN,
                "GATEWAY_USERS_URL": users,
                "GATEWAY_BLOG_URL": blog,
                "GATEWAY_CATALOG_URL": f"http://127.0.0.1:{free_port()}",  # not needed
                "GATEWAY_AUTH_JWKS_URL": f"{users}/.well-known/jwks.json",
            }
            with (
                gateway_process(environment, log) as port,
                httpx.Client(
                    base_url=f"http://127.0.0.1:{port}", headers=token_issuer.admin_headers()
                ) as client,
            ):
                yield TracedSystem(client, receiver, log, processes)


def _server_span(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan | None:
    found = [s for s in spans if (s.service, s.kind, s.name) == (service, SERVER, name)]
    return found[-1] if found else None


def _ancestors(span: ReceivedSpan, trace: list[ReceivedSpan]) -> list[ReceivedSpan]:
    by_id = {s.span_id: s for s in trace}
    chain = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


def _sign_up_and_post(system: TracedSystem, name: str) -> int:
    body = {"email": f"{name}@example.com", "name": name, "password": "correct horse battery"}
    user = system.gateway.post("/users/", json=body).json()
    post = {"title": f"{name}'s", "content": "x"}
    assert system.gateway.post(f"/users/{user['id']}/posts", json=post).status_code == 201
    user_id: int = user["id"]
    return user_id


def test_a_composed_view_is_one_trace_across_the_gateway_the_services_and_their_databases(
    traced: TracedSystem,
) -> None:
    _sign_up_and_post(traced, "ada")

    answer = traced.gateway.get("/users-with-posts?limit=20&posts_per_user=5")
    spans = traced.receiver.wait_for(
        lambda spans: (
            (root := _server_span(spans, "gateway", "GET /users-with-posts")) is not None
            and {s.service for s in spans if s.trace_id == root.trace_id and s.kind == SERVER}
            >= {"gateway", "users", "blog"}
        )
    )
    root = _server_span(spans, "gateway", "GET /users-with-posts")
    assert root is not None
    trace = traced.receiver.trace(root.trace_id)

    assert answer.status_code == 200
    assert root.parent_id == ""  # the gateway started the trace
    for service in ("users", "blog"):
        server = [s for s in trace if s.service == service and s.kind == SERVER]
        assert len(server) == 1, f"{service}: {server}"
        # Called by the gateway: each service's server span is a child of a gateway call.
        caller = _ancestors(server[0], trace)[0]
        assert (caller.service, caller.kind) == ("gateway", CLIENT)
        # The service's own address and the path called, never the query it was sent.
        called = str(caller.attributes["url.full"])
        assert called.startswith(f"{traced.services[service].url}/"), called
        assert "?" not in called, called
        statements = [s for s in trace if s.service == service and "db.statement" in s.attributes]
        assert statements, f"{service} traced no database statement"
        for statement in statements:
            # Beneath the service's request, and one span per statement: never a statement's
            # span inside another's (two instrumentations of one statement nest that way).
            chain = _ancestors(statement, trace)
            assert server[0] in chain
            assert not any("db.statement" in parent.attributes for parent in chain)
            assert statement.attributes["db.system"] == "postgresql"


def test_every_log_line_of_a_traced_request_carries_its_trace_and_span_ids(
    traced: TracedSystem,
) -> None:
    answer = traced.gateway.get("/users/me")
    request_id = answer.headers["X-Request-ID"]
    spans = traced.receiver.wait_for(
        lambda spans: _server_span(spans, "gateway", "GET /users/me") is not None
    )
    root = _server_span(spans, "gateway", "GET /users/me")
    assert root is not None

    lines = [json.loads(line) for line in traced.gateway_log.read_text().splitlines() if line]
    access = [line for line in lines if line.get("request_id") == request_id]

    assert access, "no log line carries the request id"
    for line in access:
        assert line["trace_id"] == root.trace_id
        assert len(line["span_id"]) == 16


def test_the_event_of_a_change_carries_its_trace_and_the_consumer_links_to_it(
    traced: TracedSystem,
) -> None:
    user_id = _sign_up_and_post(traced, "bob")

    assert traced.gateway.delete(f"/users/{user_id}").status_code == 204
    spans = traced.receiver.wait_for(
        lambda spans: (
            (deletion := _server_span(spans, "gateway", DELETION)) is not None
            and any(
                s.kind == CONSUMER and deletion.trace_id in s.linked_trace_ids
                for s in spans
                if s.service == "blog"
            )
        )
    )
    deletion = _server_span(spans, "gateway", DELETION)
    assert deletion is not None
    feed = httpx.get(
        f"{traced.services['users'].url}/events",
        headers={"Authorization": f"Bearer {TEST_EVENTS_TOKEN}"},
    ).json()
    event = next(e for e in feed if e["type"] == "user.deleted" and e["subject"] == str(user_id))
    consumer = next(
        s for s in spans if s.kind == CONSUMER and deletion.trace_id in s.linked_trace_ids
    )

    assert event["traceparent"].split("-")[1] == deletion.trace_id
    # The consumer's work is a trace of its own, linked to the change, with its statements.
    assert consumer.trace_id != deletion.trace_id
    assert any(
        consumer in _ancestors(s, traced.receiver.trace(consumer.trace_id))
        for s in traced.receiver.trace(consumer.trace_id)
        if "db.statement" in s.attributes
    )


def test_the_callers_sampling_decision_holds_in_every_process_and_probes_are_not_traced(
    traced: TracedSystem,
) -> None:
    _sign_up_and_post(traced, "cy")
    not_sampled, sampled = "1" * 32, "3" * 32
    assert traced.gateway.get("/health/live").status_code == 200
    assert httpx.get(f"{traced.services['users'].url}/health/ready").status_code == 200
    assert traced.gateway.get("/metrics").status_code in (200, 401)
    dropped = traced.gateway.get(
        "/users-with-posts", headers={"traceparent": f"00-{not_sampled}-{'2' * 16}-00"}
    )
    kept = traced.gateway.get(
        "/users-with-posts", headers={"traceparent": f"00-{sampled}-{'4' * 16}-01"}
    )
    spans = traced.receiver.wait_for(
        lambda spans: (
            {s.service for s in spans if s.trace_id == sampled and s.kind == SERVER}
            >= {"gateway", "users", "blog"}
        )
    )

    assert (dropped.status_code, kept.status_code) == (200, 200)
    # Not sampled by the caller: no process records it, and the services were told so (not
    # told, they would have started traces of their own for the gateway's calls).
    assert not [s for s in spans if s.trace_id == not_sampled]
    composing = [s for s in spans if s.name in ("GET /users/", "GET /posts/")]
    assert composing
    assert all(s.parent_id for s in composing)
    root = _server_span(
        [s for s in spans if s.trace_id == sampled], "gateway", "GET /users-with-posts"
    )
    assert root is not None
    assert root.parent_id == "4" * 16
    # Probes and scrapes every few seconds are not worth a trace, nor is their database work.
    assert not [s for s in spans if "/health/" in s.name or s.name.endswith("/metrics")]
    lines = [json.loads(line) for line in traced.gateway_log.read_text().splitlines() if line]
    request_id = dropped.headers["X-Request-ID"]
    # The log lines of a request that is not sampled still carry its trace id.
    assert {line.get("trace_id") for line in lines if line.get("request_id") == request_id} == {
        not_sampled
    }


def test_a_request_its_caller_did_not_sample_runs_in_the_callers_context_in_every_process(
    traced: TracedSystem,
) -> None:
    trace_id, caller = "5" * 32, "6" * 16

    answer = traced.gateway.get("/users/", headers={"traceparent": f"00-{trace_id}-{caller}-00"})
    lines = traced.log_lines(answer.headers["X-Request-ID"])

    assert answer.status_code == 200
    # Neither process made a span of its own (it would record nothing): both logged, and the
    # gateway passed on, the caller's context as it came.
    assert lines["gateway"]
    assert lines["users"]
    for line in lines["gateway"] + lines["users"]:
        assert (line["trace_id"], line["span_id"]) == (trace_id, caller)


def test_a_traceparent_that_is_not_well_formed_starts_a_trace_of_its_own(
    traced: TracedSystem,
) -> None:
    # Upper-case hex is not W3C trace context: ignored, as if none had been sent.
    malformed = f"00-{'A' * 32}-{'6' * 16}-00"

    answer = traced.gateway.get("/users/", headers={"traceparent": malformed})
    [line, *_] = traced.log_lines(answer.headers["X-Request-ID"])["gateway"]

    def of_the_trace(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        return [s for s in spans if s.trace_id == line["trace_id"]]

    # Each process exports on its own: users' span may come first.
    spans = traced.receiver.wait_for(
        lambda spans: _server_span(of_the_trace(spans), "gateway", "GET /users/") is not None
    )
    root = _server_span(of_the_trace(spans), "gateway", "GET /users/")

    assert answer.status_code == 200
    assert line["trace_id"] != "a" * 32
    assert root is not None
    assert root.parent_id == ""
