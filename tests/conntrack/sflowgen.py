"""A small test-side sFlow v5 encoder: hand-built datagrams with raw-header flow samples.

Only what the collector and tracker tests need: Ethernet (optionally
802.1Q) / IPv4 / TCP, UDP or ICMP frames, VXLAN encapsulation, flow samples
with a raw packet header record, and the datagram header with its sequence
number.  Written from sflow_version_5.txt, independent of the decoder.
"""
from __future__ import annotations

import socket
import struct

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def _ipv4(src: str, dst: str, proto: int, payload: bytes, total: int | None = None) -> bytes:
    length = total if total is not None else 20 + len(payload)
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, length, 1, 0x4000, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + payload


def _ethernet(payload: bytes, ethertype: int = 0x0800, vlan: int | None = None) -> bytes:
    dst, src = b"\x02\x00\x00\x00\x00\x02", b"\x02\x00\x00\x00\x00\x01"
    if vlan is not None:
        return dst + src + struct.pack(">HHH", 0x8100, vlan, ethertype) + payload
    return dst + src + struct.pack(">H", ethertype) + payload


def tcp_frame(src: str, dst: str, sport: int, dport: int, flags: int, data: int = 0, vlan: int | None = None) -> bytes:
    """An Ethernet/IPv4/TCP frame; ``data`` payload bytes are counted in the IP length but not included."""
    tcp = struct.pack(">HHIIBBHHH", sport, dport, 1000, 2000, 5 << 4, flags, 65535, 0, 0)
    return _ethernet(_ipv4(src, dst, 6, tcp, 40 + data), vlan=vlan)


def udp_frame(src: str, dst: str, sport: int, dport: int, payload: bytes = b"", vlan: int | None = None) -> bytes:
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    return _ethernet(_ipv4(src, dst, 17, udp), vlan=vlan)


def icmp_frame(src: str, dst: str) -> bytes:
    return _ethernet(_ipv4(src, dst, 1, struct.pack(">BBHHH", 8, 0, 0, 1, 1)))


def vxlan_frame(outer_src: str, outer_dst: str, inner: bytes, vni: int, dport: int = 8472, sport: int = 40000) -> bytes:
    """``inner`` (an Ethernet frame) in VXLAN in UDP in IPv4 in Ethernet."""
    vxlan = struct.pack(">II", 0x08000000, vni << 8) + inner
    return udp_frame(outer_src, outer_dst, sport, dport, vxlan)


def flow_sample(header: bytes, seq: int = 1, rate: int = 1, frame_length: int | None = None,
                snap: int = 128, expanded: bool = False) -> bytes:
    """A flow sample (format 1, or 3 when expanded) with one raw-header record (first ``snap`` bytes)."""
    cut = header[:snap]
    padded = cut + b"\0" * (-len(cut) % 4)
    record_body = struct.pack(">IIII", 1, frame_length or len(header) + 4, 4, len(cut)) + padded
    record = struct.pack(">II", 1, len(record_body)) + record_body
    if expanded:
        body = struct.pack(">IIIIIIIIIII", seq, 0, 7, rate, seq * rate, 0, 0, 7, 0, 8, 1) + record
        return struct.pack(">II", 3, len(body)) + body
    body = struct.pack(">IIIIIIII", seq, 7, rate, seq * rate, 0, 7, 8, 1) + record
    return struct.pack(">II", 1, len(body)) + body


def datagram(samples: list[bytes], seq: int = 1, agent: str = "192.0.2.1", sub_agent: int = 0, uptime: int = 0) -> bytes:
    """An sFlow v5 datagram (IPv4 agent address)."""
    head = struct.pack(">II4sIIII", 5, 1, socket.inet_aton(agent), sub_agent, seq, uptime, len(samples))
    return head + b"".join(samples)
