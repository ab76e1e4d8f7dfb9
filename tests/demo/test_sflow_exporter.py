"""The simulated switch's sFlow encoder, checked by two independent decoders: ours and tshark."""
from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time

import pytest

from sim.sflow_exporter import (
    ACK, RST, SYN, LoopbackOnly, Pod, SflowExporter, TrafficModel, ethernet, ipv4, pods_from_objects,
)

PODS = [Pod(f"10.244.{n}.{i + 2}", f"worker-00{n + 1}", f"192.168.100.{10 + n}", "shop", f"shop-app{i % 3}-{n}{i}",
            f"shop-app{i % 3}") for n in range(3) for i in range(4)]


def datagrams(count: int = 300, sampling_rate: int = 4) -> list[bytes]:
    exporter = SflowExporter([("127.0.0.1", 9)], lambda: PODS, seed=3, sampling_rate=sampling_rate)
    now = time.monotonic()
    out = [exporter.next_datagram(now + k * 0.01) for k in range(count)]
    return [d for d in out if d]


def test_our_decoder_sees_vxlan_pod_to_pod_tcp():
    decoder = pytest.importorskip("collectors.sflow", reason="the sFlow decoder has not landed yet")
    pod_ips = {p.ip for p in PODS}
    node_of = {p.ip: p.node for p in PODS}
    flows = 0
    flags_seen: set[int] = set()
    sequences = []
    for data in datagrams():
        datagram = decoder.decode_datagram(data)
        assert not datagram.malformed, datagram.malformed
        for flow in decoder.iter_flows(datagram):
            if flow.encapsulation == "none":
                continue
            flows += 1
            assert flow.agent == "192.0.2.11"
            assert flow.encapsulation == "vxlan" and flow.vni == 1 and flow.dst_port == 8472
            assert flow.inner_src_ip in pod_ips and flow.inner_dst_ip in pod_ips
            assert node_of[flow.inner_src_ip] != node_of[flow.inner_dst_ip]  # only inter-node traffic crosses the switch
            assert 8080 in (flow.inner_src_port, flow.inner_dst_port)
            assert not flow.truncated
            flags_seen.add(flow.inner_tcp_flags)
        sequences.append(datagram.sequence)
    assert flows > 100
    assert {SYN, SYN | ACK} <= flags_seen
    assert sequences == list(range(1, len(sequences) + 1))  # no gaps: the collector must count no loss


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (scripts/install-system-deps.sh)")
def test_tshark_decodes_the_datagrams_without_errors(tmp_path):
    capture = tmp_path / "sflow.pcap"
    with open(capture, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, data in enumerate(datagrams(200)[:60]):
            udp = struct.pack(">HHHH", 40000, 6343, 8 + len(data), 0) + data
            frame = ethernet("02:00:00:00:00:01", "02:00:00:00:00:02") + ipv4("127.0.0.1", "127.0.0.1", 17, len(udp)) + udp
            f.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)
    result = subprocess.run(
        ["tshark", "-r", str(capture), "-d", "udp.port==8472,vxlan", "-T", "fields", "-E", "occurrence=a",
         "-e", "sflow_245.version", "-e", "vxlan.vni", "-e", "ip.src", "-e", "tcp.dstport", "-e", "_ws.malformed",
         "-e", "_ws.expert.severity"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 60
    assert all(line[0].startswith("5") for line in lines)
    assert not any(line[4] for line in lines), "tshark reports malformed packets"
    assert sum(1 for line in lines if line[1]) > 30  # datagrams with VXLAN inside
    assert any("10.244." in line[2] for line in lines)  # the inner pod addresses


def test_handshakes_sampled_and_churned_pods_reset():
    model = TrafficModel(conversations=6, seed=1)
    now = 0.0
    packets = model.step(PODS, now)
    assert packets and all(p.flags == SYN and p.always_sample for p in packets)
    now += 0.05
    answers = model.step(PODS, now)
    assert any(p.flags == SYN | ACK for p in answers)
    survivor = [p for p in PODS if p.ip != packets[0].dst.ip]
    resets = model.step(survivor, now + 0.01)
    assert any(p.flags == RST for p in resets)


def test_pods_from_kubernetes_objects_skip_what_never_reaches_the_wire():
    running = {"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "a"}}, "spec": {"nodeName": "n1"},
               "status": {"phase": "Running", "podIP": "10.244.0.5", "hostIP": "192.168.100.10"}}
    host_net = {**running, "spec": {"nodeName": "n1", "hostNetwork": True}}
    pending = {**running, "status": {"phase": "Pending"}}
    node = {"metadata": {"name": "n1", "annotations": {
        "flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"0a:11:22:33:44:55"}'}}}
    pods = pods_from_objects([running, host_net, pending], [node])
    assert pods == [Pod("10.244.0.5", "n1", "192.168.100.10", "ns", "a", "a", "0a:11:22:33:44:55")]


def test_only_loopback_targets():
    with pytest.raises(LoopbackOnly):
        SflowExporter([("192.0.2.1", 6343)], lambda: PODS)
    with pytest.raises(LoopbackOnly):
        SflowExporter([("10.0.0.1", 6343)], lambda: PODS)


async def test_exporter_sends_real_udp_datagrams_on_loopback():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    exporter = SflowExporter([sock.getsockname()], lambda: PODS, rate=100, seed=5)
    await exporter.start()
    import asyncio

    await asyncio.sleep(0.5)
    await exporter.stop()
    received = []
    while True:
        try:
            received.append(sock.recv(65535))
        except BlockingIOError:
            break
    sock.close()
    assert len(received) == exporter.datagrams > 5
    assert all(d[:4] == b"\x00\x00\x00\x05" for d in received)
