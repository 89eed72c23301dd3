"""Load generation with wrk: a Lua script picks each request's path from a list, reports JSON."""

import json
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

_MARKER = "BENCH_RESULT "
# Each wrk thread runs its own copy of the script; the thread's address seeds its generator so
# threads do not replay the same sequence of paths.
_SCRIPT = """
local paths = {%(paths)s}
local count = #paths
local method = %(method)s
local headers = {%(headers)s}
local body = %(body)s
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  math.randomseed(seed or 1)
end

function request()
  return wrk.format(method, paths[math.random(count)], headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"requests":%%d,"duration_us":%%d,"bytes":%%d,' ..
    '"errors":{"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d},' ..
    '"latency_us":{"mean":%%.1f,"p50":%%d,"p90":%%d,"p99":%%d,"max":%%d}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
"""


@dataclass(frozen=True)
class LoadResult:
    """What wrk measured in one run."""

    connections: int
    requests: int
    seconds: float
    rps: float
    latency_ms: dict[str, float]
    errors: dict[str, int]
    # CPU per request of the servers measured, in µs, where the run counted it.
    cpu_us: float | None = None

    @property
    def failed(self) -> int:
        """Requests that got no 2xx/3xx answer, or no answer at all."""
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready copy (without a CPU count the run did not make)."""
        copy = asdict(self)
        if self.cpu_us is None:
            del copy["cpu_us"]
        return copy


def combined(results: Sequence[LoadResult], cpu_seconds: float | None = None) -> LoadResult:
    """One result of several runs of the same load, as if it were one run of all their time:
    their requests and errors summed, and the throughput of the sum. Latencies cannot be
    summed: each is the median of the runs' own. `cpu_seconds`, the servers' CPU over all the
    runs, gives the CPU per request."""
    if not results:
        raise ValueError("no runs to combine")
    requests = sum(result.requests for result in results)
    seconds = sum(result.seconds for result in results)
    errors: dict[str, int] = {}
    for result in results:
        for kind, count in result.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    return LoadResult(
        connections=results[0].connections,
        requests=requests,
        seconds=round(seconds, 3),
        rps=round(requests / seconds, 1) if seconds else 0.0,
        latency_ms={
            key: statistics.median(result.latency_ms[key] for result in results)
            for key in results[0].latency_ms
        },
        errors=errors,
        cpu_us=None if cpu_seconds is None else round(cpu_seconds / max(1, requests) * 1e6, 1),
    )


def wrk_path() -> str | None:
    """The wrk executable, if one is installed."""
    return shutil.which("wrk")


def parse_wrk_output(output: str, connections: int) -> LoadResult:
    """The result the script's done() printed."""
    for line in output.splitlines():
        if line.startswith(_MARKER):
            raw = json.loads(line[len(_MARKER) :])
            seconds = raw["duration_us"] / 1e6
            return LoadResult(
                connections=connections,
                requests=raw["requests"],
                seconds=round(seconds, 3),
                rps=round(raw["requests"] / seconds, 1) if seconds else 0.0,
                latency_ms={k: round(v / 1000, 3) for k, v in raw["latency_us"].items()},
                errors=raw["errors"],
            )
    raise RuntimeError(f"wrk printed no result:\n{output}")


@dataclass(frozen=True)
class Request:
    """What every request of a run sends besides its path."""

    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None

    def lua(self) -> dict[str, str]:
        """The script's method, headers and body, as Lua literals (JSON strings are Lua's)."""
        return {
            "method": json.dumps(self.method),
            "headers": ",".join(
                f"[{json.dumps(name)}]={json.dumps(value)}" for name, value in self.headers.items()
            ),
            "body": "nil" if self.body is None else json.dumps(self.body),
        }


GET = Request()


def run_wrk(
    base_url: str,
    paths: Sequence[str],
    *,
    connections: int,
    seconds: float,
    threads: int = 1,
    request: Request = GET,
) -> LoadResult:
    """Send `request` to random paths of `paths` at `base_url` for `seconds` over `connections`
    connections (GET with no headers unless asked)."""
    executable = wrk_path()
    if executable is None:
        raise RuntimeError("wrk is not installed")
    listed = ",".join(json.dumps(path) for path in paths)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_SCRIPT % {"paths": listed, "marker": _MARKER, **request.lua()})
    try:
        completed = subprocess.run(  # noqa: S603 - our own arguments
            [
                executable,
                f"--threads={min(threads, connections)}",
                f"--connections={connections}",
                f"--duration={max(1, round(seconds))}s",
                "--timeout=10s",
                f"--script={script.name}",
                base_url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        Path(script.name).unlink()
    return parse_wrk_output(completed.stdout, connections)
