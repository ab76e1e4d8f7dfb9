"""Sampled-header dissection: every layer, every tunnel, truncation, and fast path == general path."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.sflow.packet import (
    fast_parse,
    parse_sampled_header,
    parse_sampled_header_general,
)

from . import encoder as enc

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
SYN, ACK, FIN, PSH, RST = 0x02, 0x10, 0x01, 0x08, 0x04


def parse(frame: bytes, protocol: int = 1, **kwargs):
    packet = parse_sampled_header(frame, protocol, **kwargs)
    general = parse_sampled_header_general(frame, protocol, **kwargs)
    assert packet == general, "fast path and general path disagree"
    return packet


def test_ethernet_ipv4_tcp_flags():
    frame = enc.ethernet(enc.ipv4(enc.tcp(40000, 443, SYN | ACK), 6, "10.1.2.3", "10.4.5.6"), 0x0800)
    p = parse(frame)
    assert (p.ip_version, p.protocol, p.src_port, p.dst_port, p.tcp_flags) == (4, 6, 40000, 443, 0x12)
    assert (V4(p.src_ip), V4(p.dst_ip)) == (V4("10.1.2.3"), V4("10.4.5.6"))
    assert p.encapsulation == "none" and p.vni is None and not p.truncated and p.inner is None
    assert p.vlan is None and p.vlans == ()


def test_udp_and_icmp():
    p = parse(enc.ethernet(enc.ipv4(enc.udp(53, 5353), 17), 0x0800))
    assert (p.protocol, p.src_port, p.dst_port, p.tcp_flags) == (17, 53, 5353, None)
    p = parse(enc.ethernet(enc.ipv4(enc.icmp(8, 0), 1), 0x0800))
    assert (p.protocol, p.icmp_type, p.icmp_code, p.src_port) == (1, 8, 0, None)
    p = parse(enc.ethernet(enc.ipv6(enc.icmp(135, 0), 58), 0x86DD))
    assert (p.ip_version, p.protocol, p.icmp_type) == (6, 58, 135)


def test_8021q_and_qinq_stacks():
    inner = enc.ipv4(enc.tcp(1, 2, ACK), 6)
    p = parse(enc.ethernet(inner, 0x0800, vlans=[100]))
    assert p.vlans == (100,) and p.vlan == 100 and p.src_port == 1
    p = parse(enc.ethernet(inner, 0x0800, vlans=[200, 300], tpids=[0x88A8, 0x8100]))
    assert p.vlans == (200, 300) and p.vlan == 200 and p.tcp_flags == ACK
    p = parse(enc.ethernet(inner, 0x0800, vlans=[10, 20], tpids=[0x8100, 0x8100]))
    assert p.vlans == (10, 20) and p.dst_port == 2


def test_ipv4_options_are_skipped():
    frame = enc.ethernet(enc.ipv4(enc.tcp(7, 8, FIN), 6, options=b"\x01\x01\x01\x00" * 3), 0x0800)
    p = parse(frame)
    assert (p.src_port, p.dst_port, p.tcp_flags) == (7, 8, FIN)


def test_ipv4_later_fragment_has_no_ports():
    p = parse(enc.ethernet(enc.ipv4(b"\0" * 20, 6, fragment=185), 0x0800))
    assert p.fragment_offset == 185 and p.src_port is None and not p.truncated


def test_ipv6_extension_headers():
    extensions = [(0, b"\0" * 6), (43, b"\0" * 6), (60, b"\0" * 14)]
    frame = enc.ethernet(enc.ipv6(enc.tcp(1111, 80, PSH | ACK), 6, extensions=extensions), 0x86DD)
    p = parse(frame)
    assert (p.protocol, p.src_port, p.dst_port, p.tcp_flags) == (6, 1111, 80, 0x18)
    assert V6(p.src_ip) == V6("2001:db8::1")


def test_ipv6_fragment_header():
    first = enc.ipv6(enc.udp(5, 6), 17, extensions=[(44, (0, 1, 99))])
    p = parse(enc.ethernet(first, 0x86DD))
    assert (p.protocol, p.src_port, p.fragment_offset) == (17, 5, 0)
    later = enc.ipv6(b"\0" * 16, 17, extensions=[(44, (100, 0, 99))])
    p = parse(enc.ethernet(later, 0x86DD))
    assert (p.protocol, p.src_port, p.fragment_offset) == (17, None, 100)


@pytest.mark.parametrize("port", [4789, 8472])
def test_vxlan_inner_ipv4_tcp(port):
    inner = enc.ethernet(enc.ipv4(enc.tcp(51204, 8080, SYN), 6, "10.244.1.10", "10.244.1.20"), 0x0800)
    frame = enc.ethernet(enc.ipv4(enc.udp(39697, port, enc.vxlan(4096, inner)), 17, "10.99.0.1", "10.99.0.2"), 0x0800)
    p = parse(frame)
    assert (p.encapsulation, p.vni, p.dst_port) == ("vxlan", 4096, port)
    assert (V4(p.inner_src_ip), V4(p.inner_dst_ip)) == (V4("10.244.1.10"), V4("10.244.1.20"))
    assert (p.inner_protocol, p.inner_src_port, p.inner_dst_port, p.inner_tcp_flags) == (6, 51204, 8080, SYN)
    assert p.inner.src_port == 51204 and p.outer.dst_port == port


def test_vxlan_port_set_is_configurable():
    inner = enc.ethernet(enc.ipv4(enc.udp(1, 2), 17), 0x0800)
    frame = enc.ethernet(enc.ipv4(enc.udp(3, 9999, enc.vxlan(5, inner)), 17), 0x0800)
    assert parse(frame).encapsulation == "none"
    p = parse(frame, vxlan_ports=frozenset({9999}))
    assert (p.encapsulation, p.vni, p.inner_src_port) == ("vxlan", 5, 1)


def test_vxlan_inner_vlan_and_ipv6():
    inner = enc.ethernet(enc.ipv6(enc.udp(546, 547), 17, "fe80::1", "ff02::1:2"), 0x86DD, vlans=[42])
    frame = enc.ethernet(enc.ipv4(enc.udp(1, 4789, enc.vxlan(100, inner)), 17), 0x0800)
    p = parse(frame)
    assert (p.vni, p.inner_vlans, p.inner_ip_version, p.inner_dst_port) == (100, (42,), 6, 547)


def test_geneve_with_options():
    inner = enc.ethernet(enc.ipv4(enc.tcp(5, 6, RST), 6, "192.168.1.1", "192.168.1.2"), 0x0800)
    options = b"\x01\x02\x03\x04" * 3
    frame = enc.ethernet(enc.ipv4(enc.udp(7, 6081, enc.geneve(777, inner, options=options)), 17), 0x0800)
    p = parse(frame)
    assert (p.encapsulation, p.vni, p.tunnel_options_length) == ("geneve", 777, 12)
    assert (V4(p.inner_src_ip), p.inner_tcp_flags) == (V4("192.168.1.1"), RST)
    assert parse(frame, geneve_port=6082).encapsulation == "none"


def test_geneve_carrying_ip_directly():
    inner = enc.ipv6(enc.udp(1, 2), 17)
    frame = enc.ethernet(enc.ipv4(enc.udp(7, 6081, enc.geneve(9, inner, protocol=0x86DD)), 17), 0x0800)
    p = parse(frame)
    assert (p.encapsulation, p.inner_ip_version, p.inner_dst_port) == ("geneve", 6, 2)


def test_ip_in_ip_and_ipv6_in_ip():
    inner = enc.ipv4(enc.tcp(10, 20, SYN), 6, "172.16.0.1", "172.16.0.2")
    p = parse(enc.ethernet(enc.ipv4(inner, 4), 0x0800))
    assert (p.encapsulation, p.protocol, p.inner_protocol, p.inner_src_port) == ("ipip", 4, 6, 10)
    assert V4(p.inner_dst_ip) == V4("172.16.0.2")
    inner6 = enc.ipv6(enc.udp(30, 40), 17)
    p = parse(enc.ethernet(enc.ipv4(inner6, 41), 0x0800))
    assert (p.encapsulation, p.inner_ip_version, p.inner_dst_port) == ("ipip", 6, 40)
    p = parse(enc.ethernet(enc.ipv6(inner, 4), 0x86DD))
    assert (p.encapsulation, p.inner_src_port) == ("ipip", 10)


def test_raw_ipv4_and_ipv6_header_protocols():
    p = parse(enc.ipv4(enc.icmp(0, 0), 1, "69.58.92.107", "92.222.186.1"), protocol=11)
    assert (p.ethertype, p.protocol, V4(p.src_ip)) == (None, 1, V4("69.58.92.107"))
    p = parse(enc.ipv6(enc.tcp(1, 2, ACK), 6), protocol=12)
    assert (p.ip_version, p.tcp_flags) == (6, ACK)
    assert parse(b"\0" * 40, protocol=13) is None  # MPLS: not dissected


def test_non_ip_frame():
    p = parse(enc.ethernet(b"\0" * 28, 0x0806))
    assert (p.ethertype, p.ip_version, p.src_ip, p.truncated) == (0x0806, 0, None, False)


VXLAN_FRAME = enc.ethernet(
    enc.ipv4(enc.udp(1, 4789, enc.vxlan(7, enc.ethernet(enc.ipv4(enc.tcp(3, 4, SYN), 6), 0x0800))), 17), 0x0800
)


@pytest.mark.parametrize(
    "cut, where",
    [
        (10, "ethernet"),
        (20, "ipv4"),
        (36, "udp"),
        (45, "vxlan"),
        (60, "inner:ethernet"),
        (70, "inner:ipv4"),
        (88, "inner:tcp"),
        (95, "inner:tcp"),
    ],
)
def test_truncation_says_where(cut, where):
    p = parse(VXLAN_FRAME[:cut])
    assert p.truncated and p.truncated_in == where


def test_truncation_keeps_what_was_read():
    p = parse(VXLAN_FRAME[:90])  # inner ports present, inner TCP flags cut off
    assert (p.inner_src_port, p.inner_dst_port, p.inner_tcp_flags) == (3, 4, None)
    assert p.vni == 7 and p.dst_port == 4789
    assert not parse(VXLAN_FRAME).truncated


def test_every_prefix_of_every_shape_decodes():
    frames = [
        VXLAN_FRAME,
        enc.ethernet(enc.ipv6(enc.tcp(1, 2, 3), 6, extensions=[(0, b"\0" * 6), (44, (0, 0, 1))]), 0x86DD, vlans=[5]),
        enc.ethernet(enc.ipv4(enc.udp(1, 6081, enc.geneve(1, VXLAN_FRAME, options=b"\0" * 8)), 17), 0x0800),
        enc.ethernet(enc.ipv4(enc.ipv4(enc.udp(1, 2), 17, options=b"\0" * 8), 4), 0x0800),
    ]
    for frame in frames:
        for cut in range(len(frame) + 1):
            p = parse(frame[:cut])
            assert p is not None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=160), st.sampled_from([1, 11, 12]))
def test_random_bytes_fast_equals_general(data, protocol):
    assert parse_sampled_header(data, protocol) == parse_sampled_header_general(data, protocol)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, len(VXLAN_FRAME)),
    st.lists(st.tuples(st.integers(0, len(VXLAN_FRAME) - 1), st.integers(0, 255)), max_size=4),
)
def test_mutated_vxlan_fast_equals_general(cut, flips):
    frame = bytearray(VXLAN_FRAME)
    for index, value in flips:
        frame[index] = value
    data = bytes(frame[:cut])
    ports = frozenset({4789, 8472})
    assert parse_sampled_header(data, 1, ports, 6081) == parse_sampled_header_general(data, 1, ports, 6081)


def test_fast_path_declines_what_it_cannot_read():
    assert fast_parse(enc.ethernet(enc.ipv4(enc.tcp(1, 2, 3), 6), 0x0800, vlans=[1]), frozenset(), 6081) is None
    assert fast_parse(VXLAN_FRAME[:97], frozenset({4789}), 6081) is None
    assert fast_parse(VXLAN_FRAME, frozenset({4789}), 6081) is not None
