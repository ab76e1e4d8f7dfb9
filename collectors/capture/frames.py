"""Dissect a mirrored frame down to the TCP control packet it carries (the innermost flow).

What reaches the capture is a whole frame (a mirror port, the CPU port, or the
frame inside an ERSPAN/GRE datagram), already narrowed by the kernel filter
to TCP packets with SYN, FIN or RST -- plain, inside VXLAN (any configured
port), Geneve or IP-in-IP.  This module walks Ethernet, 802.1Q/QinQ tags,
IPv4 (with options) or IPv6 (with extension headers), then either TCP or one
tunnel (VXLAN RFC 7348, Geneve RFC 8926, IP-in-IP RFC 2003, IPv6-in-IP
RFC 4213) and the same walk inside it, and returns the fields of a
``core.ports.flows.ControlPacket`` -- including the TCP sequence and
acknowledgement numbers, which tell a retransmitted SYN from a new
connection.

Why not the sFlow dissector (``collectors/sflow/packet.py``): that one reads
*truncated* sampled headers into a 29-field result for any protocol, is
compiled with mypyc as part of the sFlow fast path, and producers do not
import each other; this one needs sequence numbers, stops at the first
thing that is not a TCP control packet, and has its own fast path for the
two shapes a fabric mirror delivers (plain TCP and VXLAN over IPv4).  See
docs/design.md ("The capture decodes its own frames").

Nothing here raises on short or odd input: :func:`decode_frame` returns
``NOT_CONTROL`` for a frame that is well formed but not a TCP control
packet, ``MALFORMED`` when the bytes end inside a header or a header is
impossible.
"""
from __future__ import annotations

import struct
from typing import AbstractSet

__all__ = ["decode_frame", "MALFORMED", "NOT_CONTROL", "CONTROL_FLAGS", "DEFAULT_VXLAN_PORTS",
           "DEFAULT_GENEVE_PORT", "KIND_ETHERNET", "KIND_IPV4", "KIND_IPV6"]

#: decode_frame results that are not a packet
NOT_CONTROL = 0
MALFORMED = 1

CONTROL_FLAGS = 0x07  # FIN | SYN | RST
DEFAULT_VXLAN_PORTS = frozenset({4789, 8472})
DEFAULT_GENEVE_PORT = 6081

KIND_ETHERNET, KIND_IPV4, KIND_IPV6 = 0, 4, 6
_VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})
_IPV6_EXTENSIONS = frozenset({0, 43, 44, 51, 60})
_GENEVE_KINDS = {0x6558: KIND_ETHERNET, 0x0800: KIND_IPV4, 0x86DD: KIND_IPV6}

# Untagged Ethernet + IPv4 (IHL 5) + TCP: ethertype(12) ver/ihl(14) frag(20) proto(23) src(26) dst(30)
# ports(34, 36) seq(38) ack(42) offset/flags(46).
_ETH_IPV4_TCP = struct.Struct(">12xHB5xHxB2x4s4sHHIIH").unpack_from
# The same inside VXLAN over untagged IPv4 (IHL 5) UDP: outer ethertype(12) ver/ihl(14) frag(20) proto(23)
# dport(36), VNI(46..48), inner ethertype(62) ver/ihl(64) frag(70) proto(73) src(76) dst(80) ports(84, 86)
# seq(88) ack(92) offset/flags(96).
_VXLAN_TCP = struct.Struct(">12xHB5xHxB12xH8xI12xHB5xHxB2x4s4sHHIIH").unpack_from


def decode_frame(data: bytes, vxlan_ports: AbstractSet[int] = DEFAULT_VXLAN_PORTS,
                 geneve_port: int = DEFAULT_GENEVE_PORT, kind: int = KIND_ETHERNET) -> tuple | int:
    """(vlan, vni, encapsulation, src, dst, src_port, dst_port, tcp_flags, seq, ack), or NOT_CONTROL / MALFORMED.

    ``src``/``dst`` are packed (4 or 16 bytes).  ``kind`` says where the
    bytes start: Ethernet (a mirror port, ERSPAN, transparent-Ethernet GRE)
    or an IP header (a GRE payload of type IPv4/IPv6).
    """
    n = len(data)
    if kind == KIND_ETHERNET and n >= 48:
        ethertype, version_ihl, fragment, protocol, src, dst, sport, dport, seq, ack, flags = _ETH_IPV4_TCP(data, 0)
        if ethertype == 0x0800 and version_ihl == 0x45 and not fragment & 0x1FFF:
            if protocol == 6:
                flags &= 0x0FFF
                if not flags & CONTROL_FLAGS:
                    return NOT_CONTROL
                return (0, 0, "none", src, dst, sport, dport, flags, seq, ack)
            if protocol == 17 and n >= 98 and dport in vxlan_ports:
                (_, _, _, _, _, vni, ethertype, version_ihl, fragment, protocol, src, dst, sport, dport, seq, ack,
                 flags) = _VXLAN_TCP(data, 0)
                if ethertype == 0x0800 and version_ihl == 0x45 and not fragment & 0x1FFF and protocol == 6:
                    flags &= 0x0FFF
                    if not flags & CONTROL_FLAGS:
                        return NOT_CONTROL
                    return (0, vni >> 8, "vxlan", src, dst, sport, dport, flags, seq, ack)
    return _walk(data, 0, kind, vxlan_ports, geneve_port, 0)


def _walk(data: bytes, off: int, kind: int, vxlan_ports: AbstractSet[int], geneve_port: int,
          depth: int) -> tuple | int:
    """The general walker: one L2/L3 stack, then TCP or one tunnel (``depth`` 0) and its inner stack."""
    n = len(data)
    vlan = 0
    if kind == KIND_ETHERNET:
        if off + 14 > n:
            return MALFORMED
        ethertype = data[off + 12] << 8 | data[off + 13]
        off += 14
        while ethertype in _VLAN_TPIDS:
            if off + 4 > n:
                return MALFORMED
            if not vlan:
                vlan = (data[off] & 0x0F) << 8 | data[off + 1]
            ethertype = data[off + 2] << 8 | data[off + 3]
            off += 4
        if ethertype == 0x0800:
            kind = KIND_IPV4
        elif ethertype == 0x86DD:
            kind = KIND_IPV6
        else:
            return NOT_CONTROL
    if kind == KIND_IPV4:
        if off + 20 > n:
            return MALFORMED
        first = data[off]
        if first >> 4 != 4 or first & 0x0F < 5:
            return MALFORMED
        if (data[off + 6] & 0x1F) << 8 | data[off + 7]:
            return NOT_CONTROL  # a later fragment: no transport header
        protocol = data[off + 9]
        src = data[off + 12:off + 16]
        dst = data[off + 16:off + 20]
        off += (first & 0x0F) << 2
        if off > n:
            return MALFORMED
    elif kind == KIND_IPV6:
        if off + 40 > n:
            return MALFORMED
        if data[off] >> 4 != 6:
            return MALFORMED
        protocol = data[off + 6]
        src = data[off + 8:off + 24]
        dst = data[off + 24:off + 40]
        off += 40
        while protocol in _IPV6_EXTENSIONS:
            if off + 8 > n:
                return MALFORMED
            if protocol == 44:
                if (data[off + 2] << 8 | data[off + 3]) >> 3:
                    return NOT_CONTROL  # a later fragment
                length = 8
            elif protocol == 51:
                length = (data[off + 1] + 2) << 2
            else:
                length = (data[off + 1] + 1) << 3
            protocol = data[off]
            off += length
        if off > n:
            return MALFORMED
    else:
        return NOT_CONTROL
    if protocol == 6:
        if off + 14 > n:
            return MALFORMED
        flags = (data[off + 12] & 0x0F) << 8 | data[off + 13]
        if not flags & CONTROL_FLAGS:
            return NOT_CONTROL
        return (vlan, 0, "none", src, dst, data[off] << 8 | data[off + 1], data[off + 2] << 8 | data[off + 3], flags,
                int.from_bytes(data[off + 4:off + 8], "big"), int.from_bytes(data[off + 8:off + 12], "big"))
    if depth:
        return NOT_CONTROL  # a tunnel inside a tunnel: not what a fabric mirror carries
    if protocol == 17:
        if off + 8 > n:
            return MALFORMED
        dport = data[off + 2] << 8 | data[off + 3]
        off += 8
        if dport in vxlan_ports:
            if off + 8 > n:
                return MALFORMED
            vni = data[off + 4] << 16 | data[off + 5] << 8 | data[off + 6]
            return _inner(_walk(data, off + 8, KIND_ETHERNET, vxlan_ports, geneve_port, 1), vlan, vni, "vxlan")
        if dport == geneve_port:
            if off + 8 > n:
                return MALFORMED
            inner_kind = _GENEVE_KINDS.get(data[off + 2] << 8 | data[off + 3])
            if inner_kind is None:
                return NOT_CONTROL
            vni = data[off + 4] << 16 | data[off + 5] << 8 | data[off + 6]
            start = off + 8 + ((data[off] & 0x3F) << 2)
            if start > n:
                return MALFORMED
            return _inner(_walk(data, start, inner_kind, vxlan_ports, geneve_port, 1), vlan, vni, "geneve")
        return NOT_CONTROL
    if protocol == 4 or protocol == 41:
        return _inner(_walk(data, off, KIND_IPV4 if protocol == 4 else KIND_IPV6, vxlan_ports, geneve_port, 1),
                      vlan, 0, "ipip")
    return NOT_CONTROL


def _inner(result: tuple | int, vlan: int, vni: int, encapsulation: str) -> tuple | int:
    """The inner packet's fields under the outer VLAN and the tunnel's VNI and kind."""
    if type(result) is int:
        return result
    _, _, _, src, dst, sport, dport, flags, seq, ack = result  # type: ignore[misc]
    return (vlan, vni, encapsulation, src, dst, sport, dport, flags, seq, ack)
