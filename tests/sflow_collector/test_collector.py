"""The sFlow collector over loopback UDP: shared captures replayed, statistics, loss, malformed input, config."""
from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

from core.datastore import Datastore
from collectors.conntrack.tracker import CONNECTIONS_PATH
from collectors.sflow.collector import CNI_PATH, EXPORTER_PATH, STATS_PATH, parse_addr
from collectors.sflow.decoder import decode_datagram
from collectors.sflow.pcap import iter_sflow_payloads
from fabric_sync.embedded import EmbeddedFabricStore
from tests.agentproc import SHARED
from tests.flowpipeline import FlowPipeline
from tests.conntrack.sflowgen import SYN, datagram, flow_sample, tcp_frame, vxlan_frame

CAPTURES = SHARED / "testdata" / "sflow"
PMACCT = CAPTURES / "pmacct_sfprobe_vxlan8472_4789.pcap"
SETTINGS = "kubefabric-connection:connection-stats-settings"
SFLOW = "kubefabric-sflow:sflow-collector"

needs_captures = pytest.mark.skipif(not PMACCT.exists(), reason=f"shared captures not found under {CAPTURES}")


@pytest.fixture
async def ds(tmp_path):
    store = Datastore("leaf1", tmp_path, EmbeddedFabricStore(tmp_path, "leaf1"))
    await store.start()
    yield store
    await store.stop()


@pytest.fixture
async def collector_factory(ds):
    started = []

    async def make(workers: int = 1, **kwargs) -> FlowPipeline:
        c = FlowPipeline(ds, "127.0.0.1:0", workers=workers, **kwargs)
        await c.start()
        started.append(c)
        return c

    yield make
    for c in started:
        await c.stop()


async def set_config(ds, top: str, body: dict) -> None:
    await ds.propose(lambda t: {**t, top: body}, user="test", face="test")


def send_all(port: int, payloads) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        n = 0
        for p in payloads:
            s.sendto(p, ("127.0.0.1", port))
            n += 1
    return n


async def wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def with_sequence(payload: bytes, seq: int) -> bytes:
    """The same datagram with another sequence number (IPv4 agents: bytes 16..20)."""
    return payload[:16] + struct.pack(">I", seq) + payload[20:]


def test_parse_addr():
    assert parse_addr("127.0.0.1:6343") == ("127.0.0.1", 6343)
    assert parse_addr("0.0.0.0") == ("0.0.0.0", 6343)
    assert parse_addr(":7000") == ("0.0.0.0", 7000)
    assert parse_addr("[::1]:6343") == ("::1", 6343)
    with pytest.raises(ValueError):
        parse_addr("host:port")


@needs_captures
async def test_pmacct_capture_statistics_and_connections(ds, collector_factory):
    payloads = list(iter_sflow_payloads(PMACCT))
    expected_samples = sum(len(decode_datagram(p).samples) for p in payloads)
    await set_config(ds, SETTINGS, {"enable": True})
    c = await collector_factory()
    send_all(c.port, payloads)
    await wait_for(lambda: c.stats.datagrams == len(payloads))
    c.flush()
    totals = ds.state.get(STATS_PATH)
    assert totals == {"datagrams": 420, "samples": expected_samples, "malformed": 0, "lost": 0}
    exporter = ds.state.get(EXPORTER_PATH, ("10.99.0.1", 0))
    assert exporter["datagrams"] == 420 and exporter["lost"] == 0 and exporter["last-sequence"] == 420
    assert exporter["last-seen"].endswith("Z")
    conns = ds.state.entries(CONNECTIONS_PATH)
    tcp = {k: v for k, v in conns.items() if k[6] == 6}
    assert tcp and {k[1] for k in tcp} == {1, 4096}  # Flannel's VNI 1 on 8472 and VNI 4096 on 4789
    for key, row in tcp.items():
        assert row["encapsulation"] == "vxlan" and row["switch"] == "10.99.0.1"
        assert row["cur-state"] in ("closed", "fin") and row["latency"] >= 0
        assert key[5] in (8080, 9090, 5001) and key[4] > 30000  # the SYN sender (ephemeral port) is src


@needs_captures
async def test_sequence_gaps_are_counted_as_lost(ds, collector_factory):
    payloads = list(iter_sflow_payloads(PMACCT))
    dropped = {100, 101, 102, 103, 104, 300}
    c = await collector_factory()
    sent = send_all(c.port, (p for i, p in enumerate(payloads) if i not in dropped))
    await wait_for(lambda: c.stats.datagrams == sent)
    c.flush()
    assert ds.state.get(STATS_PATH)["lost"] == 6
    assert ds.state.get(EXPORTER_PATH, ("10.99.0.1", 0))["lost"] == 6


async def test_wrap_and_restart_are_not_loss(ds, collector_factory):
    sample = flow_sample(tcp_frame("10.0.0.1", "10.0.0.2", 40000, 80, SYN))
    c = await collector_factory()
    seqs = [0xFFFFFFFE, 0xFFFFFFFF, 0, 1, 3]  # wraps cleanly, then loses 2
    send_all(c.port, [datagram([sample], seq=s, agent="192.0.2.7") for s in seqs])
    await wait_for(lambda: c.stats.datagrams == 5)
    exp = c.stats.exporters[("192.0.2.7", 0)]
    assert exp.lost == 1 and exp.last_sequence == 3
    exp.last_seen -= 10  # the exporter went quiet, then came back numbering from 1
    send_all(c.port, [datagram([sample], seq=s, agent="192.0.2.7") for s in (1, 2)])
    await wait_for(lambda: c.stats.datagrams == 7)
    assert exp.lost == 1 and exp.restarts == 1 and exp.last_sequence == 2


async def test_malformed_datagrams_are_counted_and_skipped(ds, collector_factory):
    good = datagram([flow_sample(tcp_frame("10.0.0.1", "10.0.0.2", 40000, 80, SYN))], seq=1, agent="192.0.2.9")
    bad = [
        b"",
        b"garbage",
        struct.pack(">I", 4) + good[4:],  # sFlow v4
        good[:40],  # header fine, sample cut short
        good[:28] + struct.pack(">II", 1, 100000) + good[36:],  # sample length past the end
    ]
    c = await collector_factory()
    send_all(c.port, bad + [datagram([flow_sample(tcp_frame("10.0.0.1", "10.0.0.2", 40000, 80, SYN))], seq=2,
                                     agent="192.0.2.9")])
    await wait_for(lambda: c.stats.datagrams == 6)
    c.flush()
    assert ds.state.get(STATS_PATH)["malformed"] == 5
    exp = ds.state.get(EXPORTER_PATH, ("192.0.2.9", 0))
    assert exp["malformed"] == 2 and exp["datagrams"] == 3 and exp["last-sequence"] == 2 and exp["lost"] == 0


async def test_statistics_reach_the_datastore_at_most_once_a_second(ds, collector_factory):
    c = await collector_factory(publish_interval=0.05)
    stats_batches = []
    ds.feed.subscribe(lambda b: stats_batches.append(1) if any(ch.path == STATS_PATH for ch in b) else None)
    sample = flow_sample(tcp_frame("10.0.0.1", "10.0.0.2", 40000, 80, SYN))
    start = time.monotonic()
    seq = 0
    while time.monotonic() - start < 2.2:
        seq += 1
        send_all(c.port, [datagram([sample], seq=seq)])
        await asyncio.sleep(0.005)
    await wait_for(lambda: c.stats.datagrams == seq)
    elapsed = time.monotonic() - start
    assert 2 <= len(stats_batches) <= elapsed + 1.5, (stats_batches, elapsed)  # ~1 a second, never per datagram
    c.flush()
    assert ds.state.get(STATS_PATH)["datagrams"] == seq


async def test_vxlan_port_learned_from_the_cni_row(ds, collector_factory):
    await set_config(ds, SETTINGS, {"enable": True})
    c = await collector_factory()
    inner = tcp_frame("10.244.1.2", "10.244.2.3", 40000, 80, SYN)
    dg = datagram([flow_sample(vxlan_frame("10.99.0.1", "10.99.0.2", inner, vni=7, dport=9999))], seq=1)
    send_all(c.port, [dg])
    await wait_for(lambda: c.stats.datagrams == 1)
    c.flush()
    assert (0, 0, "10.99.0.1", "10.99.0.2", 40000, 9999, 17) in ds.state.entries(CONNECTIONS_PATH)
    ds.state.upsert(CNI_PATH, ("k8s01",), {"cni-plugin": "flannel", "backend": "vxlan", "udp-port": 9999, "vxlan": 7})
    assert 9999 in c.vxlan_ports
    send_all(c.port, [with_sequence(dg, 2)])
    await wait_for(lambda: c.stats.datagrams == 2)
    c.flush()
    row = ds.state.get(CONNECTIONS_PATH, (0, 7, "10.244.1.2", "10.244.2.3", 40000, 80, 6))
    assert row is not None and row["encapsulation"] == "vxlan"


async def test_configured_vxlan_ports_and_enable(ds, collector_factory):
    await set_config(ds, SETTINGS, {"enable": True})
    c = await collector_factory()
    assert c.vxlan_ports == {4789, 8472}
    await set_config(ds, SFLOW, {"vxlan-port": [4789]})
    assert c.vxlan_ports == {4789}
    inner = tcp_frame("10.244.1.2", "10.244.2.3", 40000, 80, SYN)
    send_all(c.port, [datagram([flow_sample(vxlan_frame("10.99.0.1", "10.99.0.2", inner, vni=1, dport=8472))])])
    await wait_for(lambda: c.stats.datagrams == 1)
    c.flush()
    assert [k[6] for k in ds.state.entries(CONNECTIONS_PATH)] == [17]  # 8472 is plain UDP now
    await set_config(ds, SFLOW, {"enable": False})
    send_all(c.port, [datagram([flow_sample(inner)], seq=2)])
    await wait_for(lambda: c.ignored == 1)
    assert c.stats.datagrams == 1


@needs_captures
@pytest.mark.parametrize("capture", sorted(p.name for p in CAPTURES.glob("*.pcap")) if CAPTURES.exists() else [])
async def test_every_shared_capture_replays_without_error(ds, collector_factory, capture):
    payloads = list(iter_sflow_payloads(CAPTURES / capture))
    if not payloads:
        pytest.skip(f"{capture} holds no sFlow datagrams")
    await set_config(ds, SETTINGS, {"enable": True})
    c = await collector_factory()
    send_all(c.port, payloads)
    await wait_for(lambda: c.stats.datagrams == len(payloads))
    decoded = [decode_datagram(p) for p in payloads]
    assert c.stats.malformed == sum(d.malformed is not None for d in decoded)
    assert c.stats.samples == sum(len(d.samples) for d in decoded)
    c.flush()
    assert c._errors == 0


@needs_captures
async def test_worker_processes_give_the_same_result(ds, collector_factory):
    payloads = list(iter_sflow_payloads(PMACCT))
    await set_config(ds, SETTINGS, {"enable": True})
    c = await collector_factory(workers=2)
    assert len(set(c.worker_pids)) == 2 and all(c.worker_pids)
    dropped = {10, 11, 12}
    sent = send_all(c.port, (p for i, p in enumerate(payloads) if i not in dropped))
    await wait_for(lambda: c.stats.datagrams == sent)
    await asyncio.sleep(0.1)
    c.flush()
    assert ds.state.get(STATS_PATH)["lost"] == 3
    rows = ds.state.entries(CONNECTIONS_PATH)
    assert {k[1] for k in rows if k[6] == 6} == {1, 4096}
    # config still reaches the workers: with 8472 dropped, Flannel's traffic is plain UDP
    await set_config(ds, SFLOW, {"vxlan-port": [4789]})
    await asyncio.sleep(0.3)
    sent2 = send_all(c.port, (with_sequence(p, 1000 + i) for i, p in enumerate(payloads)))
    await wait_for(lambda: c.stats.datagrams == sent + sent2)
    await asyncio.sleep(0.1)
    c.flush()
    assert any(k[5] == 8472 and k[6] == 17 for k in ds.state.entries(CONNECTIONS_PATH))


async def test_a_dead_worker_is_restarted(ds, collector_factory):
    import os
    import signal

    c = await collector_factory(workers=2)
    victim = c.worker_pids[0]
    os.kill(victim, signal.SIGKILL)  # a worker this test's collector started
    await wait_for(lambda: c.worker_restarts == 1 and victim not in c.worker_pids and all(c.worker_pids), 15)
    sample = flow_sample(tcp_frame("10.0.0.1", "10.0.0.2", 40000, 80, SYN))
    for i in range(40):  # from 40 source ports: both workers get some
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(datagram([sample], seq=1, agent=f"192.0.2.{i + 1}"), ("127.0.0.1", c.port))
    await wait_for(lambda: c.stats.datagrams == 40)


async def test_port_in_use_fails_start_cleanly(ds, collector_factory):
    first = await collector_factory()
    second = FlowPipeline(ds, f"127.0.0.1:{first.port}")
    with pytest.raises(OSError):
        await second.start()
    listeners = ds.feed.listener_count
    await set_config(ds, SETTINGS, {"enable": True})
    assert second.table.enabled is False and ds.feed.listener_count == listeners
