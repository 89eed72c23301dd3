"""docker-compose.yml booted for real: built, started, used, broken, restarted and migrated.

One stack serves the whole module and the tests run in order, each a step of its life: `make up`
builds the images from the Dockerfile and starts the stack under a project name of its own, a
client drives it through the published gateway, then the tests check its isolation, its database
roles and its containers' confinement, break and restore a service and a database, stop a
service with requests in flight, restart it with `make down` and `make up`, run a migration step
on the next release's schema, follow `make logs`, and race two migration replicas on a fresh
database. Whatever happens, everything the module created is removed at the end, volumes and
images included.

The container tools come from the environment, as the Makefile reads them: `COMPOSE` (default
`docker compose`) and `IMAGE_BUILD` (default `docker build`); `POSTGRES_IMAGE` and `PYTHON_IMAGE`
replace the official images. Without Docker the module is skipped, and fails with `CI=true`.
Deselect it with `-m "not compose_stack"`.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from psycopg import sql

from servicekit.database import ServiceSettings
from servicekit.migrations import HISTORY_TABLE, parent_revisions

if TYPE_CHECKING:
    from deploy.tests.conftest import Process

pytestmark = pytest.mark.compose_stack

REPOSITORY = Path(__file__).parents[2]
DOCKER = shutil.which("docker") or "docker"
MAKE = shutil.which("make") or "make"
# Generous bounds for a cold machine; the polls return as soon as the condition holds.
STARTUP_DEADLINE = 180.0
RECOVERY_DEADLINE = 60.0
# What a client may wait for the gateway to say that a stopped service is down.
SERVICE_DOWN_DEADLINE = 1.0
# Long enough for a database that vanished to be noticed, short of the gateway's read timeout.
DATABASE_DOWN_DEADLINE = 15.0
MAKE_TIMEOUT = 1200.0
# Requests held in flight while a service stops: each holds one connection of its pools (reads
# and writes have one each), which the stack leaves at their default size.
HELD_READS = HELD_WRITES = int(ServiceSettings.model_fields["pool_size"].default)
HISTORY = sql.Identifier(HISTORY_TABLE)
# What a migration records of each revision it applies, with its parent (servicekit.migrations).
RECORD_REVISION = sql.SQL("INSERT INTO {} (revision, down_revision) VALUES ({}, {})")
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
MIGRATION_LINE = re.compile(r"Running upgrade (?P<step>\S* -> \S+),")
# Connects to host:port from inside a container; exit status 0 when the connection opens.
CONNECT_PROBE = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()\n"
    "except OSError as error:\n"
    "    sys.exit(f'{type(error).__name__}: {error}')\n"
)
# A service's own readiness probe, asked inside its container: status and body.
READINESS_PROBE = (
    "import json, sys, urllib.error, urllib.request\n"
    "url = f'http://127.0.0.1:{sys.argv[1]}/health/ready'\n"
    "try:\n"
    "    answer = urllib.request.urlopen(url, timeout=10)\n"
    "except urllib.error.HTTPError as error:\n"
    "    answer = error\n"
    "print(json.dumps({'status': answer.status, 'body': json.load(answer)}))\n"
)
# What a process may do inside its container: its uid, whether it can write to the root
# filesystem, and its effective capabilities.
CONFINEMENT_PROBE = (
    "import json, os\n"
    "try:\n"
    "    open('/app/written-by-the-test', 'w').close()\n"
    "    writable = True\n"
    "except OSError:\n"
    "    writable = False\n"
    "status = dict(line.split(':\\t', 1) for line in open('/proc/self/status'))\n"
    "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'root_writable': writable,\n"
    "                  'capabilities': int(status['CapEff'], 16)}))\n"
)

T = TypeVar("T")


def poll(deadline: float, attempt: Callable[[], T | None], what: str) -> T:
    """The first result of `attempt` that is not None, within `deadline` seconds."""
    give_up = time.monotonic() + deadline
    while True:
        result = attempt()
        if result is not None:
            return result
        if time.monotonic() > give_up:
            pytest.fail(f"{what}: not within {deadline} s", pytrace=False)
        time.sleep(0.1)


def answered(client: httpx.Client, path: str, status: int) -> Callable[[], httpx.Response | None]:
    """An attempt for `poll`: GET `path`, its response if it has `status`, else None."""

    def attempt() -> httpx.Response | None:
        response = client.get(path)
        return response if response.status_code == status else None

    return attempt


def timed_503(
    stack: Stack, gateway: httpx.Client, path: str, deadline: float, when: str
) -> httpx.Response:
    """The first 503 the gateway answers for `path` within `deadline` seconds from now; how long
    it took is kept in the stack's timings as "503 <when>"."""
    since = time.monotonic()
    answer = poll(deadline, answered(gateway, path, 503), f"a 503 {when}")
    stack.timings[f"503 {when}"] = time.monotonic() - since
    return answer


@dataclass
class Stack:
    """A Compose project of the repository's docker-compose.yml, driven like an operator would."""

    project: str
    environment: dict[str, str]
    compose_command: list[str]
    gateway_url: str
    image_tag: str
    timings: dict[str, float] = field(default_factory=dict)
    # Sent with every gateway call once the client scenario has an admin's token.
    headers: dict[str, str] = field(default_factory=dict)

    def make(self, target: str) -> None:
        """`make <target>` from the repository, as an operator runs it."""
        started = time.monotonic()
        result = self._run([MAKE, "--no-print-directory", target])
        self.timings[f"make {target} #{len(self.timings)}"] = time.monotonic() - started
        assert result.returncode == 0, f"make {target} failed:\n{result.stdout}\n{result.stderr}"

    def run_compose(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """Run the Compose command on this project, whatever its exit status."""
        return self._run([*self.compose_command, *arguments])

    def _run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        """Run `command` from the repository in the project's environment, whatever its exit
        status."""
        return subprocess.run(
            command,
            cwd=REPOSITORY,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=MAKE_TIMEOUT,
            check=False,
        )

    def start_compose(self, *arguments: str) -> subprocess.Popen[str]:
        """Start the Compose command on this project without waiting for it."""
        return subprocess.Popen(
            [*self.compose_command, *arguments],
            cwd=REPOSITORY,
            env=self.environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def compose(self, *arguments: str) -> str:
        """Run the Compose command on this project; its output."""
        result = self.run_compose(*arguments)
        assert result.returncode == 0, f"{arguments} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def containers(self, service: str | None = None) -> list[str]:
        """The ids of the project's containers (of one service), running or not."""
        labels = [f"label=com.docker.compose.project={self.project}"]
        if service is not None:
            labels.append(f"label=com.docker.compose.service={service}")
        arguments = [argument for label in labels for argument in ("--filter", label)]
        return docker("ps", "--all", "--quiet", "--no-trunc", *arguments).split()

    def container(self, service: str) -> str:
        """The id of a service's one container."""
        (container,) = self.containers(service)
        return container

    def inspect(self, container: str) -> dict[str, Any]:
        inspected: list[dict[str, Any]] = json.loads(docker("inspect", container))
        return inspected[0]

    def images(self, processes: tuple[Process, ...]) -> list[str]:
        return [f"{process.image}:{self.image_tag}" for process in processes]

    def gateway(self) -> httpx.Client:
        return httpx.Client(base_url=self.gateway_url, timeout=15.0, headers=self.headers)


def docker(*arguments: str, check: bool = True) -> str:
    """Run `docker`; its output."""
    result = subprocess.run(
        [DOCKER, *arguments], capture_output=True, text=True, timeout=120, check=False
    )
    if check:
        assert result.returncode == 0, f"docker {arguments} failed: {result.stderr}"
    return result.stdout


def exec_python(container: str, program: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run a Python program inside a running container, as the container's own user."""
    return subprocess.run(
        [DOCKER, "exec", container, "python", "-c", program, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the Compose stack needs Docker in CI: {reason}", pytrace=False)
    pytest.skip(f"the Compose stack needs Docker: {reason}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _command_runs(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def stack(processes: tuple[Process, ...]) -> Iterator[Stack]:
    """The stack, built and started by `make up` and ready; removed at the end, whatever happens."""
    compose_command = shlex.split(os.environ.get("COMPOSE", "docker compose"))
    image_build = shlex.split(os.environ.get("IMAGE_BUILD", "docker build"))
    if not _command_runs([DOCKER, "info"]):
        _unavailable("`docker info` fails")
    if not _command_runs([*compose_command, "version"]):
        _unavailable(f"`{shlex.join(compose_command)} version` fails (set COMPOSE)")
    if shutil.which(image_build[0]) is None:
        _unavailable(f"{image_build[0]} is not installed (set IMAGE_BUILD)")

    suffix = secrets.token_hex(4)
    port = _free_port()
    # Neither a Compose setting of the caller's nor the variables of a `make test` around this
    # (MAKEFLAGS carries its command line's assignments, which would override these).
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("COMPOSE_") and key not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}
    }
    environment.update(
        COMPOSE_PROJECT_NAME=f"composestack{suffix}",
        GATEWAY_ADDRESS="127.0.0.1",
        GATEWAY_PORT=str(port),
        IMAGE_PREFIX="",
        IMAGE_TAG=f"test-{suffix}",
    )
    stack = Stack(
        project=environment["COMPOSE_PROJECT_NAME"],
        environment=environment,
        compose_command=compose_command,
        gateway_url=f"http://127.0.0.1:{port}",
        image_tag=environment["IMAGE_TAG"],
    )
    try:
        stack.make("up")
        started = time.monotonic()
        wait_until_ready(stack)
        stack.timings["ready after make up"] = time.monotonic() - started
        yield stack
    finally:
        subprocess.run(
            [*compose_command, "down", "--volumes", "--remove-orphans", "--timeout", "5"],
            cwd=REPOSITORY,
            env=environment,
            capture_output=True,
            timeout=300,
            check=False,
        )
        docker("image", "rm", "--force", *stack.images(processes), check=False)
        print(f"\nCompose stack timings (s): {stack.timings}")


def wait_until_ready(stack: Stack) -> None:
    """Until the gateway reports every service ready."""

    def ready() -> bool | None:
        try:
            with stack.gateway() as gateway:
                return gateway.get("/health/ready").status_code == 200 or None
        except httpx.TransportError:
            return None

    poll(STARTUP_DEADLINE, ready, "the gateway reports every service ready")


def expect(response: httpx.Response, status: int) -> dict[str, Any]:
    """The JSON body of a response that must have `status`."""
    assert response.status_code == status, f"{response.request.url}: {response.text}"
    body: dict[str, Any] = response.json()
    return body


ADMIN = ("root@example.com", "the admin's passphrase")


def log_in(gateway: httpx.Client, email: str, password: str) -> dict[str, str]:
    """The Authorization header of a user's access token, from `POST /auth/token`."""
    tokens = expect(
        gateway.post("/auth/token", data={"username": email, "password": password}), 200
    )
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def drive_client_scenario(stack: Stack, gateway: httpx.Client) -> dict[str, dict[str, Any]]:
    """What a new client does through the gateway; every resource it created, by its path.

    The operator makes the first admin in the users container, as the README says; the admin's
    token then goes with every later call of the module (`stack.headers`).
    """
    user = expect(
        gateway.post(
            "/users/",
            json={"email": "ada@example.com", "name": "Ada Lovelace", "password": "analytical"},
        ),
        201,
    )
    ada = log_in(gateway, "ada@example.com", "analytical")
    assert gateway.post("/categories/", json={"name": "Mine"}, headers=ada).status_code == 403
    post = expect(
        gateway.post(
            f"/users/{user['id']}/posts",
            json={"title": "Notes", "content": "On the engine.", "tags": ["Maths", "Engines"]},
            headers=ada,
        ),
        201,
    )
    assert post["author_id"] == user["id"]
    assert sorted(post["tags"]) == ["engines", "maths"]

    stack.compose(
        "exec", "-T", "users", "python", "-m", "users_service.admin",
        "--email", ADMIN[0], "--password", ADMIN[1],
    )  # fmt: skip
    stack.headers.update(log_in(gateway, *ADMIN))
    gateway.headers.update(stack.headers)
    user = expect(gateway.get(f"/users/{user['id']}"), 200)  # the whole record, as admins see it

    composed = gateway.get("/users-with-posts", params={"limit": 100})
    assert composed.status_code == 200, composed.text
    (author,) = [entry for entry in composed.json() if entry["id"] == user["id"]]
    assert [written["id"] for written in author["posts"]] == [post["id"]]

    category = expect(gateway.post("/categories/", json={"name": "Calculating engines"}), 201)
    product = expect(
        gateway.post(
            "/products/",
            json={
                "name": "Difference engine",
                "price": "1700.00",
                "category_id": category["id"],
                "stock_quantity": 2,
            },
        ),
        201,
    )
    assert_deleted_users_content_goes(gateway)
    return {
        f"/users/{user['id']}": user,
        f"/posts/{post['id']}": post,
        f"/categories/{category['id']}": category,
        f"/products/{product['id']}": product,
    }


def assert_deleted_users_content_goes(gateway: httpx.Client) -> None:
    """A user deletes their account: blog, following users' events, erases what they wrote."""
    bob = expect(
        gateway.post(
            "/users/", json={"email": "bob@example.com", "name": "Bob", "password": "a bob pass"}
        ),
        201,
    )
    own = log_in(gateway, "bob@example.com", "a bob pass")
    post = expect(gateway.post("/posts/", json={"title": "Hi", "content": "!"}, headers=own), 201)
    assert gateway.delete(f"/users/{bob['id']}", headers=own).status_code == 204

    def erased() -> bool | None:
        return True if gateway.get(f"/posts/{post['id']}").status_code == 404 else None

    poll(10, erased, "the deleted user's post gone")
    after = gateway.post("/posts/", json={"title": "Again", "content": "?"}, headers=own)
    assert (after.status_code, after.json()) == (404, {"detail": f"user {bob['id']} not found"})


@pytest.fixture(scope="module")
def acknowledged() -> dict[str, dict[str, Any]]:
    """What the gateway acknowledged as created, by path: filled by the client scenario."""
    return {}


def assert_still_there(stack: Stack, acknowledged: dict[str, dict[str, Any]]) -> None:
    assert acknowledged, "the client scenario created nothing"
    with stack.gateway() as gateway:
        for path, body in acknowledged.items():
            assert expect(gateway.get(path), 200) == body, path


def migration_steps(stack: Stack, service: str) -> list[str]:
    """Every migration step the service's migration containers logged, across all of them."""
    steps = []
    for container in stack.containers(f"{service}-migrate"):
        logs = subprocess.run(
            [DOCKER, "logs", container], capture_output=True, text=True, timeout=60, check=True
        )
        steps += MIGRATION_LINE.findall(logs.stdout + logs.stderr)
    return steps


def recorded_revisions(stack: Stack, service: Process) -> list[str]:
    """The rows of alembic_version in the service's database, read inside its container."""
    output = docker(
        "exec",
        stack.container(f"{service.name}-db"),
        "psql",
        "--username",
        service.name,
        "--dbname",
        service.name,
        "--tuples-only",
        "--no-align",
        "--command",
        "SELECT version_num FROM alembic_version",
    )
    return output.split()


def script_directory(service: Process) -> ScriptDirectory:
    """The service's migrations, as its image holds them."""
    return ScriptDirectory.from_config(Config(str(REPOSITORY / service.directory / "alembic.ini")))


def head_revision(service: Process) -> str:
    (head,) = script_directory(service).get_heads()
    return head


def start_times(stack: Stack) -> dict[str, str]:
    """When each of the project's containers last started."""
    return {
        container: stack.inspect(container)["State"]["StartedAt"]
        for container in stack.containers()
    }


def test_make_up_starts_every_container_healthy_after_its_migration(
    stack: Stack, processes: tuple[Process, ...]
) -> None:
    for process in processes:
        for service in (process.name, f"{process.name}-db") if process.has_database else ():
            state = stack.inspect(stack.container(service))["State"]
            assert state["Running"], service
            assert state["Health"]["Status"] in {"healthy", "starting"}, service
        for step in ("db-roles", "migrate") if process.has_database else ():
            state = stack.inspect(stack.container(f"{process.name}-{step}"))["State"]
            assert (state["Running"], state["ExitCode"]) == (False, 0), step

    def gateway_healthy() -> bool | None:
        state = stack.inspect(stack.container("gateway"))["State"]
        return state["Health"]["Status"] == "healthy" or None

    poll(STARTUP_DEADLINE, gateway_healthy, "the gateway's container is healthy")
    with stack.gateway() as gateway:
        ready = expect(gateway.get("/health/ready"), 200)
    assert ready["checks"] == {process.name: "ok" for process in processes if process.has_database}


def test_a_client_is_served_through_the_published_gateway(
    stack: Stack, acknowledged: dict[str, dict[str, Any]]
) -> None:
    with stack.gateway() as gateway:
        acknowledged.update(drive_client_scenario(stack, gateway))
    assert_still_there(stack, acknowledged)


def test_only_the_gateway_publishes_a_port(stack: Stack) -> None:
    published = {}
    for container in stack.containers():
        inspected = stack.inspect(container)
        service = inspected["Config"]["Labels"]["com.docker.compose.service"]
        for port, bindings in (inspected["NetworkSettings"]["Ports"] or {}).items():
            if bindings:
                published[f"{service} {port}"] = [
                    (binding["HostIp"], binding["HostPort"]) for binding in bindings
                ]
    assert published == {"gateway 8000/tcp": [("127.0.0.1", stack.environment["GATEWAY_PORT"])]}


def database_hosts(stack: Stack, service: Process) -> list[str]:
    """Every way to reach the database of `service`: its host name and its container's
    address on each of its networks."""
    networks = stack.inspect(stack.container(f"{service.name}-db"))["NetworkSettings"]["Networks"]
    return [f"{service.name}-db", *(network["IPAddress"] for network in networks.values())]


def test_the_gateway_reaches_no_database(stack: Stack, processes: tuple[Process, ...]) -> None:
    gateway = stack.container("gateway")
    for service in (process for process in processes if process.has_database):
        for host in database_hosts(stack, service):
            probe = exec_python(gateway, CONNECT_PROBE, host, "5432")
            assert probe.returncode != 0, f"the gateway reaches {host}:5432"
        # The same probe reaches what the gateway may reach: a failure above is isolation.
        reachable = exec_python(gateway, CONNECT_PROBE, service.name, str(service.port))
        assert reachable.returncode == 0, reachable.stderr


def test_service_reaches_its_own_database_and_no_other(
    stack: Stack, service: Process, processes: tuple[Process, ...]
) -> None:
    container = stack.container(service.name)
    own = exec_python(container, CONNECT_PROBE, f"{service.name}-db", "5432")
    assert own.returncode == 0, own.stderr
    for other in (process for process in processes if process.has_database):
        if other == service:
            continue
        for host in database_hosts(stack, other):
            probe = exec_python(container, CONNECT_PROBE, host, "5432")
            assert probe.returncode != 0, f"{service.name} reaches {host}:5432"


def psql_in_database(
    stack: Stack, service: Process, role: str, statement: str, *, check: bool = False
) -> str:
    """Run a statement in the service's database as `role`, inside its container: its output,
    or the server's error as `ERROR: ...` (with `check`, an error fails the test). Several
    statements run in one transaction."""
    result = subprocess.run(
        [
            DOCKER, "exec", stack.container(f"{service.name}-db"),
            "psql", "--username", role, "--dbname", service.name,
            "--tuples-only", "--no-align", "--command", statement,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    if check:
        assert result.returncode == 0, f"{statement}: {result.stderr}"
    return result.stdout.strip() if result.returncode == 0 else result.stderr.strip()


def test_service_connects_as_a_role_that_may_not_change_the_schema(
    stack: Stack, service: Process
) -> None:
    migrator = f"{service.name}_migrator"
    connected = psql_in_database(
        stack,
        service,
        "postgres",
        "SELECT DISTINCT usename FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    owners = psql_in_database(
        stack,
        service,
        "postgres",
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'",
    )
    assert (connected, owners) == (service.name, migrator)
    created = psql_in_database(stack, service, service.name, "CREATE TABLE intruder (id integer)")
    assert "ERROR:  permission denied for schema public" in created
    dropped = psql_in_database(stack, service, service.name, "DROP TABLE alembic_version")
    assert "ERROR:  must be owner of table alembic_version" in dropped


def test_process_runs_unprivileged_on_a_read_only_root(stack: Stack, process: Process) -> None:
    container = stack.container(process.name)
    inspected = stack.inspect(container)
    declared_user = docker("image", "inspect", "--format", "{{.Config.User}}", inspected["Image"])
    assert inspected["Config"]["User"] == declared_user.strip() == "10001:10001"
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    assert inspected["HostConfig"]["CapDrop"] == ["ALL"]
    assert not inspected["HostConfig"]["CapAdd"]
    assert "no-new-privileges:true" in inspected["HostConfig"]["SecurityOpt"]

    probe = exec_python(container, CONFINEMENT_PROBE)
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == {
        "uid": 10001,
        "gid": 10001,
        "root_writable": False,
        "capabilities": 0,
    }


def test_a_stopped_service_is_a_503_naming_it_and_serves_again_once_started(
    stack: Stack, acknowledged: dict[str, dict[str, Any]]
) -> None:
    user_path = next(path for path in acknowledged if path.startswith("/users/"))
    category_path = next(path for path in acknowledged if path.startswith("/categories/"))
    users = stack.container("users")
    others_started = {
        container: started
        for container, started in start_times(stack).items()
        if container != users
    }
    with stack.gateway() as gateway:
        docker("stop", users)
        answer = timed_503(stack, gateway, user_path, SERVICE_DOWN_DEADLINE, "after users stopped")
        assert stack.timings["503 after users stopped"] <= SERVICE_DOWN_DEADLINE
        assert "users" in answer.json()["detail"]
        assert expect(gateway.get(category_path), 200) == acknowledged[category_path]

        stack.compose("start", "users")

        served = poll(
            RECOVERY_DEADLINE, answered(gateway, user_path, 200), "users served again once started"
        )
        assert served.json() == acknowledged[user_path]
    assert {
        container: started
        for container, started in start_times(stack).items()
        if container != users
    } == others_started


def test_a_killed_database_makes_its_service_unready_until_it_is_back(
    stack: Stack, acknowledged: dict[str, dict[str, Any]]
) -> None:
    user_path = next(path for path in acknowledged if path.startswith("/users/"))
    database = stack.container("users-db")
    with stack.gateway() as gateway:
        docker("kill", database)

        answer = timed_503(
            stack, gateway, user_path, DATABASE_DOWN_DEADLINE, "after users-db killed"
        )
        assert answer.json() == {"detail": "database unavailable"}
        own_probe = exec_python(stack.container("users"), READINESS_PROBE, "8001")
        assert json.loads(own_probe.stdout) == {
            "status": 503,
            "body": {"status": "unavailable", "checks": {"database": "unreachable"}},
        }
        ready = gateway.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"users": "unavailable", "catalog": "ok", "blog": "ok"}

        stack.compose("start", "users-db")

        served = poll(
            RECOVERY_DEADLINE,
            answered(gateway, user_path, 200),
            "users served again with users-db back",
        )
        assert served.json() == acknowledged[user_path]
        assert expect(gateway.get("/health/ready"), 200)["status"] == "ok"
    assert_still_there(stack, acknowledged)


def locks_on(stack: Stack, service: Process, table: str, *, granted: bool) -> int:
    """How many locks on a table of the service's database are held (or waited for)."""
    query = sql.SQL("SELECT count(*) FROM pg_locks WHERE granted = {} AND relation = {}::regclass")
    count = psql_in_database(
        stack, service, "postgres", query.format(granted, table).as_string(), check=True
    )
    return int(count)


def lock_table(stack: Stack, service: Process, table: str) -> subprocess.Popen[str]:
    """A session of the service's database that takes an exclusive lock on a table: every
    query of the table then waits until release_lock."""
    session = subprocess.Popen(
        [DOCKER, "exec", "--interactive", stack.container(f"{service.name}-db"),
         "psql", "--username", "postgres", "--dbname", service.name, "--quiet",
         "--set", "ON_ERROR_STOP=1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert session.stdin is not None
    session.stdin.write(f"BEGIN;\nLOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;\n")
    session.stdin.flush()
    return session


def release_lock(session: subprocess.Popen[str]) -> None:
    """End a lock_table session, rolling back; once ended, nothing."""
    if session.returncode is None:
        session.communicate("ROLLBACK;\n", timeout=RECOVERY_DEADLINE)


def test_a_service_stopped_under_load_answers_the_requests_in_flight_and_refuses_new_ones(
    stack: Stack, acknowledged: dict[str, dict[str, Any]], processes: tuple[Process, ...]
) -> None:
    """`docker compose stop catalog` with requests in flight through the gateway: each gets
    its normal answer, every write is stored, and catalog refuses new connections meanwhile."""
    catalog = next(process for process in processes if process.name == "catalog")
    names = [f"Held {n}" for n in range(HELD_WRITES)]
    with ExitStack() as cleanup:
        client = cleanup.enter_context(
            httpx.Client(base_url=stack.gateway_url, headers=stack.headers, timeout=30.0)
        )
        requests = cleanup.enter_context(ThreadPoolExecutor(HELD_READS + HELD_WRITES))
        lock = lock_table(stack, catalog, "categories")
        # Before the executor waits for its requests, which wait for the lock.
        cleanup.callback(release_lock, lock)
        poll(
            RECOVERY_DEADLINE,
            lambda: locks_on(stack, catalog, "categories", granted=True) or None,
            "the lock on catalog's categories taken",
        )
        sent = time.monotonic()
        reads = [requests.submit(client.get, "/categories/") for _ in range(HELD_READS)]
        writes = [
            requests.submit(client.post, "/categories/", json={"name": name}) for name in names
        ]
        poll(
            RECOVERY_DEADLINE,
            lambda: (
                locks_on(stack, catalog, "categories", granted=False) == HELD_READS + HELD_WRITES
                or None
            ),
            "every request waiting for the lock in catalog's database",
        )

        stopping = stack.start_compose("stop", catalog.name)
        stop_sent = time.monotonic()
        gateway = stack.container("gateway")

        def refused() -> str | None:
            probe = exec_python(gateway, CONNECT_PROBE, catalog.name, str(catalog.port))
            return probe.stderr if probe.returncode != 0 else None

        refusal = poll(RECOVERY_DEADLINE, refused, "catalog refusing new connections")
        in_flight = not any(request.done() for request in reads + writes)
        still_running = stack.inspect(stack.container(catalog.name))["State"]["Running"]
        started = time.monotonic()
        new_request = client.get("/categories/")
        new_request_seconds = time.monotonic() - started

        release_lock(lock)
        answers = [request.result() for request in reads + writes]
        stack.timings["requests held through compose stop"] = time.monotonic() - sent
        stop_output, _ = stopping.communicate(timeout=RECOVERY_DEADLINE)
        stack.timings["compose stop under load"] = time.monotonic() - stop_sent

    assert "ConnectionRefusedError" in refusal, refusal
    assert in_flight
    assert still_running
    assert new_request.status_code == 503, new_request.text
    assert new_request.json() == {"detail": "the catalog service is unavailable"}
    assert new_request_seconds <= SERVICE_DOWN_DEADLINE
    assert [answer.status_code for answer in answers] == [200] * HELD_READS + [201] * HELD_WRITES
    assert stopping.returncode == 0, stop_output
    state = stack.inspect(stack.container(catalog.name))["State"]
    # uvicorn, the container's PID 1, exits on its own once the requests are answered: Compose
    # did not have to kill it (137) at the end of stop_grace_period.
    assert (state["Running"], state["ExitCode"]) == (False, 0)

    stack.compose("start", catalog.name)
    wait_until_ready(stack)
    with stack.gateway() as gateway_client:
        for answer, name in zip(answers[HELD_READS:], names, strict=True):
            stored = expect(gateway_client.get(answer.headers["Location"]), 200)
            assert stored == answer.json()
            assert stored["name"] == name
            acknowledged[answer.headers["Location"]] = stored


def test_make_down_and_make_up_keep_the_data_and_migrate_nothing_again(
    stack: Stack, acknowledged: dict[str, dict[str, Any]], processes: tuple[Process, ...]
) -> None:
    services = [process for process in processes if process.has_database]
    for service in services:
        # The first `make up` migrated every database: the log lines below are the evidence.
        assert migration_steps(stack, service.name), service.name
        assert recorded_revisions(stack, service) == [head_revision(service)]

    stack.make("down")
    assert stack.containers() == []
    volumes = docker(
        "volume", "ls", "--quiet", "--filter", f"label=com.docker.compose.project={stack.project}"
    )
    # Compose may also have made the monitoring profile's volume, empty, though Prometheus
    # never ran here: it is not among the data a `down` must keep.
    kept = set(volumes.split()) - {f"{stack.project}_prometheus-data"}
    assert sorted(kept) == sorted(
        [
            f"{stack.project}_{service.name}-db-{kind}"
            for service in services
            for kind in ("data", "socket")
        ]
        + [f"{stack.project}_users-keys"]
    )

    stack.make("up")
    wait_until_ready(stack)
    # The admin's token from before still verifies: the signing keys are kept on their volume.
    assert_still_there(stack, acknowledged)
    for service in services:
        assert migration_steps(stack, service.name) == [], service.name
        assert recorded_revisions(stack, service) == [head_revision(service)]


def migrate_again(stack: Stack, service: Process) -> subprocess.CompletedProcess[str]:
    """The service's migration step run once more by Compose, as an operator runs it."""
    return stack.run_compose("run", "--rm", "--no-deps", "-T", f"{service.name}-migrate")


def migrate_by_hand(stack: Stack, service: Process, *statements: sql.Composable) -> None:
    """Run statements in one transaction as the service's migrator, as a migration does."""
    script = sql.SQL("; ").join(statements).as_string()
    psql_in_database(stack, service, f"{service.name}_migrator", script, check=True)


def revisions_and_schema(stack: Stack, service: Process) -> tuple[str, str]:
    """alembic_version with the recorded history of revisions, and the schema as pg_dump
    prints it: what a migration step may change."""
    query = sql.SQL(
        "SELECT (SELECT string_agg(version_num, ' ') FROM alembic_version) || ' / ' || ("
        "SELECT string_agg(revision || ' <- ' || coalesce(down_revision, '') || ' at '"
        " || applied_at, ', ' ORDER BY revision) FROM {})"
    ).format(HISTORY)
    revisions = psql_in_database(stack, service, "postgres", query.as_string(), check=True)
    dump = docker(
        "exec", stack.container(f"{service.name}-db"),
        "pg_dump", "--username", "postgres", "--schema-only", service.name,
    )  # fmt: skip
    # pg_dump (17.6, 15.14 and later) frames each dump in \restrict lines with a random key.
    schema = [
        line for line in dump.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
    ]
    return revisions, "\n".join(schema)


def test_a_release_starts_on_the_next_ones_schema_and_refuses_another_lineage(
    stack: Stack, processes: tuple[Process, ...]
) -> None:
    """The image's users-migrate on a database one release ahead of it, as the next release's
    migration (an expand step) leaves it: it says so, changes nothing, and users starts on it
    and serves. On a revision that does not follow its head, it fails and changes nothing."""
    users = next(process for process in processes if process.name == "users")
    head = head_revision(users)
    (previous,) = parent_revisions(script_directory(users).get_revision(head))
    newer, foreign = secrets.token_hex(6), secrets.token_hex(6)
    migrate_by_hand(
        stack,
        users,
        sql.SQL("ALTER TABLE users ADD COLUMN display_name VARCHAR(100)"),
        RECORD_REVISION.format(HISTORY, newer, head),
        sql.SQL("UPDATE alembic_version SET version_num = {}").format(newer),
    )
    ahead = revisions_and_schema(stack, users)
    started = stack.inspect(stack.container(users.name))["State"]["StartedAt"]

    step = migrate_again(stack, users)
    after_step = revisions_and_schema(stack, users)
    stack.compose("restart", users.name)
    wait_until_ready(stack)
    with stack.gateway() as gateway:
        created = expect(
            gateway.post(
                "/users/",
                json={
                    "email": "hopper@example.com",
                    "name": "Grace Hopper",
                    "password": "flow-matic",
                },
            ),
            201,
        )
        read_back = expect(gateway.get(f"/users/{created['id']}"), 200)
    display_name_unset = psql_in_database(
        stack,
        users,
        "postgres",
        sql.SQL("SELECT display_name IS NULL FROM users WHERE id = {}")
        .format(created["id"])
        .as_string(),
    )

    output = step.stdout + step.stderr
    assert step.returncode == 0, output
    assert [line for line in output.splitlines() if " [servicekit." in line] == [
        f"WARNI [servicekit.migrations] the database schema ({newer}) is newer than this release"
        f" ({head}) and follows it: nothing to migrate, starting on it as it is"
    ]
    assert not MIGRATION_LINE.search(output)
    assert after_step == ahead
    assert recorded_revisions(stack, users) == [newer]
    assert stack.inspect(stack.container(users.name))["State"]["StartedAt"] != started
    assert (read_back["email"], read_back["name"]) == ("hopper@example.com", "Grace Hopper")
    assert display_name_unset == "t"

    # Another lineage: a revision that follows the head's parent instead of the head.
    migrate_by_hand(
        stack,
        users,
        RECORD_REVISION.format(HISTORY, foreign, previous),
        sql.SQL("UPDATE alembic_version SET version_num = {}").format(foreign),
    )
    elsewhere = revisions_and_schema(stack, users)
    refused = migrate_again(stack, users)

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert (
        f"FAILED: the database is at {foreign}, which this release (head {head}) does not know,"
        f" and cannot be shown to follow it (its history bypasses {head}): refusing to start on it"
    ) in refused.stdout + refused.stderr
    assert revisions_and_schema(stack, users) == elsewhere

    # Back to the image's release, as the next release's downgrade would take it.
    migrate_by_hand(
        stack,
        users,
        sql.SQL("DELETE FROM {} WHERE revision IN ({}, {})").format(HISTORY, newer, foreign),
        sql.SQL("UPDATE alembic_version SET version_num = {}").format(head),
        sql.SQL("ALTER TABLE users DROP COLUMN display_name"),
    )
    assert recorded_revisions(stack, users) == [head]


def test_make_logs_follows_the_containers(stack: Stack) -> None:
    request_id = f"compose-stack-{secrets.token_hex(8)}"
    logs = subprocess.Popen(
        [MAKE, "--no-print-directory", "logs"],
        cwd=REPOSITORY,
        env=stack.environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert logs.stdout is not None

    def read(output: IO[str]) -> None:
        for line in output:
            lines.put(line)

    reader = threading.Thread(target=read, args=(logs.stdout,), daemon=True)
    reader.start()
    try:
        with stack.gateway() as gateway:
            assert gateway.get("/health/live", headers={"X-Request-ID": request_id}).is_success

        def request_logged() -> str | None:
            # Every line read so far at each attempt: the containers' earlier lines come first,
            # and poll's pause after each would add up.
            try:
                line = lines.get(timeout=1)
                while request_id not in line:
                    line = lines.get_nowait()
            except queue.Empty:
                return None
            return line

        line = poll(RECOVERY_DEADLINE, request_logged, "make logs shows the request's line")
        prefix, _, message = ANSI_COLOUR.sub("", line).partition("|")
        assert prefix.startswith("gateway"), line
        assert json.loads(message)["request_id"] == request_id
    finally:
        os.killpg(logs.pid, signal.SIGTERM)
        logs.wait(timeout=30)
        reader.join(timeout=30)
        logs.stdout.close()


def test_replicas_starting_together_on_a_fresh_database_migrate_it_once(
    stack: Stack, processes: tuple[Process, ...]
) -> None:
    users = next(process for process in processes if process.name == "users")
    stack.compose("rm", "--stop", "--force", "users", "users-migrate", "users-db-roles", "users-db")
    docker("volume", "rm", f"{stack.project}_users-db-data")

    stack.compose("up", "--detach", "--no-build", "--scale", "users-migrate=2", "users")
    wait_until_ready(stack)
    migrators = stack.containers("users-migrate")
    assert len(migrators) == 2
    for container in migrators:
        state = stack.inspect(container)["State"]
        assert (state["Running"], state["ExitCode"]) == (False, 0)
    steps = migration_steps(stack, "users")
    assert steps, "no replica migrated the fresh database"
    assert len(steps) == len(set(steps)), f"a migration ran twice: {steps}"
    assert recorded_revisions(stack, users) == [head_revision(users)]
    with stack.gateway() as gateway:
        created = expect(
            gateway.post(
                "/users/",
                json={"email": "grace@example.com", "name": "Grace", "password": "compilers"},
            ),
            201,
        )
    assert created["id"] == 1
