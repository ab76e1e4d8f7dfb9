"""Collector statistics: per-exporter counters and lost datagrams from sequence gaps.

An sFlow v5 exporter numbers its datagrams (per agent address and
sub-agent id) from 1 upward, wrapping at 2**32.  A gap in the numbers is
datagrams lost between the exporter and us (network or our socket buffer).
:meth:`ExporterStats.sequence` interprets each new number against the last
one, modulo 2**32:

* ``last + 1``: in order;
* ``last + k`` for ``1 < k <= MAX_GAP``: ``k - 1`` datagrams lost;
* ``last - k`` for ``0 <= k < REORDER_WINDOW``: a late (reordered) or
  duplicated datagram; a late one was already counted as lost, so the lost
  count is given back (never below zero) and ``last`` stays where it is;
* anything else (a far jump forward or back, a number going back after a
  pause of more than ``REORDER_SECONDS``, or sysUpTime and the number both
  going back): the exporter restarted and numbers from scratch; that is
  counted in ``restarts``, not as loss.

Counters live in plain attributes and are written to the datastore by the
collector's flush (at most once a second), never per datagram.

At most ``MAX_EXPORTERS`` exporters are tracked one by one: datagrams of
further (new) agent addresses, such as a flood with spoofed ones, still
count in the totals but get no row of their own (``untracked``), so memory
and the exporter list stay bounded.
"""
from __future__ import annotations

import time

from core.times import format_rfc3339

__all__ = ["ExporterStats", "CollectorStats", "MAX_GAP", "REORDER_WINDOW"]

#: A forward jump larger than this is an exporter restart, not loss.
MAX_GAP = 1 << 20
#: How far behind the last number a datagram may arrive and still count as late.
REORDER_WINDOW = 1024
#: ... and how soon after the previous datagram it must arrive (seconds).
REORDER_SECONDS = 2.0
_MOD = 1 << 32
#: Exporters (agent address, sub-agent id) with their own counters and statistics row.
MAX_EXPORTERS = 4096


class ExporterStats:
    """Counters of one exporter (agent address, sub-agent id)."""

    __slots__ = ("agent", "sub_agent_id", "datagrams", "samples", "malformed", "lost",
                 "restarts", "last_sequence", "last_uptime", "last_seen", "dirty")

    def __init__(self, agent: str, sub_agent_id: int) -> None:
        self.agent = agent
        self.sub_agent_id = sub_agent_id
        self.datagrams = 0
        self.samples = 0
        self.malformed = 0
        self.lost = 0
        self.restarts = 0
        self.last_sequence: int | None = None
        self.last_uptime = 0
        self.last_seen = 0.0
        self.dirty = True

    def sequence(self, seq: int, uptime: int = 0, now: float = 0.0) -> int:
        """Account one datagram number; returns how many datagrams it reveals as lost (may be < 0).

        ``uptime`` is the datagram's sysUpTime in ms (0 when the exporter does
        not fill it, as pmacctd), ``now`` its arrival time: a number going
        backwards is only a late datagram when it arrives within
        ``REORDER_SECONDS`` of the previous one; later than that it is a restart.
        """
        last = self.last_sequence
        last_uptime, self.last_uptime = self.last_uptime, uptime
        if last is None:
            self.last_sequence = seq
            return 0
        ahead = (seq - last) % _MOD
        behind = (last - seq) % _MOD
        if uptime and last_uptime and uptime + 60_000 < last_uptime and seq < last:
            pass  # uptime and numbers both went back: restarted
        elif 0 < ahead <= MAX_GAP:
            self.last_sequence = seq
            self.lost += ahead - 1
            return ahead - 1
        elif behind < REORDER_WINDOW and (not now or not self.last_seen or now - self.last_seen < REORDER_SECONDS):
            self.last_uptime = max(uptime, last_uptime)
            if behind and self.lost:  # a late datagram we had counted as lost
                self.lost -= 1
                return -1
            return 0
        self.restarts += 1
        self.last_sequence = seq
        return 0

    def row(self) -> dict:
        """The statistics/exporter leaves (keys excluded)."""
        row = {"datagrams": self.datagrams, "samples": self.samples, "malformed": self.malformed, "lost": self.lost}
        if self.last_sequence is not None:
            row["last-sequence"] = self.last_sequence
        if self.last_seen:
            row["last-seen"] = format_rfc3339(self.last_seen)
        return row


class CollectorStats:
    """Totals and per-exporter counters of one collector.

    Calling it returns the numbers a metrics scrape wants (totals, exporters,
    exporter restarts, datagrams ignored while disabled).
    """

    def __init__(self, max_exporters: int = MAX_EXPORTERS) -> None:
        self.max_exporters = max_exporters
        self.untracked = 0  # datagrams of exporters beyond max_exporters (counted in the totals only)
        self.ignored = 0  # datagrams dropped unread while sflow-collector enable is false
        self.datagrams = 0
        self.samples = 0
        self.malformed = 0
        self.lost = 0
        self.exporters: dict[tuple[str, int], ExporterStats] = {}
        self.dirty = True

    def account(self, agent: str | None, sub_agent_id: int, seq: int, uptime: int, samples: int,
                malformed: bool, now: float | None = None) -> None:
        """One received datagram; ``agent`` None when even its header did not decode."""
        self.datagrams += 1
        self.samples += samples
        self.dirty = True
        if malformed:
            self.malformed += 1
        if not agent:
            return
        key = (agent, sub_agent_id)
        exp = self.exporters.get(key)
        if exp is None:
            if len(self.exporters) >= self.max_exporters:
                self.untracked += 1
                return
            exp = self.exporters[key] = ExporterStats(agent, sub_agent_id)
        exp.datagrams += 1
        exp.samples += samples
        if malformed:
            exp.malformed += 1
        now = now or time.time()
        self.lost += exp.sequence(seq, uptime, now)
        exp.last_seen = now
        exp.dirty = True

    def totals(self) -> dict:
        """The statistics container's leaves."""
        return {"datagrams": self.datagrams, "samples": self.samples, "malformed": self.malformed, "lost": self.lost}

    def __call__(self) -> dict:
        return {**self.totals(), "exporters": len(self.exporters), "ignored": self.ignored, "untracked": self.untracked,
                "exporter_restarts": sum(e.restarts for e in self.exporters.values())}

    def take_dirty(self) -> list[ExporterStats]:
        """Exporters changed since the last call (and clear the marks)."""
        out = [e for e in self.exporters.values() if e.dirty]
        for e in out:
            e.dirty = False
        return out
