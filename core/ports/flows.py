"""The flow port: one observed packet, handed by a flow source to a flow consumer.

Flow sources (the sFlow producer; later the control-packet capture) turn
what they decode into :class:`FlowObservation` records; flow consumers (the
connection tracker) take batches of them through a :class:`FlowSink`.
Neither side imports the other: ``agent.runtime`` wires a source to a sink,
as goflow2 wires decoder -> producer -> transport in one place.
"""
from __future__ import annotations

import socket
from typing import Iterable, NamedTuple, Protocol

__all__ = ["FlowObservation", "FlowSink", "address_text", "make_observation"]


class FlowObservation(NamedTuple):
    """One packet as a flow source saw it: the innermost flow for tunnelled packets.

    ``src``/``dst`` are packed addresses (4 or 16 bytes) or text; the consumer
    turns them into text once per connection, not per packet.  ``rate`` is how
    many packets this one stands for (the sampling rate; 1 for an exact
    observation), and ``length`` the frame length on the wire.
    """

    t: float                 # when the packet was seen (epoch seconds)
    exporter: str            # who reported it (sFlow agent address, capture interface...)
    rate: int                # packets this observation stands for
    length: int              # frame length in bytes
    vlan: int                # outermost VLAN id, 0 when untagged
    vni: int                 # VXLAN/Geneve VNI of the tunnel, 0 when not tunnelled
    encapsulation: str       # 'none', 'vxlan', 'geneve' or 'ipip'
    src: bytes | str
    dst: bytes | str
    protocol: int            # IP protocol of the (inner) packet
    src_port: int | None     # None when the header ended before the ports
    dst_port: int | None
    tcp_flags: int | None    # TCP flags (12 bits) or None


_new = tuple.__new__


def make_observation(t: float, exporter: str, rate: int, length: int, vlan: int, vni: int, encapsulation: str,
                     src: bytes | str, dst: bytes | str, protocol: int, src_port: int | None,
                     dst_port: int | None, tcp_flags: int | None) -> FlowObservation:
    """Build a FlowObservation without NamedTuple's keyword-handling constructor (hot paths)."""
    return _new(FlowObservation, (t, exporter, rate, length, vlan, vni, encapsulation, src, dst, protocol,
                                  src_port, dst_port, tcp_flags))


class FlowSink(Protocol):
    """A consumer of flow observations (the connection tracker)."""

    @property
    def accepting(self) -> bool:
        """False while the consumer is off: sources may skip building observations."""
        ...

    def observe(self, batch: Iterable[FlowObservation]) -> None:
        """Account a batch of observations (in the event loop)."""
        ...


_texts: dict[bytes, str] = {}
_TEXT_CACHE_LIMIT = 65536


def address_text(address: bytes | str) -> str:
    """Text form of a packed IPv4/IPv6 address (memoised; text passes through)."""
    if isinstance(address, str):
        return address
    text = _texts.get(address)
    if text is None:
        if len(_texts) >= _TEXT_CACHE_LIMIT:
            _texts.clear()
        text = socket.inet_ntop(socket.AF_INET if len(address) == 4 else socket.AF_INET6, address)
        _texts[address] = text
    return text
