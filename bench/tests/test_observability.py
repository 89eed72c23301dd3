"""Scenario 11's rounds: every variant in every place of the order as often, and as many
rounds as asked."""

from collections import Counter

import pytest

from bench.observability import VARIANTS, rotation
from bench.run import ROUNDS_11, _parse


def test_each_variant_runs_in_every_place_once_in_as_many_rounds_as_variants() -> None:
    orders = [rotation(round_number) for round_number in range(len(VARIANTS))]

    assert all(sorted(order, key=VARIANTS.index) == list(VARIANTS) for order in orders)
    places = Counter(
        (variant.name, place) for order in orders for place, variant in enumerate(order)
    )
    assert set(places.values()) == {1}
    assert len(places) == len(VARIANTS) ** 2
    assert rotation(len(VARIANTS)) == rotation(0)


def test_scenario_11_runs_its_default_rounds_unless_told_and_refuses_fewer_than_one() -> None:
    assert _parse([]).rounds_11 == ROUNDS_11
    assert _parse(["--only", "11", "--rounds-11", "12"]).rounds_11 == 12
    for wrong in (["--rounds-11", "0"], ["--repeat", "0"]):
        with pytest.raises(SystemExit):
            _parse(wrong)
