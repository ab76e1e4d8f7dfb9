"""Benchmark: connection tracker updates/s beside a plain dict-increment loop (the ceiling).

Two sample sets, as compact tracker samples (what the collector hands the tracker):

* ``capture``   every flow sample of the shared pmacct capture (VXLAN, 18 connections), repeated;
* ``synthetic`` N distinct TCP connections, each SYN, SYN-ACK, ACK, 6 data packets, FIN, FIN
                (interleaved), so the table grows to N entries and every state transition runs.

For each set: the ceiling loop (build the 5-tuple key, ``d[k] = d.get(k, 0) + rate``), the tracker's
``observe`` (direction normalisation, TCP state, counters, LRU order), and the datastore write of the
changed rows (``ConnectionTable.flush``: row building and one ``ds.state.batch()``).

Usage: python benchmarks/conntrack.py [--connections 50000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collectors.conntrack.tracker import ACK, FIN, PSH, SYN, ConnectionTracker  # noqa: E402
from collectors.sflow.decoder import decode_datagram  # noqa: E402
from collectors.sflow.pcap import iter_sflow_payloads  # noqa: E402
from collectors.sflow.producer import observations_from_datagram  # noqa: E402
from core.ports.flows import FlowObservation, make_observation  # noqa: E402

CAPTURE = REPO.parent / "shared" / "testdata" / "sflow" / "pmacct_sfprobe_vxlan8472_4789.pcap"


def capture_samples(copies: int) -> list[FlowObservation]:
    base = []
    for payload in iter_sflow_payloads(CAPTURE):
        base += observations_from_datagram(decode_datagram(payload), 0.0)
    out = []
    for i in range(copies):
        out += [make_observation(s[0] + i * 0.01, *s[1:]) for s in base]
    return out


def synthetic_samples(n: int) -> list[FlowObservation]:
    """n connections, 11 packets each, interleaved in rounds (all SYNs, then all SYN-ACKs, ...)."""
    steps = [(True, SYN), (False, SYN | ACK), (True, ACK)] + [(True, PSH | ACK), (False, ACK)] * 3 + \
        [(True, FIN | ACK), (False, FIN | ACK)]
    out = []
    t = 1000.0
    for fwd, flags in steps:
        for i in range(n):
            client = f"10.244.{(i >> 8) & 255}.{i & 255}"
            server = f"10.245.{(i >> 12) & 15}.{(i >> 4) & 255}"
            cport, sport = 32768 + i % 28000, 8080
            t += 0.00001
            if fwd:
                out.append(make_observation(t, "10.99.0.1", 1, 200, 0, 1, "vxlan", client, server, 6, cport, sport,
                                            flags))
            else:
                out.append(make_observation(t, "10.99.0.1", 1, 200, 0, 1, "vxlan", server, client, 6, sport, cport,
                                            flags))
    return out


def ceiling(samples: list[FlowObservation]) -> float:
    d: dict = {}
    start = time.process_time()
    for s in samples:
        key = (s[4], s[5], s[9], s[7], s[10], s[8], s[11])
        d[key] = d.get(key, 0) + s[2]
    return time.process_time() - start


def tracker_run(samples: list[FlowObservation], max_connections: int) -> tuple[float, ConnectionTracker]:
    tr = ConnectionTracker(max_connections=max_connections, idle_timeout=1e9)
    observe = tr.observe
    start = time.process_time()
    for s in samples:
        observe(s)
    return time.process_time() - start, tr


async def publish_run(samples: list[FlowObservation], max_connections: int) -> tuple[float, int]:
    from core.datastore import Datastore
    from collectors.conntrack.table import ConnectionTable
    from fabric_sync.embedded import EmbeddedFabricStore

    tmp = Path(tempfile.mkdtemp(prefix="kf-bench-"))
    ds = Datastore("bench", tmp, EmbeddedFabricStore(tmp, "bench"))
    await ds.start()
    await ds.propose(lambda t: {**t, "kubefabric-connection:connection-stats-settings": {
        "enable": True, "max-connections": min(max_connections, 10_000_000), "idle-timeout": 86400}},
        user="bench", face="bench")
    table = ConnectionTable(ds.state, ds, ds.feed, max_rows_per_flush=10_000_000)
    table.configure(ds.config.full)
    events = []
    ds.feed.subscribe(events.append)  # one listener, as a face would hold
    table.observe(samples)
    now = samples[-1][0]
    start = time.process_time()
    written = table.flush(now)
    elapsed = time.process_time() - start
    await ds.stop()
    return elapsed, written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3, help="best of N")
    args = ap.parse_args()
    sets = {"synthetic": synthetic_samples(args.connections)}
    if CAPTURE.exists():
        sets["capture"] = capture_samples(100)
    print(f"CPU seconds by time.process_time(), best of {args.repeat}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'set':<10} {'samples':>9} {'conns':>7} {'ceiling/s':>11} {'tracker/s':>11} {'ratio':>6} "
          f"{'rows written/s':>15}")
    for name, samples in sets.items():
        c = min(ceiling(samples) for _ in range(args.repeat))
        runs = [tracker_run(samples, 10 * args.connections) for _ in range(args.repeat)]
        t = min(r[0] for r in runs)
        conns = len(runs[0][1])
        p, written = min(asyncio.run(publish_run(samples, 10 * args.connections)) for _ in range(args.repeat))
        rows = f"{written / p:>15,.0f}" if written >= 1000 else f"{'(too few rows)':>15}"
        print(f"{name:<10} {len(samples):>9} {conns:>7} {len(samples) / c:>11,.0f} {len(samples) / t:>11,.0f} "
              f"{c / t:>6.2f} {rows}")
    tr = runs[0][1]
    print(f"tracker counters (last set): {tr.stats()}")


if __name__ == "__main__":
    main()
