"""Dissect the sampled packet header carried in an sFlow raw-header record.

An sFlow agent copies only the first bytes of each sampled frame (typically
128), so every layer may be cut short.  This module walks Ethernet, 802.1Q /
QinQ tags, IPv4 (with options), IPv6 (with extension headers), TCP, UDP and
ICMP/ICMPv6, then -- because the fabric carries pod traffic in overlays --
the inner packet of VXLAN, Geneve and IP-in-IP / IPv6-in-IP tunnels.

It runs once per flow sample, which makes it the hottest code of the
collector.  Two choices follow from that:

* The result, ``ParsedPacket``, is one flat tuple (outer fields, tunnel,
  inner fields) with named read-only attributes, built in one go: no object
  per protocol header.
* The shape nearly every fabric sample has -- untagged Ethernet, IPv4
  without options, TCP/UDP, optionally VXLAN around the same -- is read by a
  few precompiled ``struct`` calls (``fast_parse``); anything else, or any
  doubt, goes to the general walker (``dissect``).  Both give identical
  results; the tests hold them to that.

Nothing here raises on short or odd input: ``truncated``/``truncated_in``
record where the bytes ran out.
"""

from __future__ import annotations

import struct
from typing import AbstractSet, Final

# Absolute import: the compiled build (collectors/sflow/_fast) must return these very classes.
from collectors.sflow.packet_types import (  # noqa: F401 -- re-exported
    LAYER_FIELDS,
    NO_LAYERS,
    PACKET_FIELDS,
    Layers,
    ParsedPacket,
)

#: sFlow ``header_protocol`` values we can dissect (sFlow v5, SFLHeader_protocol).
HEADER_PROTOCOL_ETHERNET: Final = 1
HEADER_PROTOCOL_IPV4: Final = 11
HEADER_PROTOCOL_IPV6: Final = 12

ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_IPV6: Final = 0x86DD
#: 802.1Q, 802.1ad (QinQ service tag) and the pre-standard QinQ tag.
VLAN_ETHERTYPES: Final = frozenset({0x8100, 0x88A8, 0x9100})

IPPROTO_ICMP: Final = 1
IPPROTO_IPIP: Final = 4
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_IPV6: Final = 41
IPPROTO_ICMPV6: Final = 58
#: IPv6 extension headers stepped over: hop-by-hop, routing, fragment, AH, destination options.
_IPV6_EXTENSIONS = frozenset({0, 43, 44, 51, 60})

GENEVE_PROTO_ETHERNET: Final = 0x6558

DEFAULT_VXLAN_PORTS: frozenset[int] = frozenset({4789, 8472})
DEFAULT_GENEVE_PORT: Final = 6081

KIND_ETHERNET: Final = 0
KIND_IPV4: Final = 4
KIND_IPV6: Final = 6
KIND_UNKNOWN: Final = -1

_NO_LAYERS: Final = NO_LAYERS
_new: Final = tuple.__new__

#: True in the mypyc build (``collectors.sflow._fast.packet``), which takes the byte-indexing variants below.
_COMPILED: Final = __name__.startswith("collectors.sflow._fast.")
_PARSED_PACKET: Final = ParsedPacket  # compiled: a C static instead of a lookup in this module's globals


def make_packet(encapsulation: str, vni: int | None, truncated: bool, truncated_in: str | None,
                options_length: int | None, outer: tuple, inner: tuple) -> ParsedPacket:
    """Assemble a ParsedPacket from the tunnel facts and two 12-field layer tuples."""
    return _new(ParsedPacket, (encapsulation, vni, truncated, truncated_in, options_length) + outer + inner)


def dissect(data: bytes, off: int, kind: int) -> tuple[tuple, str | None, int]:
    """Walk one L2/L3/L4 stack of ``data`` from ``off``.

    ``kind`` says where it starts: 0 Ethernet, 4 IPv4, 6 IPv6.  Returns the
    12 LAYER_FIELDS, the layer the bytes ran out in (or None), and the
    offset of the UDP payload or tunnelled IP packet (-1 if none).
    Written as one block with early exits so each call builds one tuple.
    """
    n = len(data)
    vlans: tuple[int, ...] = ()
    ethertype = None
    ip_version = 0
    src_ip = dst_ip = protocol = None
    fragment_offset = 0
    src_port = dst_port = tcp_flags = icmp_type = icmp_code = None
    truncated_in = None
    payload_offset = -1
    while True:  # a block with early exits via break
        if kind == KIND_ETHERNET:
            if off + 14 > n:
                truncated_in = "ethernet"
                break
            ethertype = data[off + 12] << 8 | data[off + 13]
            off += 14
            if ethertype in VLAN_ETHERTYPES:
                tags = []
                while ethertype in VLAN_ETHERTYPES:
                    if off + 4 > n:
                        truncated_in = "vlan"
                        break
                    tags.append((data[off] & 0x0F) << 8 | data[off + 1])
                    ethertype = data[off + 2] << 8 | data[off + 3]
                    off += 4
                vlans = tuple(tags)
                if truncated_in:
                    break
            if ethertype == ETHERTYPE_IPV4:
                kind = KIND_IPV4
            elif ethertype == ETHERTYPE_IPV6:
                kind = KIND_IPV6
            else:
                break
        if kind == KIND_IPV4:
            if off + 20 > n:
                truncated_in = "ipv4"
                break
            first = data[off]
            if first >> 4 != 4 or first & 0x0F < 5:
                break  # not IPv4 after all: leave the stack undecoded
            ip_version = 4
            ihl = (first & 0x0F) << 2
            fragment_offset = (data[off + 6] & 0x1F) << 8 | data[off + 7]
            protocol = data[off + 9]
            src_ip = data[off + 12 : off + 16]
            dst_ip = data[off + 16 : off + 20]
            if off + ihl > n:
                truncated_in = "ipv4-options"
                break
            off += ihl
        elif kind == KIND_IPV6:
            if off + 40 > n:
                truncated_in = "ipv6"
                break
            if data[off] >> 4 != 6:
                break
            ip_version = 6
            next_header = data[off + 6]
            src_ip = data[off + 8 : off + 24]
            dst_ip = data[off + 24 : off + 40]
            off += 40
            while next_header in _IPV6_EXTENSIONS:
                if off + 8 > n:
                    truncated_in = "ipv6-extension"
                    break
                if next_header == 44:
                    fragment_offset = (data[off + 2] << 8 | data[off + 3]) >> 3
                    length = 8
                elif next_header == 51:
                    length = (data[off + 1] + 2) << 2
                else:
                    length = (data[off + 1] + 1) << 3
                next_header = data[off]
                off += length
            protocol = next_header
            if truncated_in:
                break
        else:
            break
        if fragment_offset:
            break  # a non-first fragment carries no transport header
        if protocol == IPPROTO_TCP:
            if off + 4 > n:
                truncated_in = "tcp"
                break
            src_port = data[off] << 8 | data[off + 1]
            dst_port = data[off + 2] << 8 | data[off + 3]
            if off + 14 > n:
                truncated_in = "tcp"
                break
            tcp_flags = (data[off + 12] & 0x0F) << 8 | data[off + 13]
        elif protocol == IPPROTO_UDP:
            if off + 4 > n:
                truncated_in = "udp"
                break
            src_port = data[off] << 8 | data[off + 1]
            dst_port = data[off + 2] << 8 | data[off + 3]
            if off + 8 > n:
                truncated_in = "udp"
                break
            payload_offset = off + 8
        elif protocol == IPPROTO_ICMP or protocol == IPPROTO_ICMPV6:
            if off + 2 > n:
                truncated_in = "icmpv6" if protocol == IPPROTO_ICMPV6 else "icmp"
                break
            icmp_type = data[off]
            icmp_code = data[off + 1]
        elif protocol == IPPROTO_IPIP or protocol == IPPROTO_IPV6:
            payload_offset = off
        break
    fields = (
        vlans, ethertype, ip_version, src_ip, dst_ip, protocol,
        src_port, dst_port, tcp_flags, icmp_type, icmp_code, fragment_offset,
    )  # fmt: skip
    return fields, truncated_in, payload_offset


_HEADER_KINDS = {
    HEADER_PROTOCOL_ETHERNET: KIND_ETHERNET,
    HEADER_PROTOCOL_IPV4: KIND_IPV4,
    HEADER_PROTOCOL_IPV6: KIND_IPV6,
}


def parse_sampled_header(
    header: bytes,
    header_protocol: int = HEADER_PROTOCOL_ETHERNET,
    vxlan_ports: AbstractSet[int] = DEFAULT_VXLAN_PORTS,
    geneve_port: int = DEFAULT_GENEVE_PORT,
) -> ParsedPacket | None:
    """Dissect a sampled header down to the tunnelled packet's transport layer.

    Returns None for header protocols other than Ethernet, IPv4 and IPv6
    (token ring, FDDI, MPLS ...), which sFlow allows but a fabric does not
    send.  VXLAN is recognised by UDP destination port (``vxlan_ports``;
    4789 is IANA's, 8472 Linux/Flannel's), Geneve by ``geneve_port``.
    """
    if header_protocol == HEADER_PROTOCOL_ETHERNET:
        packet = fast_parse(header, vxlan_ports, geneve_port)
        if packet is not None:
            return packet
    return parse_sampled_header_general(header, header_protocol, vxlan_ports, geneve_port)


def parse_sampled_header_general(
    header: bytes,
    header_protocol: int = HEADER_PROTOCOL_ETHERNET,
    vxlan_ports: AbstractSet[int] = DEFAULT_VXLAN_PORTS,
    geneve_port: int = DEFAULT_GENEVE_PORT,
) -> ParsedPacket | None:
    """``parse_sampled_header`` without the fast path: the reference the fast path is tested against."""
    kind = _HEADER_KINDS.get(header_protocol, KIND_UNKNOWN)
    if kind == KIND_UNKNOWN:
        return None
    outer, cut, payload = dissect(header, 0, kind)
    if cut is not None:
        return make_packet("none", None, True, cut, None, outer, _NO_LAYERS)
    if payload < 0:
        return make_packet("none", None, False, None, None, outer, _NO_LAYERS)
    protocol = outer[5]
    if protocol == IPPROTO_UDP:
        dst_port = outer[7]
        if dst_port in vxlan_ports:
            return _after_vxlan(header, payload, outer)
        if dst_port == geneve_port:
            return _after_geneve(header, payload, outer)
        return make_packet("none", None, False, None, None, outer, _NO_LAYERS)
    # IP-in-IP (4) or IPv6-in-IP (41)
    inner, cut, _ = dissect(header, payload, KIND_IPV4 if protocol == IPPROTO_IPIP else KIND_IPV6)
    if cut is None:
        return make_packet("ipip", None, False, None, None, outer, inner)
    return make_packet("ipip", None, True, "inner:" + cut, None, outer, inner)


def _after_vxlan(header: bytes, payload: int, outer: tuple) -> ParsedPacket:
    """VXLAN (RFC 7348): flags, 3 reserved bytes, 24-bit VNI, 1 reserved byte, then Ethernet."""
    if payload + 8 > len(header):
        return make_packet("vxlan", None, True, "vxlan", None, outer, _NO_LAYERS)
    vni = header[payload + 4] << 16 | header[payload + 5] << 8 | header[payload + 6]
    inner, cut, _ = dissect(header, payload + 8, KIND_ETHERNET)
    if cut is None:
        return make_packet("vxlan", vni, False, None, None, outer, inner)
    return make_packet("vxlan", vni, True, "inner:" + cut, None, outer, inner)


def _after_geneve(header: bytes, payload: int, outer: tuple) -> ParsedPacket:
    """Geneve (RFC 8926): 8 fixed bytes, options (length in 4-byte words), then the inner packet."""
    if payload + 8 > len(header):
        return make_packet("geneve", None, True, "geneve", None, outer, _NO_LAYERS)
    options_length = (header[payload] & 0x3F) << 2
    inner_protocol = header[payload + 2] << 8 | header[payload + 3]
    vni = header[payload + 4] << 16 | header[payload + 5] << 8 | header[payload + 6]
    start = payload + 8 + options_length
    if start > len(header):
        return make_packet("geneve", vni, True, "geneve-options", options_length, outer, _NO_LAYERS)
    if inner_protocol == GENEVE_PROTO_ETHERNET:
        kind = KIND_ETHERNET
    elif inner_protocol == ETHERTYPE_IPV4:
        kind = KIND_IPV4
    elif inner_protocol == ETHERTYPE_IPV6:
        kind = KIND_IPV6
    else:
        return make_packet("geneve", vni, False, None, options_length, outer, _NO_LAYERS)
    inner, cut, _ = dissect(header, start, kind)
    if cut is None:
        return make_packet("geneve", vni, False, None, options_length, outer, inner)
    return make_packet("geneve", vni, True, "inner:" + cut, options_length, outer, inner)


# ----------------------------------------------------------------------------- fast path
#
# Untagged Ethernet + IPv4 with a 20-byte header, read in one unpack:
# ethertype(12) ver/ihl(14) frag(20) proto(23) src(26) dst(30) ports(34, 36) TCP offset+flags(46).
# For UDP the last field is whatever follows the UDP header and is ignored.
_ETH_IPV4_L4 = struct.Struct(">12xHB5xHxB2x4s4sHH8xH").unpack_from
# The same after an 8-byte VXLAN header at offset 42: VNI+reserved(+4), ethertype(+20),
# ver/ihl(+22) frag(+28) proto(+31) src(+34) dst(+38) ports(+42, +44) TCP offset+flags(+54).
_VXLAN_ETH_IPV4_L4 = struct.Struct(">4xI12xHB5xHxB2x4s4sHH8xH").unpack_from


def fast_parse(header: bytes, vxlan_ports: AbstractSet[int], geneve_port: int) -> ParsedPacket | None:
    """The common fabric shapes in two struct calls; None means "use the general path".

    Accepts only what it can decode completely: untagged Ethernet, IPv4
    without options and not a later fragment, TCP or UDP, with at least 48
    bytes; for UDP to a VXLAN port the inner packet must have the same shape
    and the header must reach the inner TCP flags (98 bytes).
    """
    if _COMPILED:
        return _fast_parse_compiled(header, vxlan_ports, geneve_port)
    if len(header) < 48:
        return None
    ethertype, version_ihl, fragment, protocol, src_ip, dst_ip, src_port, dst_port, flags = _ETH_IPV4_L4(header, 0)
    if ethertype != 0x0800 or version_ihl != 0x45 or fragment & 0x1FFF:
        return None
    # Each result is written out as one tuple display: one allocation, no concatenation.
    if protocol == 6:
        return _new(ParsedPacket, (
            "none", None, False, None, None,
            (), 0x0800, 4, src_ip, dst_ip, 6, src_port, dst_port, flags & 0x0FFF, None, None, 0,
            None, None, None, None, None, None, None, None, None, None, None, None,
        ))  # fmt: skip
    if protocol != 17:
        return None
    if dst_port not in vxlan_ports:
        if dst_port == geneve_port:
            return None
        return _new(ParsedPacket, (
            "none", None, False, None, None,
            (), 0x0800, 4, src_ip, dst_ip, 17, src_port, dst_port, None, None, None, 0,
            None, None, None, None, None, None, None, None, None, None, None, None,
        ))  # fmt: skip
    if len(header) < 98:
        return None
    vni, ethertype, version_ihl, fragment, protocol, in_src, in_dst, in_sport, in_dport, flags = _VXLAN_ETH_IPV4_L4(
        header, 42
    )
    if ethertype != 0x0800 or version_ihl != 0x45 or fragment & 0x1FFF:
        return None
    if protocol == 6:
        return _new(ParsedPacket, (
            "vxlan", vni >> 8, False, None, None,
            (), 0x0800, 4, src_ip, dst_ip, 17, src_port, dst_port, None, None, None, 0,
            (), 0x0800, 4, in_src, in_dst, 6, in_sport, in_dport, flags & 0x0FFF, None, None, 0,
        ))  # fmt: skip
    if protocol == 17:
        return _new(ParsedPacket, (
            "vxlan", vni >> 8, False, None, None,
            (), 0x0800, 4, src_ip, dst_ip, 17, src_port, dst_port, None, None, None, 0,
            (), 0x0800, 4, in_src, in_dst, 17, in_sport, in_dport, None, None, None, 0,
        ))  # fmt: skip
    return None


def _fast_parse_compiled(h: bytes, vxlan_ports: AbstractSet[int], geneve_port: int) -> ParsedPacket | None:
    """``fast_parse`` for the mypyc build: the same checks and results, reading single bytes.

    Compiled, ``h[i]`` is a C array read giving a machine integer, cheaper than
    a ``struct`` call that boxes every field into a tuple; interpreted it is the
    other way round, so the pure-Python module keeps the ``struct`` version.
    The tests hold both (and the general walker) to identical results.
    """
    if len(h) < 48:
        return None
    if h[12] != 0x08 or h[13] != 0x00 or h[14] != 0x45 or h[20] & 0x1F or h[21]:
        return None
    protocol = h[23]
    src_port = h[34] << 8 | h[35]
    dst_port = h[36] << 8 | h[37]
    if protocol == 6:
        return _new(_PARSED_PACKET, (
            "none", None, False, None, None,
            (), 0x0800, 4, h[26:30], h[30:34], 6, src_port, dst_port, (h[46] & 0x0F) << 8 | h[47], None, None, 0,
            None, None, None, None, None, None, None, None, None, None, None, None,
        ))  # fmt: skip
    if protocol != 17:
        return None
    if dst_port not in vxlan_ports:
        if dst_port == geneve_port:
            return None
        return _new(_PARSED_PACKET, (
            "none", None, False, None, None,
            (), 0x0800, 4, h[26:30], h[30:34], 17, src_port, dst_port, None, None, None, 0,
            None, None, None, None, None, None, None, None, None, None, None, None,
        ))  # fmt: skip
    if len(h) < 98:
        return None
    # Inner frame after the 8-byte VXLAN header at 42: ethertype 62, version/IHL 64, fragment 70, protocol 73,
    # addresses 76 and 80, ports 84 and 86, TCP offset+flags 96.
    if h[62] != 0x08 or h[63] != 0x00 or h[64] != 0x45 or h[70] & 0x1F or h[71]:
        return None
    protocol = h[73]
    if protocol == 6:
        return _new(_PARSED_PACKET, (
            "vxlan", h[46] << 16 | h[47] << 8 | h[48], False, None, None,
            (), 0x0800, 4, h[26:30], h[30:34], 17, src_port, dst_port, None, None, None, 0,
            (), 0x0800, 4, h[76:80], h[80:84], 6, h[84] << 8 | h[85], h[86] << 8 | h[87],
            (h[96] & 0x0F) << 8 | h[97], None, None, 0,
        ))  # fmt: skip
    if protocol == 17:
        return _new(_PARSED_PACKET, (
            "vxlan", h[46] << 16 | h[47] << 8 | h[48], False, None, None,
            (), 0x0800, 4, h[26:30], h[30:34], 17, src_port, dst_port, None, None, None, 0,
            (), 0x0800, 4, h[76:80], h[80:84], 17, h[84] << 8 | h[85], h[86] << 8 | h[87], None, None, None, 0,
        ))  # fmt: skip
    return None
