"""ERSPAN type I/II/III and transparent-Ethernet GRE: datagrams built with scapy, each checked against
tshark's decode, then taken apart by parse_gre/decode_frame; the live receiver on a loopback address."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest
from scapy.all import wrpcap
from scapy.layers.l2 import Ether

from collectors.capture.erspan import MALFORMED_GRE, NOT_MIRROR, parse_gre
from collectors.capture.frames import decode_frame
from collectors.capture.receiver import ErspanReceiver
from collectors.capture.sessions import Session
from collectors.conntrack.tracker import ACK, RST, SYN, ConnectionTracker
from tests.capture import frames as F

PORTS = frozenset({4789, 8472})

DATAGRAMS = [
    F.erspan_ii(F.plain("S", seq=11), session=7, seq=5),
    F.erspan_ii(F.vxlan("SA", vni=1, seq=12, ack=11, sport=8080, dport=40000, src="10.244.2.3",
                        dst="10.244.1.2"), session=1023, seq=6, vlan=100),
    F.erspan_iii(F.plain("R", seq=13), session=9, seq=7, timestamp=123456, gra=1),
    F.erspan_iii(F.vxlan("F", vni=4096, port=4789, seq=14), session=2, seq=8, timestamp=4294967295, gra=0),
    F.gre_teb(F.plain("RA", seq=15, ack=1), key=3),
    F.gre_teb(F.plain("S", vlans=(42,), seq=16)),
]


def _tshark(datagrams: list[bytes], tmp_path) -> list[dict]:
    path = tmp_path / "erspan.pcap"
    wrpcap(str(path), [Ether(src="02:00:00:00:00:09", dst="02:00:00:00:00:0a") / Ether(b"\0" * 12 + b"\x08\x00" + d)
                       .payload for d in datagrams])
    fields = ["gre.proto", "gre.sequence_number", "gre.key", "erspan.version", "erspan.spanid", "erspan.timestamp",
              "erspan.gra", "vlan.id", "vxlan.vni", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.srcport"]
    done = subprocess.run(["tshark", "-r", str(path), "-d", "udp.port==8472,vxlan", "-T", "fields",
                           "-E", "separator=|", "-E", "occurrence=l"] + sum((["-e", f] for f in fields), []),
                          capture_output=True, text=True, check=True, timeout=60)
    return [dict(zip(fields, line.split("|"))) for line in done.stdout.splitlines()]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_parse_gre_agrees_with_tshark(tmp_path):
    decoded = _tshark(DATAGRAMS, tmp_path)
    assert len(decoded) == len(DATAGRAMS)
    for datagram, shark in zip(DATAGRAMS, decoded):
        gre = parse_gre(datagram, 20)
        assert int(shark["gre.proto"], 16) in (0x88BE, 0x22EB, 0x6558)
        assert gre.sequence == (int(shark["gre.sequence_number"]) if shark["gre.sequence_number"] else None)
        if shark["erspan.version"]:
            assert gre.erspan == int(shark["erspan.version"]) + 1  # tshark: version 1 = type II, 2 = type III
            assert gre.session == int(shark["erspan.spanid"])
        else:
            assert gre.erspan == 0 and gre.session == (int(shark["gre.key"], 16) if shark["gre.key"] else 0)
        if shark["erspan.timestamp"]:
            assert gre.timestamp == int(shark["erspan.timestamp"])
            assert gre.unit == {0: 100e-6, 1: 100e-9}[int(shark["erspan.gra"])]
        packet = decode_frame(datagram[gre.offset:], PORTS, 6081, gre.kind)
        vlan, vni, encap, src, dst, sport, dport, flags, seq, ack = packet
        assert flags == int(shark["tcp.flags"], 16) and seq == int(shark["tcp.seq_raw"])
        assert ack == int(shark["tcp.ack_raw"]) and sport == int(shark["tcp.srcport"])
        assert vni == (int(shark["vxlan.vni"]) if shark["vxlan.vni"] else 0)
        if shark["vlan.id"] and not shark["erspan.version"]:
            assert vlan == int(shark["vlan.id"])


def test_bad_gre_is_counted_not_raised():
    ok = F.erspan_ii(F.plain("S"))
    assert parse_gre(ok[:24], 20) == MALFORMED_GRE
    assert parse_gre(b"\x00\x01\x08\x00", 0) == NOT_MIRROR  # GRE version 1
    assert parse_gre(b"\x00\x00\x88\x0b", 0) == NOT_MIRROR  # not a mirror protocol
    for cut in range(len(ok)):
        result = parse_gre(ok[:cut], 20) if cut >= 20 else MALFORMED_GRE
        assert result in (MALFORMED_GRE, NOT_MIRROR) or result.offset <= cut


def test_session_sequence_loss_and_hardware_clock_wraps():
    s = Session("192.0.2.1", 7, 3)
    for n in (1, 2, 5, 4, 6):  # 3 lost, 4 arrives late
        s.sequence(n)
    assert s.lost == 1
    s.sequence(2**31)  # far from the last number either way: the session restarted
    s.sequence(2**31 + 1)
    assert (s.lost, s.restarts) == (1, 1)
    wrap = Session("192.0.2.1", 8, 2)
    for n in (2**32 - 2, 2**32 - 1, 0, 1):
        wrap.sequence(n)
    assert (wrap.lost, wrap.restarts) == (0, 0)
    unit = 1e-9  # IEEE 1588 granularity: the 32-bit counter wraps every 4.29 s
    t0 = s.hardware_time(2**32 - 1000, unit, 1000.0)
    t1 = s.hardware_time(500, unit, 1000.0001)  # wrapped: 1,500 ns later
    assert t0 == 1000.0 and abs((t1 - t0) - 1500e-9) < 1e-12
    t2 = s.hardware_time(2_000_500, unit, 1000.0021)
    assert abs((t2 - t1) - 0.002) < 1e-9


@pytest.mark.skipif(os.geteuid() != 0, reason="a raw GRE socket needs CAP_NET_RAW")
def test_live_receiver_on_loopback_times_the_handshake_with_hardware_timestamps():
    receiver = ErspanReceiver("127.0.0.77")
    receiver.open()
    sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
    try:
        syn = F.plain("S", seq=100)
        synack = F.plain("SA", src="10.244.2.3", dst="10.244.1.2", sport=8080, dport=40000, seq=900, ack=101)
        refused_syn = F.plain("S", sport=40001, seq=200)
        refused_rst = F.plain("RA", src="10.244.2.3", dst="10.244.1.2", sport=8080, dport=40001, seq=0, ack=201)
        ticks = 1_000_000  # 100 ns ticks
        sent = [F.erspan_iii(syn, session=9, seq=1, timestamp=ticks),
                F.erspan_iii(synack, session=9, seq=2, timestamp=ticks + 250_000),  # 25 ms later at the switch
                F.erspan_iii(refused_syn, session=9, seq=4, timestamp=ticks + 300_000),  # sequence 3 lost
                F.erspan_iii(refused_rst, session=9, seq=5, timestamp=ticks + 300_500),
                F.erspan_ii(F.plain("A"), session=9, seq=6),  # the ACL copied a data packet: filtered
                bytes(20) + b"\x00\x00\x88\x0b" + bytes(8)]  # GRE of another protocol
        for datagram in sent:
            sender.sendto(datagram[20:], ("127.0.0.77", 0))  # the kernel adds the IP header
        tracker = ConnectionTracker()
        deadline = time.monotonic() + 10
        while receiver.received < len(sent) and time.monotonic() < deadline:
            receiver.read(PORTS, 6081, tracker.observe_control)
            time.sleep(0.01)
    finally:
        sender.close()
        receiver.close()
    assert (receiver.received, receiver.events, receiver.filtered, receiver.not_mirror) == (6, 4, 1, 1)
    session = receiver.sessions[("127.0.0.1", 9)]
    assert session.hardware and session.lost == 1 and session.packets == 5
    by_port = {c.src_port: c for c in tracker.table.values()}
    assert by_port[40000].latency == 25_000 and by_port[40000].latency_source == "capture"
    assert by_port[40000].switch == "127.0.0.1 session 9"
    assert by_port[40001].outcome == "refused" and by_port[40001].state == "rst"
    assert SYN | ACK and RST  # the flags the frames carry (names used by readers of this test)
