"""The mirrored-frame decoder and the kernel filter, on frames scapy builds: every shape the filter admits
decodes to the right control packet, non-control packets are filtered, short and fuzzed frames never raise."""
from __future__ import annotations

import socket

import pcapy
import pytest
from hypothesis import given, settings, strategies as st

from collectors.capture.bpf import compile_filter, control_filter
from collectors.capture.frames import KIND_ETHERNET, MALFORMED, NOT_CONTROL, _walk, decode_frame
from tests.capture import frames as F

V4 = socket.inet_aton
V6 = lambda a: socket.inet_pton(socket.AF_INET6, a)  # noqa: E731
PORTS = frozenset({4789, 8472})
FILTER = control_filter(PORTS, 6081)


@pytest.fixture(scope="module")
def kernel_filter():
    program = pcapy.compile(pcapy.DLT_EN10MB, 256, FILTER, 1, 0)
    return lambda frame: program.filter(frame[:256]) != 0


CASES = {
    "plain SYN": (F.plain("S", seq=7), (0, 0, "none", V4("10.244.1.2"), V4("10.244.2.3"), 40000, 8080, 0x002, 7, 0)),
    "plain RST-ACK": (F.plain("RA", seq=1, ack=8), (0, 0, "none", V4("10.244.1.2"), V4("10.244.2.3"), 40000, 8080,
                                                    0x014, 1, 8)),
    "802.1Q FIN": (F.plain("FA", vlans=(100,)), (100, 0, "none", V4("10.244.1.2"), V4("10.244.2.3"), 40000, 8080,
                                                 0x011, 1000, 0)),
    "QinQ SYN": (F.plain("S", vlans=(300, 20)), (300, 0, "none", V4("10.244.1.2"), V4("10.244.2.3"), 40000, 8080,
                                                 0x002, 1000, 0)),
    "IPv6 SYN-ACK": (F.plain("SA", src="fd00::1", dst="fd00::2", v6=True, seq=5, ack=9),
                     (0, 0, "none", V6("fd00::1"), V6("fd00::2"), 40000, 8080, 0x012, 5, 9)),
    "VXLAN 8472": (F.vxlan("S", vni=1), (0, 1, "vxlan", V4("10.244.1.2"), V4("10.244.2.3"), 40000, 8080, 0x002,
                                         1000, 0)),
    "VXLAN 4789 VNI 4096": (F.vxlan("R", vni=4096, port=4789), (0, 4096, "vxlan", V4("10.244.1.2"),
                                                                V4("10.244.2.3"), 40000, 8080, 0x004, 1000, 0)),
    "VXLAN over IPv6": (F.vxlan("S", vni=3, outer_v6=True), (0, 3, "vxlan", V4("10.244.1.2"), V4("10.244.2.3"),
                                                             40000, 8080, 0x002, 1000, 0)),
    "VXLAN inner IPv6": (F.vxlan("F", vni=2, src="fd01::1", dst="fd01::2", v6=True),
                         (0, 2, "vxlan", V6("fd01::1"), V6("fd01::2"), 40000, 8080, 0x001, 1000, 0)),
    "Geneve Ethernet": (F.geneve("S", vni=7), (0, 7, "geneve", V4("10.244.1.2"), V4("10.244.2.3"), 40000, 8080,
                                               0x002, 1000, 0)),
    "Geneve options IPv4": (F.geneve("S", vni=8, options=bytes(8), ethernet=False),
                            (0, 8, "geneve", V4("10.244.1.2"), V4("10.244.2.3"), 40000, 8080, 0x002, 1000, 0)),
    "IP-in-IP": (F.ipip("S"), (0, 0, "ipip", V4("10.244.1.2"), V4("10.244.2.3"), 40000, 8080, 0x002, 1000, 0)),
    "IPv6-in-IPv4": (F.ipip("SA", v6_inner=True, src="fd00::1", dst="fd00::2"),
                     (0, 0, "ipip", V6("fd00::1"), V6("fd00::2"), 40000, 8080, 0x012, 1000, 0)),
}


@pytest.mark.parametrize("name", CASES)
def test_every_shape_decodes_and_passes_the_kernel_filter(name, kernel_filter):
    frame, expected = CASES[name]
    assert decode_frame(frame, PORTS, 6081) == expected
    assert _walk(frame, 0, KIND_ETHERNET, PORTS, 6081, 0) == expected  # the general walker agrees
    assert kernel_filter(frame), f"{name} rejected by the kernel filter"


@pytest.mark.parametrize("frame", [F.plain("A"), F.plain("PA"), F.vxlan("A"), F.geneve("PA"), F.ipip("A"),
                                   F.plain("A", vlans=(5,)), F.vxlan("A", port=4789, outer_v6=True)])
def test_data_and_ack_packets_are_rejected_by_filter_and_decoder(frame, kernel_filter):
    assert not kernel_filter(frame)
    assert decode_frame(frame, PORTS, 6081) == NOT_CONTROL


def test_vxlan_on_a_port_not_configured_is_not_a_control_packet(kernel_filter):
    frame = F.vxlan("S", port=9999)
    assert not kernel_filter(frame)
    assert decode_frame(frame, PORTS, 6081) == NOT_CONTROL
    learned = frozenset({4789, 8472, 9999})  # a CNI-learned port: the filter is rebuilt with it
    program = pcapy.compile(pcapy.DLT_EN10MB, 256, control_filter(learned, 6081), 1, 0)
    assert program.filter(frame) != 0
    assert decode_frame(frame, learned, 6081)[2] == "vxlan"


def test_the_filter_compiles_for_many_ports_within_the_kernel_limit():
    assert 0 < len(compile_filter(control_filter(range(4780, 4796), 6081))) < 4096


def test_every_truncation_is_malformed_or_not_control_never_an_exception():
    for frame, _ in CASES.values():
        for cut in range(len(frame)):
            result = decode_frame(frame[:cut], PORTS, 6081)
            assert result in (MALFORMED, NOT_CONTROL) or type(result) is tuple
        assert decode_frame(frame[:20], PORTS, 6081) == MALFORMED


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(sorted(CASES)), st.data())
def test_fuzzed_frames_never_raise(name, data):
    frame = bytearray(CASES[name][0])
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(frame) - 1))
        frame[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    result = decode_frame(bytes(frame[:cut]), PORTS, 6081)
    assert result in (MALFORMED, NOT_CONTROL) or (type(result) is tuple and len(result) == 10)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(blob):
    assert decode_frame(blob, PORTS, 6081) in (MALFORMED, NOT_CONTROL) or type(decode_frame(blob)) is tuple
