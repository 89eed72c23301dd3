"""The benchmark's arithmetic: wrk's output read back, and ratios judged against their targets."""

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.load import combined, parse_wrk_output
from bench.report import targets, write

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:18001
  1 threads and 64 connections
BENCH_RESULT {"requests":50000,"duration_us":10000000,"bytes":1,\
"errors":{"connect":0,"read":1,"write":0,"status":2,"timeout":0},\
"latency_us":{"mean":1250.0,"p50":1100,"p90":1900,"p99":4200,"max":9000}}
"""


def _throughput(rps: float) -> dict[str, object]:
    return {"rps": rps, "latency_ms": {"p50": 1.0, "p99": 2.0}, "errors": {}}


def test_wrk_output_gives_rate_latencies_in_milliseconds_and_failures() -> None:
    result = parse_wrk_output(WRK_OUTPUT, connections=64)

    assert result.rps == 5000.0
    assert result.latency_ms == {"mean": 1.25, "p50": 1.1, "p90": 1.9, "p99": 4.2, "max": 9.0}
    assert result.failed == 3


def test_wrk_output_without_a_result_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no result"):
        parse_wrk_output("unable to connect to 127.0.0.1:18001\n", connections=1)


def test_targets_are_ratios_of_the_same_run_with_a_verdict_each() -> None:
    document = {
        "throughput": {
            "ceiling": _throughput(10_000),
            "users": _throughput(4_000),
            "gateway_user": _throughput(3_000),
            "users_with_posts": _throughput(1_000),
            "monolith": _throughput(2_500),
            "nginx": _throughput(3_500),
            "gateway_user_signed_in": _throughput(2_850),
            "gateway_user_during_logins": _throughput(1_200),
            "obs_plain_user": _throughput(3_000),
            "obs_metrics_user": _throughput(2_940),
            "obs_sampled_user": _throughput(2_700),
            "obs_traced_user": _throughput(1_500),
            "obs_plain_posts": _throughput(1_000),
            "obs_metrics_posts": _throughput(960),
            "obs_sampled_posts": _throughput(930),
            "obs_traced_posts": _throughput(600),
        },
        "concurrency": {
            "gateway": [
                {"connections": 64, "rps": 3000, "latency_ms": {"p50": 20.0, "p99": 60.0}},
                {"connections": 256, "rps": 2900, "latency_ms": {"p50": 80.0, "p99": 400.0}},
            ]
        },
        "latency": {
            "first_page": {"latency_ms": {"p50": 2.0}},
            "keyset_deep": {"latency_ms": {"p50": 2.5}},
        },
        "bulk": {"service_rows_per_second": 30_000, "executemany_rows_per_second": 50_000},
    }

    verdicts = {t["key"]: (t["value"], t["met"]) for t in targets(document)}

    assert verdicts == {
        "users_vs_ceiling": (0.4, False),
        "gateway_vs_users": (0.75, True),
        "users_with_posts_vs_gateway": (0.333, None),  # retired: reported only
        "users_with_posts_vs_monolith": (0.4, False),
        "gateway_vs_nginx": (0.857, True),
        "gateway_256_vs_64": (0.967, True),
        "keyset_deep_vs_first": (1.25, True),
        "bulk_vs_executemany": (0.6, True),
        "signed_in_vs_anonymous": (0.95, True),
        "reads_during_logins_vs_alone": (0.4, False),
        "metrics_vs_plain_user": (0.98, True),
        "metrics_vs_plain_posts": (0.96, False),
        "sampled_vs_plain_user": (0.9, False),
        "sampled_vs_plain_posts": (0.93, True),
        "traced_vs_plain_user": (0.5, None),  # reported, with no bound
        "traced_vs_plain_posts": (0.6, None),
        "tail_gateway_64": (3.0, True),
        "tail_gateway_256": (5.0, False),
    }


def test_targets_of_scenarios_that_did_not_run_have_no_verdict() -> None:
    assert all(t["value"] is None and t["met"] is None for t in targets({}))


def test_a_ratio_pairs_the_runs_of_each_round() -> None:
    # The machine sped up and slowed down between rounds; each round's two runs moved alike.
    document = {
        "throughput": {
            "ceiling": {**_throughput(2_000), "runs_rps": [1_000, 3_000, 2_000]},
            "users": {**_throughput(900), "runs_rps": [500, 1_500, 900]},
        },
        "bulk": {
            "service_rows_per_second": 10,
            "executemany_rows_per_second": 20,
            "runs": [[10, 20], [30, 40], [5, 20]],
        },
    }

    verdicts = {t["key"]: t["value"] for t in targets(document)}

    assert verdicts["users_vs_ceiling"] == 0.5  # the medians alone would say 0.45
    assert verdicts["bulk_vs_executemany"] == 0.5


def _run(
    server: str, connections: int, p50: float, p99: float, **runs: list[float]
) -> dict[str, Any]:
    return {
        "label": f"{server} at {connections}",
        "server": server,
        "connections": connections,
        "rps": 1_000.0,
        "latency_ms": {"p50": p50, "p90": p50 * 2, "p99": p99, "max": p99 * 2},
        "errors": {"read": 0},
        **runs,
    }


def test_every_gateway_run_at_64_and_256_connections_has_its_p99_held_to_4_p50() -> None:
    document = {
        "throughput": {
            "gateway_user": _run("gateway", 64, 10.0, 40.0),
            "users_with_posts_256": _run("gateway", 256, 100.0, 401.0),
            "obs_metrics_user": _run("metrics-gateway", 64, 10.0, 20.0),
            "login": _run("gateway", 16, 300.0, 2_000.0),  # at neither count
            "users": _run("users", 64, 10.0, 90.0),  # not a gateway
            "nginx": _run("nginx", 64, 10.0, 90.0),
        },
        "concurrency": {
            "gateway-httpx": [_run("gateway-httpx", 1, 1.0, 9.0), _run("gateway-httpx", 256, 5, 9)]
        },
    }

    tails = {t["key"]: (t["value"], t["bound"], t["met"]) for t in targets(document) if "tail" in t}

    assert tails == {
        "tail_gateway_user": (4.0, "<= 4.0", True),
        "tail_users_with_posts_256": (4.01, "<= 4.0", False),
        "tail_obs_metrics_user": (2.0, "<= 4.0", True),
        "tail_gateway-httpx_256": (1.8, "<= 4.0", True),
    }


def test_a_tail_pairs_each_rounds_p99_with_its_p50() -> None:
    # Round 2's slow p50 and slow p99 belong together; the medians alone would say 45/10.
    run = _run("gateway", 64, 10.0, 45.0, runs_p50=[10, 30, 5], runs_p99=[20, 90, 45])

    (tail,) = [t for t in targets({"throughput": {"gateway_user": run}}) if "tail" in t]

    assert tail["value"] == 3.0
    assert tail["met"] is True


def _document(**parts: Any) -> dict[str, Any]:
    """A run's document as bench.run writes it, with `parts` (its scenarios) in it."""
    machine = {
        "cores": 2,
        "cpu": "cpu",
        "python": "3.11",
        "postgres": "15",
        "wrk": "wrk 4",
        "nginx": "nginx/1.22.1",
        "workers_per_server": 1,
        "packages": {},
    }
    document = {
        "started": "2026-01-01T00:00:00+00:00",
        "seconds": 6,
        "warmup": 3,
        "connections": 64,
        "machine": machine,
        "scale": {"users": 1, "posts": 1, "comments": 1, "products": 1},
        **parts,
    }
    document["targets"] = targets(document)
    return document


def test_the_report_shows_each_runs_percentiles_and_the_tail_targets(tmp_path: Path) -> None:
    document = _document(
        throughput={"gateway_user": _run("gateway", 64, 10.0, 50.0)},
        concurrency={"gateway": [_run("gateway", 1, 1.0, 3.0), _run("gateway", 64, 10.0, 50.0)]},
    )

    write(document, tmp_path)

    markdown = (tmp_path / "latest.md").read_text()
    assert "| gateway at 64 | 1,000 req/s | 10.00 | 20.00 | 50.00 | 100.00 | 0 |" in markdown
    tail = "| gateway at 64, 64 connections | 1,000 req/s | 10.00 | 20.00 | 50.00 | 100.00 |"
    assert f"{tail} 5.00 | MISSED |" in markdown
    assert "nginx/1.22.1" in markdown
    for chart in ("gateway-concurrency.png", "gateway-latency.png"):
        assert f"]({chart})" in markdown
        assert (tmp_path / chart).read_bytes().startswith(b"\x89PNG")


def test_a_run_of_some_scenarios_keeps_charts_of_its_own(tmp_path: Path) -> None:
    document = _document(concurrency={"gateway": [_run("gateway", 1, 1.0, 3.0)]})

    write(document, tmp_path, "only-8")

    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "only-8-gateway-concurrency.png",
        "only-8-gateway-latency.png",
        "only-8.md",
    ]


def _observed(variant: str, runs_rps: list[float], runs_cpu_us: list[float]) -> dict[str, Any]:
    return {
        **_run(f"{variant}-gateway", 64, 10.0, 20.0, runs_rps=runs_rps, runs_cpu_us=runs_cpu_us),
        "label": f"11. gateway GET /users/{{id}}, {variant}",
    }


def test_scenario_11_shows_each_variants_rounds_against_neither_in_the_same_round(
    tmp_path: Path,
) -> None:
    # Round 2 ran slower for every variant; a round's ratio does not see it.
    document = _document(
        rounds_11=4,
        throughput={
            "obs_plain_user": _observed("plain", [2_000, 1_000, 2_000, 2_000], [400, 420, 410, 0]),
            "obs_sampled_user": _observed(
                "sampled", [1_900, 950, 1_800, 1_960], [430, 440, 450, 460]
            ),
        },
    )

    write(document, tmp_path)

    markdown = (tmp_path / "latest.md").read_text()
    assert "4 rounds of their own" in markdown
    assert "| GET /users/{id}, plain | 2,000 req/s | 1.000 | 1.000 to 1.000 | 405 µs |" in markdown
    # Ratios 0.95, 0.95, 0.90, 0.98: median 0.95, quartiles (exclusive) 0.9125 and 0.9725,
    # printed as binary floats round them.
    assert (
        "| GET /users/{id}, sampled | 1,850 req/s | 0.950 | 0.913 to 0.972 | 445 µs |" in markdown
    )
    (sampled,) = [t for t in document["targets"] if t["key"] == "sampled_vs_plain_user"]
    assert (sampled["value"], sampled["met"]) == (0.95, True)


def test_scenario_11_in_turns_compares_each_variant_with_neither_beside_it(
    tmp_path: Path,
) -> None:
    # Neither ran beside each variant: its own runs (three a round) are not what a variant's
    # round is compared with, the runs beside that variant are.
    sampled = _observed("sampled", [1_800, 900, 1_900], [430, 440, 450])
    sampled["reference_rps"] = [2_000, 1_000, 2_000]
    document = _document(
        rounds_11=3,
        turns_11=10,
        throughput={
            "obs_plain_user": _observed("plain", [2_000.0] * 3 + [1_000.0] * 6, [400.0] * 9),
            "obs_sampled_user": sampled,
        },
    )

    write(document, tmp_path)

    markdown = " ".join((tmp_path / "latest.md").read_text().split())
    assert "scenario 11 in 3 rounds of its own, in turns of a second," in markdown
    assert "wrk drove the two in turns of a second (10 turns each per read" in markdown
    # Ratios 0.90, 0.90, 0.95: median 0.90; against plain's own runs the median would be 1.8.
    assert "| GET /users/{id}, sampled | 1,800 req/s | 0.900 |" in markdown
    assert "| GET /users/{id}, plain | 1,000 req/s | 1.000 |" in markdown
    (target,) = [t for t in document["targets"] if t["key"] == "sampled_vs_plain_user"]
    assert (target["value"], target["met"]) == (0.9, False)


def test_runs_in_turns_combine_into_one_run_of_all_their_time() -> None:
    turns = [
        parse_wrk_output(WRK_OUTPUT, 64),
        replace(
            parse_wrk_output(WRK_OUTPUT, 64),
            requests=10_000,
            seconds=5.0,
            latency_ms={"mean": 1.0, "p50": 3.0, "p90": 4.0, "p99": 5.0, "max": 6.0},
            errors={"connect": 2},
        ),
    ]

    run = combined(turns, cpu_seconds=1.2)

    assert (run.requests, run.seconds, run.rps) == (60_000, 15.0, 4_000.0)
    assert run.latency_ms["p50"] == 2.05  # the median of 1.1 and 3.0
    assert run.errors == {"connect": 2, "read": 1, "write": 0, "status": 2, "timeout": 0}
    assert run.failed == 5
    assert run.cpu_us == 20.0
    assert combined(turns).cpu_us is None
    with pytest.raises(ValueError, match="no runs"):
        combined([])


def test_without_scenario_11_the_report_has_no_section_for_it(tmp_path: Path) -> None:
    write(_document(throughput={"gateway_user": _run("gateway", 64, 10.0, 50.0)}), tmp_path)

    assert "11. What observability costs" not in (tmp_path / "latest.md").read_text()


@pytest.mark.parametrize(
    ("parts", "said"),
    [
        ({}, "3 rounds of all runs interleaved,"),
        ({"rounds_11": 8}, "scenario 11 in 8 rounds of its own,"),
        (
            {"rounds_11": 8, "throughput": {"gateway_user": _run("gateway", 64, 10.0, 50.0)}},
            "3 rounds of all runs interleaved and scenario 11 in 8 rounds of its own after them,",
        ),
    ],
)
def test_the_report_says_how_its_rounds_ran(
    tmp_path: Path, parts: dict[str, Any], said: str
) -> None:
    write(_document(repeat=3, **parts), tmp_path)

    assert said in " ".join((tmp_path / "latest.md").read_text().split())


def test_scenario_11_of_a_run_without_rounds_of_its_own_says_it_ran_in_the_others(
    tmp_path: Path,
) -> None:
    document = _document(
        throughput={"obs_plain_user": _observed("plain", [2_000, 1_900], [400, 410])},
    )

    write(document, tmp_path)

    markdown = (tmp_path / "latest.md").read_text()
    assert "The rounds of all runs; a ratio is the median" in markdown
    assert "rounds of their own" not in markdown
