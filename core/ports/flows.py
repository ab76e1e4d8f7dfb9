"""The flow port: one observed packet, handed by a flow source to a flow consumer.

Flow sources turn what they decode into records for flow consumers (the
connection tracker):

* the sFlow producer into :class:`FlowObservation` records, *sampled*
  packets each standing for ``rate`` packets, taken through a :class:`FlowSink`;
* the control-packet capture (a mirror port, ERSPAN) into
  :class:`ControlPacket` records, *exact* events: every TCP packet with SYN,
  FIN or RST of the connections it watches, with the capture's own
  timestamp, taken through a :class:`ControlSink`.  Because the capture sees
  every control packet, the consumer may conclude from what it does *not*
  see (a SYN never answered) and time the handshake exactly.
Neither side imports the other: ``agent.runtime`` wires a source to a sink,
as goflow2 wires decoder -> producer -> transport in one place.
"""
from __future__ import annotations

import socket
from typing import Iterable, NamedTuple, Protocol

__all__ = ["ControlPacket", "ControlSink", "FlowObservation", "FlowSink", "address_text", "make_control",
           "make_observation"]


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


class ControlPacket(NamedTuple):
    """One TCP control packet (SYN, FIN or RST set) a capture saw: an exact event, not a sample.

    The innermost flow for tunnelled packets, as in :class:`FlowObservation`.
    ``t`` is the capture's own timestamp (the kernel's receive time on the
    mirror port, or the switch's hardware time from ERSPAN type III), so
    differences between two packets of one capture are the switch's view of
    the handshake.  ``seq`` and ``ack`` tell a retransmitted SYN (same
    sequence number) from a new connection on the same 5-tuple.  Control
    packets carry no volume: packets and bytes stay the sampled sources'.
    """

    t: float                 # when the packet was seen (epoch seconds, the capture's clock)
    exporter: str            # which capture saw it ("mirror0", "192.0.2.1 session 7")
    length: int              # frame length in bytes (of the mirrored frame)
    vlan: int                # outermost VLAN id in the frame, 0 when untagged
    vni: int                 # VXLAN/Geneve VNI, 0 when not tunnelled
    encapsulation: str       # 'none', 'vxlan', 'geneve' or 'ipip'
    src: bytes | str         # packed (4 or 16 bytes) or text, both the same kind
    dst: bytes | str
    src_port: int
    dst_port: int
    tcp_flags: int           # TCP flags (12 bits); at least one of SYN, FIN, RST is set
    seq: int                 # TCP sequence number
    ack: int                 # TCP acknowledgement number (meaningful when ACK is set)


def make_control(t: float, exporter: str, length: int, vlan: int, vni: int, encapsulation: str,
                 src: bytes | str, dst: bytes | str, src_port: int, dst_port: int, tcp_flags: int,
                 seq: int, ack: int) -> ControlPacket:
    """Build a ControlPacket without NamedTuple's keyword-handling constructor (hot paths)."""
    return _new(ControlPacket, (t, exporter, length, vlan, vni, encapsulation, src, dst, src_port, dst_port,
                                tcp_flags, seq, ack))


class ControlSink(Protocol):
    """A consumer of exact control-packet events (the connection tracker)."""

    @property
    def accepting(self) -> bool:
        """False while the consumer is off: sources may skip building events."""
        ...

    def observe_control(self, batch: Iterable[ControlPacket]) -> None:
        """Account a batch of control packets, in capture order (in the event loop)."""
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
