"""The Kubernetes manifests: every overlay renders offline with `kubectl kustomize`, every object
validates against the Kubernetes schemas, and the rendered system has the properties operators
rely on (probes, limits, migrations, Secrets, network isolation, autoscaling)."""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import kubernetes_validate
import pytest
import yaml
from sqlalchemy.engine import make_url

from deploy.tests.kubernetes_rules import (
    DEPLOY,
    INGRESS_CONTROLLER_LABEL,
    KUBERNETES_VERSIONS,
    README,
    RULES,
    Object,
    Rendered,
    Rule,
    all_of,
    containers,
    generated_as,
    one_of,
    pod_spec,
    render,
    selects,
)
from servicekit.settings import DEVELOPMENT_PASSWORDS

if TYPE_CHECKING:
    from deploy.tests.conftest import Process

OVERLAYS = sorted(path.parent.name for path in DEPLOY.glob("overlays/*/kustomization.yaml"))
POSTGRES_DEFAULT_MAX_CONNECTIONS = 100


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def rendered(overlay: str, render_overlay: Callable[[str], list[Object]]) -> list[Object]:
    return render_overlay(overlay)


@pytest.fixture(scope="module")
def dev(render_overlay: Callable[[str], list[Object]]) -> list[Object]:
    return render_overlay("dev")


@pytest.fixture(scope="module")
def prod(render_overlay: Callable[[str], list[Object]]) -> list[Object]:
    return render_overlay("prod")


def _generated(rendered: list[Object], kind: str, name: str) -> Object:
    """A ConfigMap or Secret, whose rendered name may carry kustomize's content hash."""
    matches = [
        item for item in all_of(rendered, kind) if generated_as(item["metadata"]["name"], name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def _main_container(workload: Object, name: str) -> Object:
    listed: list[Object] = pod_spec(workload)["containers"]
    (container,) = [container for container in listed if container["name"] == name]
    return container


def _environment(rendered: list[Object], container: Object) -> dict[str, str]:
    """The variables a container sees from its ConfigMaps and literal values."""
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = one_of(rendered, "ConfigMap", source["configMapRef"]["name"])
        environment.update(config_map["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
    return environment


def test_dev_and_prod_overlays_exist() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_objects_validate_against_the_kubernetes_schemas(
    rendered: list[Object], version: str
) -> None:
    problems = []
    for item in rendered:
        name = f"{item['kind']}/{item['metadata']['name']}"
        try:
            kubernetes_validate.validate(item, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            problems.append(f"{name}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(f"{name}: {error.message}")
    assert problems == []


def test_process_has_a_deployment_service_autoscaler_and_disruption_budget(
    rendered: list[Object], process: Process
) -> None:
    deployment = one_of(rendered, "Deployment", process.name)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # The autoscaler owns the replica count; a `replicas` here would fight it on every apply.
    assert "replicas" not in deployment["spec"]

    container = _main_container(deployment, process.name)
    assert container["ports"] == [{"name": "http", "containerPort": process.port}]
    service = one_of(rendered, "Service", process.name)
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "http", "port": process.port, "targetPort": "http"}
    ]

    autoscaler = one_of(rendered, "HorizontalPodAutoscaler", process.name)
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": process.name,
    }
    assert 1 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]

    budget = one_of(rendered, "PodDisruptionBudget", process.name)
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # maxUnavailable, not minAvailable: a drain still proceeds when only one replica runs.
    assert budget["spec"]["maxUnavailable"] == 1


def test_deployment_probes_its_health_endpoints(rendered: list[Object], process: Process) -> None:
    container = _main_container(one_of(rendered, "Deployment", process.name), process.name)
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    # The gateway's readiness is its liveness: see the comment in deploy/base/gateway.yaml.
    ready_path = "/health/ready" if process.has_database else "/health/live"
    assert container["readinessProbe"]["httpGet"] == {"path": ready_path, "port": "http"}


def test_every_container_requests_and_is_limited_in_cpu_and_memory(
    rendered: list[Object],
) -> None:
    for workload in all_of(rendered, "Deployment") + all_of(rendered, "StatefulSet"):
        for container in containers(workload):
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert set(resources[bound]) == {"cpu", "memory"}, (
                    f"{workload['metadata']['name']}/{container['name']} {bound}"
                )


def test_every_pod_runs_unprivileged_on_a_read_only_filesystem(rendered: list[Object]) -> None:
    for workload in all_of(rendered, "Deployment") + all_of(rendered, "StatefulSet"):
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in containers(workload):
            context = container["securityContext"]
            assert context == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, f"{workload['metadata']['name']}/{container['name']}"


def test_namespace_enforces_the_restricted_pod_security_standard(rendered: list[Object]) -> None:
    (namespace,) = all_of(rendered, "Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    namespaced = [item for item in rendered if item["kind"] != "Namespace"]
    assert {item["metadata"]["namespace"] for item in namespaced} == {namespace["metadata"]["name"]}


def test_service_migrates_its_database_before_serving(
    rendered: list[Object], service: Process
) -> None:
    deployment = one_of(rendered, "Deployment", service.name)
    (migrate,) = pod_spec(deployment)["initContainers"]
    container = _main_container(deployment, service.name)
    assert migrate["command"] == service.migration_command
    assert migrate["image"] == container["image"]
    # The service's settings, and the migrator's URL (the rule
    # only_the_migrations_connect_as_the_migrator).
    migration_url = f"{service.env_prefix}MIGRATION_DATABASE_URL"
    assert [v for v in migrate["env"] if v["name"] != migration_url] == container["env"]
    assert migrate["envFrom"] == container["envFrom"]


def test_service_reads_its_database_url_from_a_secret(
    rendered: list[Object], service: Process
) -> None:
    container = _main_container(one_of(rendered, "Deployment", service.name), service.name)
    (variable,) = [v for v in container["env"] if v["name"].endswith("DATABASE_URL")]
    assert variable["name"] == f"{service.env_prefix}DATABASE_URL"
    reference = variable["valueFrom"]["secretKeyRef"]
    assert reference["key"] == "url"
    assert reference["name"].startswith(f"{service.name}-database")
    configuration = _environment(rendered, container)
    assert f"{service.env_prefix}DATABASE_URL" not in configuration


def test_overlay_sets_one_environment_for_every_process(
    rendered: list[Object], overlay: str, process: Process
) -> None:
    config_map = _generated(rendered, "ConfigMap", f"{process.name}-config")
    expected = "development" if overlay == "dev" else "production"
    assert config_map["data"][f"{process.env_prefix}ENVIRONMENT"] == expected


def test_gateway_calls_each_service_at_its_service_address(
    rendered: list[Object], service: Process, processes: tuple[Process, ...]
) -> None:
    gateway = processes[-1]
    container = _main_container(one_of(rendered, "Deployment", gateway.name), gateway.name)
    port = one_of(rendered, "Service", service.name)["spec"]["ports"][0]["port"]
    assert _environment(rendered, container)[f"GATEWAY_{service.name.upper()}_URL"] == (
        f"http://{service.name}:{port}"
    )


def test_autoscaled_connections_fit_in_the_database(
    rendered: list[Object], service: Process
) -> None:
    container = _main_container(one_of(rendered, "Deployment", service.name), service.name)
    environment = _environment(rendered, container)
    # Each process keeps two pools of that size: one for transactions, one for reads.
    per_pod = 2 * (
        int(environment[f"{service.env_prefix}POOL_SIZE"])
        + int(environment[f"{service.env_prefix}MAX_OVERFLOW"])
    )
    replicas = one_of(rendered, "HorizontalPodAutoscaler", service.name)["spec"]["maxReplicas"]
    # Headroom for migrations and an operator's psql.
    assert replicas * per_pod <= POSTGRES_DEFAULT_MAX_CONNECTIONS - 10


def test_gateway_is_published_through_the_ingress(
    rendered: list[Object], overlay: str, processes: tuple[Process, ...]
) -> None:
    gateway = processes[-1]
    (ingress,) = all_of(rendered, "Ingress")
    backends = [
        path["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert backends == [{"name": gateway.name, "port": {"name": "http"}}]
    if overlay == "prod":
        (rule,) = ingress["spec"]["rules"]
        (tls,) = ingress["spec"]["tls"]
        assert tls["hosts"] == [rule["host"]]


# Network policies, evaluated for traffic between the workloads of the namespace.


def _admits(rule: Object, peers_key: str, labels: dict[str, str], port: int) -> bool:
    """Whether a rule admits a pod of this namespace with `labels`, on `port`."""
    peers = rule.get(peers_key, [])
    # A peer with a namespaceSelector or an ipBlock is about other namespaces or addresses.
    peer_admits = not peers or any(
        set(peer) == {"podSelector"} and selects(peer["podSelector"], labels) for peer in peers
    )
    ports = rule.get("ports", [])
    port_admits = not ports or any(entry["port"] == port for entry in ports)
    return peer_admits and port_admits


def _allows(policies: list[Object], source: Object, target: Object, port: int) -> bool:
    def applying(labels: dict[str, str], direction: str) -> list[Object]:
        return [
            policy["spec"]
            for policy in policies
            if direction in policy["spec"]["policyTypes"]
            and selects(policy["spec"]["podSelector"], labels)
        ]

    source_labels = source["spec"]["template"]["metadata"]["labels"]
    target_labels = target["spec"]["template"]["metadata"]["labels"]
    ingress = applying(target_labels, "Ingress")
    egress = applying(source_labels, "Egress")
    return (
        not ingress
        or any(
            _admits(rule, "from", source_labels, port)
            for spec in ingress
            for rule in spec.get("ingress", [])
        )
    ) and (
        not egress
        or any(
            _admits(rule, "to", target_labels, port)
            for spec in egress
            for rule in spec.get("egress", [])
        )
    )


def test_network_policies_allow_only_gateway_to_services_service_to_its_database_and_keys(
    rendered: list[Object], overlay: str, processes: tuple[Process, ...]
) -> None:
    policies = all_of(rendered, "NetworkPolicy")
    workloads = all_of(rendered, "Deployment") + all_of(rendered, "StatefulSet")
    allowed = {
        (source["metadata"]["name"], target["metadata"]["name"], port["containerPort"])
        for source in workloads
        for target in workloads
        for container in pod_spec(target)["containers"]
        for port in container["ports"]
        if _allows(policies, source, target, port["containerPort"])
    }
    gateway, services = processes[-1], [process for process in processes if process.has_database]
    expected = {(gateway.name, service.name, service.port) for service in services}
    # Catalog and blog fetch the users service's public keys to verify tokens.
    users = next(service for service in services if service.name == "users")
    expected |= {
        (service.name, users.name, users.port) for service in services if service is not users
    }
    if overlay == "dev":
        expected |= {(service.name, f"{service.name}-db", 5432) for service in services}
    assert allowed == expected


def test_network_policies_deny_by_default_and_allow_name_resolution(
    rendered: list[Object],
) -> None:
    default_deny = one_of(rendered, "NetworkPolicy", "default-deny")["spec"]
    assert default_deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = one_of(rendered, "NetworkPolicy", "allow-dns")["spec"]
    (rule,) = dns["egress"]
    assert {(port["port"], port["protocol"]) for port in rule["ports"]} == {
        (53, "UDP"),
        (53, "TCP"),
    }


def test_only_the_ingress_controller_reaches_the_gateway(
    rendered: list[Object], processes: tuple[Process, ...]
) -> None:
    gateway = processes[-1]
    (rule,) = one_of(rendered, "NetworkPolicy", gateway.name)["spec"]["ingress"]
    (peer,) = rule["from"]
    assert list(peer) == ["namespaceSelector"]
    assert rule["ports"] == [{"port": gateway.port, "protocol": "TCP"}]


def test_service_reaches_only_its_database_port_outside_the_cluster(
    rendered: list[Object], overlay: str, service: Process
) -> None:
    (rule,) = one_of(rendered, "NetworkPolicy", service.name)["spec"]["egress"]
    assert rule["ports"] == [{"port": 5432, "protocol": "TCP"}]
    (peer,) = rule["to"]
    if overlay == "dev":
        assert peer == {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": f"{service.name}-db"}}
        }
    else:
        assert list(peer) == ["ipBlock"]
        assert not peer["ipBlock"]["cidr"].startswith("0.0.0.0/")


def test_prod_expects_external_databases_and_secrets(rendered: list[Object], overlay: str) -> None:
    if overlay != "prod":
        return
    assert all_of(rendered, "StatefulSet") == []
    assert all_of(rendered, "PersistentVolumeClaim") == []
    # The Secrets are created outside this repository (deploy/README.md): none is rendered.
    assert all_of(rendered, "Secret") == []


def test_dev_runs_one_postgres_per_service_with_development_passwords(
    dev: list[Object], service: Process
) -> None:
    database = one_of(dev, "StatefulSet", f"{service.name}-db")
    assert database["spec"]["replicas"] == 1
    (postgres,) = pod_spec(database)["containers"]
    assert postgres["image"].startswith("postgres:")
    assert postgres["readinessProbe"]["exec"]["command"][0] == "pg_isready"
    variables = {variable["name"]: variable for variable in postgres["env"]}
    assert variables["POSTGRES_DB"]["value"] == service.name

    # Each of the two roles roles.sh makes has the password of the URL its Secret holds.
    for role, secret_name, username in (
        ("RUNTIME", f"{service.name}-database", service.name),
        ("MIGRATOR", f"{service.name}-database-migrator", f"{service.name}_migrator"),
    ):
        secret = _generated(dev, "Secret", secret_name)
        password_reference = variables[f"{role}_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert password_reference == {"name": secret["metadata"]["name"], "key": "password"}
        literals = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
        url = make_url(literals["url"])
        assert url.password == literals["password"]
        assert url.password in DEVELOPMENT_PASSWORDS
        assert (url.host, url.database) == (f"{service.name}-db", service.name)
        assert url.username == variables[f"{role}_ROLE"]["value"] == username


def test_dev_databases_make_the_two_roles_and_keep_their_superuser_inside(
    dev: list[Object], service: Process
) -> None:
    database = one_of(dev, "StatefulSet", f"{service.name}-db")
    (postgres,) = pod_spec(database)["containers"]
    variables = {variable["name"]: variable for variable in postgres["env"]}
    # A random password, read from the kernel at the first start, that nobody is given.
    assert variables["POSTGRES_PASSWORD_FILE"]["value"] == "/proc/sys/kernel/random/uuid"
    assert "POSTGRES_PASSWORD" not in variables
    assert variables["POSTGRES_USER"]["value"] not in {
        variables["RUNTIME_ROLE"]["value"],
        variables["MIGRATOR_ROLE"]["value"],
    }
    # The image runs roles.sh, the file docker-compose.yml mounts too, when it initialises.
    (mount,) = [
        m for m in postgres["volumeMounts"] if m["mountPath"] == "/docker-entrypoint-initdb.d"
    ]
    (volume,) = [v for v in pod_spec(database)["volumes"] if v["name"] == mount["name"]]
    config_map = _generated(dev, "ConfigMap", "database-roles")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert config_map["data"] == {"roles.sh": (DEPLOY / "postgres" / "roles.sh").read_text()}


def test_users_signs_with_keys_from_a_secret_that_no_overlay_commits(
    rendered: list[Object],
) -> None:
    deployment = one_of(rendered, "Deployment", "users")
    volumes = {volume["name"]: volume for volume in pod_spec(deployment)["volumes"]}
    assert volumes["signing-keys"]["secret"] == {
        "secretName": "users-signing-keys",
        "defaultMode": 0o400,
    }
    container = _main_container(deployment, "users")
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "signing-keys"]
    assert mount["readOnly"] is True
    keys_file = _environment(rendered, container)["USERS_SIGNING_KEYS_FILE"]
    assert keys_file.startswith(mount["mountPath"] + "/")
    # The keys are made where the cluster is (deploy/README.md), never kept in git.
    assert not [s for s in all_of(rendered, "Secret") if "signing" in s["metadata"]["name"]]


def test_catalog_and_blog_verify_tokens_with_the_users_service_keys(
    rendered: list[Object], service: Process
) -> None:
    if service.name == "users":
        return
    container = _main_container(one_of(rendered, "Deployment", service.name), service.name)
    assert (
        _environment(rendered, container)[f"{service.env_prefix}AUTH_JWKS_URL"]
        == "http://users:8001/.well-known/jwks.json"
    )


def test_users_and_blog_share_the_event_feeds_credential_from_a_secret(
    rendered: list[Object], overlay: str
) -> None:
    for name in ("users", "blog"):
        pod = pod_spec(one_of(rendered, "Deployment", name))
        # The migration reads the same settings, which need the credential outside development.
        for container in [*pod["initContainers"], *pod["containers"]]:
            (variable,) = [v for v in container["env"] if v["name"].endswith("EVENTS_TOKEN")]
            assert variable["name"] == f"{name.upper()}_EVENTS_TOKEN"
            reference = variable["valueFrom"]["secretKeyRef"]
            assert (reference["name"].startswith("events-token"), reference["key"]) == (
                True,
                "token",
            )
    blog = _main_container(one_of(rendered, "Deployment", "blog"), "blog")
    assert _environment(rendered, blog)["BLOG_EVENTS_URL"] == "http://users:8001/events"
    committed = [
        s for s in all_of(rendered, "Secret") if s["metadata"]["name"].startswith("events")
    ]
    assert len(committed) == (1 if overlay == "dev" else 0)


# Prometheus (deploy/monitoring/prometheus-kubernetes.yml) and what it scrapes.

PROMETHEUS_CONFIG = DEPLOY / "monitoring" / "prometheus-kubernetes.yml"
RELABEL_ACTIONS = {"keep", "drop", "replace"}


def test_deployment_invites_prometheus_to_scrape_its_port(
    rendered: list[Object], process: Process
) -> None:
    deployment = one_of(rendered, "Deployment", process.name)
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(process.port),
        "prometheus.io/path": "/metrics",
    }


def _meta_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _discovered_targets(workload: Object, pod_ip: str) -> Iterator[dict[str, str]]:
    """What Prometheus's Kubernetes pod discovery makes of a running pod of `workload`: a target
    per container port, and one per container without ports."""
    template = workload["spec"]["template"]
    pod = {
        "__meta_kubernetes_namespace": workload["metadata"]["namespace"],
        "__meta_kubernetes_pod_name": f"{workload['metadata']['name']}-0",
        "__meta_kubernetes_pod_ip": pod_ip,
        "__meta_kubernetes_pod_phase": "Running",
    }
    for kind, values in (("label", "labels"), ("annotation", "annotations")):
        for key, value in template["metadata"].get(values, {}).items():
            pod[f"__meta_kubernetes_pod_{kind}_{_meta_name(key)}"] = value
    for init, field in (("true", "initContainers"), ("false", "containers")):
        for container in template["spec"].get(field, []):
            target = {**pod, "__meta_kubernetes_pod_container_init": init}
            if not container.get("ports"):
                yield {**target, "__address__": pod_ip}
            for port in container.get("ports", []):
                yield {
                    **target,
                    "__address__": f"{pod_ip}:{port['containerPort']}",
                    "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                }


def _relabelled(labels: dict[str, str], rules: list[Object]) -> dict[str, str] | None:
    """Prometheus's relabelling of a target, as far as the scrape config uses it (None: dropped)."""
    labels = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        assert action in RELABEL_ACTIONS, f"relabel action {action} is not evaluated here"
        value = ";".join(labels.get(name, "") for name in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if action == "keep" and match is None:
            return None
        if action == "drop" and match is not None:
            return None
        if action == "replace" and match:
            replacement = re.sub(r"\$(\d+)", r"\\g<\1>", rule.get("replacement", "$1"))
            labels[rule["target_label"]] = match.expand(replacement)
    return labels


def test_prometheus_scrapes_each_process_pod_once_at_its_annotated_port(
    rendered: list[Object], processes: tuple[Process, ...]
) -> None:
    (job,) = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    (discovery,) = job["kubernetes_sd_configs"]
    workloads = all_of(rendered, "Deployment") + all_of(rendered, "StatefulSet")
    scraped: list[tuple[str, str, str]] = []
    addresses: dict[str, str] = {}
    for number, workload in enumerate(workloads):
        assert workload["metadata"]["namespace"] in discovery["namespaces"]["names"]
        addresses[workload["metadata"]["name"]] = f"10.0.0.{number}"
        for discovered in _discovered_targets(workload, addresses[workload["metadata"]["name"]]):
            defaults = {"job": job["job_name"], "__metrics_path__": "/metrics"}
            target = _relabelled({**defaults, **discovered}, job["relabel_configs"])
            if target is not None:
                scraped.append((target["job"], target["__address__"], target["__metrics_path__"]))
    # The databases of the dev overlay are not scraped, and no pod is scraped twice.
    assert sorted(scraped) == sorted(
        (process.name, f"{addresses[process.name]}:{process.port}", "/metrics")
        for process in processes
    )


def test_monitoring_namespace_reaches_every_workload_on_its_http_port_alone(
    rendered: list[Object],
) -> None:
    policy = one_of(rendered, "NetworkPolicy", "monitoring-scrapes-metrics")["spec"]
    assert policy["podSelector"] == {}
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    # A named port: the port each workload serves on, and none on the databases' pods.
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    for workload in all_of(rendered, "Deployment") + all_of(rendered, "StatefulSet"):
        names = [port.get("name") for c in pod_spec(workload)["containers"] for port in c["ports"]]
        expected = ["http"] if workload["kind"] == "Deployment" else ["postgres"]
        assert names == expected, workload["metadata"]["name"]


def test_every_process_reads_the_metrics_token_from_a_secret(
    rendered: list[Object], overlay: str, process: Process
) -> None:
    # Migrations read the same settings, which need the token outside development.
    for container in containers(one_of(rendered, "Deployment", process.name)):
        (variable,) = [v for v in container["env"] if v["name"].endswith("METRICS_TOKEN")]
        assert variable["name"] == f"{process.env_prefix}METRICS_TOKEN"
        reference = variable["valueFrom"]["secretKeyRef"]
        assert (reference["name"].startswith("metrics-token"), reference["key"]) == (True, "token")
    committed = [
        s for s in all_of(rendered, "Secret") if s["metadata"]["name"].startswith("metrics")
    ]
    assert len(committed) == (1 if overlay == "dev" else 0)


# The rules operators rely on (kubernetes_rules.py); test_mutations.py shows each one failing.


@pytest.mark.parametrize("rule", RULES.values(), ids=RULES.keys())
def test_overlay_keeps_the_rule(rendered: list[Object], overlay: str, rule: Rule) -> None:
    assert rule(Rendered(overlay, rendered)) == []


def test_prod_database_ranges_are_set_in_database_networks_alone(
    kubectl: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("tests", "monitoring"))
    networks_file = copy / "overlays" / "prod" / "database-networks.yaml"
    networks = yaml.safe_load(networks_file.read_text())
    changed = {"users": "10.20.0.0/24", "catalog": "10.20.1.0/24", "blog": "fd00:20::/64"}
    networks["data"] = changed
    networks_file.write_text(yaml.safe_dump(networks))

    objects = render(kubectl, copy / "overlays" / "prod")
    reached = {
        name: [
            peer["ipBlock"]["cidr"]
            for allowed in one_of(objects, "NetworkPolicy", name)["spec"]["egress"]
            for peer in allowed["to"]
        ]
        for name in changed
    }
    assert reached == {name: [cidr] for name, cidr in changed.items()}
    # The ConfigMap only carries the values: kustomize applies nothing of it.
    assert [
        c for c in all_of(objects, "ConfigMap") if c["metadata"]["name"] == "database-networks"
    ] == []


def test_readme_tells_the_administrator_how_to_admit_the_ingress_controller() -> None:
    key, value = INGRESS_CONTROLLER_LABEL
    assert f"kubectl label namespace ingress-nginx {key}={value}" in README.read_text()
