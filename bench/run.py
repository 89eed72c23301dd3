"""`make bench`: seed Postgres, start every server, drive each scenario with wrk, report ratios.

Every server runs as its own uvicorn process with the same worker count, on ports of its own
(18000 and up) so that a `make run` on the usual ports is left alone.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import httpx
import psycopg
from psycopg import sql
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

from bench import monolith, nginx, report
from bench import observability as observability_scenario
from bench.load import GET, LoadResult, Request, combined, run_wrk, wrk_path
from bench.processes import settle, started, stop, tree_cpu_seconds
from bench.seed import (
    Scale,
    is_seeded,
    product_bodies,
    seed_catalog_through_api,
    seed_users_and_blog,
)
from servicekit.auth import SigningKey, SigningKeys
from users_service.admin import create_admin
from users_service.settings import UsersSettings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SERVICES = ("users", "catalog", "blog")
DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
HOST = "127.0.0.1"
PORTS = {
    "gateway": 18000,
    "users": 18001,
    "catalog": 18002,
    "blog": 18003,
    "gateway-httpx": 18010,
    "ceiling": 18100,
    "monolith": 18101,
    "nginx": 18102,
    # Scenario 10's own users and blogs (bench.events).
    "events-users": 18021,
    "events-blog": 18023,
    "events-blog-idle": 18033,
}
GATEWAY_CONCURRENCY = (1, 16, 64, 256)
# The gateway's tail is judged at the bench's connections (64) and at this many too.
MANY_CONNECTIONS = 256
PATH_SAMPLE = 2000  # distinct paths per scenario: enough that no cache answers them all
# Keys the bench's users service signs with, kept beside the embedded databases (not in git).
SIGNING_KEYS = ROOT / "var" / "bench-signing-keys.json"
# Accounts the bench signs in with: an admin for catalog writes, a reader for signed-in reads
# and the login scenario. Their passwords are the bench's own, on its own databases.
ADMIN_ACCOUNT = ("bench-admin@example.com", "bench-admin-password")
READER_ACCOUNT = ("bench-reader@example.com", "bench-reader-password")
LOGIN_CONNECTIONS = 16
BULK_ROWS = 1000
BULK_REQUESTS = 10
# Scenario 11's rounds (bench.observability): its budgets are smaller than one run's spread.
# Each round starts each variant but neither once, beside a neither of its own, and drives the
# two in TURNS_11 turns of a second each per read.
ROUNDS_11 = 5


@dataclass
class Options:
    """The command line."""

    scale: Scale
    seconds: float
    warmup: float
    connections: int
    workers: int
    repeat: int
    reseed: bool
    profile: bool
    only: set[str] = field(default_factory=set)
    rounds_11: int = ROUNDS_11

    def wants(self, number: str) -> bool:
        """Whether scenario `number` runs."""
        return not self.only or number in self.only


def _parse(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="data set size (1 = full)")
    parser.add_argument("--seconds", type=float, default=6, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up seconds per run")
    parser.add_argument("--connections", type=int, default=64, help="connections for 1-5")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers per server")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each run keeps its median")
    parser.add_argument("--reseed", action="store_true", help="rebuild the data set")
    parser.add_argument("--profile", action="store_true", help="py-spy flame graphs of 2-4")
    parser.add_argument("--only", nargs="*", default=[], help="scenario numbers to run")
    parser.add_argument(
        "--rounds-11",
        type=int,
        default=ROUNDS_11,
        help="scenario 11's rounds, each starting every variant afresh",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.rounds_11 < 1:
        parser.error("--repeat and --rounds-11 must be at least 1")
    scale = Scale() if args.scale == 1 else Scale().scaled(args.scale)
    return Options(
        scale,
        args.seconds,
        args.warmup,
        args.connections,
        args.workers,
        args.repeat,
        args.reseed,
        args.profile,
        set(args.only),
        args.rounds_11,
    )


def _say_failures(result: LoadResult) -> None:
    """Say how many of a run's requests failed, if any did."""
    if result.failed:
        say(f"  {result.failed} of {result.requests} requests failed: {result.errors}")


def say(message: str) -> None:
    """Progress for the person waiting."""
    print(f"bench: {message}", flush=True)


# --- databases ---------------------------------------------------------------------------------


def _libpq(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def postgres_server() -> Iterator[URL]:
    """BENCH_DATABASE_URL or the local server; else a testcontainers Postgres."""
    url = make_url(os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER))
    try:
        psycopg.connect(_libpq(url), connect_timeout=3).close()
    except psycopg.OperationalError:
        from testcontainers.postgres import PostgresContainer

        image = os.environ.get("TEST_POSTGRES_IMAGE", "postgres:16")
        say(f"no Postgres at {url.host}:{url.port}; starting {image} with testcontainers")
        with PostgresContainer(image, driver="psycopg") as container:
            yield make_url(container.get_connection_url())
        return
    yield url


def database_url(server: URL, service: str, prefix: str = "bench") -> URL:
    """The URL of `service`'s database on the server, named `<prefix>_<service>`."""
    return server.set(drivername="postgresql+psycopg", database=f"{prefix}_{service}")


def recreate_databases(
    server: URL, prefix: str = "bench", services: Sequence[str] = SERVICES
) -> None:
    """Drop and create the databases `<prefix>_<service>`, then run each service's migrations."""
    with psycopg.connect(_libpq(server), autocommit=True) as connection:
        for service in services:
            name = sql.Identifier(f"{prefix}_{service}")
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            connection.execute(sql.SQL("CREATE DATABASE {}").format(name))
    for service in services:
        url = database_url(server, service, prefix)
        migrate_database(service, url.render_as_string(hide_password=False))


def _create_database(server: URL, name: str) -> None:
    """Create database `name` on the server unless it exists."""
    with psycopg.connect(_libpq(server), autocommit=True) as connection:
        found = connection.execute("SELECT FROM pg_database WHERE datname = %s", (name,))
        if found.fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def migrate_database(service: str, url: str) -> None:
    """Run the service's migrations on the database at `url`."""
    subprocess.run(  # noqa: S603 - our own arguments
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(ROOT / "services" / service / "alembic.ini"),
            "-x",
            f"database_url={url}",
            "upgrade",
            "head",
        ],
        check=True,
        capture_output=True,
    )


# --- servers -----------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def serve(
    name: str,
    app: str,
    env: dict[str, str],
    workers: int,
    ready_path: str,
    port: int = 0,
    wrapper: Sequence[str] = (),
    ready_within: float = 60,
) -> Iterator[Server]:
    """Run `app` (an app factory) under uvicorn until the block ends, on `port` or its own:
    under `wrapper` (a command that runs the command after it, such as valgrind), if given,
    ready within `ready_within` seconds."""
    port = port or PORTS[name]
    RESULTS.joinpath("logs").mkdir(parents=True, exist_ok=True)
    log: IO[bytes]
    with RESULTS.joinpath("logs", f"{name}.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own arguments
            [
                *wrapper,
                sys.executable,
                "-m",
                "uvicorn",
                app,
                "--factory",
                f"--host={HOST}",
                f"--port={port}",
                f"--workers={workers}",
                "--no-access-log",
            ],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        url = f"http://{HOST}:{port}"
        started(process)
        try:
            _wait_until_ready(url + ready_path, process, ready_within)
            yield Server(name, url, process)
        finally:
            stop(process)


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}; see bench/results/logs")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # polling a process's start-up, not synchronising a test
    raise RuntimeError(f"{url} did not become ready within {within:g} s")


BENCH_TOKEN_LIFETIME = 4 * 3600  # seconds


def _service_environment(server: URL, service: str) -> dict[str, str]:
    prefix = service.upper()
    env = {
        f"{prefix}_DATABASE_URL": database_url(server, service).render_as_string(
            hide_password=False
        ),
        # The bulk scenario writes 1,000 rows a request; the default timeout stays.
        f"{prefix}_LOG_LEVEL": "INFO",
    }
    # Users signs tokens and is started first; the others verify them with its keys.
    if service == "users":
        env["USERS_SIGNING_KEYS_FILE"] = str(SIGNING_KEYS)
        # The bench signs in once, at the start: its tokens must outlast the whole run.
        env["USERS_ACCESS_TOKEN_LIFETIME"] = str(BENCH_TOKEN_LIFETIME)
    else:
        env[f"{prefix}_AUTH_JWKS_URL"] = f"http://{HOST}:{PORTS['users']}/.well-known/jwks.json"
    if service == "blog":  # it follows users' event feed, as deployed
        env["BLOG_EVENTS_URL"] = f"http://{HOST}:{PORTS['users']}/events"
    return env


def start_system(stack: ExitStack, server: URL, workers: int) -> dict[str, Server]:
    """Every server of the benchmark, ready."""
    servers: dict[str, Server] = {}
    if not SIGNING_KEYS.exists():
        SigningKeys((SigningKey.generate(),)).write(SIGNING_KEYS)
    for service in SERVICES:
        env = _service_environment(server, service)
        servers[service] = stack.enter_context(
            serve(service, f"{service}_service.main:create_app", env, workers, "/health/ready")
        )
    service_urls = {f"GATEWAY_{service.upper()}_URL": servers[service].url for service in SERVICES}
    for name, transport in (("gateway", "aiohttp"), ("gateway-httpx", "httpx")):
        servers[name] = stack.enter_context(
            serve(
                name,
                "gateway_service.main:create_app",
                {**service_urls, "GATEWAY_HTTP_TRANSPORT": transport},
                workers,
                "/health/ready",
            )
        )
    ceiling_dsn = _libpq(database_url(server, "users"))
    servers["ceiling"] = stack.enter_context(
        serve(
            "ceiling",
            "bench.ceiling:create_app",
            {"BENCH_CEILING_DSN": ceiling_dsn},
            workers,
            "/health/live",
        )
    )
    return servers


def _monolith_dsn(server: URL) -> str:
    return _libpq(server.set(database=monolith.DATABASE))


def check_monolith(servers: dict[str, Server], users: int) -> list[str]:
    """The pages of scenario 12 on which the monolith answers unlike the gateway (none, or its
    ratio compares different work): the first, and nine spread over the users."""
    paths = [users_with_posts_path(None)]
    paths += [users_with_posts_path(max(1, users * step // 10 - 20)) for step in range(1, 10)]
    differences = monolith.differences(servers["gateway"].url, servers["monolith"].url, paths)
    for difference in differences:
        say(f"12. the monolith answers unlike the gateway: {difference}")
    return differences


@contextmanager
def serve_nginx(users: Server, workers: int) -> Iterator[Server]:
    """nginx in front of the users service (bench.nginx) until the block ends."""
    upstream = httpx.URL(users.url)
    port = PORTS["nginx"]
    log = RESULTS.joinpath("logs", "nginx.log")
    with nginx.running(port, f"{upstream.host}:{upstream.port}", workers, log) as process:
        url = f"http://{HOST}:{port}"
        _wait_until_ready(url + "/health/ready", process)
        yield Server("nginx", url, process)


def start_anchors(
    stack: ExitStack, server: URL, options: Options, servers: dict[str, Server]
) -> None:
    """The monolith (scenario 12) and nginx (13), if their scenarios run."""
    if options.wants("12"):
        servers["monolith"] = stack.enter_context(
            serve(
                "monolith",
                "bench.monolith:create_app",
                {"BENCH_MONOLITH_DSN": _monolith_dsn(server)},
                options.workers,
                "/health/live",
            )
        )
    if options.wants("13"):
        servers["nginx"] = stack.enter_context(serve_nginx(servers["users"], options.workers))


def observability_variants(
    stack: ExitStack, server: URL, workers: int, servers: dict[str, Server]
) -> observability_scenario.Variants:
    """Scenario 11's copies of the system, started one at a time as its runs need them."""
    stack.enter_context(observability_scenario.otlp_sink())

    def start(
        name: str, port: int, app: str, env: dict[str, str], ready: str
    ) -> AbstractContextManager[Server]:
        return serve(name, app, env, workers, ready, port)

    variants = observability_scenario.Variants(
        start, lambda service: _service_environment(server, service), servers["catalog"].url
    )
    stack.callback(variants.close)
    return variants


# --- scenarios ---------------------------------------------------------------------------------


@dataclass
class Measurements:
    """Every number of one run, by scenario."""

    throughput: dict[str, dict[str, Any]] = field(default_factory=dict)
    concurrency: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    bulk: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Job:
    """One load run: `paths` from `server` over `connections` connections.

    `alongside`, if given, is a second load on the same server during the measured run (its own
    rate is reported with the job's as `alongside_rps`).
    """

    group: str  # "throughput", "latency", or the server whose concurrency curve it is on
    key: str
    label: str
    server: str
    paths: Sequence[str]
    connections: int
    request: Request = GET
    alongside: "Job | None" = None


@dataclass(frozen=True)
class Accounts:
    """The bench's signed-in users: their tokens, and the reader's login form."""

    admin_token: str
    reader_token: str
    reader_login: str  # the form body of POST /auth/token

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @property
    def reader(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.reader_token}"}


def _login_form(account: tuple[str, str]) -> str:
    return str(httpx.QueryParams({"username": account[0], "password": account[1]}))


def _log_in(users: Server, account: tuple[str, str]) -> str:
    answer = httpx.post(
        f"{users.url}/auth/token",
        content=_login_form(account),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token


def sign_in(server: URL, users: Server) -> Accounts:
    """Make the bench's admin (as `make admin` would), sign the reader up, and log both in."""
    settings = UsersSettings(
        database_url=database_url(server, "users").render_as_string(hide_password=False)
    )
    email, password = ADMIN_ACCOUNT
    asyncio.run(create_admin(settings, email=email, password=password, name="Bench"))
    email, password = READER_ACCOUNT
    signed_up = httpx.post(
        f"{users.url}/users/",
        json={"email": email, "name": "Reader", "password": password},
        timeout=30,
    )
    if signed_up.status_code != 409:  # 409: signed up by an earlier run on this data set
        signed_up.raise_for_status()
    return Accounts(
        _log_in(users, ADMIN_ACCOUNT),
        _log_in(users, READER_ACCOUNT),
        _login_form(READER_ACCOUNT),
    )


def users_with_posts_path(after: int | None) -> str:
    """The page of 20 users after user `after` (the first page if None), as a client asks."""
    if after is None:
        return "/users-with-posts?limit=20"
    return f"/users-with-posts?limit=20&after={monolith.BY_ID.cursor_after({'id': after})}"


class Bench:
    def __init__(
        self,
        options: Options,
        servers: dict[str, Server],
        engines: dict[str, Engine],
        accounts: Accounts,
        variants: observability_scenario.Variants | None = None,
    ):
        self.options = options
        self.variants = variants
        self.servers = servers
        self.engines = engines
        self.accounts = accounts
        self.rng = random.Random(4)  # noqa: S311 - test data, not secrets
        self.results = Measurements()
        self._bulk_runs: list[tuple[float, float]] = []
        self._alongside_rps: dict[str, list[float]] = {}
        # Scenario 11: the reference's throughput beside each variant's run, by the variant's job.
        self._reference_rps: dict[str, list[float]] = {}

    def measure(
        self,
        server: str,
        paths: Sequence[str],
        connections: int,
        profile_as: str | None = None,
        request: Request = GET,
        alone: bool = True,
        cpu_of: Sequence[int] = (),
    ) -> LoadResult:
        """A warm-up, then the measured run (profiled by py-spy if asked), which starts once
        the warm-up's requests are done when this load runs `alone`. With `cpu_of`, the
        result has the CPU those processes (and their workers) used per request."""
        url = self.servers[server].url
        seconds = self.options.seconds
        run_wrk(url, paths, connections=connections, seconds=self.options.warmup, request=request)
        if alone:
            self._settle()
        cpu_before = tree_cpu_seconds(cpu_of) if cpu_of else 0.0
        with self._profiled(server, profile_as):
            result = run_wrk(url, paths, connections=connections, seconds=seconds, request=request)
        if cpu_of:
            used = tree_cpu_seconds(cpu_of) - cpu_before
            result = replace(result, cpu_us=round(used / max(1, result.requests) * 1e6, 1))
        _say_failures(result)
        return result

    @staticmethod
    def _settle() -> None:
        if not settle():
            say("  the servers were still busy after 30 s; measuring anyway")

    @contextmanager
    def _profiled(self, server: str, label: str | None) -> Iterator[None]:
        if not (self.options.profile and label):
            yield
            return
        output = RESULTS / f"profile-{label}.svg"
        spy = subprocess.Popen(  # noqa: S603 - our own arguments
            [
                # py-spy is a binary beside the interpreter, not a module it can run.
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--nonblocking",
                "--subprocesses",
                f"--pid={self.servers[server].process.pid}",
                f"--duration={max(1, round(self.options.seconds))}",
                f"--output={output}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            spy.wait(30)

    def wanted(self, number: str) -> bool:
        return self.options.wants(number)

    def user_paths(self) -> list[str]:
        users = self.options.scale.users
        return [f"/users/{self.rng.randint(1, users)}" for _ in range(PATH_SAMPLE)]

    def jobs(self) -> list[Job]:
        """The load runs of the scenarios asked for, in the order one round runs them."""
        user_paths = self.user_paths()
        connections = self.options.connections
        jobs: list[Job] = []

        def throughput(
            number: str,
            key: str,
            server: str,
            paths: Sequence[str],
            label: str,
            many: bool = False,  # at MANY_CONNECTIONS, for the gateway's tail
        ) -> None:
            if not self.wanted(number):
                return
            if many:
                label = f"{label}, {MANY_CONNECTIONS} connections"
                key = f"{key}_{MANY_CONNECTIONS}"
            count = MANY_CONNECTIONS if many else connections
            jobs.append(Job("throughput", key, label, server, paths, count))

        # Each anchor runs right after what it is held against: the two sides of a ratio
        # close in time (see run()).
        throughput("1", "ceiling", "ceiling", user_paths, "1. raw ceiling GET /users/{id}")
        throughput("2", "users", "users", user_paths, "2. users service GET /users/{id}")
        throughput("3", "gateway_user", "gateway", user_paths, "3. gateway GET /users/{id}")
        throughput("13", "nginx", "nginx", user_paths, "13. nginx GET /users/{id}, to users")
        if self.wanted("9"):
            reader = Request(headers=self.accounts.reader)
            login = Request(
                "POST",
                {"Content-Type": "application/x-www-form-urlencoded"},
                self.accounts.reader_login,
            )
            jobs += [
                Job(
                    "throughput",
                    "gateway_user_signed_in",
                    "9. gateway GET /users/{id} with a reader's token (public profiles)",
                    "gateway",
                    user_paths,
                    connections,
                    reader,
                ),
                Job(
                    "throughput",
                    "login",
                    f"9. gateway POST /auth/token, {LOGIN_CONNECTIONS} connections",
                    "gateway",
                    ["/auth/token"],
                    LOGIN_CONNECTIONS,
                    login,
                ),
                Job(
                    "throughput",
                    "gateway_user_during_logins",
                    "9. gateway GET /users/{id} while logins run alongside",
                    "gateway",
                    user_paths,
                    connections,
                    alongside=Job(
                        "alongside",
                        "login",
                        "",
                        "gateway",
                        ["/auth/token"],
                        LOGIN_CONNECTIONS,
                        login,
                    ),
                ),
            ]
        if self.wanted("4") or self.wanted("12"):
            posts_paths = self.users_with_posts_paths()
            view = "GET /users-with-posts?limit=20"
            throughput("4", "users_with_posts", "gateway", posts_paths, f"4. gateway {view}")
            monolith_label = f"12. monolith {view}, one SQL round trip"
            throughput("12", "monolith", "monolith", posts_paths, monolith_label)
            throughput(
                "4", "users_with_posts", "gateway", posts_paths, f"4. gateway {view}", many=True
            )
        if self.wanted("5"):
            product_paths = self.product_paths()
            for many in (False, True):
                throughput(
                    "5",
                    "products",
                    "gateway",
                    product_paths,
                    "5. gateway GET /products/?category_id&min_price&max_price&limit=20",
                    many,
                )
        if self.wanted("6"):
            jobs += self.pagination_jobs()
        if self.wanted("8"):
            for server in ("gateway", "gateway-httpx"):
                for count in GATEWAY_CONCURRENCY:
                    label = f"8. {server} GET /users/{{id}}, {count} connections"
                    jobs.append(Job(server, str(count), label, server, user_paths, count))
        return jobs

    def run(self) -> Measurements:
        """Every load run `repeat` times, interleaved; each keeps its median run.

        Interleaving puts the runs of a ratio's two sides close in time, so a machine whose
        speed drifts (a shared host) moves both alike.
        """
        jobs = self.jobs()
        runs: dict[Job, list[LoadResult]] = {job: [] for job in jobs}
        for round_number in range(1, self.options.repeat + 1):
            for job in jobs:
                say(f"{job.label} (round {round_number} of {self.options.repeat})")
                profile = job.key if job.group == "throughput" and round_number == 1 else None
                self._settle()  # the last run's requests are done
                with self._alongside(job.alongside) as alongside:
                    result = self.measure(
                        job.server,
                        job.paths,
                        job.connections,
                        profile,
                        job.request,
                        alone=job.alongside is None,
                    )
                runs[job].append(result)
                if alongside:
                    self._alongside_rps.setdefault(job.key, []).append(alongside[0].rps)
                say(f"  {result.rps:,.0f} requests/s, p50 {result.latency_ms['p50']} ms")
            if self.wanted("7"):
                self.bulk()
        if self.wanted("11") and self.variants is not None:
            runs.update(self.observability(self.variants))
        for job, results in runs.items():
            self._keep_median(job, results)
        if self.wanted("7"):
            self._keep_bulk_median()
        return self.results

    def observability(
        self, variants: observability_scenario.Variants
    ) -> dict[Job, list[LoadResult]]:
        """Scenario 11 in rounds of its own (see bench.observability): in each round, every
        other variant is started afresh beside a fresh reference, and each read is driven on the
        two in turns of a second; a round's run of either is the sum of its turns."""
        reads = (
            ("user", self.user_paths(), "GET /users/{id}"),
            ("posts", self.users_with_posts_paths(), "GET /users-with-posts?limit=20"),
        )
        jobs = {
            variant.name: [
                Job(
                    "throughput",
                    f"obs_{variant.name}_{key}",
                    f"11. gateway {what}, {variant.description}",
                    f"{variant.name}-gateway",
                    paths,
                    self.options.connections,
                )
                for key, paths, what in reads
            ]
            for variant in observability_scenario.VARIANTS
        }
        runs: dict[Job, list[LoadResult]] = {job: [] for each in jobs.values() for job in each}
        reference = observability_scenario.REFERENCE.name
        others = [v for v in observability_scenario.VARIANTS if v.name != reference]
        rounds = self.options.rounds_11
        for round_number in range(rounds):
            for variant in observability_scenario.rotation(round_number, others):
                pair = (reference, variant.name)
                for name, gateway in variants.start(pair).items():
                    self.servers[f"{name}-gateway"] = gateway
                pids = [[server.process.pid for server in variants.servers(name)] for name in pair]
                for sides in zip(jobs[reference], jobs[variant.name], strict=True):
                    say(f"{sides[1].label}, in turns (round {round_number + 1} of {rounds})")
                    results = self._turns(sides, pids)
                    for job, result in zip(sides, results, strict=True):
                        runs[job].append(result)
                    self._reference_rps.setdefault(sides[1].key, []).append(results[0].rps)
                    say(
                        f"  {results[1].rps:,.0f} requests/s, {results[1].cpu_us:,.0f} µs "
                        f"CPU/request; {reference} beside it {results[0].rps:,.0f} requests/s"
                    )
        variants.close()
        return runs

    def _turns(self, sides: Sequence[Job], pids: Sequence[list[int]]) -> list[LoadResult]:
        """Each of two jobs' loads (`sides`: the reference, then the variant), warmed up, then
        driven in turns (observability.turn_sides), as one result each: the sum of its turns,
        with the CPU its servers (`pids`, by side) used per request."""
        for job in sides:
            run_wrk(
                self.servers[job.server].url,
                job.paths,
                connections=job.connections,
                seconds=self.options.warmup,
            )
        self._settle()
        turns: list[list[LoadResult]] = [[], []]
        cpu = [0.0, 0.0]
        for side in observability_scenario.turn_sides(observability_scenario.TURNS_11):
            job = sides[side]
            before = tree_cpu_seconds(pids[side])
            turns[side].append(
                run_wrk(
                    self.servers[job.server].url,
                    job.paths,
                    connections=job.connections,
                    seconds=observability_scenario.TURN_SECONDS,
                )
            )
            # The requests in flight when a turn ends go on without a client: the next turn
            # starts once they are done, rather than share the machine with them, and they
            # count in the CPU of the turn that sent them.
            self._settle()
            cpu[side] += tree_cpu_seconds(pids[side]) - before
        results = [combined(turns[side], cpu[side]) for side in (0, 1)]
        for result in results:
            _say_failures(result)
        return results

    @contextmanager
    def _alongside(self, job: Job | None) -> Iterator[list[LoadResult]]:
        """Run `job` on a thread of its own for the duration of the block (warm-up included)."""
        if job is None:
            yield []
            return
        finished: list[LoadResult] = []
        seconds = self.options.warmup + self.options.seconds
        url = self.servers[job.server].url

        def load() -> None:
            finished.append(
                run_wrk(
                    url,
                    job.paths,
                    connections=job.connections,
                    seconds=seconds,
                    request=job.request,
                )
            )

        thread = threading.Thread(target=load)
        thread.start()
        try:
            yield finished
        finally:
            thread.join()

    def _keep_median(self, job: Job, results: list[LoadResult]) -> None:
        if job.group == "latency":
            median = sorted(results, key=lambda r: r.latency_ms["p50"])[len(results) // 2]
        else:
            median = sorted(results, key=lambda r: r.rps)[len(results) // 2]
        entry = {
            "label": job.label,
            "server": job.server,
            **median.as_dict(),
            "runs_rps": [r.rps for r in results],
            "runs_p50": [r.latency_ms["p50"] for r in results],
            "runs_p99": [r.latency_ms["p99"] for r in results],
        }
        if all(r.cpu_us is not None for r in results):
            entry["runs_cpu_us"] = [r.cpu_us for r in results]
        if job.key in self._alongside_rps:
            entry["alongside_rps"] = self._alongside_rps[job.key]
        if job.key in self._reference_rps:
            entry["reference_rps"] = self._reference_rps[job.key]
        if job.group == "throughput":
            self.results.throughput[job.key] = entry
        elif job.group == "latency":
            self.results.latency[job.key] = {**entry, "path": job.paths[0]}
        else:
            self.results.concurrency.setdefault(job.group, []).append(entry)

    def users_with_posts_paths(self) -> list[str]:
        # Pages start after random users, the way a client following Link headers would land.
        last = max(1, self.options.scale.users - 20)
        return [users_with_posts_path(self.rng.randint(1, last)) for _ in range(PATH_SAMPLE)]

    def product_paths(self) -> list[str]:
        with self.engines["catalog"].connect() as connection:
            categories = list(connection.execute(text("SELECT id FROM categories")).scalars())
        paths = []
        for _ in range(PATH_SAMPLE):
            low = self.rng.randint(0, 800)
            high = low + self.rng.randint(20, 200)
            category = self.rng.choice(categories)
            paths.append(
                f"/products/?category_id={category}&min_price={low}&max_price={high}&limit=20"
            )
        return paths

    def pagination_jobs(self) -> list[Job]:
        """One client paging posts: the first page, and keyset and offset at 90% depth."""
        depth = int(self.options.scale.posts * 0.9)
        gateway = self.servers["gateway"].url
        answer = httpx.get(f"{gateway}/posts/", params={"skip": depth, "limit": 20}, timeout=30)
        answer.raise_for_status()
        next_url = httpx.URL(answer.links["next"]["url"])
        keyset = f"{next_url.path}?{next_url.query.decode()}"
        pages = {
            "first_page": ("6. posts, first page", "/posts/?limit=20"),
            "keyset_deep": (f"6. posts, keyset at 90% depth ({depth:,})", keyset),
            "offset_deep": (
                f"6. posts, offset at 90% depth ({depth:,})",
                f"/posts/?skip={depth}&limit=20",
            ),
        }
        return [
            Job("latency", key, label, "gateway", [path], 1) for key, (label, path) in pages.items()
        ]

    def bulk(self) -> None:
        """Rows per second: `POST /products/bulk` of 1,000 products vs psycopg executemany."""
        engine = self.engines["catalog"]
        with engine.connect() as connection:
            categories = list(connection.execute(text("SELECT id FROM categories")).scalars())
        batches = [
            product_bodies(self.rng, categories, BULK_ROWS, "bench-bulk")
            for _ in range(BULK_REQUESTS + 2)
        ]
        say(f"7. POST /products/bulk: {BULK_REQUESTS} requests of {BULK_ROWS} rows, catalog")
        with httpx.Client(
            base_url=self.servers["catalog"].url, timeout=60, headers=self.accounts.admin
        ) as catalog:

            def post(batch: list[dict[str, Any]]) -> None:
                catalog.post("/products/bulk", json=batch).raise_for_status()

            service = _rows_per_second(post, batches)
        say(f"  {service:,.0f} rows/s")
        say("7. psycopg executemany of the same rows")
        dsn = _libpq(engine.url)
        with psycopg.connect(dsn, autocommit=True) as database:

            def insert(batch: list[dict[str, Any]]) -> None:
                with database.transaction(), database.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO products (name, description, price, category_id, "
                        "stock_quantity, is_active) VALUES (%s, %s, %s, %s, %s, %s)",
                        [
                            (
                                row["name"],
                                row["description"],
                                row["price"],
                                row["category_id"],
                                row["stock_quantity"],
                                row["is_active"],
                            )
                            for row in batch
                        ],
                    )

            raw = _rows_per_second(insert, batches)
            database.execute("DELETE FROM products WHERE name LIKE 'bench-bulk %'")
            # The other scenarios must not read through thousands of dead rows afterwards.
            database.execute("VACUUM ANALYZE products")
        say(f"  {raw:,.0f} rows/s")
        self._bulk_runs.append((service, raw))

    def _keep_bulk_median(self) -> None:
        services = sorted(service for service, _ in self._bulk_runs)
        raws = sorted(raw for _, raw in self._bulk_runs)
        self.results.bulk = {
            "rows_per_request": BULK_ROWS,
            "requests": BULK_REQUESTS,
            "service_rows_per_second": round(services[len(services) // 2]),
            "executemany_rows_per_second": round(raws[len(raws) // 2]),
            "runs": [[round(service), round(raw)] for service, raw in self._bulk_runs],
        }


def _rows_per_second(
    send: Callable[[list[dict[str, Any]]], None], batches: list[list[dict[str, Any]]]
) -> float:
    for batch in batches[:2]:  # warm-up
        send(batch)
    started = time.perf_counter()
    for batch in batches[2:]:
        send(batch)
    elapsed = time.perf_counter() - started
    return sum(len(batch) for batch in batches[2:]) / elapsed


# --- the machine -------------------------------------------------------------------------------


def machine(engines: dict[str, Engine], workers: int) -> dict[str, Any]:
    """What the numbers were measured on."""
    with engines["users"].connect() as connection:
        postgres = connection.execute(text("SHOW server_version")).scalar_one()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)  # noqa: S607
    packages = (
        "fastapi",
        "starlette",
        "pydantic",
        "sqlalchemy",
        "psycopg",
        "uvicorn",
        "uvloop",
        "httptools",
        "httpx",
        "aiohttp",
    )
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "postgres": str(postgres),
        "wrk": (wrk.stdout or wrk.stderr).split(" Copyright")[0].strip(),
        "nginx": nginx.version(),
        "workers_per_server": workers,
        "packages": {name: _version(name) for name in packages},
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


# --- main --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    options = _parse(sys.argv[1:] if argv is None else argv)
    if wrk_path() is None:
        say("wrk is not installed: `sudo apt-get install wrk` (Debian/Ubuntu), `brew install wrk`")
        return 2
    if options.wants("13") and nginx.nginx_path() is None:
        say("nginx is not installed: `sudo apt-get install nginx` (Debian), `brew install nginx`")
        return 2
    with postgres_server() as server, ExitStack() as stack:
        engines = {
            service: create_engine(database_url(server, service), pool_pre_ping=True)
            for service in SERVICES
        }
        for engine in engines.values():
            stack.callback(engine.dispose)
        fresh = options.reseed or not is_seeded(
            engines["users"], engines["blog"], engines["catalog"], options.scale
        )
        if fresh:
            for engine in engines.values():
                engine.dispose()
            say("creating and migrating bench_users, bench_catalog, bench_blog")
            recreate_databases(server)
        say("starting the servers")
        servers = start_system(stack, server, options.workers)
        if fresh:
            say(
                f"seeding {options.scale.users:,} users, {options.scale.posts:,} posts, "
                f"{options.scale.products:,} products"
            )
            # The seeded users come first: they hold ids 1 to `users`, which the scenarios read.
            seed_users_and_blog(engines["users"], engines["blog"], options.scale)
        scale = options.scale
        copied = monolith.holds(_monolith_dsn(server), scale.users, scale.posts)
        if fresh or (options.wants("12") and not copied):
            say(f"copying the users and posts into {monolith.DATABASE}")
            _create_database(server, monolith.DATABASE)
            sources = {service: _libpq(database_url(server, service)) for service in SERVICES}
            monolith.copy(_monolith_dsn(server), sources)
        start_anchors(stack, server, options, servers)
        accounts = sign_in(server, servers["users"])
        if fresh:
            with httpx.Client(
                base_url=servers["catalog"].url, timeout=120, headers=accounts.admin
            ) as catalog:
                seed_catalog_through_api(engines["catalog"], catalog, options.scale)
        else:
            say("reusing the seeded data set (--reseed rebuilds it)")
        started = datetime.now(UTC)
        variants = (
            observability_variants(stack, server, options.workers, servers)
            if options.wants("11")
            else None
        )
        monolith_differences = (
            check_monolith(servers, options.scale.users) if options.wants("12") else None
        )
        results = Bench(options, servers, engines, accounts, variants).run()
        events = None
        if options.wants("10"):
            from bench import events as events_scenario

            # Its own users and blog, on databases of their own: the servers measured so far
            # stop first, so that both systems' pools never share a default Postgres's 100
            # connections.
            stack.close()

            events = events_scenario.run(
                server, options.workers, options.seconds, options.connections, say
            )
        document = {
            "started": started.isoformat(timespec="seconds"),
            "machine": machine(engines, options.workers),
            "scale": options.scale.__dict__,
            "seconds": options.seconds,
            "warmup": options.warmup,
            "connections": options.connections,
            "repeat": options.repeat,
            "rounds_11": options.rounds_11 if options.wants("11") else None,
            "turns_11": observability_scenario.TURNS_11 if options.wants("11") else None,
            "throughput": results.throughput,
            "latency": results.latency,
            "bulk": results.bulk,
            "concurrency": results.concurrency,
            "events": events,
            "monolith_differences": monolith_differences,
        }
    document["targets"] = report.targets(document)
    RESULTS.mkdir(parents=True, exist_ok=True)
    # A run of some scenarios keeps its own files: latest.* stay those of the last full run.
    name = "latest" if not options.only else "only-" + "-".join(sorted(options.only))
    RESULTS.joinpath(f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    report.write(document, RESULTS, name)
    print(report.table(document))
    say(f"wrote {RESULTS.relative_to(ROOT)}/{name}.json and {name}.md")
    return 0
