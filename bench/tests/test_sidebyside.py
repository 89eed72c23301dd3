"""The side-by-side comparison's arithmetic and its command line."""

import pytest

from bench.sidebyside import Run, _parse, paired_ratios, summary


def _run(rps: float, gateway_us: float = 400, users_us: float = 350) -> Run:
    return Run(rps, gateway_us, users_us)


def test_each_run_is_compared_with_the_reference_run_of_its_own_round() -> None:
    # The machine slowed down in the second round: both variants moved, their ratio did not.
    reference = [_run(2000), _run(1600)]
    traced = [_run(1800), _run(1440)]

    assert paired_ratios(traced, reference) == [0.9, 0.9]


def test_the_summary_gives_medians_of_the_paired_ratios_and_of_cpu_per_request() -> None:
    runs = {
        "metrics": [_run(2000, 360, 330), _run(1000, 720, 660), _run(2000, 380, 340)],
        "sampled": [_run(1800, 400, 370), _run(950, 800, 700), _run(1700, 420, 380)],
    }

    assert summary(runs, "metrics") == [
        ("metrics", 1.0, 380, 340),
        ("sampled", 0.9, 420, 380),
    ]


def test_only_known_distinct_variants_are_accepted() -> None:
    assert _parse([]).variants == ["metrics", "ratio0", "noexport", "sampled"]
    assert _parse(["plain", "traced"]).variants == ["plain", "traced"]
    for wrong in (["metrics", "nonsense"], ["metrics", "metrics"]):
        with pytest.raises(SystemExit):
            _parse(wrong)
