"""The result type of the sampled-header dissection: ``ParsedPacket`` and ``Layers``.

Kept apart from ``packet.py`` because these are NamedTuple classes, which
this project does not compile: ``packet.py`` (and the rest of the hot path)
may run compiled (``collectors/sflow/_fast``) while this module always runs
as plain Python, so the compiled and the pure-Python decoder return the very
same ``ParsedPacket`` class.  Import these names from
``collectors.sflow.packet``, which re-exports them.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["LAYER_FIELDS", "NO_LAYERS", "PACKET_FIELDS", "Layers", "ParsedPacket"]

#: Fields of one L2-L4 stack, in the order ``dissect`` returns them.
LAYER_FIELDS = (
    "vlans",  # tuple of VLAN ids, outermost first; () when untagged
    "ethertype",  # EtherType after the tags, None when the stack starts at IP
    "ip_version",  # 4, 6, or 0 when not IP
    "src_ip",  # packed 4/16 bytes, or None
    "dst_ip",
    "protocol",  # IP protocol number (after IPv6 extension headers) or None
    "src_port",  # TCP/UDP ports or None
    "dst_port",
    "tcp_flags",  # 12 bits as in tshark's tcp.flags, or None
    "icmp_type",
    "icmp_code",
    "fragment_offset",  # non-zero: a later fragment, which has no transport header
)
NO_LAYERS = (None,) * len(LAYER_FIELDS)


class Layers(NamedTuple):
    """One L2-L4 stack (outer or inner) of a ``ParsedPacket``; see LAYER_FIELDS."""

    vlans: tuple | None
    ethertype: int | None
    ip_version: int | None
    src_ip: bytes | None
    dst_ip: bytes | None
    protocol: int | None
    src_port: int | None
    dst_port: int | None
    tcp_flags: int | None
    icmp_type: int | None
    icmp_code: int | None
    fragment_offset: int | None

    @property
    def vlan(self) -> int | None:
        """The outermost VLAN id, or None when untagged."""
        return self.vlans[0] if self.vlans else None


PACKET_FIELDS = (
    "encapsulation",  # 'none', 'vxlan', 'geneve' or 'ipip'
    "vni",  # VXLAN/Geneve VNI or None
    "truncated",  # the header ended before the innermost transport header
    "truncated_in",  # where: 'tcp', 'vxlan', 'inner:ipv4', ... or None
    "tunnel_options_length",  # Geneve option bytes, else None
    *LAYER_FIELDS,
    *("inner_" + name for name in LAYER_FIELDS),
)


class ParsedPacket(NamedTuple):
    """The dissected sampled header: tunnel facts, outer stack, inner stack, flat.

    Fields are PACKET_FIELDS, typed, so mypy (and mypyc, which reads them as
    tuple items) checks every use; ``outer`` and ``inner`` give the two
    stacks as ``Layers``.  Inner fields are None when there is no tunnel (or
    it was cut off).  The dissector builds it positionally on its hot path
    (``tuple.__new__``); tests hold PACKET_FIELDS, LAYER_FIELDS and these
    fields to the same order.
    """

    encapsulation: str
    vni: int | None
    truncated: bool
    truncated_in: str | None
    tunnel_options_length: int | None
    vlans: tuple | None
    ethertype: int | None
    ip_version: int | None
    src_ip: bytes | None
    dst_ip: bytes | None
    protocol: int | None
    src_port: int | None
    dst_port: int | None
    tcp_flags: int | None
    icmp_type: int | None
    icmp_code: int | None
    fragment_offset: int | None
    inner_vlans: tuple | None
    inner_ethertype: int | None
    inner_ip_version: int | None
    inner_src_ip: bytes | None
    inner_dst_ip: bytes | None
    inner_protocol: int | None
    inner_src_port: int | None
    inner_dst_port: int | None
    inner_tcp_flags: int | None
    inner_icmp_type: int | None
    inner_icmp_code: int | None
    inner_fragment_offset: int | None

    @property
    def outer(self) -> Layers:
        return Layers._make(self[5:17])

    @property
    def inner(self) -> Layers | None:
        fields = self[17:29]
        return None if fields == NO_LAYERS else Layers._make(fields)

    @property
    def vlan(self) -> int | None:
        vlans = self.vlans
        return vlans[0] if vlans else None
