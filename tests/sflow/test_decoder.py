"""The datagram decoder against hand-built datagrams: every sample and record type, faults, garbage."""

from __future__ import annotations

import ipaddress

import pytest

from collectors.sflow import decode_datagram
from collectors.sflow.records import (
    CounterSample,
    Decapsulate,
    DiscardSample,
    EthernetCounters,
    ExtendedGateway,
    ExtendedRouter,
    ExtendedSwitch,
    FlowSample,
    GenericInterfaceCounters,
    ProcessorCounters,
    RawPacketHeader,
    SampledEthernet,
    SampledIP,
    UnknownRecord,
    UnknownSample,
    VlanCounters,
    VniRecord,
)

from . import encoder as enc

TCP_FRAME = enc.ethernet(enc.ipv4(enc.tcp(1000, 22, 0x18), 6, "10.0.0.1", "10.0.0.2"), 0x0800)


def decode_clean(data: bytes):
    datagram = decode_datagram(data)
    assert datagram.malformed is None, datagram.malformed
    return datagram


def test_datagram_header_ipv4_agent():
    d = decode_clean(enc.datagram([], agent="198.51.100.7", sub_agent=3, sequence=99, uptime=123456))
    assert (d.version, d.agent, d.sub_agent_id, d.sequence, d.uptime, d.samples) == (
        5, "198.51.100.7", 3, 99, 123456, []
    )  # fmt: skip


def test_datagram_header_ipv6_agent():
    d = decode_clean(enc.datagram([enc.counter_sample([])], agent="2001:db8::42", sequence=7))
    assert (d.agent, d.sequence, len(d.samples)) == ("2001:db8::42", 7, 1)


def test_flow_sample_fields_and_interface_formats():
    records = [enc.extended_switch(10, 1, 20, 2), enc.raw_header(TCP_FRAME)]
    sample = enc.flow_sample(records, sequence=5, source_type=1, source_index=300, rate=512, pool=9999, drops=3,
                             input_if=11, output_if=0x40000000 | 258)  # fmt: skip
    (s,) = decode_clean(enc.datagram([sample])).samples
    assert isinstance(s, FlowSample) and not s.expanded
    assert (s.sequence, s.source_id_type, s.source_id_index, s.sampling_rate, s.sample_pool, s.drops) == (
        5, 1, 300, 512, 9999, 3
    )  # fmt: skip
    assert (s.input_format, s.input_ifindex, s.output_format, s.output_ifindex) == (0, 11, 1, 258)
    assert s.switch == ExtendedSwitch(10, 1, 20, 2)
    assert s.header.header == TCP_FRAME and s.header.frame_length == len(TCP_FRAME) + 4 and s.header.stripped == 4
    assert s.header.packet.src_port == 1000 and s.header.packet.tcp_flags == 0x18
    assert s.records == [s.switch, s.header]


def test_multiple_output_interfaces_format():
    (s,) = decode_clean(enc.datagram([enc.flow_sample([], output_if=0x80000000 | 7)])).samples
    assert (s.output_format, s.output_ifindex) == (2, 7)


def test_header_before_switch_and_odd_header_length():
    frame = TCP_FRAME + b"\x01\x02\x03"  # not a multiple of 4: XDR pads
    records = [enc.raw_header(frame), enc.extended_switch(1, 0, 2, 0)]
    (s,) = decode_clean(enc.datagram([enc.flow_sample(records)])).samples
    assert s.header.header == frame and s.switch.dst_vlan == 2


def test_expanded_flow_sample():
    sample = enc.expanded_flow_sample([enc.raw_header(TCP_FRAME)], sequence=9, source_type=2,
                                      source_index=123456789, input_format=0, input_value=70001,
                                      output_format=2, output_value=3)  # fmt: skip
    (s,) = decode_clean(enc.datagram([sample])).samples
    assert s.expanded and (s.source_id_type, s.source_id_index) == (2, 123456789)
    assert (s.sampling_rate, s.sample_pool, s.drops) == (2000, 9000, 1)
    assert (s.input_format, s.input_ifindex, s.output_format, s.output_ifindex) == (0, 70001, 2, 3)
    assert s.header.packet.dst_port == 22


def test_sampled_ethernet_ipv4_ipv6_records():
    records = [
        enc.sampled_ethernet(1514, enc.MAC_A, enc.MAC_B, 0x0800),
        enc.sampled_ipv4(1500, 6, "10.1.1.1", "10.2.2.2", 1234, 80, 0x12, 0x10),
        enc.sampled_ipv6(1480, 17, "2001:db8::a", "2001:db8::b", 53, 5353, 0, 3),
    ]
    (s,) = decode_clean(enc.datagram([enc.flow_sample(records)])).samples
    eth, ip4, ip6 = s.records
    assert eth == SampledEthernet(1514, enc.MAC_A, enc.MAC_B, 0x0800, 2)
    assert ip4 == SampledIP(1500, 6, ipaddress.IPv4Address("10.1.1.1").packed,
                            ipaddress.IPv4Address("10.2.2.2").packed, 1234, 80, 0x12, 0x10, 3)  # fmt: skip
    assert (ip6.format, ip6.protocol, ip6.src_port, ip6.tos) == (4, 17, 53, 3)
    assert ipaddress.IPv6Address(ip6.dst_ip) == ipaddress.IPv6Address("2001:db8::b")
    assert s.header is None


def test_router_and_gateway_records():
    records = [
        enc.extended_router("192.0.2.254", 24, 16),
        enc.extended_gateway("2001:db8::1", 65000, 65001, 65002, [(2, [1, 2, 3]), (1, [4])], [100, 200], 150),
    ]
    (s,) = decode_clean(enc.datagram([enc.flow_sample(records)])).samples
    assert s.records[0] == ExtendedRouter("192.0.2.254", 24, 16)
    assert s.records[1] == ExtendedGateway("2001:db8::1", 65000, 65001, 65002, [(2, [1, 2, 3]), (1, [4])], [100, 200], 150)


@pytest.mark.parametrize("fmt", [1021, 1022])
def test_l2_tunnel_records(fmt):
    record = enc.sampled_ethernet(100, enc.MAC_A, enc.MAC_B, 0x86DD, fmt=fmt)
    (s,) = decode_clean(enc.datagram([enc.flow_sample([record])])).samples
    assert s.records == [SampledEthernet(100, enc.MAC_A, enc.MAC_B, 0x86DD, fmt)]


@pytest.mark.parametrize("fmt", [1023, 1024])
def test_ipv4_tunnel_records(fmt):
    record = enc.sampled_ipv4(150, 17, "10.99.0.1", "10.99.0.2", 40000, 4789, 0, 0, fmt=fmt)
    (s,) = decode_clean(enc.datagram([enc.flow_sample([record])])).samples
    assert (s.records[0].format, s.records[0].dst_port, s.records[0].src_ip) == (fmt, 4789, bytes([10, 99, 0, 1]))


@pytest.mark.parametrize("fmt", [1025, 1026])
def test_ipv6_tunnel_records(fmt):
    record = enc.sampled_ipv6(150, 17, "fd00::1", "fd00::2", 40000, 6081, 0, 0, fmt=fmt)
    (s,) = decode_clean(enc.datagram([enc.flow_sample([record])])).samples
    assert (s.records[0].format, s.records[0].dst_port) == (fmt, 6081)
    assert ipaddress.IPv6Address(s.records[0].dst_ip) == ipaddress.IPv6Address("fd00::2")


def test_decapsulate_and_vni_records():
    records = [enc.decapsulate(50, 1027), enc.decapsulate(64, 1028), enc.vni_record(4096, 1029), enc.vni_record(1, 1030)]
    (s,) = decode_clean(enc.datagram([enc.flow_sample(records)])).samples
    assert s.records == [Decapsulate(50, 1027), Decapsulate(64, 1028), VniRecord(4096, 1029), VniRecord(1, 1030)]


def test_unknown_flow_record_is_skipped_by_length():
    records = [enc.tagged(5, b"\xaa" * 12, enterprise=4413), enc.extended_switch(1, 0, 1, 0), enc.raw_header(TCP_FRAME)]
    (s,) = decode_clean(enc.datagram([enc.flow_sample(records)])).samples
    assert s.records[0] == UnknownRecord(4413, 5, b"\xaa" * 12)
    assert s.switch.src_vlan == 1 and s.header.packet.dst_port == 22


def test_counter_samples_all_record_types():
    generic = dict(if_index=7, if_type=6, if_speed=10_000_000_000, if_direction=1, if_status=3,
                   in_octets=2**40 + 5, in_ucast_pkts=10, in_multicast_pkts=11, in_broadcast_pkts=12,
                   in_discards=13, in_errors=14, in_unknown_protos=15, out_octets=2**33, out_ucast_pkts=20,
                   out_multicast_pkts=21, out_broadcast_pkts=22, out_discards=23, out_errors=24,
                   promiscuous_mode=1)  # fmt: skip
    records = [
        enc.generic_interface(**generic),
        enc.ethernet_counters(*range(1, 14)),
        enc.vlan_counters(100, 2**35, 1, 2, 3, 4),
        enc.processor_counters(150, 250, 350, 2**34, 2**33),
        enc.tagged(2000, b"\x00" * 20),  # host description: not decoded, skipped
    ]
    c1 = enc.counter_sample(records, sequence=4, source_type=0, source_index=7)
    c2 = enc.expanded_counter_sample(records[:1], sequence=5, source_type=0, source_index=2**30)
    s1, s2 = decode_clean(enc.datagram([c1, c2])).samples
    assert isinstance(s1, CounterSample) and not s1.expanded and (s1.sequence, s1.source_id_index) == (4, 7)
    assert s1.records[0] == GenericInterfaceCounters(**generic)
    assert s1.records[1] == EthernetCounters(*range(1, 14))
    assert s1.records[2] == VlanCounters(100, 2**35, 1, 2, 3, 4)
    assert s1.records[3] == ProcessorCounters(150, 250, 350, 2**34, 2**33)
    assert s1.records[4] == UnknownRecord(0, 2000, b"\x00" * 20)
    assert s2.expanded and s2.source_id_index == 2**30 and s2.records[0].in_octets == 2**40 + 5


def test_discard_sample():
    records = [enc.raw_header(TCP_FRAME), enc.extended_switch(5, 0, 0, 0)]
    sample = enc.discard_sample(records, sequence=11, source_index=9, drops=2, input_if=4, output_if=0, reason=258)
    (s,) = decode_clean(enc.datagram([sample])).samples
    assert isinstance(s, DiscardSample)
    assert (s.sequence, s.source_id_index, s.drops, s.input_ifindex, s.output_ifindex, s.reason) == (11, 9, 2, 4, 0, 258)
    assert s.header.packet.src_port == 1000 and s.switch.src_vlan == 5


def test_unknown_sample_skipped_and_following_decoded():
    unknown = enc.tagged(1002, b"\x01" * 24, enterprise=4300)
    d = decode_clean(enc.datagram([unknown, enc.flow_sample([enc.raw_header(TCP_FRAME)])]))
    assert d.samples[0] == UnknownSample(4300, 1002, 24)
    assert d.samples[1].header.packet.dst_port == 22


def test_trailing_bytes_after_announced_samples_are_ignored():
    data = enc.datagram([enc.flow_sample([])]) + b"\xff" * 100
    d = decode_clean(data)
    assert len(d.samples) == 1


def test_raw_header_protocol_not_dissected():
    (s,) = decode_clean(enc.datagram([enc.flow_sample([enc.raw_header(b"\x01" * 20, protocol=13)])])).samples
    assert isinstance(s.records[0], RawPacketHeader) and s.header.packet is None


# ------------------------------------------------------------------------ faults


GOOD = enc.datagram(
    [
        enc.flow_sample([enc.extended_switch(1, 0, 2, 0), enc.raw_header(TCP_FRAME)]),
        enc.counter_sample([enc.ethernet_counters(*range(13))]),
    ]
)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "truncated"),
        (b"\x00\x00\x00\x05", "truncated"),
        (enc.u32(4) + GOOD[4:], "version 4"),
        (GOOD[:4] + enc.u32(9) + GOOD[8:], "address type 9"),
        (GOOD[:-10], "past"),
        (GOOD[:24] + enc.u32(3) + GOOD[28:], "3 samples"),
    ],
)
def test_malformed_datagrams_are_reported(data, reason):
    d = decode_datagram(data)
    assert d.malformed and reason in d.malformed


def test_samples_before_a_fault_are_kept():
    data = enc.datagram([enc.flow_sample([enc.raw_header(TCP_FRAME)]), enc.tagged(1, enc.u32(1, 2))])
    d = decode_datagram(data)
    assert d.malformed and "too short" in d.malformed
    assert len(d.samples) == 1 and d.samples[0].header.packet.dst_port == 22


def test_record_running_past_its_sample_is_malformed():
    inner = enc.u32(1, 0, 1, 1, 0, 1, 2, 1) + enc.u32(1001, 400) + enc.u32(0, 0, 0, 0)
    d = decode_datagram(enc.datagram([enc.tagged(1, inner)]))
    assert d.malformed and "runs past" in d.malformed


def test_sampled_header_longer_than_record_is_malformed():
    record = enc.u32(1, 20, 1, 100, 0, 200) + b"\0" * 4  # says 200 header bytes in a 20-byte record
    d = decode_datagram(enc.datagram([enc.flow_sample([record])]))
    assert d.malformed and "longer than its record" in d.malformed


def test_short_counter_record_is_malformed():
    d = decode_datagram(enc.datagram([enc.counter_sample([enc.tagged(1, b"\0" * 40)])]))
    assert d.malformed and "GenericInterfaceCounters" in d.malformed


def test_every_truncation_of_a_good_datagram_is_reported_not_raised():
    for cut in range(len(GOOD)):
        d = decode_datagram(GOOD[:cut])
        assert d.malformed, cut
    assert decode_datagram(GOOD).malformed is None


def test_accepts_bytearray_and_memoryview():
    assert decode_datagram(bytearray(GOOD)).samples[0].header.packet.dst_port == 22
    assert decode_datagram(memoryview(GOOD)).samples[1].records[0].fcs_errors == 1
