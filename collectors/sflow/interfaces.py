"""What decoded datagrams tell about the exporter's interfaces, for an ``InterfaceSink``.

Two things, both from samples the decoder already produced:

- counter samples' generic interface counters (RFC 2233 ifTable per
  ifIndex) become ``InterfaceCounters`` records;
- flow samples become *sightings*: this outer source address (and MAC)
  arrived on this input ifIndex.  They are aggregated per (exporter,
  ifIndex, address) between hand-overs, so the sink's work follows the
  number of distinct sources, not the sample rate; the MAC is read from
  the sampled Ethernet header once per new key.

Used by the collector's own process and by its worker processes (which
send ``take()``'s result in their batches); imports nothing heavy.
"""
from __future__ import annotations

from core.ports.flows import address_text
from core.ports.topology import InterfaceCounters, SourceSighting

from .records import CounterSample, Datagram, FlowSample, GenericInterfaceCounters

__all__ = ["InterfaceTally"]

#: distinct (exporter, ifIndex, source) kept between two hand-overs
MAX_SIGHTINGS = 65536
_HEADER_ETHERNET = 1


def _mac(header: bytes) -> str:
    return ":".join(f"{b:02x}" for b in header[6:12])


class InterfaceTally:
    """Accumulates counters and sightings of decoded datagrams until ``take()``."""

    __slots__ = ("counters", "sightings", "dropped")

    def __init__(self) -> None:
        self.counters: list[InterfaceCounters] = []
        self.sightings: dict[tuple[str, int, bytes], list] = {}
        self.dropped = 0

    def __bool__(self) -> bool:
        return bool(self.counters or self.sightings)

    def add(self, dg: Datagram, t: float) -> None:
        """Take what one datagram tells about interfaces."""
        agent = dg.agent
        sightings = self.sightings
        for sample in dg.samples:
            kind = type(sample)
            if kind is FlowSample:
                ifindex = sample.input_ifindex
                header = sample.header
                if sample.input_format != 0 or not ifindex or header is None or header.packet is None:
                    continue
                src = header.packet.src_ip
                if src is None:
                    continue
                key = (agent, ifindex, src)
                entry = sightings.get(key)
                if entry is not None:
                    entry[0] = t
                    entry[2] += 1
                elif len(sightings) < MAX_SIGHTINGS:
                    raw = header.header
                    mac = _mac(raw) if header.header_protocol == _HEADER_ETHERNET and len(raw) >= 12 else ""
                    sightings[key] = [t, mac, 1]
                else:
                    self.dropped += 1
            elif kind is CounterSample:
                for rec in sample.records:
                    if type(rec) is GenericInterfaceCounters:
                        self.counters.append(InterfaceCounters(
                            t, agent, rec.if_index, rec.if_speed, bool(rec.if_status & 2),
                            rec.in_octets, rec.out_octets,
                            rec.in_ucast_pkts + rec.in_multicast_pkts + rec.in_broadcast_pkts,
                            rec.out_ucast_pkts + rec.out_multicast_pkts + rec.out_broadcast_pkts,
                            rec.in_errors, rec.out_errors, rec.in_discards, rec.out_discards))

    def take(self) -> tuple[list[InterfaceCounters], list[SourceSighting]]:
        """Everything gathered since the last take (sightings with text addresses)."""
        counters = self.counters
        sightings = [SourceSighting(t, agent, ifindex, address_text(src), mac, count)
                     for (agent, ifindex, src), (t, mac, count) in self.sightings.items()]
        self.counters = []
        self.sightings = {}
        return counters, sightings
