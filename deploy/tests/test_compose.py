"""docker-compose.yml: valid under the Compose specification, a database per service, migrations
before services, only the gateway published, and nothing secret but development defaults."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest.mock import ANY

import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy.engine import URL, make_url

from deploy.tests.kubernetes_rules import GRACEFUL_SHUTDOWN_VARIABLE, image_environment
from servicekit.database import ServiceSettings
from servicekit.settings import DEVELOPMENT_PASSWORDS

if TYPE_CHECKING:
    from deploy.tests.conftest import Process

COMPOSE_FILE = Path(__file__).parents[2] / "docker-compose.yml"
# Compose's interpolation, as far as this file uses it: `$$`, `${NAME}` and `${NAME:-default}`.
VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?::-(?P<default>[^}]*))?\}")

Container = dict[str, Any]


def interpolate(value: str, environment: Mapping[str, str]) -> str:
    """The value Compose would use, with `environment` as the shell's variables."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group("name"), match.group("default")
        if default is not None:
            return environment.get(name) or default
        return environment.get(name, "")

    return VARIABLE.sub(substitute, value)


@pytest.fixture(scope="module")
def containers() -> dict[str, Container]:
    services: dict[str, Container] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return services


@pytest.fixture(scope="module")
def networks() -> dict[str, dict[str, Any]]:
    declared: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE_FILE.read_text())["networks"]
    return declared


def _environment(container: Container, shell: Mapping[str, str]) -> dict[str, str]:
    return {key: interpolate(str(value), shell) for key, value in container["environment"].items()}


def _database_url(
    containers: dict[str, Container], service: Process, shell: Mapping[str, str]
) -> URL:
    return make_url(
        _environment(containers[service.name], shell)[f"{service.env_prefix}DATABASE_URL"]
    )


def _migration_url(
    containers: dict[str, Container], service: Process, shell: Mapping[str, str]
) -> URL:
    migrate = _environment(containers[f"{service.name}-migrate"], shell)
    return make_url(migrate[f"{service.env_prefix}MIGRATION_DATABASE_URL"])


def test_compose_file_matches_the_compose_specification(check_jsonschema: Path) -> None:
    result = subprocess.run(
        [check_jsonschema, "--builtin-schema", "vendor.compose-spec", COMPOSE_FILE],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_long_running_container_checks_its_health(
    containers: dict[str, Container],
) -> None:
    for name, container in containers.items():
        if container.get("restart") == "no":
            # One-shot steps (a database's roles, a migration) are exempt: they exit, and their
            # success is what the next waits for (service_completed_successfully).
            assert name.endswith(("-db-roles", "-migrate")), f"{name} runs once but is no step"
            continue
        healthcheck = container.get("healthcheck", {})
        assert healthcheck.get("test"), f"{name} has no health check"
        assert not healthcheck.get("disable", False)


def test_only_the_gateway_publishes_a_port(
    containers: dict[str, Container], processes: tuple[Process, ...]
) -> None:
    gateway = processes[-1]
    published = {
        name: container["ports"] for name, container in containers.items() if "ports" in container
    }
    assert list(published) == [gateway.name]
    (mapping,) = published[gateway.name]
    assert interpolate(mapping, {}) == f"127.0.0.1:{gateway.port}:{gateway.port}"
    assert interpolate(mapping, {"GATEWAY_ADDRESS": "192.0.2.1", "GATEWAY_PORT": "80"}) == (
        f"192.0.2.1:80:{gateway.port}"
    )


def test_service_has_a_database_of_its_own(
    service: Process, containers: dict[str, Container]
) -> None:
    database = containers[f"{service.name}-db"]
    assert interpolate(database["image"], {}).startswith("postgres:")
    assert interpolate(database["image"], {"POSTGRES_IMAGE": "mirror/postgres:17"}) == (
        "mirror/postgres:17"
    )
    assert database["healthcheck"]["test"][1].startswith("pg_isready")
    assert database["environment"]["POSTGRES_DB"] == service.name
    assert database["volumes"] == [
        f"{service.name}-db-data:/var/lib/postgresql/data",
        f"{service.name}-db-socket:/var/run/postgresql",
    ]

    url = _database_url(containers, service, {})
    assert (url.host, url.port, url.database, url.username) == (
        f"{service.name}-db",
        5432,
        service.name,
        service.name,
    )
    users_of_database = {
        name
        for name, container in containers.items()
        if f"@{service.name}-db:" in str(container.get("environment", {}))
    }
    assert users_of_database == {service.name, f"{service.name}-migrate"}


def test_service_database_shares_a_network_only_with_its_service(
    service: Process, containers: dict[str, Container], networks: dict[str, dict[str, Any]]
) -> None:
    (network,) = containers[f"{service.name}-db"]["networks"]
    assert networks[network].get("internal") is True
    on_network = {
        name for name, container in containers.items() if network in container.get("networks", [])
    }
    assert on_network == {service.name, f"{service.name}-migrate", f"{service.name}-db"}


def test_service_migrates_to_completion_before_it_starts(
    service: Process, containers: dict[str, Container]
) -> None:
    migrate, server = containers[f"{service.name}-migrate"], containers[service.name]
    assert migrate["command"] == service.migration_command
    assert migrate["image"] == server["image"]
    # The service's settings, and the migrator's URL, which the service is never given.
    migration_url = f"{service.env_prefix}MIGRATION_DATABASE_URL"
    assert migrate["environment"] == {**server["environment"], migration_url: ANY}
    assert migration_url not in server["environment"]
    assert migrate["depends_on"] == {
        f"{service.name}-db-roles": {"condition": "service_completed_successfully"}
    }
    assert server["depends_on"] == {
        f"{service.name}-migrate": {"condition": "service_completed_successfully"}
    }


def test_containers_are_built_from_the_dockerfile_with_their_projects_arguments(
    process: Process, containers: dict[str, Container]
) -> None:
    container = containers[process.name]
    assert container["build"]["context"] == "."
    assert container["build"]["dockerfile"] == "Dockerfile"
    arguments = container["build"]["args"]
    assert arguments == {**process.build_arguments, "PYTHON_IMAGE": ANY}
    assert interpolate(container["image"], {}) == f"{process.image}:dev"
    assert interpolate(
        container["image"], {"IMAGE_PREFIX": "registry.example.com/", "IMAGE_TAG": "1.0"}
    ) == (f"registry.example.com/{process.image}:1.0")
    assert interpolate(arguments["PYTHON_IMAGE"], {}) == "python:3.11-slim-bookworm"


def test_services_are_reachable_only_on_internal_networks(
    containers: dict[str, Container],
    networks: dict[str, dict[str, Any]],
    processes: tuple[Process, ...],
) -> None:
    gateway = processes[-1]
    for name, container in containers.items():
        if container.get("network_mode") == "none":
            continue
        external = [net for net in container["networks"] if not networks[net].get("internal")]
        assert external == ([] if name != gateway.name else ["edge"]), name


def test_gateway_waits_for_ready_services_at_their_addresses(
    service: Process, containers: dict[str, Container], processes: tuple[Process, ...]
) -> None:
    gateway = containers[processes[-1].name]
    assert gateway["depends_on"][service.name] == {"condition": "service_healthy"}
    assert gateway["environment"][f"GATEWAY_{service.name.upper()}_URL"] == (
        f"http://{service.name}:{service.port}"
    )
    assert "services" in set(gateway["networks"]) & set(containers[service.name]["networks"])
    probe = " ".join(containers[service.name]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{service.port}/health/ready" in probe


def test_the_migration_connects_as_the_schemas_owner_and_the_service_as_its_runtime_role(
    service: Process, containers: dict[str, Container]
) -> None:
    roles = _environment(containers[f"{service.name}-db-roles"], {})
    runtime, migrator = (
        _database_url(containers, service, {}),
        _migration_url(containers, service, {}),
    )
    # The roles that deploy/postgres/roles.sh makes in the database the URLs name.
    assert (roles["RUNTIME_ROLE"], roles["MIGRATOR_ROLE"]) == (
        service.name,
        f"{service.name}_migrator",
    )
    assert (runtime.username, migrator.username) == (roles["RUNTIME_ROLE"], roles["MIGRATOR_ROLE"])
    assert (migrator.host, migrator.port, migrator.database) == (
        runtime.host,
        runtime.port,
        runtime.database,
    )


def test_roles_are_made_through_the_databases_socket_before_each_migration(
    service: Process, containers: dict[str, Container]
) -> None:
    database, roles = containers[f"{service.name}-db"], containers[f"{service.name}-db-roles"]
    socket = f"{service.name}-db-socket:/var/run/postgresql"
    assert roles["image"] == database["image"]
    assert roles["entrypoint"] == ["sh", "/roles.sh"]
    assert roles["volumes"] == [socket, "./deploy/postgres/roles.sh:/roles.sh:ro"]
    assert socket in database["volumes"]
    # The database's own image, connected through the socket alone, as its superuser.
    assert roles["network_mode"] == "none"
    assert "networks" not in roles
    environment = _environment(roles, {})
    assert environment["PGHOST"] == "/var/run/postgresql"
    for variable in ("POSTGRES_USER", "POSTGRES_DB"):
        assert environment[variable] == _environment(database, {})[variable]
    assert roles["depends_on"] == {f"{service.name}-db": {"condition": "service_healthy"}}
    assert (roles["restart"], roles["read_only"], roles["cap_drop"]) == ("no", True, ["ALL"])


def test_passwords_come_from_the_environment_with_development_defaults(
    service: Process, containers: dict[str, Container]
) -> None:
    roles = containers[f"{service.name}-db-roles"]["environment"]
    urls = {
        "RUNTIME_PASSWORD": containers[service.name]["environment"][
            f"{service.env_prefix}DATABASE_URL"
        ],
        "MIGRATOR_PASSWORD": containers[f"{service.name}-migrate"]["environment"][
            f"{service.env_prefix}MIGRATION_DATABASE_URL"
        ],
    }
    for variable, raw_url in urls.items():
        raw_password = roles[variable]
        match = re.fullmatch(r"\$\{(?P<name>\w+_DB_\w*PASSWORD):-(?P<default>\w+)\}", raw_password)
        assert match, f"{service.name}-db's {variable} is not taken from the environment"
        assert match["default"] in DEVELOPMENT_PASSWORDS
        assert f":{raw_password}@" in raw_url
    assert roles["RUNTIME_PASSWORD"] != roles["MIGRATOR_PASSWORD"]


def test_database_superusers_log_in_only_inside_their_containers(
    service: Process, containers: dict[str, Container]
) -> None:
    environment = containers[f"{service.name}-db"]["environment"]
    # A random password, read from the kernel at the first start, that nobody is given.
    assert environment["POSTGRES_PASSWORD_FILE"] == "/proc/sys/kernel/random/uuid"
    assert "POSTGRES_PASSWORD" not in environment
    superuser = environment["POSTGRES_USER"]
    assert superuser not in {
        _database_url(containers, service, {}).username,
        _migration_url(containers, service, {}).username,
    }


def test_development_defaults_are_refused_outside_development(
    service: Process, containers: dict[str, Container]
) -> None:
    def settings(shell: Mapping[str, str], container: str = service.name) -> ServiceSettings:
        environment = _environment(containers[container], shell)
        prefix = service.env_prefix
        return ServiceSettings.model_validate(
            {key.removeprefix(prefix).lower(): value for key, value in environment.items()}
        )

    assert settings({}).environment == "development"
    with pytest.raises(ValidationError, match="development password"):
        settings({"APP_ENVIRONMENT": "production"})
    password = f"{service.name.upper()}_DB_PASSWORD"
    with pytest.raises(ValidationError, match="metrics_token is a development password"):
        settings({"APP_ENVIRONMENT": "production", password: "a-real-password"})
    production = {
        "APP_ENVIRONMENT": "production",
        password: "a-real-password",
        "METRICS_TOKEN": "a-real-metrics-token",
    }
    assert settings(production).environment == "production"

    migrate = f"{service.name}-migrate"
    with pytest.raises(ValidationError, match="migration_database_url uses a development password"):
        settings(production, migrate)
    migrator_password = f"{service.name.upper()}_DB_MIGRATOR_PASSWORD"
    migrating = settings({**production, migrator_password: "another-real-password"}, migrate)
    assert make_url(migrating.migrator_url).password == "another-real-password"


def test_users_keeps_its_signing_keys_on_a_volume_and_the_others_fetch_its_public_keys(
    containers: dict[str, Container],
) -> None:
    users = containers["users"]
    keys_file = _environment(users, {})["USERS_SIGNING_KEYS_FILE"]
    (volume,) = users["volumes"]
    name, mount = volume.split(":")
    assert name == "users-keys"
    assert keys_file.startswith(mount + "/")
    for service in ("catalog", "blog"):
        environment = _environment(containers[service], {})
        assert (
            environment[f"{service.upper()}_AUTH_JWKS_URL"]
            == "http://users:8001/.well-known/jwks.json"
        )


def test_blog_follows_users_event_feed_with_a_credential_from_the_environment(
    containers: dict[str, Container],
) -> None:
    users, blog = _environment(containers["users"], {}), _environment(containers["blog"], {})
    assert blog["BLOG_EVENTS_URL"] == "http://users:8001/events"
    assert users["USERS_EVENTS_TOKEN"] == blog["BLOG_EVENTS_TOKEN"] == "changeme"
    production = {"EVENTS_TOKEN": "a-real-credential"}
    assert _environment(containers["users"], production)["USERS_EVENTS_TOKEN"] == (
        "a-real-credential"
    )
    assert _environment(containers["blog"], production)["BLOG_EVENTS_TOKEN"] == (
        "a-real-credential"
    )


def test_every_process_takes_the_metrics_token_from_the_environment(
    process: Process, containers: dict[str, Container]
) -> None:
    variable = f"{process.env_prefix}METRICS_TOKEN"

    development = _environment(containers[process.name], {})
    production = _environment(containers[process.name], {"METRICS_TOKEN": "a-real-credential"})

    assert development[variable] == "changeme"
    assert production[variable] == "a-real-credential"


def test_prometheus_presents_the_metrics_token_every_process_expects(
    containers: dict[str, Container],
) -> None:
    for shell in ({}, {"METRICS_TOKEN": "a-real-credential"}):
        presented = _environment(containers["prometheus"], shell)["METRICS_TOKEN"]
        expected = {
            _environment(containers[name], shell)[f"{name.upper()}_METRICS_TOKEN"]
            for name in ("gateway", "users", "catalog", "blog")
        }
        assert expected == {presented}


def _seconds(duration: str) -> float:
    """A Compose duration (`1m30s`, `30s`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(number + unit for number, unit in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_process_finishes_its_requests_before_compose_kills_it(
    containers: dict[str, Container], process: Process
) -> None:
    container = containers[process.name]
    graceful = _environment(container, {}).get(
        GRACEFUL_SHUTDOWN_VARIABLE, image_environment()[GRACEFUL_SHUTDOWN_VARIABLE]
    )

    # Compose's own default is 10 s.
    assert _seconds(container.get("stop_grace_period", "10s")) > float(graceful)
