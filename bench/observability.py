"""Scenario 11: what metrics and tracing cost, through the gateway.

Four copies of the gateway in front of users and blog, each copy with its own processes and
the same databases (two copies running at a time), differ only in their observability: no
request metrics and no tracing (`plain`), metrics with tracing off (`metrics`, as deployed by
default), metrics and 10% of traces sampled (`sampled`), and metrics and every trace
(`traced`). Spans go over OTLP to a sink in this process that answers and discards them, as a
collector would accept them.

The budgets are a few percent, and on a shared machine the same processes' throughput, and
even their CPU per request, moves by more than that from one minute to the next, and between
two starts of the same code. So the scenario compares in turns of one second: in each round
(`--rounds-11`), every other variant is started afresh beside a fresh `plain`, in an order
turned by one each round, and wrk drives the two copies' gateways in turn, a second each, in
pairs whose order alternates (TURNS_11 turns each per read). Turns a second apart see the
machine in the same state, so a variant's run in a round is the sum of its turns, compared with
the sum of `plain`'s turns beside it; its ratio is the median of its rounds' ratios. Each turn
also counts the CPU the copy's processes used per request.
"""

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SINK_PORT = 18099
# Turns of one second each copy runs per read in a round (turn_sides).
TURNS_11 = 10
TURN_SECONDS = 1
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
# What every other variant is compared with, in turns beside it.
REFERENCE = VARIANTS[0]


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


Start = Callable[[str, int, str, dict[str, str], str], AbstractContextManager[Any]]


def start_copy(
    stack: ExitStack,
    start: Start,
    name: str,
    environment: dict[str, str],
    service_environment: Callable[[str], dict[str, str]],
    base_port: int,
    catalog_url: str,
    blog: bool = True,
) -> tuple[Any, Any]:
    """A copy of the gateway, users and (unless `blog` is false) blog, each with `environment`
    on top of its own, for the block of `stack`: the gateway on `base_port`, users on the next
    port, blog two further. `start(name, port, app, environment, ready_path)` runs one server.
    Returns the gateway's server and users'."""
    users_port, blog_port = base_port + 1, base_port + 3
    users_url = f"http://127.0.0.1:{users_port}"
    servers: dict[str, Any] = {}
    for service, port in (("users", users_port), ("blog", blog_port))[: 2 if blog else 1]:
        service_env = {**service_environment(service), **environment}
        if service == "blog":
            service_env["BLOG_AUTH_JWKS_URL"] = f"{users_url}/.well-known/jwks.json"
            # The main system's blog follows the feed; a second consumer would only
            # contend for its cursor.
            service_env["BLOG_CONSUME_EVENTS"] = "false"
        servers[service] = stack.enter_context(
            start(
                f"{name}-{service}",
                port,
                f"{service}_service.main:create_app",
                service_env,
                "/health/ready",
            )
        )
    gateway = stack.enter_context(
        start(
            f"{name}-gateway",
            base_port,
            "gateway_service.main:create_app",
            {
                **environment,
                "GATEWAY_USERS_URL": users_url,
                # Without blog, only routes that call users alone answer.
                "GATEWAY_BLOG_URL": f"http://127.0.0.1:{blog_port}",
                "GATEWAY_CATALOG_URL": catalog_url,
            },
            "/health/live",
        )
    )
    return gateway, servers["users"]


def rotation(round_number: int, variants: Sequence[Variant] = VARIANTS) -> tuple[Variant, ...]:
    """The order `variants` run in round `round_number` (from 0): turned by one each round,
    so that over the rounds each variant runs first, second, third and last as often."""
    turn = round_number % len(variants)
    return (*variants[turn:], *variants[:turn])


def turn_sides(turns: int) -> list[int]:
    """Which of two copies (0, the reference, or 1) each of `2 * turns` turns goes to: in
    pairs, each pair in the other order from the last (0 1 1 0 0 1 ...), so that each copy
    runs `turns` times and a drift of the machine during the pairs favours neither."""
    return [side for pair in range(turns) for side in ((0, 1) if pair % 2 == 0 else (1, 0))]


@dataclass(frozen=True)
class _Running:
    """The variants that run: what stops them, and each one's servers by name."""

    stack: ExitStack
    servers: dict[str, list[Any]]


class Variants:
    """The variants' servers, two variants at a time: four copies of users and blog with full
    pools would hold more connections than a default Postgres allows (100) beside the main
    system's. `start()` stops the variants that run and starts the ones asked for afresh."""

    def __init__(
        self,
        start: Start,
        service_environment: Callable[[str], dict[str, str]],
        catalog_url: str,
    ) -> None:
        """`start(name, port, app, environment, ready_path)` runs one server for its block;
        `service_environment(service)` is a service's own environment in the main system."""
        self._start = start
        self._service_environment = service_environment
        self._catalog_url = catalog_url
        self._running: _Running | None = None

    def start(self, names: Sequence[str]) -> dict[str, Any]:
        """The gateways of the variants `names`, each started afresh with its users and blog
        (and no other variant running), by name."""
        self.close()
        stack = ExitStack()
        gateways: dict[str, Any] = {}
        servers: dict[str, list[Any]] = {}
        try:
            for name in names:
                variant = next(variant for variant in VARIANTS if variant.name == name)
                servers[name] = []
                gateways[name] = self._start_variant(stack, variant, servers[name])
        except BaseException:
            stack.close()
            raise
        self._running = _Running(stack, servers)
        return gateways

    def servers(self, name: str) -> list[Any]:
        """The servers of variant `name`, if it runs: its gateway, users and blog."""
        return [] if self._running is None else list(self._running.servers.get(name, []))

    def _start_variant(self, stack: ExitStack, variant: Variant, servers: list[Any]) -> Any:
        """Start `variant` for the block of `stack`, each of its servers added to `servers`;
        its gateway."""

        def start(
            name: str, port: int, app: str, environment: dict[str, str], ready: str
        ) -> AbstractContextManager[Any]:
            return _recorded(self._start(name, port, app, environment, ready), servers)

        gateway, _ = start_copy(
            stack,
            start,
            variant.name,
            variant.environment,
            self._service_environment,
            variant.base_port,
            self._catalog_url,
        )
        return gateway

    def close(self) -> None:
        """Stop the variant that runs, if any."""
        if self._running is not None:
            self._running.stack.close()
            self._running = None


@contextmanager
def _recorded(server: AbstractContextManager[Any], into: list[Any]) -> Iterator[Any]:
    """`server`'s block, its server appended to `into` while it runs."""
    with server as running:
        into.append(running)
        yield running
