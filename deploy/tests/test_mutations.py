"""Each rule of kubernetes_rules.py fails on an overlay edited to break what it protects: first the
nine edits that shape-only tests let through, then at least one edit for every other rule. An edit
changes a copy of the rendered objects, so each overlay renders once."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from deploy.tests import kubernetes_rules as rules
from deploy.tests.kubernetes_rules import RULES, Object, Rendered, Rule, one_of

Edit = Callable[[list[Object]], None]
Location = tuple[str | int, ...]

CONTAINER: Location = ("spec", "template", "spec", "containers", 0)
POD: Location = ("spec", "template", "spec")
INIT_CONTAINER: Location = ("spec", "template", "spec", "initContainers", 0)


@dataclass(frozen=True)
class Mutation:
    """An edit of an overlay's rendered objects, and the rules that must each report it."""

    description: str
    overlay: str
    edit: Edit
    caught_by: tuple[Rule, ...]


def _walk(item: Any, location: Location) -> Any:
    for step in location:
        item = item[step]
    return item


def set_field(kind: str, name: str, location: Location, value: Any) -> Edit:
    """Sets a field of one object; every step but the last must exist."""

    def edit(objects: list[Object]) -> None:
        _walk(one_of(objects, kind, name), location[:-1])[location[-1]] = value

    return edit


def remove_field(kind: str, name: str, location: Location) -> Edit:
    """Removes a field, or a list's item, that must exist."""

    def edit(objects: list[Object]) -> None:
        del _walk(one_of(objects, kind, name), location[:-1])[location[-1]]

    return edit


def remove_object(kind: str, name: str) -> Edit:
    def edit(objects: list[Object]) -> None:
        objects.remove(one_of(objects, kind, name))

    return edit


def set_setting(deployment: str, variable: str, value: str) -> Edit:
    """Sets a variable in the ConfigMap a Deployment's container reads its settings from."""

    def edit(objects: list[Object]) -> None:
        container = rules.main_container(one_of(objects, "Deployment", deployment))
        (source,) = container["envFrom"]
        one_of(objects, "ConfigMap", source["configMapRef"]["name"])["data"][variable] = value

    return edit


def add_object(item: Object) -> Edit:
    def edit(objects: list[Object]) -> None:
        objects.append(copy.deepcopy(item))

    return edit


# The nine edits that passed the shape-only tests.
NINE = (
    Mutation(
        "allow-dns selects the DNS pods by a wrong label",
        "prod",
        set_field(
            "NetworkPolicy",
            "allow-dns",
            ("spec", "egress", 0, "to", 0, "podSelector", "matchLabels"),
            {"k8s-app": "coredns"},
        ),
        (rules.every_pod_resolves_names_through_cluster_dns_or_its_node_cache,),
    ),
    Mutation(
        "the gateway admits a misspelt Ingress controller namespace",
        "prod",
        set_field(
            "NetworkPolicy",
            "gateway",
            ("spec", "ingress", 0, "from", 0, "namespaceSelector", "matchLabels"),
            {"kubernetes.io/metadata.name": "ingres-nginx"},
        ),
        (rules.gateway_admits_the_ingress_controller_by_namespace_label,),
    ),
    Mutation(
        "prod reaches its database at ::/0",
        "prod",
        set_field(
            "NetworkPolicy", "users", ("spec", "egress", 0, "to", 0, "ipBlock", "cidr"), "::/0"
        ),
        (
            rules.prod_services_reach_their_databases_by_a_private_range,
            rules.no_policy_opens_every_address,
        ),
    ),
    Mutation(
        "prod runs a latest tag",
        "prod",
        set_field(
            "Deployment",
            "gateway",
            (*CONTAINER, "image"),
            "registry.example.com/services/gateway:latest",
        ),
        (rules.prod_images_are_pinned_releases, rules.workloads_carry_the_recommended_labels),
    ),
    Mutation(
        "a rollout may take every pod down (maxUnavailable: 100%)",
        "prod",
        set_field(
            "Deployment", "users", ("spec", "strategy", "rollingUpdate", "maxUnavailable"), "100%"
        ),
        (rules.rollouts_replace_pods_only_with_pods_that_stay_ready,),
    ),
    Mutation(
        "a drain may evict every pod (maxUnavailable: 100%)",
        "prod",
        set_field("PodDisruptionBudget", "users", ("spec", "maxUnavailable"), "100%"),
        (rules.disruptions_take_one_pod_at_a_time,),
    ),
    Mutation(
        "preStop removed",
        "prod",
        remove_field("Deployment", "catalog", (*CONTAINER, "lifecycle")),
        (rules.pods_keep_serving_until_their_endpoint_is_gone,),
    ),
    Mutation(
        "a bogus topologyKey",
        "prod",
        set_field(
            "Deployment",
            "blog",
            (*POD, "topologySpreadConstraints", 0, "topologyKey"),
            "topology.kubernetes.io/zones",
        ),
        (rules.pods_spread_over_zones_and_nodes_within_their_revision,),
    ),
    Mutation(
        "a startup probe with failureThreshold: 1",
        "prod",
        set_field("Deployment", "users", (*CONTAINER, "startupProbe", "failureThreshold"), 1),
        (rules.probes_allow_a_slow_start_and_a_slow_answer,),
    ),
    Mutation(
        "an autoscaler target of 5%",
        "prod",
        set_field(
            "HorizontalPodAutoscaler",
            "gateway",
            ("spec", "metrics", 0, "resource", "target", "averageUtilization"),
            5,
        ),
        (rules.autoscalers_scale_on_cpu_between_rest_and_load,),
    ),
)

METRICS_TOKEN_SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {
        "name": "metrics-token",
        "namespace": "services",
        "labels": {
            "app.kubernetes.io/part-of": "services",
            "app.kubernetes.io/instance": "services",
        },
    },
    "stringData": {"token": "changeme"},
}

# The rules of operators' expectations, each broken at least once.
EXPECTATIONS = (
    Mutation(
        "a Deployment runs as the namespace's default account",
        "prod",
        remove_field("Deployment", "blog", (*POD, "serviceAccountName")),
        (rules.every_workload_runs_as_its_own_service_account,),
    ),
    Mutation(
        "a Deployment runs as another workload's account",
        "prod",
        set_field("Deployment", "catalog", (*POD, "serviceAccountName"), "users"),
        (rules.every_workload_runs_as_its_own_service_account,),
    ),
    Mutation(
        "a workload's account is not rendered",
        "dev",
        remove_object("ServiceAccount", "users-db"),
        (rules.every_workload_runs_as_its_own_service_account,),
    ),
    Mutation(
        "a workload's account mounts its token",
        "prod",
        set_field("ServiceAccount", "gateway", ("automountServiceAccountToken",), True),
        (rules.every_workload_runs_as_its_own_service_account,),
    ),
    Mutation(
        "a process requests less memory than it uses",
        "prod",
        set_field("Deployment", "users", (*CONTAINER, "resources", "requests", "memory"), "64Mi"),
        (rules.requests_cover_the_measured_memory,),
    ),
    Mutation(
        "a process's memory limit leaves no room for a burst",
        "prod",
        set_field("Deployment", "blog", (*CONTAINER, "resources", "limits", "memory"), "160Mi"),
        (rules.requests_cover_the_measured_memory,),
    ),
    Mutation(
        "a CPU request so large the measured load never reaches the autoscaler's target",
        "prod",
        set_field("Deployment", "catalog", (*CONTAINER, "resources", "requests", "cpu"), "1"),
        (rules.autoscalers_scale_on_cpu_between_rest_and_load,),
    ),
    Mutation(
        "an autoscaler on memory alone",
        "prod",
        set_field(
            "HorizontalPodAutoscaler",
            "blog",
            ("spec", "metrics", 0, "resource", "name"),
            "memory",
        ),
        (rules.autoscalers_scale_on_cpu_between_rest_and_load,),
    ),
    Mutation(
        "pods spread over nodes alone",
        "prod",
        remove_field("Deployment", "gateway", (*POD, "topologySpreadConstraints", 0)),
        (rules.pods_spread_over_zones_and_nodes_within_their_revision,),
    ),
    Mutation(
        "the spread counts every revision's pods",
        "prod",
        remove_field(
            "Deployment", "users", (*POD, "topologySpreadConstraints", 1, "matchLabelKeys")
        ),
        (rules.pods_spread_over_zones_and_nodes_within_their_revision,),
    ),
    Mutation(
        "the spread counts another workload's pods",
        "prod",
        set_field(
            "Deployment",
            "blog",
            (*POD, "topologySpreadConstraints", 0, "labelSelector"),
            {"matchLabels": {"app.kubernetes.io/part-of": "services"}},
        ),
        (rules.pods_spread_over_zones_and_nodes_within_their_revision,),
    ),
    Mutation(
        "pods stay pending where there is no zone label",
        "dev",
        set_field(
            "Deployment",
            "catalog",
            (*POD, "topologySpreadConstraints", 0, "whenUnsatisfiable"),
            "DoNotSchedule",
        ),
        (rules.pods_spread_over_zones_and_nodes_within_their_revision,),
    ),
    Mutation(
        "a rollout counts a pod available as soon as it is ready",
        "prod",
        remove_field("Deployment", "gateway", ("spec", "minReadySeconds")),
        (rules.rollouts_replace_pods_only_with_pods_that_stay_ready,),
    ),
    Mutation(
        "the grace period left to the default",
        "prod",
        remove_field("Deployment", "users", (*POD, "terminationGracePeriodSeconds")),
        (rules.pods_finish_their_requests_before_they_are_killed,),
    ),
    Mutation(
        "a grace period shorter than preStop and uvicorn's graceful shutdown together",
        "dev",
        set_field("Deployment", "gateway", (*POD, "terminationGracePeriodSeconds"), 20),
        (rules.pods_finish_their_requests_before_they_are_killed,),
    ),
    Mutation(
        "uvicorn's graceful shutdown outlasting the grace period, set in a ConfigMap",
        "prod",
        set_setting("blog", rules.GRACEFUL_SHUTDOWN_VARIABLE, "60"),
        (rules.pods_finish_their_requests_before_they_are_killed,),
    ),
    Mutation(
        "the gateway closing idle connections as soon as the Ingress may still use them",
        "prod",
        set_setting("gateway", rules.KEEP_ALIVE_VARIABLE, "60"),
        (rules.processes_keep_idle_connections_longer_than_their_callers,),
    ),
    Mutation(
        "a service closing idle connections as soon as the gateway's pool may still use them",
        "dev",
        set_setting("catalog", rules.KEEP_ALIVE_VARIABLE, "5"),
        (rules.processes_keep_idle_connections_longer_than_their_callers,),
    ),
    Mutation(
        "the gateway's pool keeping idle connections as long as the services do",
        "prod",
        set_setting("gateway", "GATEWAY_KEEPALIVE_EXPIRY", "75"),
        (rules.processes_keep_idle_connections_longer_than_their_callers,),
    ),
    Mutation(
        "liveness follows the database",
        "prod",
        set_field(
            "Deployment", "blog", (*CONTAINER, "livenessProbe", "httpGet", "path"), "/health/ready"
        ),
        (rules.probes_allow_a_slow_start_and_a_slow_answer,),
    ),
    Mutation(
        "the Ingress names no class",
        "prod",
        remove_field("Ingress", "gateway", ("spec", "ingressClassName")),
        (rules.ingress_names_its_class,),
    ),
    Mutation(
        "the gateway admits a misspelt controller label",
        "dev",
        set_field(
            "NetworkPolicy",
            "gateway",
            ("spec", "ingress", 0, "from", 0, "namespaceSelector", "matchLabels"),
            {"services/ingress-controler": "true"},
        ),
        (rules.gateway_admits_the_ingress_controller_by_namespace_label,),
    ),
    Mutation(
        "monitoring reaches the gateway's port alone",
        "prod",
        set_field(
            "NetworkPolicy",
            "monitoring-scrapes-metrics",
            ("spec", "ingress", 0, "ports"),
            [{"port": 8000, "protocol": "TCP"}],
        ),
        (rules.monitoring_reaches_each_process_for_metrics_and_health,),
    ),
    Mutation(
        "Prometheus is invited to a port nothing serves",
        "prod",
        set_field(
            "Deployment",
            "users",
            ("spec", "template", "metadata", "annotations", "prometheus.io/port"),
            "9090",
        ),
        (rules.monitoring_reaches_each_process_for_metrics_and_health,),
    ),
    Mutation(
        "a misspelt monitoring namespace",
        "dev",
        set_field(
            "NetworkPolicy",
            "monitoring-scrapes-metrics",
            ("spec", "ingress", 0, "from", 0, "namespaceSelector", "matchLabels"),
            {"kubernetes.io/metadata.name": "monitorng"},
        ),
        (rules.monitoring_reaches_each_process_for_metrics_and_health,),
    ),
    Mutation(
        "DNS without NodeLocal DNSCache",
        "prod",
        remove_field("NetworkPolicy", "allow-dns", ("spec", "egress", 0, "to", 1)),
        (rules.every_pod_resolves_names_through_cluster_dns_or_its_node_cache,),
    ),
    Mutation(
        "DNS over UDP alone",
        "dev",
        remove_field("NetworkPolicy", "allow-dns", ("spec", "egress", 0, "ports", 1)),
        (rules.every_pod_resolves_names_through_cluster_dns_or_its_node_cache,),
    ),
    Mutation(
        "the gateway admits every address",
        "dev",
        set_field(
            "NetworkPolicy",
            "gateway",
            ("spec", "ingress", 0, "from"),
            [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
        ),
        (rules.no_policy_opens_every_address,),
    ),
    Mutation(
        "prod reaches its database at 0.0.0.0/0",
        "prod",
        set_field(
            "NetworkPolicy", "blog", ("spec", "egress", 0, "to", 0, "ipBlock", "cidr"), "0.0.0.0/0"
        ),
        (
            rules.prod_services_reach_their_databases_by_a_private_range,
            rules.no_policy_opens_every_address,
        ),
    ),
    Mutation(
        "prod reaches its database in a public range",
        "prod",
        set_field(
            "NetworkPolicy",
            "catalog",
            ("spec", "egress", 0, "to", 0, "ipBlock", "cidr"),
            "8.8.8.0/24",
        ),
        (rules.prod_services_reach_their_databases_by_a_private_range,),
    ),
    Mutation(
        "prod's database range is left unset",
        "prod",
        set_field(
            "NetworkPolicy",
            "users",
            ("spec", "egress", 0, "to", 0, "ipBlock", "cidr"),
            "from-database-networks",
        ),
        (
            rules.prod_services_reach_their_databases_by_a_private_range,
            rules.no_policy_opens_every_address,
        ),
    ),
    Mutation(
        "prod reaches no database",
        "prod",
        set_field("NetworkPolicy", "blog", ("spec", "egress"), []),
        (rules.prod_services_reach_their_databases_by_a_private_range,),
    ),
    Mutation(
        "prod runs an untagged image",
        "prod",
        set_field(
            "Deployment",
            "blog",
            (*INIT_CONTAINER, "image"),
            "registry.example.com/services/blog-service",
        ),
        (rules.prod_images_are_pinned_releases,),
    ),
    Mutation(
        "an object without its instance",
        "prod",
        remove_field("Service", "users", ("metadata", "labels", "app.kubernetes.io/instance")),
        (rules.workloads_carry_the_recommended_labels,),
    ),
    Mutation(
        "pods labelled with another version than their image's",
        "dev",
        set_field(
            "Deployment",
            "catalog",
            ("spec", "template", "metadata", "labels", "app.kubernetes.io/version"),
            "0.0.9",
        ),
        (rules.workloads_carry_the_recommended_labels,),
    ),
    Mutation(
        "a database without its version",
        "dev",
        remove_field("StatefulSet", "blog-db", ("metadata", "labels", "app.kubernetes.io/version")),
        (rules.workloads_carry_the_recommended_labels,),
    ),
    Mutation(
        "a Service selects by version",
        "prod",
        set_field("Service", "gateway", ("spec", "selector", "app.kubernetes.io/version"), "0.1.0"),
        (rules.workloads_carry_the_recommended_labels,),
    ),
    Mutation(
        "the service connects as the migrator",
        "prod",
        set_field(
            "Deployment",
            "users",
            (*CONTAINER, "env", 0, "valueFrom", "secretKeyRef", "name"),
            "users-database-migrator",
        ),
        (rules.only_the_migrations_connect_as_the_migrator,),
    ),
    Mutation(
        "the migrations connect as the service",
        "dev",
        set_field(
            "Deployment",
            "catalog",
            (*INIT_CONTAINER, "env", 1, "valueFrom", "secretKeyRef", "name"),
            "catalog-database",
        ),
        (rules.only_the_migrations_connect_as_the_migrator,),
    ),
    Mutation(
        "the migrations connect as another service's migrator",
        "prod",
        set_field(
            "Deployment",
            "blog",
            (*INIT_CONTAINER, "env", 1, "valueFrom", "secretKeyRef", "name"),
            "users-database-migrator",
        ),
        (rules.only_the_migrations_connect_as_the_migrator,),
    ),
    Mutation(
        "prod renders a Secret",
        "prod",
        add_object(METRICS_TOKEN_SECRET),
        (rules.prod_secrets_outlive_the_manifests,),
    ),
    Mutation(
        "the namespace goes with the deletion of the release's objects",
        "prod",
        set_field(
            "Namespace", "services", ("metadata", "labels", "app.kubernetes.io/part-of"), "services"
        ),
        (rules.prod_secrets_outlive_the_manifests,),
    ),
    Mutation(
        "Argo CD may prune the namespace",
        "prod",
        remove_field(
            "Namespace", "services", ("metadata", "annotations", "argocd.argoproj.io/sync-options")
        ),
        (rules.prod_secrets_outlive_the_manifests,),
    ),
    Mutation(
        "an object is left behind by the deletion of the release's objects",
        "prod",
        remove_field(
            "HorizontalPodAutoscaler", "users", ("metadata", "labels", "app.kubernetes.io/part-of")
        ),
        (rules.prod_secrets_outlive_the_manifests,),
    ),
    Mutation(
        "Pod Security enforced by whichever version the cluster runs",
        "prod",
        remove_field(
            "Namespace",
            "services",
            ("metadata", "labels", "pod-security.kubernetes.io/enforce-version"),
        ),
        (rules.namespace_pins_the_restricted_pod_security_standard,),
    ),
    Mutation(
        "Pod Security pinned to latest",
        "dev",
        set_field(
            "Namespace",
            "services-dev",
            ("metadata", "labels", "pod-security.kubernetes.io/enforce-version"),
            "latest",
        ),
        (rules.namespace_pins_the_restricted_pod_security_standard,),
    ),
    Mutation(
        "no Pod Security warnings",
        "prod",
        remove_field(
            "Namespace", "services", ("metadata", "labels", "pod-security.kubernetes.io/warn")
        ),
        (rules.namespace_pins_the_restricted_pod_security_standard,),
    ),
    Mutation(
        "Pod Security audits by the baseline standard",
        "prod",
        set_field(
            "Namespace",
            "services",
            ("metadata", "labels", "pod-security.kubernetes.io/audit"),
            "baseline",
        ),
        (rules.namespace_pins_the_restricted_pod_security_standard,),
    ),
)

MUTATIONS = NINE + EXPECTATIONS


def _rule_name(rule: Rule) -> str:
    return next(name for name, registered in RULES.items() if registered is rule)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.description for m in MUTATIONS])
def test_a_rule_reports_the_edit(
    mutation: Mutation, render_overlay: Callable[[str], list[Object]]
) -> None:
    original = Rendered(mutation.overlay, render_overlay(mutation.overlay))
    mutated = Rendered(mutation.overlay, copy.deepcopy(original.objects))
    mutation.edit(mutated.objects)
    assert mutated.objects != original.objects
    for rule in mutation.caught_by:
        # The rule holds before the edit: the edit, and nothing else, breaks it.
        assert rule(original) == [], _rule_name(rule)
        assert rule(mutated) != [], f"{_rule_name(rule)} accepts: {mutation.description}"


def test_every_rule_is_shown_to_catch_an_edit() -> None:
    caught = {_rule_name(rule) for mutation in MUTATIONS for rule in mutation.caught_by}
    assert caught == set(RULES)
