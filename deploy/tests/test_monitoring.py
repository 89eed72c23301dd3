"""deploy/monitoring: Prometheus's configurations for Compose and Kubernetes pass promtool and
scrape every process with its metrics token; the alert rules pass promtool's checks and their
unit tests, say how urgent each alert is and what to do, and use only the metrics the processes
serve. (The Deployments' scrape annotations and the monitoring NetworkPolicy are checked with the
rest of the manifests, in test_kubernetes.py.)"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from deploy.tests.conftest import Process

DEPLOY = Path(__file__).parents[1]
MONITORING = DEPLOY / "monitoring"
RULES = MONITORING / "alerts.yml"
RULE_TESTS = MONITORING / "alerts_test.yml"
README = DEPLOY / "README.md"
COMPOSE_FILE = DEPLOY.parent / "docker-compose.yml"
COMPOSE_CONFIG = MONITORING / "prometheus.yml"
KUBERNETES_CONFIG = MONITORING / "prometheus-kubernetes.yml"
# Where Prometheus finds the Secret `metrics-token` (key `token`) in Kubernetes: the Prometheus
# Operator mounts a Secret it lists under `secrets:` at /etc/prometheus/secrets/<name>.
KUBERNETES_TOKEN_FILE = "/etc/prometheus/secrets/metrics-token/token"
SEVERITIES = {"page", "ticket"}

# The metrics the processes serve at /metrics (libs/servicekit, gateway): a rule on any other
# name would never fire. Renaming one of them must fail here until the rules follow.
HISTOGRAMS = {
    "http_server_request_duration_seconds",
    "gateway_downstream_request_duration_seconds",
}
SERVED_METRICS = {
    f"{histogram}{suffix}" for histogram in HISTOGRAMS for suffix in ("_bucket", "_count", "_sum")
} | {
    "http_server_requests_in_flight",
    "service_ready",
    "db_pool_max_connections",
    "db_pool_connections",
    "db_pool_waiting",
    "db_pool_waits_total",
    "db_pool_timeouts_total",
    "gateway_downstream_requests_total",
    "auth_login_failures_total",
    "auth_login_throttled_total",
    "events_outbox_events",
    "events_consumer_lag_events",
    "events_consumer_lag_seconds",
    "events_consumer_parked",
    "events_consumer_applied_total",
    # prometheus-client's process collector.
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
}
# What Prometheus records of every scrape itself.
SCRAPE_METRICS = {"up"}

# Enough of PromQL's grammar to find the metric names in an expression: what is left of it
# without strings, label lists, matchers and ranges, function names and keywords.
PROMQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
PROMQL_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
PROMQL_BRACKETS = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
PROMQL_NAME = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()")
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset"}

Object = dict[str, Any]


def _load(path: Path) -> Object:
    loaded: Object = yaml.safe_load(path.read_text())
    return loaded


def _rules() -> list[Object]:
    return [rule for group in _load(RULES)["groups"] for rule in group["rules"]]


def _alerts() -> list[Object]:
    return [rule for rule in _rules() if "alert" in rule]


def _metric_names(expression: str) -> set[str]:
    for pattern in (PROMQL_STRING, PROMQL_LABEL_LIST, PROMQL_BRACKETS):
        expression = pattern.sub(" ", expression)
    return set(PROMQL_NAME.findall(expression)) - PROMQL_KEYWORDS


def _heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown document."""
    anchors = set()
    for line in markdown.splitlines():
        heading = re.fullmatch(r"#{1,6}\s+(.*)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading[1].strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def _run(promtool: Path, *arguments: str | Path, cwd: Path = MONITORING) -> None:
    result = subprocess.run(
        [promtool, *arguments], capture_output=True, text=True, check=False, cwd=cwd
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_promtools_checks(promtool: Path) -> None:
    _run(promtool, "check", "rules", "--lint=all", "--lint-fatal", RULES)


def test_alerts_fire_and_stay_silent_as_their_unit_tests_say(promtool: Path) -> None:
    _run(promtool, "test", "rules", RULE_TESTS)


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    expectations: dict[str, set[bool]] = {}
    for group in _load(RULE_TESTS)["tests"]:
        for case in group.get("alert_rule_test", []):
            expectations.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    assert {alert["alert"]: {True, False} for alert in _alerts()} == expectations


def test_every_alert_says_how_urgent_it_is_and_what_to_do() -> None:
    anchors = _heading_anchors(README.read_text())
    for alert in _alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook"}, name
        assert all(annotations.values()), name
        # The runbook is the alert's own section of deploy/README.md.
        assert annotations["runbook"] == f"deploy/README.md#{name.lower()}"
        assert name.lower() in anchors, f"deploy/README.md has no section {name}"


def test_rules_use_only_metrics_the_processes_serve_and_rules_record() -> None:
    rules = _rules()
    recorded = {rule["record"] for rule in rules if "record" in rule}
    used = set().union(*(_metric_names(rule["expr"]) for rule in rules))
    assert "http_server_request_duration_seconds_count" in used
    assert used - SERVED_METRICS - SCRAPE_METRICS - recorded == set()
    # A recording rule that no alert reads only costs.
    read_by_alerts = set().union(*(_metric_names(alert["expr"]) for alert in _alerts()))
    assert recorded <= read_by_alerts


@pytest.mark.parametrize("configuration", [COMPOSE_CONFIG, KUBERNETES_CONFIG], ids=lambda p: p.name)
def test_prometheus_configuration_passes_promtool(
    promtool: Path, configuration: Path, tmp_path: Path
) -> None:
    """Checked as a copy beside the rules, whose credentials file points at a dummy token (promtool
    wants it to exist). The Debian build of promtool has no Kubernetes discovery: the copy lists
    no targets instead, and the next tests check the discovery block itself."""
    token = tmp_path / "metrics-token"
    token.write_text("a-token")
    shutil.copy(RULES, tmp_path)
    loaded = _load(configuration)
    for job in loaded["scrape_configs"]:
        job["authorization"]["credentials_file"] = str(token)
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": []}]
    copy = tmp_path / configuration.name
    copy.write_text(yaml.safe_dump(loaded))
    _run(promtool, "check", "config", "--lint=all", "--lint-fatal", copy, cwd=tmp_path)


@pytest.mark.parametrize("configuration", [COMPOSE_CONFIG, KUBERNETES_CONFIG], ids=lambda p: p.name)
def test_prometheus_evaluates_the_alert_rules_and_presents_the_metrics_token(
    configuration: Path,
) -> None:
    loaded = _load(configuration)
    assert loaded["rule_files"] == [RULES.name]
    assert loaded["global"]["scrape_interval"] == "15s"
    for job in loaded["scrape_configs"]:
        assert job["authorization"]["type"] == "Bearer", job["job_name"]
        assert job["authorization"]["credentials_file"], job["job_name"]


def test_compose_prometheus_scrapes_every_process_at_its_address(process: Process) -> None:
    jobs = {job["job_name"]: job for job in _load(COMPOSE_CONFIG)["scrape_configs"]}
    job = jobs[process.name]
    assert job["static_configs"] == [{"targets": [f"{process.name}:{process.port}"]}]
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_compose_prometheus_writes_the_token_it_presents_from_the_environment() -> None:
    prometheus = _load(COMPOSE_FILE)["services"]["prometheus"]
    # The processes' tokens come from the same variable, with the same development default.
    assert prometheus["environment"]["METRICS_TOKEN"] == "${METRICS_TOKEN:-changeme}"
    script = prometheus["entrypoint"][prometheus["entrypoint"].index("-c") + 1]
    for job in _load(COMPOSE_CONFIG)["scrape_configs"]:
        credentials = job["authorization"]["credentials_file"]
        assert f'printf %s "$$METRICS_TOKEN" > {credentials}' in script
        assert credentials.startswith(tuple(prometheus["tmpfs"])), "written where it can write"


def test_compose_prometheus_starts_only_with_its_profile_from_a_pinned_image() -> None:
    services = _load(COMPOSE_FILE)["services"]
    profiled = {name: item["profiles"] for name, item in services.items() if "profiles" in item}
    # `docker compose up` without a profile starts what it started before.
    assert profiled == {"prometheus": ["monitoring"]}
    prometheus = services["prometheus"]
    default_image = re.fullmatch(r"\$\{PROMETHEUS_IMAGE:-(?P<image>[^}]+)\}", prometheus["image"])
    assert default_image, "the image comes from PROMETHEUS_IMAGE, with a default"
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", default_image["image"])
    assert "./deploy/monitoring:/etc/prometheus:ro" in prometheus["volumes"]
    assert f"--config.file=/etc/prometheus/{COMPOSE_CONFIG.name}" in prometheus["command"]


def test_kubernetes_prometheus_discovers_pods_of_the_overlays_with_the_secrets_token() -> None:
    (job,) = _load(KUBERNETES_CONFIG)["scrape_configs"]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": KUBERNETES_TOKEN_FILE}
    namespaces = {_load(path)["namespace"] for path in DEPLOY.glob("overlays/*/kustomization.yaml")}
    # Only these namespaces: every target discovered is sent the token.
    assert job["kubernetes_sd_configs"] == [
        {"role": "pod", "namespaces": {"names": sorted(namespaces)}}
    ]
