"""The instruction counts' reading of callgrind's dumps, their arithmetic and command line."""

from pathlib import Path

import pytest

from bench.instructions import (
    Count,
    _parse,
    dumped_instructions,
    measured_dump,
    per_request,
    table,
)


def _dump(trigger: str, summary: int) -> str:
    """The head of a callgrind dump as callgrind 3.19 writes it, and its first cost lines."""
    return (
        "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 9572\n"
        "cmd:  python -m uvicorn gateway_service.main:create_app\npart: 1\n\n"
        f"desc: Timerange: Basic block 0 - 2804783609\ndesc: Trigger: {trigger}\n\n"
        f"positions: line\nevents: Ir\nsummary: {summary}\n\n"
        "fl=(1) ceval.c\nfn=(1) _PyEval_EvalFrameDefault\n10 42\n\ntotals: 1572987260\n"
    )


def test_a_dump_counts_the_instructions_of_its_summary_not_its_totals() -> None:
    assert dumped_instructions(_dump("dump measured", 1517947884)) == 1517947884


def test_a_file_without_a_summary_is_not_taken_for_a_count() -> None:
    with pytest.raises(ValueError, match="no summary"):
        dumped_instructions("fn=(1) main\n10 42\nsummary: 7\n")


def test_the_measured_dump_is_the_one_the_dump_command_asked_for(tmp_path: Path) -> None:
    # What the process wrote before (a dump at exit of an earlier part), another process's
    # dump, and the one asked for.
    tmp_path.joinpath("metrics-gateway.41.1").write_text(_dump("Program termination", 5))
    tmp_path.joinpath("metrics-gateway.42.1").write_text(_dump("dump measured", 6))
    tmp_path.joinpath("metrics-gateway.41.2").write_text(_dump("dump measured", 7))

    found = measured_dump(tmp_path, "metrics-gateway", 41)

    assert found.name == "metrics-gateway.41.2"
    assert dumped_instructions(found.read_text()) == 7


def test_no_measured_dump_is_an_error_not_a_count(tmp_path: Path) -> None:
    tmp_path.joinpath("metrics-users.41.1").write_text(_dump("Program termination", 5))

    with pytest.raises(FileNotFoundError):
        measured_dump(tmp_path, "metrics-users", 41)


def test_a_count_is_spread_over_its_requests() -> None:
    assert per_request(3_000_000, 1000) == 3000
    with pytest.raises(ValueError, match="positive"):
        per_request(3_000_000, 0)


def test_the_table_compares_each_process_with_the_reference_variant() -> None:
    rendered = table(
        {"metrics": Count(1_500_000, 1_300_000), "sampled": Count(1_650_000, 1_365_000)},
        "metrics",
    ).splitlines()

    assert rendered[1].split() == ["metrics", "1,500,000", "1,300,000", "1.000", "1.000"]
    assert rendered[2].split() == ["sampled", "1,650,000", "1,365,000", "1.100", "1.050"]


def test_only_known_distinct_variants_and_positive_counts_are_accepted() -> None:
    assert _parse([]).variants == ["plain", "metrics", "ratio0", "sampled", "traced"]
    assert _parse(["metrics", "sampled", "--requests", "50"]).requests == 50
    for wrong in (
        ["metrics", "nonsense"],
        ["metrics", "metrics"],
        ["--requests", "0"],
        ["--warmup", "-1"],
    ):
        with pytest.raises(SystemExit):
            _parse(wrong)
