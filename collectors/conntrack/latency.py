"""Handshake latency distributions that merge exactly: fixed logarithmic buckets.

Per-service statistics (the last minute of a live table) and connection
rollups (one row per interval in the time machine, hourly rows built from
minute rows) both need p50 / p90 / p99 / max of handshake latencies, and
coarser rows must be the exact merge of finer ones.  A histogram over fixed
logarithmic buckets does that: bucket ``i`` holds latencies in
``[GAMMA**i, GAMMA**(i+1))`` microseconds, so merging is adding counts, a
quantile is read at the bucket's midpoint with a relative error of at most
``(GAMMA - 1) / 2`` (2 %), and the JSON form is a small sparse dict that the
history store keeps as is.

Why not a library: DDSketch (DataDog's sketches-py) uses the same
logarithmic mapping, but its only portable serialisation is protobuf; the
fixed buckets here serialise to JSON, merge by addition, and are 60 lines.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

__all__ = ["GAMMA", "LatencySketch"]

#: bucket growth factor: the relative error of a quantile is at most (GAMMA - 1) / 2
GAMMA = 1.04
_LOG_GAMMA = math.log(GAMMA)


def _bucket(value_us: float) -> int:
    return 0 if value_us < 1.0 else int(math.log(value_us) / _LOG_GAMMA)


class LatencySketch:
    """Counts of latencies (microseconds) per logarithmic bucket, with the exact maximum."""

    __slots__ = ("buckets", "count", "max")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.max = 0

    def add(self, value_us: int) -> None:
        """Account one latency."""
        index = _bucket(value_us)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1
        if value_us > self.max:
            self.max = int(value_us)

    def merge(self, other: "LatencySketch") -> None:
        """Add another sketch's counts (exact: merging minute sketches gives the hour's)."""
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += other.count
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> int | None:
        """The ``q`` quantile (0..1) in microseconds, None when empty."""
        if not self.count:
            return None
        rank = q * (self.count - 1)
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen > rank:
                if index == 0:
                    return min(1, self.max)
                low, high = GAMMA ** index, GAMMA ** (index + 1)
                return min(int(round((low + high) / 2)), self.max)
        return self.max

    def summary(self) -> dict[str, int]:
        """{count, p50, p90, p99, max} (quantiles left out when empty)."""
        out = {"count": self.count}
        if self.count:
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
                out[name] = self.quantile(q) or 0
            out["max"] = self.max
        return out

    def to_json(self) -> dict:
        """A JSON-ready form: {"b": {bucket: count}, "n": count, "max": max}."""
        return {"b": {str(i): n for i, n in sorted(self.buckets.items())}, "n": self.count, "max": self.max}

    @classmethod
    def from_json(cls, data: Mapping) -> "LatencySketch":
        sketch = cls()
        sketch.buckets = {int(i): int(n) for i, n in (data.get("b") or {}).items()}
        sketch.count = int(data.get("n", sum(sketch.buckets.values())))
        sketch.max = int(data.get("max", 0))
        return sketch

    @classmethod
    def of(cls, values: Iterable[int]) -> "LatencySketch":
        sketch = cls()
        for value in values:
            sketch.add(value)
        return sketch
