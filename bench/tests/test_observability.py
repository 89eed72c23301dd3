"""Scenario 11's rounds: every variant in every place of the order as often, each copy's turns
as many and in alternating order, and as many rounds as asked."""

from collections import Counter

import pytest

from bench.observability import REFERENCE, VARIANTS, rotation, turn_sides
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


def test_the_variants_compared_with_the_reference_rotate_among_themselves() -> None:
    others = tuple(variant for variant in VARIANTS if variant is not REFERENCE)

    orders = [rotation(round_number, others) for round_number in range(len(others))]

    assert REFERENCE.name == "plain"
    assert [order[0] for order in orders] == list(others)
    assert all(sorted(order, key=others.index) == list(others) for order in orders)


def test_turns_go_to_each_copy_as_often_in_pairs_of_alternating_order() -> None:
    sides = turn_sides(4)

    assert sides == [0, 1, 1, 0, 0, 1, 1, 0]
    assert turn_sides(3) == [0, 1, 1, 0, 0, 1]
    assert turn_sides(0) == []


def test_scenario_11_runs_its_default_rounds_unless_told_and_refuses_fewer_than_one() -> None:
    assert _parse([]).rounds_11 == ROUNDS_11
    assert _parse(["--only", "11", "--rounds-11", "12"]).rounds_11 == 12
    for wrong in (["--rounds-11", "0"], ["--repeat", "0"]):
        with pytest.raises(SystemExit):
            _parse(wrong)
