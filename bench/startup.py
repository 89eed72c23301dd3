"""How long each process takes from its start to its first ready answer.

    python -m bench.startup [--rounds 7] [--python PATH] [--tree LABEL=DIR ...]

Each process starts as the Procfile and the images start it (`uvicorn <app> --factory`), on
Postgres databases of its own (startup_users, startup_catalog, startup_blog, migrated first),
beside a running users, catalog and blog it depends on (keys, events, the gateway's readiness).
The time is from spawning the process to the first 200 of `GET /health/ready`, polled every
10 ms; "listening" is the first answer of any kind (uvicorn binds its socket once the app's
lifespan has started). Rounds alternate the processes and the trees, so a machine whose speed
drifts slows them all alike; the table gives each one's median and least.

`--python` runs the measured processes with another interpreter: a virtual environment without
the development dependencies (`UV_PROJECT_ENVIRONMENT=/tmp/prod uv sync --frozen --no-dev
--all-packages`) imports what the images import. `--tree LABEL=DIR` measures the code of
another checkout too (its source folders go first on PYTHONPATH), e.g. before a change.
"""

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import URL

from bench.processes import stop
from bench.run import (
    HOST,
    ROOT,
    SERVICES,
    database_url,
    postgres_server,
    recreate_databases,
    serve,
)
from servicekit.auth import SigningKey, SigningKeys
from servicekit.testing import free_port

PROCESSES = (*SERVICES, "gateway")
POLL_SECONDS = 0.01
SOURCES = ("libs/servicekit/src", *(f"services/{s}/src" for s in SERVICES), "gateway/src")


@dataclass(frozen=True)
class Tree:
    """A checkout whose code is measured: None is this one, as installed."""

    label: str
    root: Path | None

    def pythonpath(self) -> dict[str, str]:
        if self.root is None:
            return {}
        root = self.root
        return {"PYTHONPATH": os.pathsep.join(str(root / source) for source in SOURCES)}


@dataclass
class Timings:
    listening: list[float] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)


DATABASES = "startup"


def _database_url(server: URL, service: str) -> str:
    return database_url(server, service, DATABASES).render_as_string(hide_password=False)


def _environments(server: URL, keys_file: Path, users_url: str) -> dict[str, dict[str, str]]:
    """Each process's environment, as deployed: users signs, the others verify its tokens."""
    env = {
        service: {f"{service.upper()}_DATABASE_URL": _database_url(server, service)}
        for service in SERVICES
    }
    env["users"]["USERS_SIGNING_KEYS_FILE"] = str(keys_file)
    for service in ("catalog", "blog"):
        env[service][f"{service.upper()}_AUTH_JWKS_URL"] = f"{users_url}/.well-known/jwks.json"
    env["blog"]["BLOG_EVENTS_URL"] = f"{users_url}/events"
    return env


def _status(port: int, path: str) -> int | None:
    """The status of GET `path`, or None while nothing answers on the port."""
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def time_start(process: str, python: str, env: dict[str, str]) -> tuple[float, float]:
    """Seconds from spawning `process` to its first answer and to its first ready answer."""
    port = free_port()
    command = [
        python, "-m", "uvicorn", f"{process}_service.main:create_app", "--factory",
        "--host", HOST, "--port", str(port), "--no-access-log",
    ]  # fmt: skip
    started = time.perf_counter()
    child = subprocess.Popen(  # noqa: S603 - our own arguments
        command,
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    listening: float | None = None
    try:
        deadline = started + 60
        while time.perf_counter() < deadline:
            if child.poll() is not None:
                raise RuntimeError(f"{process} exited with {child.returncode}")
            status = _status(port, "/health/ready")
            now = time.perf_counter() - started
            if status is not None and listening is None:
                listening = now
            if status == 200:
                assert listening is not None
                return listening, now
            time.sleep(POLL_SECONDS)  # polling another process's start, the thing measured
        raise RuntimeError(f"{process} was not ready within 60 s")
    finally:
        stop(child)


@contextmanager
def companions(server: URL, keys_file: Path) -> Iterator[dict[str, dict[str, str]]]:
    """Users, catalog and blog running for the measured processes; each one's environment."""
    with ExitStack() as stack:
        users_port = free_port()
        users_url = f"http://{HOST}:{users_port}"
        env = _environments(server, keys_file, users_url)
        urls: dict[str, str] = {}
        for service in SERVICES:
            port = users_port if service == "users" else free_port()
            app = f"{service}_service.main:create_app"
            running = stack.enter_context(
                serve(f"startup-{service}", app, env[service], 1, "/health/ready", port=port)
            )
            urls[f"GATEWAY_{service.upper()}_URL"] = running.url
        env["gateway"] = urls
        yield env


def measure(
    server: URL, trees: Sequence[Tree], python: str, rounds: int, processes: Sequence[str]
) -> dict[tuple[str, str], Timings]:
    """Every process of every tree started `rounds` times, interleaved."""
    recreate_databases(server, DATABASES)
    keys_file = ROOT / "var" / "startup-signing-keys.json"
    if not keys_file.exists():
        SigningKeys((SigningKey.generate(),)).write(keys_file)
    timings = {(tree.label, process): Timings() for tree in trees for process in processes}
    with companions(server, keys_file) as env:
        for round_number in range(rounds):
            order = trees if round_number % 2 == 0 else list(reversed(trees))
            for process in processes:
                for tree in order:
                    listening, ready = time_start(
                        process, python, {**env[process], **tree.pythonpath()}
                    )
                    timings[tree.label, process].listening.append(listening)
                    timings[tree.label, process].ready.append(ready)
            print(f"startup: round {round_number + 1} of {rounds} done", flush=True)
    return timings


def table(timings: dict[tuple[str, str], Timings]) -> str:
    """The results as a Markdown table, in seconds."""
    lines = [
        "| tree | process | listening, median | ready, median | ready, least | ready, most |",
        "|---|---|---|---|---|---|",
    ]
    for (label, process), times in timings.items():
        lines.append(
            f"| {label} | {process} | {statistics.median(times.listening):.2f} "
            f"| {statistics.median(times.ready):.2f} | {min(times.ready):.2f} "
            f"| {max(times.ready):.2f} |"
        )
    return "\n".join(lines)


def _tree(value: str) -> Tree:
    label, _, directory = value.partition("=")
    if not directory:
        raise argparse.ArgumentTypeError("a tree is LABEL=DIR")
    return Tree(label, Path(directory).resolve())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--python", default=sys.executable, help="the measured interpreter")
    parser.add_argument("--tree", type=_tree, action="append", default=[], metavar="LABEL=DIR")
    parser.add_argument("--only", nargs="+", choices=PROCESSES, default=list(PROCESSES))
    options = parser.parse_args(argv)
    trees = [Tree("this checkout", None), *options.tree]
    with postgres_server() as server:
        timings = measure(server, trees, options.python, options.rounds, options.only)
    print(table(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
