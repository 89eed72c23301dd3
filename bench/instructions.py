"""`python -m bench.instructions`: scenario 11's variants counted in instructions per request.

A shared machine's speed moves between runs by as much as tracing costs (bench.sidebyside
takes the drift out of throughput, not its noise). valgrind's callgrind counts the instructions
a process executes, every thread included, and counts the same work alike whatever else the
machine is doing. Here each variant's gateway and users service run under callgrind, one
variant at a time, over real HTTP and the bench's Postgres; after a warm-up their counters are
zeroed (callgrind_control), the gateway answers `GET /users/{id}` a given number of times, 8 at
a time, and the counters are dumped: their count over the requests is what one request costs
each process, the threads that export spans included.

Under callgrind the processes run many times slower, so the batch processor's timer
(`OTEL_BSP_SCHEDULE_DELAY`, 5 s) sends spans in smaller batches than under load, and each
batch's own cost (its HTTP request) is spread over fewer spans: a sampled variant's count is a
little above what the same work costs at full speed. Instructions are not time either: they
leave out what the work costs in cache misses and waits. Needs valgrind, and the bench's data
set seeded (`make bench` once).
"""

import argparse
import asyncio
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.observability import otlp_sink, start_copy
from bench.run import PATH_SAMPLE, Server, _service_environment, postgres_server, serve
from bench.seed import Scale
from bench.sidebyside import ALL_VARIANTS, parse_variants, variants_parser

BASE_PORT = 18400
CONCURRENCY = 8
# Seconds for a service to start under callgrind, which runs it many times slower.
READY_WITHIN = 600
_DUMP_REASON = "measured"


@dataclass(frozen=True)
class Count:
    """Instructions per request of one variant's processes."""

    gateway: float
    users: float


def dumped_instructions(dump: str) -> int:
    """The instructions a callgrind dump counted: its `summary:` (the events of its part)."""
    for line in dump.splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
        if line.startswith("fn=") or line.startswith("fl="):
            break  # past the header
    raise ValueError("not a callgrind dump of instructions: no summary line")


def measured_dump(directory: Path, stem: str, pid: int) -> Path:
    """The dump `callgrind_control --dump` wrote for process `pid`, whose output files are
    `<stem>.<pid>` (callgrind adds the part's number to each dump)."""
    for path in sorted(directory.glob(f"{stem}.{pid}.*")):
        with path.open() as dump:
            header = dump.read(4096)
        if f"Trigger: dump {_DUMP_REASON}" in header:
            return path
    raise FileNotFoundError(f"callgrind wrote no dump for process {pid} in {directory}")


def per_request(count: int, requests: int) -> float:
    """Instructions per request, from a dump's `count` over `requests` requests."""
    if requests <= 0:
        raise ValueError("requests must be positive")
    return count / requests


async def _drive(url: str, paths: Sequence[str], requests: int) -> None:
    """`requests` GETs of `paths` in turn, `CONCURRENCY` at a time; each must answer 200."""
    left = iter(range(requests))
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def worker() -> None:
            for index in left:
                response = await client.get(paths[index % len(paths)])
                if response.status_code != 200:
                    raise RuntimeError(f"{response.url} answered {response.status_code}")

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def _control(*arguments: str) -> None:
    control = shutil.which("callgrind_control") or "callgrind_control"  # main() checked it
    subprocess.run([control, *arguments], check=True, capture_output=True)  # noqa: S603


def _count(variant: str, options: argparse.Namespace, paths: list[str], directory: Path) -> Count:
    """One variant's instructions per request, its processes started and stopped here."""
    with postgres_server() as server, ExitStack() as stack:
        stack.enter_context(otlp_sink())

        def start(
            label: str, port: int, app: str, environment: dict[str, str], ready: str
        ) -> AbstractContextManager[Server]:
            wrapper = [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={directory}/{label}.%p",
                "--dump-instr=no",
            ]
            return serve(label, app, environment, 1, ready, port, wrapper, READY_WITHIN)

        gateway, users = start_copy(
            stack,
            start,
            variant,
            ALL_VARIANTS[variant].environment,
            lambda service: _service_environment(server, service),
            BASE_PORT,
            # Not called by GET /users/{id}.
            catalog_url="http://127.0.0.1:9",
            blog=False,
        )
        asyncio.run(_drive(gateway.url, paths, options.warmup))
        pids = (gateway.process.pid, users.process.pid)
        for pid in pids:
            _control("--zero", str(pid))
        asyncio.run(_drive(gateway.url, paths, options.requests))
        for pid in pids:
            _control(f"--dump={_DUMP_REASON}", str(pid))
        counts = [
            dumped_instructions(measured_dump(directory, f"{variant}-{name}", pid).read_text())
            for name, pid in (("gateway", pids[0]), ("users", pids[1]))
        ]
    return Count(*(per_request(count, options.requests) for count in counts))


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = variants_parser(
        "python -m bench.instructions",
        __doc__ or "",
        ["plain", "metrics", "ratio0", "sampled", "traced"],
    )
    parser.add_argument("--requests", type=int, default=1000, help="measured requests")
    parser.add_argument("--warmup", type=int, default=300, help="requests before counting")
    options = parse_variants(parser, argv)
    if options.requests < 1 or options.warmup < 0:
        parser.error("--requests must be positive and --warmup not negative")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = _parse(sys.argv[1:] if argv is None else argv)
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (Debian's valgrind package)", file=sys.stderr)
            return 2
    rng = random.Random(4)  # noqa: S311 - test data, not secrets
    paths = [f"/users/{rng.randint(1, Scale().users)}" for _ in range(PATH_SAMPLE)]
    counts: dict[str, Count] = {}
    with tempfile.TemporaryDirectory(prefix="callgrind-") as directory:
        for variant in options.variants:
            counts[variant] = _count(variant, options, paths, Path(directory))
            count = counts[variant]
            print(f"{variant}: gateway {count.gateway:,.0f}, users {count.users:,.0f}", flush=True)
    print(table(counts, options.variants[0]))
    return 0


def table(counts: dict[str, Count], reference: str) -> str:
    """Instructions per request of each variant and each process, and against `reference`."""
    base = counts[reference]
    lines = [f"{'variant':<10} {'gateway':>12} {'users':>12} {'vs ' + reference:>18}"]
    for name, count in counts.items():
        ratios = f"{count.gateway / base.gateway:.3f} {count.users / base.users:.3f}"
        lines.append(f"{name:<10} {count.gateway:>12,.0f} {count.users:>12,.0f} {ratios:>18}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
