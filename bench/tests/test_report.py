"""The benchmark's arithmetic: wrk's output read back, and ratios judged against their targets."""

import pytest

from bench.load import parse_wrk_output
from bench.report import targets

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
            "gateway": [{"connections": 64, "rps": 3000}, {"connections": 256, "rps": 2900}]
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
        "users_with_posts_vs_gateway": (0.333, False),
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
