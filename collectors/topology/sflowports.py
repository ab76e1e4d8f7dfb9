"""What the sFlow collector tells about this switch's ports: counters and who arrives where.

The collector (wired by ``agent.runtime``) hands over, through the
``InterfaceSink`` port, counter records (sFlow generic interface counters)
and aggregated sightings (an outer source address seen on an input
ifIndex).  This module turns successive counter records of a port into
rates over the exporter's counter interval (utilisation, errors, discards,
discard percentage; 32- and 64-bit counters wrap), and keeps the recent
sightings, bounded in number and age, so an attachment can be learned from
the traffic itself.

Which exporter is this switch: the ones whose agent address is one of this
namespace's addresses (netlink), or every exporter when those are unknown;
others are counted in the source's detail, never mixed into our ports.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

from core.ports.topology import InterfaceCounters, SourceSighting

from .lldp import SourceReport

__all__ = ["PortCounters", "SflowPorts"]

_WRAP32, _WRAP64 = 1 << 32, 1 << 64


@dataclass(frozen=True, slots=True)
class PortCounters:
    """One port's rates over the last counter interval."""

    t: float
    interval: float
    speed: int
    oper_up: bool | None
    in_utilization: float | None
    out_utilization: float | None
    in_errors: int
    out_errors: int
    in_discards: int
    out_discards: int
    in_discard_percent: float
    out_discard_percent: float


def _delta(new: int, old: int) -> int:
    if new >= old:
        return new - old
    return new + (_WRAP32 if old < _WRAP32 else _WRAP64) - old


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole > 0 else 0.0


def rates(old: InterfaceCounters, new: InterfaceCounters) -> PortCounters | None:
    """Rates between two records of one port; None when the second is not later."""
    interval = new.t - old.t
    if interval <= 0:
        return None
    speed = new.speed

    def utilization(octets: int) -> float | None:
        if not speed:
            return None
        return min(100.0, round(octets * 8 / interval / speed * 100, 2))

    in_disc, out_disc = _delta(new.in_discards, old.in_discards), _delta(new.out_discards, old.out_discards)
    in_pkts, out_pkts = _delta(new.in_packets, old.in_packets), _delta(new.out_packets, old.out_packets)
    return PortCounters(
        t=new.t, interval=interval, speed=speed, oper_up=new.oper_up,
        in_utilization=utilization(_delta(new.in_octets, old.in_octets)),
        out_utilization=utilization(_delta(new.out_octets, old.out_octets)),
        in_errors=_delta(new.in_errors, old.in_errors), out_errors=_delta(new.out_errors, old.out_errors),
        in_discards=in_disc, out_discards=out_disc,
        in_discard_percent=_percent(in_disc, in_pkts + in_disc), out_discard_percent=_percent(out_disc, out_pkts + out_disc),
    )


class SflowPorts:
    """An ``InterfaceSink``: per-port rates and recent sightings, by exporter and ifIndex."""

    name = "sflow"

    def __init__(self, *, sighting_ttl: float = 600.0, max_sources_per_port: int = 64, max_ports: int = 65536,
                 counters_ttl: float = 600.0, clock=time.time) -> None:
        self.sighting_ttl = sighting_ttl
        self.max_sources_per_port = max_sources_per_port
        self.max_ports = max_ports
        self.counters_ttl = counters_ttl
        self.clock = clock
        self._last: dict[tuple[str, int], InterfaceCounters] = {}
        self._rates: dict[tuple[str, int], PortCounters] = {}
        self._sightings: dict[tuple[str, int], dict[str, tuple[float, str]]] = {}
        self.records = 0
        self.sighting_batches = 0
        self.last_data = 0.0

    # -- InterfaceSink ------------------------------------------------------------
    def interface_counters(self, batch: Iterable[InterfaceCounters]) -> None:
        for rec in batch:
            key = (rec.exporter, rec.ifindex)
            old = self._last.get(key)
            if old is None and len(self._last) >= self.max_ports:
                continue
            self._last[key] = rec
            self.records += 1
            self.last_data = max(self.last_data, rec.t)
            if old is not None:
                r = rates(old, rec)
                if r is not None:
                    self._rates[key] = r

    def source_sightings(self, batch: Iterable[SourceSighting]) -> None:
        self.sighting_batches += 1
        for s in batch:
            key = (s.exporter, s.ifindex)
            sources = self._sightings.get(key)
            if sources is None:
                if len(self._sightings) >= self.max_ports:
                    continue
                sources = self._sightings[key] = {}
            if s.src not in sources and len(sources) >= self.max_sources_per_port:
                oldest = min(sources, key=lambda k: sources[k][0])
                del sources[oldest]
            sources[s.src] = (s.t, s.mac)
            self.last_data = max(self.last_data, s.t)

    # -- reading ------------------------------------------------------------------
    def exporters(self) -> set[str]:
        return {k[0] for k in self._last} | {k[0] for k in self._sightings}

    def snapshot(self, local_addresses: frozenset[str] | None) -> tuple[dict[int, PortCounters],
                                                                         dict[int, dict[str, tuple[float, str]]], str]:
        """(rates by ifIndex, sightings by ifIndex {src: (t, mac)}, note) of this switch's exporters."""
        now = self.clock()
        self._expire(now)
        exporters = self.exporters()
        if local_addresses:
            mine = {e for e in exporters if e in local_addresses}
        else:
            mine = exporters
        others = exporters - mine
        counters: dict[int, PortCounters] = {}
        for (exporter, ifindex), r in self._rates.items():
            if exporter in mine:
                counters[ifindex] = r
        sightings: dict[int, dict[str, tuple[float, str]]] = {}
        for (exporter, ifindex), sources in self._sightings.items():
            if exporter in mine:
                sightings.setdefault(ifindex, {}).update(sources)
        note = f"; ignoring exporters {', '.join(sorted(others))} (not this switch's addresses)" if others else ""
        return counters, sightings, note

    def _expire(self, now: float) -> None:
        for key in [k for k, r in self._last.items() if now - r.t > self.counters_ttl]:
            del self._last[key]
            self._rates.pop(key, None)
        for key, sources in list(self._sightings.items()):
            for src in [s for s, (t, _) in sources.items() if now - t > self.sighting_ttl]:
                del sources[src]
            if not sources:
                del self._sightings[key]

    def report(self, local_addresses: frozenset[str] | None) -> SourceReport:
        """The source's health and data: data is the ``snapshot`` tuple."""
        counters, sightings, note = self.snapshot(local_addresses)
        ports = len(set(counters) | set(sightings))
        if not self.last_data:
            return SourceReport("unavailable", "no sFlow counter or flow samples received yet" + note,
                                (counters, sightings), 0)
        age = self.clock() - self.last_data
        detail = f"{len(counters)} ports with counters, {len(sightings)} with sightings; last sample {age:.0f}s ago"
        return SourceReport("up", detail + note, (counters, sightings), ports, self.last_data)
