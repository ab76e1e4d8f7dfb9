"""Per service and port, over the last minute: new connections, outcomes, handshake latency p50 / p99.

What the seed's story asks of the connection table: "pods or services not
responding on certain ports, or being overloaded with a high rate of
connections".  The tracker appends events (a connection opened, an outcome,
a latency, a retransmitted SYN); the connection table names each event's
service (the Kubernetes service the connection went to, else its
destination address) and hands it here with the destination port.

Each (service, port) keeps one bucket per second for the last ``window``
seconds and running totals: adding an event touches one bucket and the
totals, a second that leaves the window is subtracted from them (counts and
the latency sketch's bucket counts are additive, so the window is exact, not
a decaying estimate).  Latencies go into ``LatencySketch`` buckets (2 %
relative error), so p50 / p99 cost a walk over a few dozen buckets, not a
sort of every latency.

A sampled SYN counts for the sampling rate (it stands for that many); with a
capture every SYN counts once.  Outcomes other than ``completed`` are
failures.  At most ``max_keys`` (service, port) pairs are kept; events of
further pairs are counted in ``dropped``.
"""
from __future__ import annotations

from collections import deque

from .latency import LatencySketch

__all__ = ["ServiceStats", "OUTCOMES"]

OUTCOMES = ("completed", "refused", "no-response", "reset")
_NEW, _RETRANSMIT = 4, 5  # counter slots after the four outcomes


class _Window:
    """One (service, port): per-second buckets and the running totals over them."""

    __slots__ = ("buckets", "totals", "sketch", "changed")

    def __init__(self) -> None:
        self.buckets: deque[tuple[int, list[int], LatencySketch]] = deque()
        self.totals = [0] * 6
        self.sketch = LatencySketch()
        self.changed = True

    def bucket(self, second: int) -> tuple[int, list[int], LatencySketch]:
        buckets = self.buckets
        if buckets and buckets[-1][0] >= second:  # (a late event counts in the latest second)
            return buckets[-1]
        entry = (second, [0] * 6, LatencySketch())
        buckets.append(entry)
        return entry

    def expire(self, oldest: int) -> None:
        buckets = self.buckets
        totals = self.totals
        sketch = self.sketch
        while buckets and buckets[0][0] < oldest:
            _, counts, latencies = buckets.popleft()
            for i, n in enumerate(counts):
                totals[i] -= n
            if latencies.count:
                for index, n in latencies.buckets.items():
                    left = sketch.buckets[index] - n
                    if left:
                        sketch.buckets[index] = left
                    else:
                        del sketch.buckets[index]
                sketch.count -= latencies.count
                sketch.max = max((b[2].max for b in buckets), default=0)
            self.changed = True


class ServiceStats:
    """``add_*`` per event, ``rows(now)`` for the YANG ``service-stats`` list (changed and gone keys)."""

    def __init__(self, window: int = 60, max_keys: int = 10_000) -> None:
        self.window = window
        self.max_keys = max_keys
        self.keys: dict[tuple[str, int], _Window] = {}
        self.dropped = 0
        self.started: float | None = None
        self._span = 0

    def _window(self, key: tuple[str, int], t: float) -> _Window | None:
        window = self.keys.get(key)
        if window is None:
            if len(self.keys) >= self.max_keys:
                self.dropped += 1
                return None
            window = self.keys[key] = _Window()
        if self.started is None:
            self.started = t
        return window

    def add_new(self, key: tuple[str, int], t: float, count: int = 1) -> None:
        """A connection opened (``count``: how many SYNs the observation stands for)."""
        self._count(key, t, _NEW, count)

    def add_outcome(self, key: tuple[str, int], t: float, outcome: str) -> None:
        self._count(key, t, OUTCOMES.index(outcome), 1)

    def add_retransmit(self, key: tuple[str, int], t: float) -> None:
        self._count(key, t, _RETRANSMIT, 1)

    def add_latency(self, key: tuple[str, int], t: float, latency_us: int) -> None:
        window = self._window(key, t)
        if window is not None:
            window.bucket(int(t))[2].add(latency_us)
            window.sketch.add(latency_us)
            window.changed = True

    def _count(self, key: tuple[str, int], t: float, slot: int, n: int) -> None:
        window = self._window(key, t)
        if window is not None:
            window.bucket(int(t))[1][slot] += n
            window.totals[slot] += n
            window.changed = True

    def rows(self, now: float) -> tuple[dict[tuple[str, int], dict], list[tuple[str, int]]]:
        """({key: leaves} of the keys that changed since the last call, [keys with nothing left in the window])."""
        oldest = int(now) - self.window + 1
        span = self.window if self.started is None else max(1, min(self.window, int(now - self.started) + 1))
        changed: dict[tuple[str, int], dict] = {}
        gone: list[tuple[str, int]] = []
        rescale = span != self._span  # the first minute: every rate's divisor moved
        self._span = span
        for key, window in list(self.keys.items()):
            window.expire(oldest)
            if not window.buckets:
                del self.keys[key]
                gone.append(key)
                continue
            if not window.changed and not rescale:
                continue
            window.changed = False
            completed, refused, no_response, reset, new, retransmits = window.totals
            row = {
                "interval": span,
                "new-connections": new,
                "new-per-second": f"{new / span:.2f}",
                "completed": completed,
                "refused": refused,
                "no-response": no_response,
                "reset": reset,
                "failures": refused + no_response + reset,
                "syn-retransmits": retransmits,
                "latency-count": window.sketch.count,
            }
            if window.sketch.count:
                row["latency-p50"] = window.sketch.quantile(0.5) or 0
                row["latency-p99"] = window.sketch.quantile(0.99) or 0
            changed[key] = row
        return changed, gone
