"""Every shared capture (and a synthetic one) decoded by us and by Wireshark's tshark, field by field."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.sflow import decode_datagram, iter_sflow_payloads
from collectors.sflow.producer import ip_text
from collectors.sflow.records import (
    CounterSample,
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
    UnknownSample,
    VlanCounters,
)

from . import encoder as enc
from . import tshark

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata" / "sflow"
CAPTURES = sorted(SHARED.glob("*.pcap"))

pytestmark = pytest.mark.skipif(tshark.TSHARK is None, reason="tshark is not installed (`make venv` installs it)")

_L4_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "ip": 4, "ipv6": 41}


def test_shared_captures_are_present():
    assert SHARED.is_dir(), f"shared test data missing: {SHARED}"
    assert len(CAPTURES) >= 9, CAPTURES


@pytest.mark.parametrize("capture", CAPTURES, ids=[path.name for path in CAPTURES])
def test_capture_matches_tshark(capture):
    tally = compare_file(capture)
    if capture.name.startswith("raw_"):  # VXLAN packets themselves, no sFlow: both decoders must find none
        assert tally["samples"] == 0
    else:
        assert tally["samples"] >= 1 and tally["headers"] >= 1, "nothing was compared"
    if capture.name.startswith("pmacct_"):
        assert tally["inner"] >= 2300 and tally["counter_records"] == 15, tally


def test_synthetic_capture_matches_tshark(tmp_path):
    """Shapes the shared captures lack: IPv6 agent, counters of every kind, sampled records, tunnels."""
    capture = tmp_path / "synthetic.pcap"
    capture.write_bytes(enc.pcap(synthetic_datagrams()))
    compared = compare_file(capture)
    assert compared["headers"] >= 8 and compared["counter_records"] >= 5 and compared["inner"] >= 4


def compare_file(capture: Path) -> dict:
    ours = [decode_datagram(payload, frozenset({4789, 8472})) for payload in iter_sflow_payloads(capture)]
    theirs = tshark.datagrams(capture)
    assert len(ours) == len(theirs), "datagram count differs from tshark"
    tally = {"samples": 0, "headers": 0, "inner": 0, "counter_records": 0}
    for index, (datagram, reference) in enumerate(zip(ours, theirs)):
        context = f"{capture.name} datagram {index + 1}"
        assert datagram.malformed is None, f"{context}: {datagram.malformed}"
        compare_datagram(datagram, reference, context, tally)
    return tally


def compare_datagram(datagram, reference, context, tally):
    fields = reference["fields"]
    agent = fields.get("sflow_245.agent") or fields.get("sflow_245.agent.v6")
    assert datagram.agent == agent, context
    assert datagram.sub_agent_id == int(fields["sflow_245.sub_agent_id"]), context
    assert datagram.sequence == int(fields["sflow_245.sequence_number"]), context
    assert datagram.uptime == int(fields["sflow_245.sysuptime"]), context
    assert datagram.num_samples == int(fields["sflow_245.numsamples"]) == len(datagram.samples), context
    assert len(reference["samples"]) == len(datagram.samples), context
    for number, (sample, theirs) in enumerate(zip(datagram.samples, reference["samples"]), 1):
        where = f"{context} sample {number} ({theirs['label']})"
        tally["samples"] += 1
        if isinstance(sample, FlowSample):
            compare_flow_sample(sample, theirs, where, tally)
        elif isinstance(sample, CounterSample):
            compare_counter_sample(sample, theirs, where, tally)
        elif isinstance(sample, DiscardSample):
            # tshark 4.0 does not know sflow_drops.txt: it shows type 5 as an unknown sample and skips it.
            assert theirs["fields"]["sflow_245.sampletype"] == "5", where
        else:
            assert isinstance(sample, UnknownSample) and theirs["label"] == "Unknown sample format", where


def compare_flow_sample(sample: FlowSample, theirs: dict, where: str, tally: dict) -> None:
    f = theirs["fields"]
    assert sample.sequence == int(f["sflow.flow_sample.sequence_number"]), where
    assert sample.sampling_rate == int(f["sflow.flow_sample.sampling_rate"]), where
    assert sample.sample_pool == int(f["sflow.flow_sample.sample_pool"]), where
    assert sample.drops == int(f["sflow.flow_sample.dropped_packets"]), where
    if sample.expanded:
        assert theirs["label"].startswith("Expanded flow sample"), where
        assert sample.source_id_type == int(f["sflow.flow_sample.source_id_type"]), where
        assert sample.source_id_index == int(f["sflow.flow_sample.source_id_index"]), where
        assert sample.input_format == int(f["sflow.flow_sample.input_interface_format"]), where
        assert sample.input_ifindex == int(f["sflow.flow_sample.input_interface_value"]), where
        assert sample.output_ifindex == int(f["sflow.flow_sample.output_interface_value"]), where
    else:
        assert theirs["label"].startswith("Flow sample"), where
        assert sample.source_id_type == int(f["sflow.flow_sample.source_id_class"]), where
        assert sample.source_id_index == int(f["sflow.flow_sample.index"]), where
        assert sample.input_format << 30 | sample.input_ifindex == int(f["sflow.flow_sample.input_interface"]), where
        assert sample.output_format << 30 | sample.output_ifindex == int(f["sflow.flow_sample.output_interface"], 16)
        assert sample.output_format == int(f["sflow.flow_sample.output_interface_format"]), where
    assert len(sample.records) == int(f["sflow.flow_sample.flow_record"]) == len(theirs["records"]), where
    for record, reference in zip(sample.records, theirs["records"]):
        compare_flow_record(record, reference, f"{where} record {reference['label']}", tally)


def compare_flow_record(record, reference: dict, where: str, tally: dict) -> None:
    f = reference["fields"]
    assert record.format == int(f["sflow_245.flow_record_format"]), where
    if isinstance(record, RawPacketHeader):
        assert record.header_protocol == int(f["sflow_245.header_protocol"]), where
        assert record.frame_length == int(f["sflow_245.header.frame_length"]), where
        assert record.stripped == int(f["sflow_245.header.payload_stripped"]), where
        assert len(record.header) == int(f["sflow_245.header.sampled_header_length"]), where
        compare_header(record, reference["layers"], where, tally)
    elif isinstance(record, ExtendedSwitch):
        assert record.src_vlan == int(f["sflow_245.vlan.in"]) and record.dst_vlan == int(f["sflow_245.vlan.out"]), where
        assert record.src_priority == int(f["sflow_245.pri.in"]) and record.dst_priority == int(f["sflow_245.pri.out"])
    elif isinstance(record, ExtendedRouter):
        assert record.next_hop == f["sflow_245.nexthop"], where
        assert record.src_mask_len == int(f["sflow_245.nexthop.src_mask"]), where
        assert record.dst_mask_len == int(f["sflow_245.nexthop.dst_mask"]), where
    elif isinstance(record, ExtendedGateway):
        assert record.next_hop == f["sflow_245.nexthop"], where
        assert record.as_number == int(f["sflow_245.as"]) and record.src_as == int(f["sflow_245.srcAS"]), where
        assert record.src_peer_as == int(f["sflow_245.peerAS"]), where
        assert len(record.as_path) == int(f["sflow_245.dstASentries"]), where
        assert len(record.communities) == int(f["sflow_245.communityEntries"]), where
        assert record.local_pref == int(f["sflow_245.localpref"]), where
        numbers = [n for _, segment in record.as_path for n in segment] + record.communities
        assert numbers == reference["all_dst_as"], where
    elif isinstance(record, SampledEthernet):
        assert record.length == int(f["sflow_245.ethernet.length"]), where
        assert record.src_mac.hex(":") == f["sflow_245.ethernet.source_mac_address"], where
        assert record.dst_mac.hex(":") == f["sflow_245.ethernet.destination_mac_address"], where
        assert record.ethertype == int(f["sflow_245.ethernet.packet_type"]), where
    elif isinstance(record, SampledIP):
        version = "ipv4" if record.format == 3 else "ipv6"
        assert record.length == int(f["sflow_245.ip.length"]) and record.protocol == int(f["sflow.ip_protocol"]), where
        assert ip_text(record.src_ip) == f[f"sflow_245.{version}_src"], where
        assert ip_text(record.dst_ip) == f[f"sflow_245.{version}_dst"], where
        assert record.src_port == int(f["sflow_245.ip.source_port"]), where
        assert record.dst_port == int(f["sflow.ip.destination_port"]), where
        # tshark 4.0 reads tcp_flags from the wrong byte of the 32-bit field, so flags are checked elsewhere.
    else:
        pytest.fail(f"{where}: no comparison for {type(record).__name__}")


def compare_header(record: RawPacketHeader, layers: list, where: str, tally: dict) -> None:
    packet = record.packet
    assert packet is not None, where
    tally["headers"] += 1
    outer_layers, inner_layers, tunnel = tshark.split_tunnel(layers)
    assert not packet.truncated, f"{where}: truncated in {packet.truncated_in}"
    compare_stack(packet.outer, outer_layers, inner_layers, where + " outer")
    if tunnel is not None:
        name = "vxlan" if "vxlan.vni" in tunnel else "geneve"
        assert packet.encapsulation == name, where
        assert packet.vni == int(tunnel[f"{name}.vni"], 0), where
    elif inner_layers:
        assert packet.encapsulation == "ipip", where
    else:
        assert packet.encapsulation == "none" and packet.inner is None, where
    if inner_layers:
        tally["inner"] += 1
        compare_stack(packet.inner, inner_layers, [], where + " inner")


def compare_stack(ours, layers: list, following: list, where: str) -> None:
    theirs = tshark.summarize(layers)
    l4 = [name for _, name, _ in layers if name in _L4_NUMBERS and name not in ("ip", "ipv6")]
    if theirs["ip_version"] == 6:  # ipv6.nxt is the first next header; compare the transport actually found
        if l4:
            theirs["protocol"] = _L4_NUMBERS[l4[0]]
        elif following and following[0][1] in ("ip", "ipv6"):
            theirs["protocol"] = _L4_NUMBERS[following[0][1]]
    assert list(ours.vlans or ()) == theirs["vlans"], where
    assert (ours.ip_version or None) == theirs["ip_version"], where
    assert ip_text(ours.src_ip) == theirs["src_ip"] and ip_text(ours.dst_ip) == theirs["dst_ip"], where
    assert ours.protocol == theirs["protocol"], where
    assert (ours.src_port, ours.dst_port) == (theirs["src_port"], theirs["dst_port"]), where
    assert ours.tcp_flags == theirs["tcp_flags"], where
    assert ours.icmp_type == theirs["icmp_type"], where


_COUNTER_FIELDS = {
    GenericInterfaceCounters: {
        "if_index": "sflow_245.ifindex", "if_type": "sflow_245.iftype", "if_speed": "sflow_245.ifspeed",
        "if_direction": "sflow_245.ifdirection", "in_octets": "sflow_245.ifinoct", "in_ucast_pkts": "sflow_245.ifinpkt",
        "in_multicast_pkts": "sflow_245.ifinmcast", "in_broadcast_pkts": "sflow_245.ifinbcast",
        "in_discards": "sflow_245.ifindisc", "in_errors": "sflow_245.ifinerr", "in_unknown_protos": "sflow_245.ifinunk",
        "out_octets": "sflow_245.ifoutoct", "out_ucast_pkts": "sflow_245.ifoutpkt",
        "out_multicast_pkts": "sflow_245.ifoutmcast", "out_broadcast_pkts": "sflow_245.ifoutbcast",
        "out_discards": "sflow_245.ifoutdisc", "out_errors": "sflow_245.ifouterr",
        "promiscuous_mode": "sflow_245.ifpromisc",
    },
    EthernetCounters: {
        "alignment_errors": "sflow_245.dot3StatsAlignmentErrors", "fcs_errors": "sflow_245.dot3StatsFCSErrors",
        "single_collision_frames": "sflow_245.dot3StatsSingleCollisionFrames",
        "multiple_collision_frames": "sflow_245.dot3StatsMultipleCollisionFrames",
        "sqe_test_errors": "sflow_245.dot3StatsSQETestErrors",
        "deferred_transmissions": "sflow_245.dot3StatsDeferredTransmissions",
        "late_collisions": "sflow_245.dot3StatsLateCollisions",
        "excessive_collisions": "sflow_245.dot3StatsExcessiveCollisions",
        "internal_mac_transmit_errors": "sflow_245.dot3StatsInternalMacTransmitErrors",
        "carrier_sense_errors": "sflow_245.dot3StatsCarrierSenseErrors",
        "frame_too_longs": "sflow_245.dot3StatsFrameTooLongs",
        "internal_mac_receive_errors": "sflow_245.dot3StatsInternalMacReceiveErrors",
        "symbol_errors": "sflow_245.dot3StatsSymbolErrors",
    },
    VlanCounters: {
        "vlan_id": "sflow_245.vlan_id", "octets": "sflow_245.octets", "ucast_pkts": "sflow_245.ucastPkts",
        "multicast_pkts": "sflow_245.multicastPkts", "broadcast_pkts": "sflow_245.broadcastPkts",
        "discards": "sflow_245.discards",
    },
    ProcessorCounters: {
        "cpu_5s": "sflow_5.cpu_5s", "cpu_1m": "sflow_5.cpu_1m", "cpu_5m": "sflow_5.cpu_5m",
        "total_memory": "sflow_5.total_memory", "free_memory": "sflow_5.free_memory",
    },
}  # fmt: skip


def compare_counter_sample(sample: CounterSample, theirs: dict, where: str, tally: dict) -> None:
    f = theirs["fields"]
    assert theirs["label"].startswith("Expanded counters" if sample.expanded else "Counters sample"), where
    assert sample.sequence == int(f["sflow.counters_sample.sequence_number"]), where
    assert sample.source_id_type == int(f["sflow.counters_sample.source_id_type"]), where
    assert sample.source_id_index == int(f["sflow.counters_sample.source_id_index"]), where
    assert len(sample.records) == int(f["sflow.counters_sample.counters_records"]) == len(theirs["records"]), where
    for record, reference in zip(sample.records, theirs["records"]):
        rf = reference["fields"]
        assert record.format == int(rf["sflow_245.counters_record_format"]), where
        mapping = _COUNTER_FIELDS[type(record)]
        for ours_name, their_name in mapping.items():
            assert getattr(record, ours_name) == int(rf[their_name]), f"{where}: {ours_name}"
        if isinstance(record, GenericInterfaceCounters):  # tshark splits ifStatus into its two bits
            assert record.if_status & 1 == int(rf["sflow_245.ifadmin_status"]), where
            assert record.if_status >> 1 & 1 == int(rf["sflow_245.ifoper_status"]), where
        tally["counter_records"] += 1


def synthetic_datagrams() -> list[bytes]:
    tcp_frame = enc.ethernet(enc.ipv4(enc.tcp(40000, 443, 0x12), 6, "10.1.1.1", "10.2.2.2"), 0x0800)
    qinq = enc.ethernet(enc.ipv4(enc.udp(1, 53), 17), 0x0800, vlans=[10, 20], tpids=[0x88A8, 0x8100])
    ipv6_ext = enc.ethernet(
        enc.ipv6(enc.tcp(1111, 80, 0x18), 6, extensions=[(0, b"\0" * 6), (60, b"\0" * 6)]), 0x86DD, vlans=[7]
    )
    vxlan = enc.ethernet(
        enc.ipv4(enc.udp(49155, 4789, enc.vxlan(4096, enc.ethernet(enc.ipv6(enc.icmp(128, 0), 58), 0x86DD))), 17), 0x0800
    )
    flannel = enc.ethernet(
        enc.ipv4(enc.udp(49156, 8472, enc.vxlan(1, enc.ethernet(enc.ipv4(enc.tcp(9, 10, 0x11), 6), 0x0800))), 17), 0x0800
    )
    geneve = enc.ethernet(
        enc.ipv4(enc.udp(49157, 6081, enc.geneve(77, tcp_frame, options=b"\x01\x02\x03\x04\x05\x06\x07\x08")), 17), 0x0800
    )
    ipip = enc.ethernet(enc.ipv4(enc.ipv4(enc.udp(11, 12), 17, "172.16.0.1", "172.16.0.2"), 4), 0x0800)
    six_in_four = enc.ethernet(enc.ipv4(enc.ipv6(enc.tcp(13, 14, 0x02), 6), 41), 0x0800)
    raw_ipv4 = enc.ipv4(enc.icmp(0, 0), 1, "69.58.92.107", "92.222.186.1")
    headers = [
        enc.flow_sample([enc.extended_switch(10, 1, 20, 2), enc.raw_header(frame)], sequence=n)
        for n, frame in enumerate([tcp_frame, qinq, ipv6_ext, vxlan, flannel, geneve, ipip, six_in_four], 1)
    ]
    headers.append(enc.expanded_flow_sample([enc.raw_header(raw_ipv4, protocol=11)], sequence=99))
    generic = dict(if_index=7, if_type=6, if_speed=10**10, if_direction=1, if_status=3, in_octets=2**40,
                   in_ucast_pkts=1, in_multicast_pkts=2, in_broadcast_pkts=3, in_discards=4, in_errors=5,
                   in_unknown_protos=6, out_octets=2**33, out_ucast_pkts=7, out_multicast_pkts=8,
                   out_broadcast_pkts=9, out_discards=10, out_errors=11, promiscuous_mode=1)  # fmt: skip
    counters = [
        enc.counter_sample(
            [
                enc.generic_interface(**generic),
                enc.ethernet_counters(*range(1, 14)),
                enc.vlan_counters(100, 2**35, 1, 2, 3, 4),
                enc.processor_counters(150, 250, 350, 2**34, 2**33),
            ],
            sequence=3,
        ),
        enc.expanded_counter_sample([enc.ethernet_counters(*range(20, 33))], source_index=2**30),
    ]
    records = enc.flow_sample(
        [
            enc.sampled_ethernet(100, enc.MAC_A, enc.MAC_B, 0x0800),
            enc.sampled_ipv4(1500, 6, "10.1.1.1", "10.2.2.2", 1234, 80, 0x12, 0x10),
            enc.sampled_ipv6(1480, 17, "2001:db8::a", "2001:db8::b", 53, 5353, 0, 3),
            enc.extended_router("192.0.2.254", 24, 16),
            enc.extended_gateway("192.0.2.1", 65000, 65001, 65002, [(2, [1, 2, 3])], [100, 200], 150),
        ]
    )
    discard = enc.discard_sample([enc.raw_header(tcp_frame)])
    return [
        enc.datagram(headers[:5], sequence=1),
        enc.datagram(headers[5:], agent="2001:db8::42", sub_agent=2, sequence=2),
        enc.datagram(counters, sequence=3),
        enc.datagram([records, discard], sequence=4),
    ]
