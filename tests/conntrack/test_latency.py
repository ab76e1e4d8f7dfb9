"""Latency sketches: quantiles within the promised error, exact merges, a JSON round trip."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.conntrack.latency import GAMMA, LatencySketch


def exact_quantile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=60_000_000), min_size=1, max_size=500))
def test_quantiles_are_within_the_relative_error(values):
    sketch = LatencySketch.of(values)
    for q in (0.5, 0.9, 0.99):
        want, got = exact_quantile(values, q), sketch.quantile(q)
        assert abs(got - want) <= want * (GAMMA - 1) + 1, (q, want, got)
    assert sketch.max == max(values) and sketch.count == len(values)


def test_merging_minutes_gives_exactly_the_hour():
    rng = random.Random(7)
    minutes = [[int(rng.lognormvariate(7, 1.5)) + 1 for _ in range(rng.randint(0, 300))] for _ in range(60)]
    hour = LatencySketch()
    for minute in minutes:
        hour.merge(LatencySketch.of(minute))
    whole = LatencySketch.of(v for minute in minutes for v in minute)
    assert hour.buckets == whole.buckets and hour.count == whole.count and hour.max == whole.max
    assert hour.summary() == whole.summary()


def test_json_round_trip_and_empty():
    sketch = LatencySketch.of([120, 450, 90_000])
    again = LatencySketch.from_json(sketch.to_json())
    assert again.summary() == sketch.summary() and again.buckets == sketch.buckets
    assert LatencySketch().summary() == {"count": 0} and LatencySketch().quantile(0.5) is None
    assert LatencySketch.of([0]).quantile(0.5) == 0
