"""Which environments turn tracing on: only the standard OTEL_* variables decide."""

import pytest

from servicekit.tracing import configure_tracing, exporters_requested

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}


@pytest.mark.parametrize(
    ("environment", "exporters"),
    [
        ({}, []),
        (ENDPOINT, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, []),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, []),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "false"}, ["otlp"]),
    ],
)
def test_tracing_is_on_only_when_the_environment_names_an_exporter_or_an_endpoint(
    environment: dict[str, str], exporters: list[str]
) -> None:
    assert exporters_requested(environment) == exporters


def test_nothing_configured_leaves_tracing_off() -> None:
    assert configure_tracing("users", {}) is False


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "'zipkin' is not supported"),
        ({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "'grpc' is not supported"),
    ],
)
def test_an_exporter_the_process_cannot_run_stops_it_at_start_with_the_reason(
    environment: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        configure_tracing("users", environment)
