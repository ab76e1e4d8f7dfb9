"""gNMI streams against a real agent: a subscriber that never reads, and subscribe/unsubscribe cycles.

The long runs (10,000 cycles; a longer flood) are benchmarks/soak_subscribe.py, see docs/hardening.md.
"""
from __future__ import annotations

import os
import re
import socket
import threading
import time
import urllib.request

import grpc
import pytest
from agent.gnmi_proto import gnmi_pb2

from agent.gnmi.paths import parse
from tests.agentproc import free_port
from tests.conntrack.sflowgen import ACK, datagram, flow_sample, tcp_frame
from tests.hardening.helpers import Gnmi, rss_kib, wait_for

CYCLES = int(os.environ.get("SOAK_CYCLES", "2000"))


@pytest.fixture
def sflow_agent(agent_factory):
    sflow_port, metrics_port = free_port(socket.SOCK_DGRAM), free_port()
    agent = agent_factory(extra_args=["--sflow-addr", f"127.0.0.1:{sflow_port}",
                                      "--metrics-addr", f"127.0.0.1:{metrics_port}"])
    agent.sflow_port, agent.metrics_port = sflow_port, metrics_port
    return agent


def gnmi_sessions(agent) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(r'kubefabric_face_sessions\{face="gNMI"\} ([0-9.e+]+)', text)
    return float(m.group(1)) if m else -1.0


def flood(port: int, connections: int, rounds: int, seq0: int = 0) -> int:
    """`rounds` passes over `connections` fixed TCP flows (10 samples a datagram); returns the last sequence."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    seq = seq0
    try:
        for r in range(rounds):
            batch = []
            for c in range(connections):
                frame = tcp_frame(f"10.1.{c >> 8}.{c & 255}", "10.2.0.1", 30000 + c, 443, ACK, data=100)
                batch.append(flow_sample(frame, seq=seq * 10 + len(batch) + 1))
                if len(batch) == 10:
                    seq += 1
                    sock.sendto(datagram(batch, seq=seq), ("127.0.0.1", port))
                    batch = []
                    if seq % 50 == 0:
                        time.sleep(0.002)  # stay below the loopback socket buffer
    finally:
        sock.close()
    return seq


def _stream(gc: Gnmi, path: str, stop: threading.Event):
    req = gnmi_pb2.SubscribeRequest(subscribe=gnmi_pb2.SubscriptionList(
        mode=gnmi_pb2.SubscriptionList.STREAM, encoding=gnmi_pb2.JSON_IETF,
        subscription=[gnmi_pb2.Subscription(path=parse(path), mode=gnmi_pb2.ON_CHANGE)]))

    def requests():
        yield req
        stop.wait(120)

    return gc.stub.Subscribe(requests(), metadata=gc.metadata)


def test_subscriber_that_never_reads_keeps_memory_bounded_and_others_served(sflow_agent):
    agent = sflow_agent
    stop = threading.Event()
    with Gnmi(agent) as gc:
        gc.set("/kubefabric-connection:connection-stats-settings", {"enable": True, "max-connections": 10000})
        stalled = _stream(gc, "/connections", stop)  # opened, never read
        reader_updates = []

        def reader():
            try:
                for resp in _stream(gc, "/connections/connection", stop):
                    if resp.HasField("update"):
                        reader_updates.append((time.monotonic(), len(resp.update.update)))
            except grpc.RpcError:  # cancelled at the end of the test
                pass

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        n = 2000
        seq = flood(agent.sflow_port, n, 5)  # warm-up: the table holds the n connections
        wait_for(lambda: sum(u for _, u in reader_updates) >= n, 20, what="reader saw the connections")
        time.sleep(1.0)
        warm = rss_kib(agent.proc.pid)
        for _ in range(6):  # every round changes every row's counters: the stalled queue can only coalesce
            seq = flood(agent.sflow_port, n, 5, seq)
        time.sleep(1.0)
        after = rss_kib(agent.proc.pid)
        # another subscriber keeps up: it sees a config change at once, in the middle of the backlog
        t0 = time.monotonic()
        count = len(reader_updates)
        flood(agent.sflow_port, n, 1, seq)
        wait_for(lambda: len(reader_updates) > count, 5, what="reader still served")
        latency = reader_updates[count][0] - t0
        stop.set()
        stalled.cancel()
        print(f"stalled subscriber: agent RSS {warm / 1024:.0f} MiB after warm-up, {after / 1024:.0f} MiB after "
              f"{6 * 5 * n:,} more row changes; other subscriber's next update after {latency * 1000:.0f} ms")
        assert after - warm < 40 * 1024, (warm, after)
        assert latency < 3.0
        assert agent.proc.poll() is None


def test_subscribe_unsubscribe_cycles_leak_nothing(sflow_agent):
    agent = sflow_agent
    with Gnmi(agent) as gc:
        for _ in range(50):  # warm-up: caches, grpc pools
            gc.subscribe_once_cycle("/fabric")
        time.sleep(0.5)
        before = rss_kib(agent.proc.pid)
        t0 = time.monotonic()
        for _ in range(CYCLES):
            assert gc.subscribe_once_cycle("/fabric") >= 2
        elapsed = time.monotonic() - t0
        wait_for(lambda: gnmi_sessions(agent) == 0, 10, what="sessions back to 0")
        time.sleep(0.5)
        after = rss_kib(agent.proc.pid)
    print(f"{CYCLES} subscribe/unsubscribe cycles in {elapsed:.1f} s: agent RSS {before} -> {after} KiB "
          f"({(after - before) / CYCLES * 1024:.0f} bytes/cycle)")
    assert after - before < max(4096, CYCLES // 2), (before, after)
