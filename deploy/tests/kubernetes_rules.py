"""What operators rely on in the rendered manifests, as rules: each takes an overlay's rendered
objects and returns the problems it finds, none when the overlay keeps it. test_kubernetes.py runs
every rule on every overlay; test_mutations.py shows each one failing on a rendered overlay edited
to break what it protects.

The numbers the sizing rules compare with are the measurements in deploy/README.md ("Sizing"),
read from its table.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway_service.settings import GatewaySettings

DEPLOY = Path(__file__).parents[1]
README = DEPLOY / "README.md"
# The one Dockerfile every image is built from, its environment included.
IMAGE_DOCKERFILE = DEPLOY.parent / "Dockerfile"
# How long uvicorn lets the requests in flight at SIGTERM finish; without it, without limit.
GRACEFUL_SHUTDOWN_VARIABLE = "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN"
# How long uvicorn keeps an idle connection open before it closes it.
KEEP_ALIVE_VARIABLE = "UVICORN_TIMEOUT_KEEP_ALIVE"
# How long the load balancers and Ingress controllers in front of the gateway keep an idle
# connection to it (ingress-nginx's upstream-keepalive-timeout, AWS ALB's idle timeout).
INGRESS_IDLE_SECONDS = 60
# How much later than its caller a process closes an idle connection: the time its event loop
# may be late to read a request that arrived just before its idle timer ran out.
KEEP_ALIVE_MARGIN_SECONDS = 10
# The oldest Kubernetes the manifests support (see deploy/README.md), and the newest schemas.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")

# The label a cluster's administrator puts on the Ingress controller's namespace (deploy/README.md).
INGRESS_CONTROLLER_LABEL = ("services/ingress-controller", "true")
MONITORING_NAMESPACE = "monitoring"
# Where NodeLocal DNSCache answers on every node (its documented default).
NODE_LOCAL_DNS = "169.254.20.10/32"
CLUSTER_DNS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
SPREAD_TOPOLOGY_KEYS = {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
PART_OF = ("app.kubernetes.io/part-of", "services")
# Labels every workload and its pods carry (the Kubernetes recommended labels).
WORKLOAD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
)
# Annotations with which GitOps tools keep an object that leaves the manifests: Argo CD, Flux.
KEEP_ANNOTATIONS = {
    "argocd.argoproj.io/sync-options": "Delete=false",
    "kustomize.toolkit.fluxcd.io/prune": "disabled",
}
# An autoscaler's CPU target, as a share of the request: lower wastes most of each pod, higher
# leaves no room for the burst that arrives before the new pods are ready.
CPU_TARGET_PERCENT = range(60, 81)
# A process gets at least this long to start before its liveness probe may restart it.
STARTUP_SECONDS = 30
# Enough consecutive failures that one slow answer (a garbage collection, a busy node) is not one.
FAILURES_BEFORE_ACTION = 3
PRE_STOP_SECONDS = 5

Object = dict[str, Any]


@dataclass(frozen=True)
class Rendered:
    """An overlay's objects as `kubectl kustomize` renders them."""

    overlay: str
    objects: list[Object]


Rule = Callable[[Rendered], list[str]]
RULES: dict[str, Rule] = {}


def rule(check: Rule) -> Rule:
    """Registers a rule under its name; the tests run every registered rule on every overlay."""
    RULES[check.__name__] = check
    return check


def render(kubectl: Path, overlay: Path) -> list[Object]:
    """The objects `kubectl kustomize` (offline) renders from an overlay's directory."""
    result = subprocess.run(
        [kubectl, "kustomize", overlay], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


# Reading the rendered objects.


def all_of(objects: list[Object], kind: str) -> list[Object]:
    return [item for item in objects if item["kind"] == kind]


def one_of(objects: list[Object], kind: str, name: str) -> Object:
    matches = [item for item in all_of(objects, kind) if item["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def workloads(objects: list[Object]) -> list[Object]:
    return all_of(objects, "Deployment") + all_of(objects, "StatefulSet")


def pod_spec(workload: Object) -> Object:
    spec: Object = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Object) -> Iterator[Object]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def main_container(workload: Object) -> Object:
    """A Deployment's container named after it; a database's one container."""
    listed: list[Object] = pod_spec(workload)["containers"]
    if len(listed) == 1:
        return listed[0]
    (container,) = [c for c in listed if c["name"] == workload["metadata"]["name"]]
    return container


def _name(item: Object) -> str:
    return f"{item['kind']}/{item['metadata']['name']}"


def _labels(item: Object) -> dict[str, str]:
    labels: dict[str, str] = item["metadata"].get("labels", {})
    return labels


def _pod_labels(workload: Object) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels", {})
    return labels


def selects(selector: Object, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are evaluated here"
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def _policies_for(objects: list[Object], workload: Object, direction: str) -> list[Object]:
    return [
        policy
        for policy in all_of(objects, "NetworkPolicy")
        if direction in policy["spec"]["policyTypes"]
        and selects(policy["spec"]["podSelector"], _pod_labels(workload))
    ]


def _container_port(container: Object, port: int | str) -> tuple[str | None, int] | None:
    for declared in container.get("ports", []):
        if port in (declared.get("name"), declared["containerPort"]):
            return declared.get("name"), declared["containerPort"]
    return None


def _millicores(quantity: str | int | float) -> float:
    text = str(quantity)
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


_MEMORY_UNITS = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}


def _mebibytes(quantity: str | int) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(quantity))
    assert match, f"not a memory quantity: {quantity}"
    number, unit = match.groups()
    return float(number) * _MEMORY_UNITS[unit] / 2**20


def _probe_setting(probe: Object, field: str) -> int:
    """A probe's setting, or Kubernetes's default for it."""
    defaults = {"periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 1}
    value: int = probe.get(field, defaults[field])
    return value


def generated_as(rendered_name: str, name: str) -> bool:
    """Whether a rendered ConfigMap's or Secret's name is `name`, with or without the hash of its
    content that kustomize's generators add."""
    return re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?", rendered_name) is not None


def secrets_read(workload: Object, container: Object) -> set[str]:
    """The Secrets a container reads: in its variables, and in the volumes it mounts."""
    names = {
        variable["valueFrom"]["secretKeyRef"]["name"]
        for variable in container.get("env", [])
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    names |= {
        source["secretRef"]["name"]
        for source in container.get("envFrom", [])
        if "secretRef" in source
    }
    volumes = {volume["name"]: volume for volume in pod_spec(workload).get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        secret = volumes.get(mount["name"], {}).get("secret")
        if secret is not None:
            names.add(secret["secretName"])
    return names


def _image_tag(image: str) -> str | None:
    """The tag of an image reference (None when it has none), ignoring a registry's port."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


@functools.cache
def image_environment() -> dict[str, str]:
    """The environment variables the images run with (the ENV instructions of their last stage)."""
    runtime_stage = IMAGE_DOCKERFILE.read_text().rsplit("\nFROM ", 1)[1]
    joined = runtime_stage.replace("\\\n", " ")  # continuation lines
    environment: dict[str, str] = {}
    for instruction in re.findall(r"^ENV (.+)$", joined, flags=re.MULTILINE):
        environment.update(re.findall(r"(\w+)=(\S+)", instruction))
    return environment


def environment_of(objects: list[Object], container: Object) -> dict[str, str]:
    """A container's environment: its image's, then its ConfigMaps' (`envFrom`), then its own
    `env` values, each overriding the one before, as Kubernetes and the runtime apply them."""
    environment = dict(image_environment())
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config = one_of(objects, "ConfigMap", source["configMapRef"]["name"])
            environment.update(config.get("data", {}))
    for variable in container.get("env", []):
        if "value" in variable:
            environment[variable["name"]] = str(variable["value"])
    return environment


def _pre_stop_seconds(container: Object) -> int:
    seconds: int = (
        container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    )
    return seconds


# What was measured (deploy/README.md, "Sizing").


@dataclass(frozen=True)
class Usage:
    """A process's measured resident memory and CPU, at rest and under load."""

    memory_after_start_mib: float
    memory_under_load_mib: float
    cpu_at_rest_millicores: float
    cpu_under_load_millicores: float


@functools.cache
def measured_usage() -> dict[str, Usage]:
    """The first table under "## Sizing" in deploy/README.md: one row per process."""
    section = README.read_text().split("\n## Sizing\n", 1)[1]
    table = re.search(r"(?m)(^\|.*\n)+", section)
    assert table, "deploy/README.md has no sizing table"
    rows = [line for line in table[0].splitlines() if re.match(r"\| `[a-z]+` \|", line)]
    usage = {}
    for row in rows:
        name, *cells = (cell.strip() for cell in row.strip("|").split("|"))
        numbers = []
        for cell in cells:
            number = re.fullmatch(r"([0-9.]+) (MiB|m)", cell)
            assert number, f"not a measurement: {cell!r} in deploy/README.md"
            numbers.append(float(number[1]))
        usage[name.strip("`")] = Usage(*numbers)
    return usage


# The rules.


@rule
def every_workload_runs_as_its_own_service_account(rendered: Rendered) -> list[str]:
    """Each workload has a ServiceAccount of its own name, which mounts no token: RBAC or a cloud
    identity bound to one workload is not granted to every pod of the namespace."""
    problems = []
    accounts = {
        item["metadata"]["name"]: item for item in all_of(rendered.objects, "ServiceAccount")
    }
    for workload in workloads(rendered.objects):
        name = workload["metadata"]["name"]
        account = pod_spec(workload).get("serviceAccountName", "default")
        if account != name:
            problems.append(f"{_name(workload)} runs as the account {account}, not its own")
        elif account not in accounts:
            problems.append(f"{_name(workload)}: no ServiceAccount {account} is rendered")
        elif accounts[account].get("automountServiceAccountToken") is not False:
            problems.append(f"ServiceAccount/{account} mounts its token in pods")
    return problems


@rule
def requests_cover_the_measured_memory(rendered: Rendered) -> list[str]:
    """Each process requests at least the memory it was measured to use under load, and may use
    twice that before it is killed."""
    problems = []
    usage = measured_usage()
    processes = {item["metadata"]["name"]: item for item in all_of(rendered.objects, "Deployment")}
    if set(processes) != set(usage):
        problems.append(f"measured {sorted(usage)}, deployed {sorted(processes)}")
    for name in set(processes) & set(usage):
        resources = main_container(processes[name])["resources"]
        request = _mebibytes(resources["requests"]["memory"])
        limit = _mebibytes(resources["limits"]["memory"])
        if request < usage[name].memory_under_load_mib:
            problems.append(
                f"{name} requests {request:g} MiB, uses {usage[name].memory_under_load_mib:g}"
            )
        if limit < 2 * usage[name].memory_under_load_mib or limit < request:
            problems.append(f"{name}'s memory limit {limit:g} MiB leaves no room for a burst")
    return problems


@rule
def autoscalers_scale_on_cpu_between_rest_and_load(rendered: Rendered) -> list[str]:
    """Each autoscaler targets a share of the CPU request that a process at rest stays below and
    one under the measured load exceeds: it scales out under load and back in at rest."""
    problems = []
    usage = measured_usage()
    for autoscaler in all_of(rendered.objects, "HorizontalPodAutoscaler"):
        spec = autoscaler["spec"]
        name = spec["scaleTargetRef"]["name"]
        cpu = [
            metric["resource"]["target"]
            for metric in spec.get("metrics", [])
            if metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
        ]
        if len(cpu) != 1 or cpu[0]["type"] != "Utilization":
            problems.append(f"{_name(autoscaler)} scales on no CPU utilisation")
            continue
        percent = cpu[0]["averageUtilization"]
        if percent not in CPU_TARGET_PERCENT:
            problems.append(f"{_name(autoscaler)} targets {percent}% of the request")
        container = main_container(one_of(rendered.objects, "Deployment", name))
        request = _millicores(container["resources"]["requests"]["cpu"])
        threshold = request * percent / 100
        measured = usage.get(name)
        if measured is None or not (
            measured.cpu_at_rest_millicores < threshold < measured.cpu_under_load_millicores
        ):
            problems.append(
                f"{_name(autoscaler)} scales above {threshold:g}m, outside what {name} was "
                f"measured to use at rest and under load: {measured}"
            )
    return problems


@rule
def pods_spread_over_zones_and_nodes_within_their_revision(rendered: Rendered) -> list[str]:
    """Each Deployment's pods spread over zones and over nodes, counting only the pods of the same
    revision, so a rollout's new pods spread among themselves."""
    problems = []
    for deployment in all_of(rendered.objects, "Deployment"):
        constraints = pod_spec(deployment).get("topologySpreadConstraints", [])
        keys = sorted(constraint["topologyKey"] for constraint in constraints)
        if keys != sorted(SPREAD_TOPOLOGY_KEYS):
            problems.append(f"{_name(deployment)} spreads over {keys}")
        for constraint in constraints:
            where = f"{_name(deployment)} spread over {constraint['topologyKey']}"
            if constraint.get("labelSelector") != deployment["spec"]["selector"]:
                problems.append(f"{where} counts pods other than its own")
            if constraint.get("matchLabelKeys") != ["pod-template-hash"]:
                problems.append(f"{where} counts every revision's pods")
            if constraint["maxSkew"] != 1:
                problems.append(f"{where} allows a skew of {constraint['maxSkew']}")
            # Otherwise pods wait while the spread cannot be met: where nodes carry no zone label
            # (kind, one zone), none would ever start.
            if constraint["whenUnsatisfiable"] != "ScheduleAnyway":
                problems.append(f"{where} leaves pods pending when it cannot be met")
    return problems


@rule
def rollouts_replace_pods_only_with_pods_that_stay_ready(rendered: Rendered) -> list[str]:
    """A rollout adds a pod before it removes one, and counts a new pod only once it has stayed
    ready for more than one readiness probe."""
    problems = []
    for deployment in all_of(rendered.objects, "Deployment"):
        spec = deployment["spec"]
        strategy = spec.get("strategy", {})
        rolling = strategy.get("rollingUpdate", {})
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            problems.append(f"{_name(deployment)} does not roll")
        if rolling.get("maxUnavailable") != 0:
            problems.append(f"{_name(deployment)} may take {rolling.get('maxUnavailable')} down")
        if rolling.get("maxSurge", "25%") in (0, "0%"):
            problems.append(f"{_name(deployment)} adds no pod before it removes one")
        period = _probe_setting(
            main_container(deployment).get("readinessProbe", {}), "periodSeconds"
        )
        ready_for = spec.get("minReadySeconds", 0)
        if not period < ready_for < spec.get("progressDeadlineSeconds", 600):
            problems.append(f"{_name(deployment)} counts a pod ready after {ready_for} s")
    return problems


@rule
def disruptions_take_one_pod_at_a_time(rendered: Rendered) -> list[str]:
    """A node drain evicts one pod of a Deployment at a time, and can always proceed."""
    problems = []
    budgets = all_of(rendered.objects, "PodDisruptionBudget")
    for deployment in all_of(rendered.objects, "Deployment"):
        covering = [
            budget
            for budget in budgets
            if selects(budget["spec"]["selector"], _pod_labels(deployment))
        ]
        if len(covering) != 1:
            problems.append(f"{_name(deployment)} has {len(covering)} disruption budgets")
            continue
        spec = covering[0]["spec"]
        # An integer: a percentage of 2 pods rounds up to both.
        if spec.get("maxUnavailable") != 1 or "minAvailable" in spec:
            problems.append(f"{_name(covering[0])} allows {spec} to be evicted")
    return problems


@rule
def pods_keep_serving_until_their_endpoint_is_gone(rendered: Rendered) -> list[str]:
    """Each process waits in preStop before it stops, while its endpoint's removal reaches every
    proxy, within its grace period."""
    problems = []
    for deployment in all_of(rendered.objects, "Deployment"):
        seconds = _pre_stop_seconds(main_container(deployment))
        grace = pod_spec(deployment).get("terminationGracePeriodSeconds", 30)
        if seconds < PRE_STOP_SECONDS:
            problems.append(f"{_name(deployment)} stops {seconds} s after its removal starts")
        elif grace <= seconds:
            problems.append(f"{_name(deployment)} is killed in its preStop ({grace} s)")
    return problems


@rule
def pods_finish_their_requests_before_they_are_killed(rendered: Rendered) -> list[str]:
    """Each Deployment sets its grace period, longer than its preStop and uvicorn's graceful
    shutdown together: the requests in flight at SIGTERM finish, and the app shuts down, before
    the kubelet kills the process."""
    problems = []
    for deployment in all_of(rendered.objects, "Deployment"):
        container = main_container(deployment)
        grace = pod_spec(deployment).get("terminationGracePeriodSeconds")
        graceful = environment_of(rendered.objects, container).get(GRACEFUL_SHUTDOWN_VARIABLE)
        pre_stop = _pre_stop_seconds(container)
        if grace is None:
            problems.append(f"{_name(deployment)} leaves its grace period to the default")
        elif graceful is None:
            problems.append(f"{_name(deployment)} waits for its requests without limit")
        elif not pre_stop + float(graceful) < grace:
            problems.append(
                f"{_name(deployment)} is killed {grace} s after its deletion starts, before "
                f"{pre_stop} s of preStop and {graceful} s of uvicorn's graceful shutdown"
            )
    return problems


@rule
def processes_keep_idle_connections_longer_than_their_callers(rendered: Rendered) -> list[str]:
    """The gateway keeps an idle connection open longer than the Ingress in front of it, and each
    service longer than the gateway's pool: the caller always gives up a connection first, so
    no request goes out on one the server is closing (lost without an answer or a log line)."""
    problems = []
    gateway = environment_of(
        rendered.objects, main_container(one_of(rendered.objects, "Deployment", "gateway"))
    )
    default_expiry = GatewaySettings.model_fields["keepalive_expiry"].default
    expiry = float(gateway.get("GATEWAY_KEEPALIVE_EXPIRY", default_expiry))
    for deployment in all_of(rendered.objects, "Deployment"):
        environment = environment_of(rendered.objects, main_container(deployment))
        # uvicorn's default, when nothing sets it.
        keep_alive = float(environment.get(KEEP_ALIVE_VARIABLE, 5))
        caller, caller_seconds = (
            ("the Ingress", INGRESS_IDLE_SECONDS)
            if deployment["metadata"]["name"] == "gateway"
            else ("the gateway", expiry)
        )
        if keep_alive < caller_seconds + KEEP_ALIVE_MARGIN_SECONDS:
            problems.append(
                f"{_name(deployment)} closes idle connections after {keep_alive:g} s, not "
                f"{KEEP_ALIVE_MARGIN_SECONDS} s after {caller} does ({caller_seconds:g} s)"
            )
    return problems


@rule
def probes_allow_a_slow_start_and_a_slow_answer(rendered: Rendered) -> list[str]:
    """Every container may take half a minute to start, and a liveness probe acts only after
    several failures in a row, and never on a dependency's health."""
    problems = []
    for workload in workloads(rendered.objects):
        container = main_container(workload)
        where = f"{_name(workload)}/{container['name']}"
        startup = container.get("startupProbe")
        liveness = container.get("livenessProbe")
        if startup is None or liveness is None:
            problems.append(f"{where} lacks a startup or a liveness probe")
            continue
        failures = _probe_setting(startup, "failureThreshold")
        budget = failures * _probe_setting(startup, "periodSeconds")
        if failures < FAILURES_BEFORE_ACTION or budget < STARTUP_SECONDS:
            problems.append(f"{where} is restarted after {failures} failures, {budget} s")
        for kind in ("livenessProbe", "readinessProbe"):
            probe = container.get(kind, {})
            if _probe_setting(probe, "failureThreshold") < FAILURES_BEFORE_ACTION:
                problems.append(f"{where}'s {kind} acts on {probe['failureThreshold']} failure")
        # Readiness includes the database: as liveness, a database outage would restart every pod.
        if liveness.get("httpGet", {}).get("path") == "/health/ready":
            problems.append(f"{where} is restarted when a dependency is down")
    return problems


@rule
def ingress_names_its_class(rendered: Rendered) -> list[str]:
    """Each Ingress names the class of the controller that serves it, as a field."""
    problems = []
    for ingress in all_of(rendered.objects, "Ingress"):
        class_name = ingress["spec"].get("ingressClassName", "")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", class_name):
            problems.append(f"{_name(ingress)} names the class {class_name!r}")
        if "kubernetes.io/ingress.class" in ingress["metadata"].get("annotations", {}):
            problems.append(f"{_name(ingress)} names its class in the deprecated annotation")
    return problems


@rule
def gateway_admits_the_ingress_controller_by_namespace_label(rendered: Rendered) -> list[str]:
    """The gateway admits traffic from outside its namespace only from namespaces carrying the
    Ingress controller label, whatever their name."""
    key, value = INGRESS_CONTROLLER_LABEL
    expected = {"namespaceSelector": {"matchLabels": {key: value}}}
    policy = one_of(rendered.objects, "NetworkPolicy", "gateway")
    peers = [
        peer
        for admitted in policy["spec"].get("ingress", [])
        for peer in admitted.get("from", [])
        if set(peer) != {"podSelector"}
    ]
    return [] if peers == [expected] else [f"the gateway admits {peers}, not {expected}"]


@rule
def monitoring_reaches_each_process_for_metrics_and_health(rendered: Rendered) -> list[str]:
    """The namespace `monitoring` reaches each process on the port it serves /metrics on and on
    the port its health endpoints answer on."""
    problems = []
    monitoring = {"matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}}
    for deployment in all_of(rendered.objects, "Deployment"):
        container = main_container(deployment)
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        wanted = {"/metrics": int(annotations.get("prometheus.io/port", 0))}
        for kind in ("livenessProbe", "readinessProbe"):
            get = container.get(kind, {}).get("httpGet", {})
            wanted[get.get("path", kind)] = get.get("port", 0)
        rules = [
            admitted
            for policy in _policies_for(rendered.objects, deployment, "Ingress")
            for admitted in policy["spec"].get("ingress", [])
            if {"namespaceSelector": monitoring} in admitted.get("from", [])
        ]
        for path, port in wanted.items():
            declared = _container_port(container, port)
            if declared is None or not any(
                not admitted.get("ports")
                or any(entry["port"] in declared for entry in admitted["ports"])
                for admitted in rules
            ):
                problems.append(f"monitoring cannot reach {path} of {_name(deployment)}")
    return problems


@rule
def every_pod_resolves_names_through_cluster_dns_or_its_node_cache(rendered: Rendered) -> list[str]:
    """Every pod may query the cluster DNS's pods and NodeLocal DNSCache, on port 53 over UDP and
    TCP."""
    for policy in all_of(rendered.objects, "NetworkPolicy"):
        spec = policy["spec"]
        if spec["podSelector"] != {} or "Egress" not in spec["policyTypes"]:
            continue
        for allowed in spec.get("egress", []):
            ports = {(entry["port"], entry.get("protocol", "TCP")) for entry in allowed["ports"]}
            peers = allowed.get("to", [])
            if (
                {(53, "UDP"), (53, "TCP")} <= ports
                and CLUSTER_DNS_PEER in peers
                and {"ipBlock": {"cidr": NODE_LOCAL_DNS}} in peers
            ):
                return []
    return ["no policy lets every pod query both the cluster DNS and NodeLocal DNSCache"]


@rule
def no_policy_opens_every_address(rendered: Rendered) -> list[str]:
    """No NetworkPolicy admits or reaches every address (0.0.0.0/0, ::/0), or an address range
    that does not parse."""
    problems = []
    for policy in all_of(rendered.objects, "NetworkPolicy"):
        for direction, peers_key in (("ingress", "from"), ("egress", "to")):
            for allowed in policy["spec"].get(direction, []):
                for peer in allowed.get(peers_key, []):
                    if "ipBlock" not in peer:
                        continue
                    cidr = peer["ipBlock"]["cidr"]
                    try:
                        network = ipaddress.ip_network(cidr)
                    except ValueError:
                        problems.append(f"{_name(policy)}: {cidr!r} is not an address range")
                        continue
                    if network.prefixlen == 0:
                        problems.append(f"{_name(policy)} opens {direction} to {cidr}")
    return problems


@rule
def prod_services_reach_their_databases_by_a_private_range(rendered: Rendered) -> list[str]:
    """In prod each service reaches its database, by an address range (database-networks.yaml)
    that is a private network given as a network (no host bits), never every address; or by the
    pods of an operator-managed database."""
    if rendered.overlay != "prod":
        return []
    problems = []
    for deployment in all_of(rendered.objects, "Deployment"):
        variables = main_container(deployment).get("env", [])
        if not any(variable["name"].endswith("_DATABASE_URL") for variable in variables):
            continue
        database_peers = [
            peer
            for policy in _policies_for(rendered.objects, deployment, "Egress")
            for allowed in policy["spec"].get("egress", [])
            if any(entry["port"] == 5432 for entry in allowed.get("ports", []))
            for peer in allowed.get("to", [])
        ]
        if not database_peers:
            problems.append(f"{_name(deployment)} reaches no database")
        for peer in database_peers:
            if "ipBlock" not in peer:
                continue
            cidr = peer["ipBlock"]["cidr"]
            try:
                network = ipaddress.ip_network(cidr, strict=True)
            except ValueError:
                problems.append(f"{_name(deployment)} reaches its database at {peer}")
                continue
            if network.prefixlen == 0 or not network.is_private:
                problems.append(f"{_name(deployment)} reaches {cidr} for its database")
    return problems


@rule
def prod_images_are_pinned_releases(rendered: Rendered) -> list[str]:
    """In prod every container runs a released image: a tag other than `latest`, or a digest."""
    if rendered.overlay != "prod":
        return []
    problems = []
    for workload in workloads(rendered.objects):
        for container in containers(workload):
            image = container["image"]
            if "@sha256:" not in image and _image_tag(image) in (None, "latest"):
                problems.append(f"{_name(workload)}/{container['name']} runs {image}")
    return problems


@rule
def workloads_carry_the_recommended_labels(rendered: Rendered) -> list[str]:
    """Every object carries its installation (`app.kubernetes.io/instance`, the namespace's name);
    each workload and its pods also their name, component and version (their image's tag); no
    selector names a version, which changes with every release."""
    problems = []
    (namespace,) = all_of(rendered.objects, "Namespace")
    instance = namespace["metadata"]["name"]
    for item in rendered.objects:
        if _labels(item).get("app.kubernetes.io/instance") != instance:
            problems.append(f"{_name(item)} is not labelled as the instance {instance}")
    for workload in workloads(rendered.objects):
        for where, labels in (("", _labels(workload)), ("'s pods", _pod_labels(workload))):
            missing = [key for key in WORKLOAD_LABELS if key not in labels]
            if missing:
                problems.append(f"{_name(workload)}{where} lack {missing}")
        tag = _image_tag(main_container(workload)["image"])
        versions = {
            _labels(workload).get("app.kubernetes.io/version"),
            _pod_labels(workload).get("app.kubernetes.io/version"),
        }
        if tag is not None and versions != {tag}:
            problems.append(f"{_name(workload)} runs {tag} but is labelled {versions}")
    selectors = [
        (_name(item), item["spec"].get("selector", {}).get("matchLabels", {}))
        for item in rendered.objects
        if item["kind"] in {"Deployment", "StatefulSet", "PodDisruptionBudget"}
    ]
    selectors += [
        (_name(s), s["spec"].get("selector", {})) for s in all_of(rendered.objects, "Service")
    ]
    selectors += [
        (_name(p), p["spec"]["podSelector"].get("matchLabels", {}))
        for p in all_of(rendered.objects, "NetworkPolicy")
    ]
    for where, selector in selectors:
        if "app.kubernetes.io/version" in selector:
            problems.append(f"{where} selects by version")
    return problems


@rule
def prod_secrets_outlive_the_manifests(rendered: Rendered) -> list[str]:
    """Prod renders no Secret, so deleting the manifests deletes none; the one object that would
    take them along, the namespace, is kept by GitOps tools and left out of the selector
    `app.kubernetes.io/part-of=services` that every other object carries (deploy/README.md)."""
    if rendered.overlay != "prod":
        return []
    problems = [f"prod renders {_name(secret)}" for secret in all_of(rendered.objects, "Secret")]
    key, value = PART_OF
    for item in rendered.objects:
        labelled = _labels(item).get(key) == value
        if item["kind"] == "Namespace":
            annotations = item["metadata"].get("annotations", {})
            if labelled:
                problems.append(f"{_name(item)} goes with `kubectl delete -l {key}={value}`")
            for annotation, kept in KEEP_ANNOTATIONS.items():
                if annotations.get(annotation) != kept:
                    problems.append(f"{_name(item)} lacks {annotation}: {kept}")
        elif not labelled:
            problems.append(f"{_name(item)} stays after `kubectl delete -l {key}={value}`")
    return problems


@rule
def namespace_pins_the_restricted_pod_security_standard(rendered: Rendered) -> list[str]:
    """The namespace enforces the restricted Pod Security Standard as the oldest supported
    Kubernetes defines it, and warns and audits by it too."""
    oldest = "v" + ".".join(KUBERNETES_VERSIONS[0].split(".")[:2])
    expected = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": oldest,
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }
    problems = []
    for namespace in all_of(rendered.objects, "Namespace"):
        labels = _labels(namespace)
        for key, value in expected.items():
            if labels.get(key) != value:
                problems.append(f"{_name(namespace)}: {key} is {labels.get(key)}, not {value}")
    return problems


@rule
def only_the_migrations_connect_as_the_migrator(rendered: Rendered) -> list[str]:
    """Each service's init container `migrate` reads its migrations' URL from the Secret
    `<service>-database-migrator`, the role that owns the schema; no other container of a
    Deployment reads a migrator's Secret, so every service runs as a role that may only read and
    write rows (deploy/README.md, "The database roles")."""
    problems = []
    for deployment in all_of(rendered.objects, "Deployment"):
        name = deployment["metadata"]["name"]
        own = f"{name}-database-migrator"
        initial = pod_spec(deployment).get("initContainers", [])
        for container in containers(deployment):
            where = f"{_name(deployment)}/{container['name']}"
            read = secrets_read(deployment, container)
            migrators = sorted(s for s in read if re.search(r"-database-migrator(-|$)", s))
            if container not in initial or container["name"] != "migrate":
                if migrators:
                    problems.append(f"{where} reads {migrators}")
                continue
            if [s for s in migrators if not generated_as(s, own)]:
                problems.append(f"{where} reads {migrators}, not {own} alone")
            variables = {variable["name"]: variable for variable in container.get("env", [])}
            variable = variables.get(f"{name.upper()}_MIGRATION_DATABASE_URL", {})
            reference = variable.get("valueFrom", {}).get("secretKeyRef", {})
            if not generated_as(reference.get("name", ""), own) or reference.get("key") != "url":
                problems.append(f"{where} migrates without the URL in {own}")
    return problems
