"""Scenario 11's rounds: every variant in every place of the order as often."""

from collections import Counter

from bench.observability import VARIANTS, rotation


def test_each_variant_runs_in_every_place_once_in_as_many_rounds_as_variants() -> None:
    orders = [rotation(round_number) for round_number in range(len(VARIANTS))]

    assert all(sorted(order, key=VARIANTS.index) == list(VARIANTS) for order in orders)
    places = Counter(
        (variant.name, place) for order in orders for place, variant in enumerate(order)
    )
    assert set(places.values()) == {1}
    assert len(places) == len(VARIANTS) ** 2
    assert rotation(len(VARIANTS)) == rotation(0)
