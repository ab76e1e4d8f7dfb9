"""The capture reader: pcap flavours, link types, IPv6 carriers, and clear errors for non-captures."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from collectors.sflow.pcap import PcapError, iter_frames, iter_sflow_payloads

from . import encoder as enc

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata" / "sflow"
PAYLOADS = [b"sflow-one", b"sflow-two!"]


def udp4(payload: bytes, dst_port: int = 6343) -> bytes:
    return enc.ipv4(enc.udp(50000, dst_port, payload), 17, "127.0.0.1", "127.0.0.1")


def udp6(payload: bytes, dst_port: int = 6343) -> bytes:
    return enc.ipv6(enc.udp(50000, dst_port, payload), 17, "::1", "::1")


def classic(frames, link_type: int, order: str = "<", magic: int = 0xA1B2C3D4) -> bytes:
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, link_type)
    for frame in frames:
        out += struct.pack(order + "IIII", 0, 0, len(frame), len(frame)) + frame
    return out


def pcapng(frames, link_type: int) -> bytes:
    def block(block_type: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        length = len(body) + 12
        return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", link_type, 0, 65535))
    for frame in frames:
        out += block(6, struct.pack("<IIIII", 0, 0, 0, len(frame), len(frame)) + frame)
    return out


def read(tmp_path, data: bytes, **kwargs) -> list[bytes]:
    path = tmp_path / "capture"
    path.write_bytes(data)
    return list(iter_sflow_payloads(path, **kwargs))


def test_ethernet_little_and_big_endian_and_nanosecond(tmp_path):
    frames = [enc.ethernet(udp4(p), 0x0800) for p in PAYLOADS]
    assert read(tmp_path, classic(frames, 1)) == PAYLOADS
    assert read(tmp_path, classic(frames, 1, ">")) == PAYLOADS
    assert read(tmp_path, classic(frames, 1, "<", 0xA1B23C4D)) == PAYLOADS


def test_vlan_tagged_and_ipv6_carriers(tmp_path):
    frames = [enc.ethernet(udp4(PAYLOADS[0]), 0x0800, vlans=[5]), enc.ethernet(udp6(PAYLOADS[1]), 0x86DD)]
    assert read(tmp_path, classic(frames, 1)) == PAYLOADS


def test_linux_cooked_v1_v2_raw_ip_and_loopback(tmp_path):
    sll = [struct.pack(">HHH8sH", 0, 772, 6, b"\0" * 8, 0x0800) + udp4(p) for p in PAYLOADS]
    assert read(tmp_path, classic(sll, 113)) == PAYLOADS
    sll2 = [struct.pack(">HHIHBB8s", 0x86DD, 0, 1, 772, 0, 6, b"\0" * 8) + udp6(p) for p in PAYLOADS]
    assert read(tmp_path, classic(sll2, 276)) == PAYLOADS
    assert read(tmp_path, classic([udp4(p) for p in PAYLOADS], 101)) == PAYLOADS
    assert read(tmp_path, classic([struct.pack("<I", 2) + udp4(p) for p in PAYLOADS], 0)) == PAYLOADS


def test_pcapng(tmp_path):
    assert read(tmp_path, pcapng([enc.ethernet(udp4(p), 0x0800) for p in PAYLOADS], 1)) == PAYLOADS


def test_only_sflow_ports_unless_asked(tmp_path):
    frames = [enc.ethernet(udp4(b"dns", 53), 0x0800), enc.ethernet(udp4(b"sflow"), 0x0800)]
    data = classic(frames, 1)
    assert read(tmp_path, data) == [b"sflow"]
    assert read(tmp_path, data, ports=None) == [b"dns", b"sflow"]
    assert read(tmp_path, data, ports=frozenset({53})) == [b"dns"]


def test_fragments_and_non_udp_are_skipped(tmp_path):
    fragment = enc.ethernet(enc.ipv4(enc.udp(1, 6343, b"x"), 17, fragment=0x2000), 0x0800)  # more fragments
    tcp = enc.ethernet(enc.ipv4(enc.tcp(1, 6343, 2), 6), 0x0800)
    arp = enc.ethernet(b"\0" * 28, 0x0806)
    assert read(tmp_path, classic([fragment, tcp, arp, enc.ethernet(udp4(b"ok"), 0x0800)], 1)) == [b"ok"]


def test_ethernet_padding_is_not_payload(tmp_path):
    frame = enc.ethernet(udp4(b"ab"), 0x0800) + b"\0" * 16  # padded to the 60-byte minimum
    assert read(tmp_path, classic([frame], 1)) == [b"ab"]


def test_shared_capture_frames():
    frames = list(iter_frames(SHARED / "public-data-qinq.pcap"))
    assert len(frames) == 1 and frames[0][0] == 1


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not a pcap"),
        (b"# sFlow test captures\n", "not a pcap"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "file header is cut short"),
        (classic([enc.ethernet(udp4(b"x" * 50), 0x0800)], 1)[:-10], "breaks off inside a packet"),
        (classic([enc.ethernet(udp4(b"x"), 0x0800)], 1) + b"\0\0\0", "breaks off inside a packet record header"),
        (pcapng([], 1)[:-3], "bad length"),
    ],
)
def test_broken_files_raise_pcap_error(tmp_path, data, message):
    with pytest.raises(PcapError, match=message):
        read(tmp_path, data)


def test_missing_file(tmp_path):
    with pytest.raises(PcapError, match="cannot read"):
        list(iter_sflow_payloads(tmp_path / "absent.pcap"))
