"""The producer: one flat FlowRecord per flow sample, from headers or from sampled IP records."""

from __future__ import annotations

from collectors.sflow import decode_datagram, iter_flows
from collectors.sflow.producer import FlowRecord, ip_text

from . import encoder as enc

INNER = enc.ethernet(enc.ipv4(enc.tcp(51204, 8080, 0x12), 6, "10.244.1.10", "10.244.1.20"), 0x0800)
VXLAN = enc.ethernet(enc.ipv4(enc.udp(40000, 8472, enc.vxlan(1, INNER)), 17, "10.99.0.1", "10.99.0.2"), 0x0800, [30])


def flows(*samples, **kwargs) -> list[FlowRecord]:
    datagram = decode_datagram(enc.datagram(list(samples), agent="192.0.2.9", sequence=77))
    assert datagram.malformed is None
    return list(iter_flows(datagram, **kwargs))


def test_flow_from_vxlan_header():
    (flow,) = flows(enc.flow_sample([enc.extended_switch(30, 0, 40, 0), enc.raw_header(VXLAN)], rate=256,
                                    input_if=5, output_if=6))  # fmt: skip
    assert flow.as_dict() == {
        "agent": "192.0.2.9", "sub_agent_id": 0, "sequence": 77, "sample_sequence": 1, "source_id_type": 0,
        "source_id_index": 7, "sampling_rate": 256, "sample_pool": 5000, "input_ifindex": 5, "output_ifindex": 6,
        "output_format": 0, "frame_length": len(VXLAN) + 4, "ip_version": 4, "src_ip": "10.99.0.1",
        "dst_ip": "10.99.0.2", "protocol": 17, "src_port": 40000, "dst_port": 8472, "tcp_flags": None, "vlan": 30,
        "in_vlan": 30, "out_vlan": 40, "encapsulation": "vxlan", "vni": 1, "inner_ip_version": 4,
        "inner_src_ip": "10.244.1.10", "inner_dst_ip": "10.244.1.20", "inner_protocol": 6, "inner_src_port": 51204,
        "inner_dst_port": 8080, "inner_tcp_flags": 0x12, "truncated": False, "truncated_in": None,
    }  # fmt: skip


def test_flow_from_sampled_ipv4_record_when_no_header():
    record = enc.sampled_ipv4(1500, 6, "10.1.1.1", "10.2.2.2", 1234, 80, 0x18, 0)
    (flow,) = flows(enc.expanded_flow_sample([record]))
    assert (flow.src_ip, flow.dst_ip, flow.protocol, flow.src_port, flow.dst_port) == ("10.1.1.1", "10.2.2.2", 6, 1234, 80)
    assert (flow.tcp_flags, flow.frame_length, flow.ip_version, flow.encapsulation) == (0x18, 1500, 4, "none")
    assert (flow.source_id_index, flow.input_ifindex, flow.output_ifindex) == (70000, 70001, 70002)


def test_flow_from_sampled_ipv6_record():
    record = enc.sampled_ipv6(900, 17, "2001:db8::1", "2001:db8::2", 53, 5353, 0, 0)
    (flow,) = flows(enc.flow_sample([record]))
    assert (flow.ip_version, flow.src_ip, flow.tcp_flags, flow.vni) == (6, "2001:db8::1", None, None)


def test_flow_without_any_packet_information():
    (flow,) = flows(enc.flow_sample([enc.extended_switch(1, 0, 2, 0)]))
    assert (flow.src_ip, flow.protocol, flow.frame_length, flow.encapsulation, flow.in_vlan) == (None, None, None, "none", 1)


def test_truncated_header_is_flagged():
    (flow,) = flows(enc.flow_sample([enc.raw_header(VXLAN[:94], frame_length=200)]))
    assert (flow.truncated, flow.truncated_in, flow.vni, flow.inner_src_port, flow.inner_tcp_flags) == (
        True, "inner:tcp", 1, 51204, None
    )  # fmt: skip


def test_counter_and_discard_samples_are_not_flows_unless_asked():
    samples = [enc.counter_sample([]), enc.discard_sample([enc.raw_header(INNER)], reason=258), enc.flow_sample([])]
    assert len(flows(*samples)) == 1
    both = flows(*samples, include_discards=True)
    assert len(both) == 2 and both[0].src_port == 51204 and both[0].sampling_rate == 1


def test_ip_text():
    assert ip_text(bytes([10, 0, 0, 1])) == "10.0.0.1"
    assert ip_text(bytes(15) + b"\x01") == "::1"
    assert ip_text(None) is None
