"""The topology ports: what a flow source tells about switch ports, and where nodes are plugged in.

Two directions, each wired by ``agent.runtime``:

- A flow source that sees interface data (the sFlow collector: counter
  samples, and the input ifIndex of flow samples) hands it to an
  :class:`InterfaceSink` (the topology producer) as
  :class:`InterfaceCounters` and :class:`SourceSighting` batches.  The
  source aggregates: a sighting stands for every sample of one outer source
  address on one ifIndex since the last batch, so the sink's cost does not
  grow with the sampling rate.
- The topology producer answers, as a :class:`NodeLocator`, where a
  Kubernetes node is plugged in (:class:`NodeLocation`: switches and ports)
  and which MAC and VLAN a switch has learned for an address
  (:class:`Endpoint`); the Kubernetes collector puts them into the vPort
  rows and re-locates the rows a :class:`LocationChange` names.

Neither side imports the other.  This module imports nothing heavy, so an
sFlow worker process may import it.
"""
from __future__ import annotations

from typing import Callable, Iterable, NamedTuple, Protocol

__all__ = ["Endpoint", "InterfaceCounters", "InterfaceSink", "LocationChange", "NodeLocation", "NodeLocator",
           "SourceSighting"]


class InterfaceCounters(NamedTuple):
    """One interface's counters as an exporter reported them (sFlow generic interface counters).

    Counters are the exporter's running totals (32 or 64 bits wide); the
    sink computes rates from successive records of the same interface.
    """

    t: float                 # when the record arrived (epoch seconds)
    exporter: str            # agent address of the exporter
    ifindex: int
    speed: int               # ifSpeed, bits per second (0 unknown)
    oper_up: bool | None     # ifOperStatus up (None: not reported)
    in_octets: int
    out_octets: int
    in_packets: int          # unicast + multicast + broadcast
    out_packets: int
    in_errors: int
    out_errors: int
    in_discards: int
    out_discards: int


class SourceSighting(NamedTuple):
    """Flow samples from one outer source address arrived on one input ifIndex."""

    t: float                 # the latest of them (epoch seconds)
    exporter: str
    ifindex: int
    src: str                 # outer source IP address (text)
    mac: str                 # outer source MAC ("" when the sample had no Ethernet header)
    samples: int             # how many samples since the last batch


class InterfaceSink(Protocol):
    """A consumer of interface data (the topology producer)."""

    def interface_counters(self, batch: Iterable[InterfaceCounters]) -> None:
        """Take counter records (in the event loop)."""
        ...

    def source_sightings(self, batch: Iterable[SourceSighting]) -> None:
        """Take aggregated sightings (in the event loop)."""
        ...


class NodeLocation(NamedTuple):
    """Where a Kubernetes node is plugged in: ``ports[i]`` is a port of ``switches[i]``."""

    switches: tuple[str, ...]
    ports: tuple[str, ...]


class Endpoint(NamedTuple):
    """The MAC a switch resolved an address to, and the VLAN its FDB learned it on."""

    mac: str
    vlan: int


class LocationChange(NamedTuple):
    """What changed: these (cluster, node) locations and these addresses' endpoints."""

    nodes: frozenset[tuple[str, str]]
    ips: frozenset[str]


class NodeLocator(Protocol):
    """Where nodes are plugged in, for the producers that show it (the vPort table)."""

    def location(self, cluster: str, node: str) -> NodeLocation | None:
        """The node's switches and ports; None while no switch has placed it."""
        ...

    def endpoint(self, ip: str) -> Endpoint | None:
        """The MAC and VLAN learned for ``ip`` on some switch, or None."""
        ...

    def on_change(self, listener: Callable[[LocationChange], None]) -> Callable[[], None]:
        """Call ``listener`` (in the event loop) after locations or endpoints changed; returns the unsubscribe."""
        ...
