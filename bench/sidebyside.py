"""`python -m bench.sidebyside`: scenario 11's variants running at once, measured in turn.

Scenario 11 (bench.observability) starts each variant afresh beside neither, two copies at a
time. Here the gateway and users service of every variant named run side by side for the whole
comparison, more variants than the scenario's and one start each, and short wrk runs of the
gateway's `GET /users/{id}` go to each in turn, the order reversed every other round. Each run
is compared with the first variant's run of the same round; the table gives the median of those
ratios and each process's CPU per request (from /proc). Two variants beyond scenario 11's split
the 10% sampler's cost: `ratio0` decides every trace and records none, and `noexport` records
10% but holds its spans for the whole run. Spans go to scenario 11's OTLP sink. The bench's
data set must be seeded (`make bench` once).
"""

import argparse
import random
import statistics
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass

import httpx

from bench.load import run_wrk, wrk_path
from bench.observability import VARIANTS, Variant, otlp_sink, start_copy
from bench.processes import cpu_seconds, settle
from bench.run import PATH_SAMPLE, Server, _service_environment, postgres_server, serve
from bench.seed import Scale

_SAMPLED = next(variant for variant in VARIANTS if variant.name == "sampled").environment
# Spans stay queued for ten minutes, and the queue never fills in a run.
_HELD = {
    "OTEL_BSP_SCHEDULE_DELAY": "600000",
    "OTEL_BSP_MAX_QUEUE_SIZE": "1000000",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1000000",
}
EXTRA_VARIANTS = (
    Variant(
        "ratio0",
        "metrics, tracing on, no trace recorded",
        {**_SAMPLED, "OTEL_TRACES_SAMPLER_ARG": "0"},
        0,
    ),
    Variant("noexport", "metrics, 10% of traces, none exported", {**_SAMPLED, **_HELD}, 0),
)
ALL_VARIANTS = {variant.name: variant for variant in (*VARIANTS, *EXTRA_VARIANTS)}
BASE_PORT = 18300


@dataclass(frozen=True)
class Run:
    """One measured run of one variant."""

    rps: float
    gateway_us: float  # CPU per request
    users_us: float


def paired_ratios(runs: Sequence[Run], reference: Sequence[Run]) -> list[float]:
    """Each round's throughput over the reference variant's in the same round."""
    return [run.rps / other.rps for run, other in zip(runs, reference, strict=True)]


def summary(runs: dict[str, list[Run]], reference: str) -> list[tuple[str, float, float, float]]:
    """(variant, median paired ratio, median gateway µs, median users µs) for each variant."""
    return [
        (
            name,
            statistics.median(paired_ratios(measured, runs[reference])),
            statistics.median(run.gateway_us for run in measured),
            statistics.median(run.users_us for run in measured),
        )
        for name, measured in runs.items()
    ]


def _measure(gateway: Server, users: Server, paths: list[str], options: argparse.Namespace) -> Run:
    run_wrk(gateway.url, paths, connections=options.connections, seconds=options.warmup)
    settle()
    pids = (gateway.process.pid, users.process.pid)
    before = [cpu_seconds(pid) for pid in pids]
    result = run_wrk(gateway.url, paths, connections=options.connections, seconds=options.seconds)
    if result.failed:
        print(f"  {result.failed} of {result.requests} requests failed: {result.errors}")
    used = [cpu_seconds(pid) - start for pid, start in zip(pids, before, strict=True)]
    per_request = [seconds / max(1, result.requests) * 1e6 for seconds in used]
    return Run(result.rps, per_request[0], per_request[1])


def variants_parser(program: str, description: str, default: list[str]) -> argparse.ArgumentParser:
    """A command line whose arguments name variants of ALL_VARIANTS, `default` if none."""
    parser = argparse.ArgumentParser(prog=program, description=description.splitlines()[0])
    parser.add_argument(
        "variants",
        nargs="*",
        default=default,
        help=f"the first is the reference; of {', '.join(ALL_VARIANTS)}",
    )
    return parser


def parse_variants(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """`argv` parsed by `parser` (variants_parser), its variants known and distinct."""
    options = parser.parse_args(argv)
    unknown = [name for name in options.variants if name not in ALL_VARIANTS]
    if unknown or len(set(options.variants)) != len(options.variants):
        parser.error(f"variants must be distinct names of: {', '.join(ALL_VARIANTS)}")
    return options


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = variants_parser(
        "python -m bench.sidebyside", __doc__ or "", ["metrics", "ratio0", "noexport", "sampled"]
    )
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=4, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.5, help="warm-up seconds per run")
    parser.add_argument("--connections", type=int, default=64)
    return parse_variants(parser, argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = _parse(sys.argv[1:] if argv is None else argv)
    if wrk_path() is None:
        print("wrk is not installed: `make bench` installs it", file=sys.stderr)
        return 2
    rng = random.Random(4)  # noqa: S311 - test data, not secrets
    paths = [f"/users/{rng.randint(1, Scale().users)}" for _ in range(PATH_SAMPLE)]
    with postgres_server() as server, ExitStack() as stack:
        stack.enter_context(otlp_sink())
        pairs: dict[str, tuple[Server, Server]] = {}

        def start(
            label: str, port: int, app: str, environment: dict[str, str], ready: str
        ) -> AbstractContextManager[Server]:
            return serve(label, app, environment, 1, ready, port)

        for index, name in enumerate(options.variants):
            gateway, users = start_copy(
                stack,
                start,
                f"side-{name}",
                ALL_VARIANTS[name].environment,
                lambda service: _service_environment(server, service),
                BASE_PORT + 10 * index,
                # Not called by GET /users/{id}.
                catalog_url="http://127.0.0.1:9",
                blog=False,
            )
            if httpx.get(gateway.url + paths[0], timeout=10).status_code != 200:
                print("the bench's data set is not seeded: run `make bench` once", file=sys.stderr)
                return 2
            pairs[name] = (gateway, users)
        runs: dict[str, list[Run]] = {name: [] for name in options.variants}
        for round_number in range(options.rounds):
            order = options.variants if round_number % 2 == 0 else options.variants[::-1]
            for name in order:
                runs[name].append(_measure(*pairs[name], paths, options))
            rates = ", ".join(f"{name} {runs[name][-1].rps:,.0f}" for name in options.variants)
            print(f"round {round_number + 1}: {rates} req/s", flush=True)
    print(f"\n{'variant':<10} {'vs ' + options.variants[0]:>10} {'gateway':>10} {'users':>10}")
    for name, ratio, gateway_us, users_us in summary(runs, options.variants[0]):
        print(f"{name:<10} {ratio:>10.3f} {gateway_us:>8.0f}µs {users_us:>8.0f}µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
