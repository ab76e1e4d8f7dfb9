"""Test-side sFlow v5 encoder and packet builder.

Written independently of the decoder, straight from the XDR in
sflow_version_5.txt / sflow_tunnels.txt / sflow_drops.txt, so that the
decoder is checked against the spec rather than against itself.  Also
builds the sampled packets (Ethernet, 802.1Q, IPv4/IPv6, TCP/UDP/ICMP,
VXLAN, Geneve, IP-in-IP) and writes pcap files for tshark to read.
"""

from __future__ import annotations

import ipaddress
import struct


def u32(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def u64(value: int) -> bytes:
    return struct.pack(">Q", value)


def opaque(data: bytes) -> bytes:
    """XDR variable-length opaque: length, bytes, zero padding to 4."""
    return u32(len(data)) + data + b"\0" * (-len(data) % 4)


def address(text: str) -> bytes:
    ip = ipaddress.ip_address(text)
    return u32(1 if ip.version == 4 else 2) + ip.packed


def tagged(data_format: int, body: bytes, enterprise: int = 0) -> bytes:
    """A sample or record: data format (enterprise << 12 | format), length, body."""
    return u32(enterprise << 12 | data_format, len(body)) + body


# ----------------------------------------------------------------------- flow records


def raw_header(header: bytes, protocol: int = 1, frame_length: int | None = None, stripped: int = 4) -> bytes:
    frame_length = len(header) + stripped if frame_length is None else frame_length
    return tagged(1, u32(protocol, frame_length, stripped) + opaque(header))


def sampled_ethernet(length: int, src_mac: bytes, dst_mac: bytes, ethertype: int, fmt: int = 2) -> bytes:
    return tagged(fmt, u32(length) + src_mac + b"\0\0" + dst_mac + b"\0\0" + u32(ethertype))


def sampled_ipv4(length, protocol, src, dst, src_port, dst_port, tcp_flags, tos, fmt: int = 3) -> bytes:
    body = u32(length, protocol) + ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
    return tagged(fmt, body + u32(src_port, dst_port, tcp_flags, tos))


def sampled_ipv6(length, protocol, src, dst, src_port, dst_port, tcp_flags, priority, fmt: int = 4) -> bytes:
    body = u32(length, protocol) + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
    return tagged(fmt, body + u32(src_port, dst_port, tcp_flags, priority))


def extended_switch(src_vlan: int, src_priority: int, dst_vlan: int, dst_priority: int) -> bytes:
    return tagged(1001, u32(src_vlan, src_priority, dst_vlan, dst_priority))


def extended_router(next_hop: str, src_mask: int, dst_mask: int) -> bytes:
    return tagged(1002, address(next_hop) + u32(src_mask, dst_mask))


def extended_gateway(next_hop, as_number, src_as, src_peer_as, as_path, communities, local_pref) -> bytes:
    body = address(next_hop) + u32(as_number, src_as, src_peer_as, len(as_path))
    for segment_type, numbers in as_path:
        body += u32(segment_type, len(numbers), *numbers)
    body += u32(len(communities), *communities) + u32(local_pref)
    return tagged(1003, body)


def decapsulate(offset: int, fmt: int = 1027) -> bytes:
    return tagged(fmt, u32(offset))


def vni_record(vni: int, fmt: int = 1029) -> bytes:
    return tagged(fmt, u32(vni))


# ----------------------------------------------------------------------- counter records

GENERIC_INTERFACE_FIELDS = (
    ("if_index", "I"), ("if_type", "I"), ("if_speed", "Q"), ("if_direction", "I"), ("if_status", "I"),
    ("in_octets", "Q"), ("in_ucast_pkts", "I"), ("in_multicast_pkts", "I"), ("in_broadcast_pkts", "I"),
    ("in_discards", "I"), ("in_errors", "I"), ("in_unknown_protos", "I"), ("out_octets", "Q"),
    ("out_ucast_pkts", "I"), ("out_multicast_pkts", "I"), ("out_broadcast_pkts", "I"), ("out_discards", "I"),
    ("out_errors", "I"), ("promiscuous_mode", "I"),
)  # fmt: skip


def generic_interface(**values: int) -> bytes:
    fmt = ">" + "".join(kind for _, kind in GENERIC_INTERFACE_FIELDS)
    return tagged(1, struct.pack(fmt, *(values[name] for name, _ in GENERIC_INTERFACE_FIELDS)))


def ethernet_counters(*values: int) -> bytes:
    assert len(values) == 13
    return tagged(2, u32(*values))


def vlan_counters(vlan_id, octets, ucast, multicast, broadcast, discards) -> bytes:
    return tagged(5, u32(vlan_id) + u64(octets) + u32(ucast, multicast, broadcast, discards))


def processor_counters(cpu_5s, cpu_1m, cpu_5m, total_memory, free_memory) -> bytes:
    return tagged(1001, u32(cpu_5s, cpu_1m, cpu_5m) + u64(total_memory) + u64(free_memory))


# ------------------------------------------------------------------------------ samples


def flow_sample(records, sequence=1, source_type=0, source_index=7, rate=1000, pool=5000, drops=0,
                input_if=3, output_if=4) -> bytes:  # fmt: skip
    body = u32(sequence, source_type << 24 | source_index, rate, pool, drops, input_if, output_if, len(records))
    return tagged(1, body + b"".join(records))


def expanded_flow_sample(records, sequence=1, source_type=0, source_index=70000, rate=2000, pool=9000, drops=1,
                         input_format=0, input_value=70001, output_format=0, output_value=70002) -> bytes:  # fmt: skip
    body = u32(sequence, source_type, source_index, rate, pool, drops, input_format, input_value, output_format,
               output_value, len(records))  # fmt: skip
    return tagged(3, body + b"".join(records))


def counter_sample(records, sequence=1, source_type=0, source_index=7) -> bytes:
    return tagged(2, u32(sequence, source_type << 24 | source_index, len(records)) + b"".join(records))


def expanded_counter_sample(records, sequence=1, source_type=0, source_index=70000) -> bytes:
    return tagged(4, u32(sequence, source_type, source_index, len(records)) + b"".join(records))


def discard_sample(records, sequence=1, source_type=0, source_index=7, drops=0, input_if=3, output_if=0,
                   reason=258) -> bytes:  # fmt: skip
    body = u32(sequence, source_type, source_index, drops, input_if, output_if, reason, len(records))
    return tagged(5, body + b"".join(records))


def datagram(samples, agent="192.0.2.1", sub_agent=0, sequence=1, uptime=1000, version=5) -> bytes:
    return u32(version) + address(agent) + u32(sub_agent, sequence, uptime, len(samples)) + b"".join(samples)


# ------------------------------------------------------------------------------ packets

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def ethernet(payload: bytes, ethertype: int, vlans=(), tpids=None) -> bytes:
    """Ethernet frame; ``vlans`` outermost first, each with TPID from ``tpids`` (default 0x8100)."""
    tpids = tpids or [0x8100] * len(vlans)
    frame = MAC_B + MAC_A
    types = list(tpids) + [ethertype]
    frame += struct.pack(">H", types[0])
    for index, vlan in enumerate(vlans):
        frame += struct.pack(">HH", (3 << 13) | vlan, types[index + 1])
    return frame + payload


def ipv4(payload: bytes, protocol: int, src="10.0.0.1", dst="10.0.0.2", options=b"", fragment=0, ttl=64) -> bytes:
    assert len(options) % 4 == 0
    ihl = 5 + len(options) // 4
    header = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), 0x1234, fragment, ttl, protocol, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)  # fmt: skip
    return header + options + payload


def ipv6(payload: bytes, next_header: int, src="2001:db8::1", dst="2001:db8::2", extensions=()) -> bytes:
    """IPv6 with ``extensions``: (type, body) pairs whose body is padded to the type's unit."""
    chain = b""
    types = [t for t, _ in extensions] + [next_header]
    for index, (ext_type, body) in enumerate(extensions):
        following = types[index + 1]
        if ext_type == 44:  # fragment: fixed 8 bytes, body is (offset, more, id)
            offset, more, ident = body
            chain += struct.pack(">BBHI", following, 0, offset << 3 | more, ident)
        else:
            data = bytes([following, 0]) + body
            data += b"\0" * (-len(data) % 8)
            chain += bytes([following, len(data) // 8 - 1]) + data[2:]
    first = types[0]
    header = struct.pack(">IHBB16s16s", 6 << 28, len(chain) + len(payload), first, 64,
                         ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed)  # fmt: skip
    return header + chain + payload


def tcp(src_port: int, dst_port: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HHIIHHHH", src_port, dst_port, 1, 0, (5 << 12) | flags, 65535, 0, 0) + payload


def udp(src_port: int, dst_port: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HHHH", src_port, dst_port, 8 + len(payload), 0) + payload


def icmp(icmp_type: int, code: int, payload: bytes = b"\0\0\0\0") -> bytes:
    return struct.pack(">BBH", icmp_type, code, 0) + payload


def vxlan(vni: int, inner: bytes) -> bytes:
    return struct.pack(">B3xI", 0x08, vni << 8) + inner


def geneve(vni: int, inner: bytes, protocol: int = 0x6558, options: bytes = b"") -> bytes:
    assert len(options) % 4 == 0
    return struct.pack(">BBHI", len(options) // 4, 0, protocol, vni << 8) + options + inner


# --------------------------------------------------------------------------------- pcap


def pcap(payloads, port: int = 6343) -> bytes:
    """Classic little-endian pcap of Ethernet/IPv4/UDP frames to 127.0.0.1:``port``."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for index, payload in enumerate(payloads):
        frame = ethernet(ipv4(udp(40000, port, payload), 17, "127.0.0.1", "127.0.0.1"), 0x0800)
        out += struct.pack("<IIII", 1_700_000_000 + index, 0, len(frame), len(frame)) + frame
    return out
