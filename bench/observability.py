"""Scenario 11: what metrics and tracing cost, through the gateway.

Four copies of the gateway in front of users and blog, each copy with its own processes and
the same databases, differ only in their observability: no request metrics and no tracing (`plain`),
metrics with tracing off (`metrics`, as deployed by default), metrics and 10% of traces
sampled (`sampled`), and metrics and every trace (`traced`). Spans go over OTLP to a sink in
this process that answers and discards them, as a collector would accept them.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SINK_PORT = 18099
_TRACED = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{SINK_PORT}",
    # The gateway decides, the services follow its decision (parentbased_*).
    "OTEL_TRACES_SAMPLER": "parentbased_always_on",
}


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    environment: dict[str, str]
    base_port: int


VARIANTS = (
    Variant(
        "plain",
        "no metrics, no tracing",
        {prefix + "REQUEST_METRICS": "false" for prefix in ("USERS_", "BLOG_", "GATEWAY_")},
        18040,
    ),
    Variant("metrics", "metrics, tracing off (the default)", {}, 18050),
    Variant(
        "sampled",
        "metrics, 10% of traces",
        {
            **_TRACED,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        },
        18060,
    ),
    Variant("traced", "metrics, every trace", _TRACED, 18070),
)


class _Discard(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector serves exporters

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")  # an empty ExportTraceServiceResponse
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def otlp_sink() -> Iterator[str]:
    """An OTLP/HTTP endpoint that accepts spans and drops them, for the block."""
    server = ThreadingHTTPServer(("127.0.0.1", SINK_PORT), _Discard)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{SINK_PORT}"
    finally:
        server.shutdown()
        server.server_close()


def start_variants(
    stack: ExitStack,
    start: Callable[[str, int, str, dict[str, str], str], Any],
    service_environment: Callable[[str], dict[str, str]],
    catalog_url: str,
) -> dict[str, Any]:
    """Each variant's users, blog and gateway, ready; the gateways by variant name.

    `start(name, port, app, environment, ready_path)` runs one server for the stack's life;
    `service_environment(service)` is a service's own environment in the main system.
    """
    stack.enter_context(otlp_sink())
    gateways = {}
    for variant in VARIANTS:
        users_port, blog_port = variant.base_port + 1, variant.base_port + 3
        users_url = f"http://127.0.0.1:{users_port}"
        for service, port in (("users", users_port), ("blog", blog_port)):
            environment = {**service_environment(service), **variant.environment}
            if service == "blog":
                environment["BLOG_AUTH_JWKS_URL"] = f"{users_url}/.well-known/jwks.json"
                # The main system's blog follows the feed; a second consumer would only
                # contend for its cursor.
                environment["BLOG_CONSUME_EVENTS"] = "false"
            start(
                f"{variant.name}-{service}",
                port,
                f"{service}_service.main:create_app",
                environment,
                "/health/ready",
            )
        gateways[variant.name] = start(
            f"{variant.name}-gateway",
            variant.base_port,
            "gateway_service.main:create_app",
            {
                **variant.environment,
                "GATEWAY_USERS_URL": users_url,
                "GATEWAY_BLOG_URL": f"http://127.0.0.1:{blog_port}",
                "GATEWAY_CATALOG_URL": catalog_url,
            },
            "/health/live",
        )
    return gateways
