"""Kubernetes collector at scale: initial sync, event latency, memory per pod, time-machine queries.

    .venv/bin/python -m benchmarks.k8s_scale [--pods 10000] [--events 500] [--records 1000000]

Everything runs in this process over loopback: the fake API server
(sim/k8s_apiserver.py, real wire protocol), kubernetes_asyncio as the
client, the agent's real Datastore, and the HistoryStore on disk.  Each
figure is printed with its target and a peer or ceiling measured in the
same run:

* initial sync of N pods (manager start -> status connected with N vPorts),
  beside the raw client's own paginated list of the same pods, with and
  without the generated-model deserialization most users get;
* watch event -> datastore change-feed latency, p50/p99 (events paced so
  the figure is latency, not queueing), beside the fake server's own
  write-to-socket time as the floor;
* memory per pod (tracemalloc, manager + datastore rows + history buffers
  after a full sync), beside the raw Pod JSON size per pod;
* time-machine queries over 1,000,000 history records (pod_at,
  service_backends, vports_at, changes over a minute), beside the same
  point query with the indexes disabled (NOT INDEXED).
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from core.datastore import Datastore
from core.history.store import HistoryStore
from collectors.k8s.manager import K8sManager
from fabric_sync.embedded import EmbeddedFabricStore

K8S = "kubefabric-k8s:k8s"
STATE = "/kubefabric-k8s:k8s/connection/state"
VPORT = "/kubefabric-vport:vports/vport"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def line(name: str, value: str, target: str, peer: str) -> None:
    print(f"  {name:<44} {value:>14}   target {target:<12} {peer}")


async def start_stack(tmp: Path, srv, name: str = "bench"):
    ds = Datastore("leaf1", tmp / f"ds-{name}", EmbeddedFabricStore(tmp / f"ds-{name}", "leaf1"))
    await ds.start()
    history = HistoryStore(tmp / f"k8s-{name}" / "history.sqlite3")
    ds.history.attach(history)
    manager = K8sManager(ds.state, ds, history, ds.node_name, tmp / f"k8s-{name}")
    await manager.start()
    return ds, manager


async def connect(ds: Datastore, kubeconfig: Path, cluster: str, pods: int, timeout: float = 120) -> float:
    def add(tree):
        tree.setdefault(K8S, {}).setdefault("connection", []).append(
            {"cluster-name": cluster, "kube-config": str(kubeconfig), "create-vport": True})
        return tree

    start = time.perf_counter()
    await ds.propose(add, user="bench", face="bench")
    while True:
        state = ds.state.get(STATE, (cluster,)) or {}
        if state.get("status") == "connected" and len(ds.state.entries(VPORT)) >= pods:
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"sync did not finish: {state}")
        await asyncio.sleep(0.005)


async def raw_client_list(kubeconfig: Path, deserialize: bool) -> float:
    from kubernetes_asyncio import client, config

    api = await config.new_client_from_config(config_file=str(kubeconfig))
    try:
        core = client.CoreV1Api(api)
        start = time.perf_counter()
        token, count = None, 0
        while True:
            if deserialize:
                page = await core.list_pod_for_all_namespaces(limit=500, _continue=token)
                count += len(page.items)
                token = page.metadata._continue
            else:
                resp = await core.list_pod_for_all_namespaces(limit=500, _continue=token, _preload_content=False)
                doc = json.loads(await resp.read())
                count += len(doc["items"])
                token = doc["metadata"].get("continue")
            if not token:
                return time.perf_counter() - start
    finally:
        await api.close()


class ServerProcess:
    """The fake API server in its own process, as a real API server would be."""

    def __init__(self, tmp: Path, name: str, pods: int) -> None:
        self.kubeconfig = tmp / f"kc-{name}"
        self.args = [sys.executable, "-m", "sim.k8s_apiserver", "--port", "0", "--scenario", "flannel-vxlan",
                     "--pods", str(pods), "--kubeconfig", str(self.kubeconfig), "--cluster-name", name]
        self.proc = None
        self.url = ""

    async def __aenter__(self) -> "ServerProcess":
        self.proc = await asyncio.create_subprocess_exec(*self.args, stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.DEVNULL)
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 300)).decode()
        self.url = line.split(" at ")[1].split(";")[0].strip()
        return self

    async def __aexit__(self, *exc) -> None:
        self.proc.terminate()
        await self.proc.wait()


async def bench_sync(tmp: Path, pods: int) -> dict:
    async with ServerProcess(tmp, "sync", pods) as srv:
        raw_json = await raw_client_list(srv.kubeconfig, deserialize=False)
        raw_models = await raw_client_list(srv.kubeconfig, deserialize=True)
        ds, manager = await start_stack(tmp, None, "sync")
        try:
            sync = await connect(ds, srv.kubeconfig, "sync", pods)
        finally:
            await manager.stop()
            await ds.stop()
    return {"sync": sync, "raw_models": raw_models, "raw_json": raw_json}


async def bench_latency(tmp: Path, pods: int, events: int) -> dict:
    import aiohttp
    import yaml

    async with ServerProcess(tmp, "lat", pods) as srv:
        token = yaml.safe_load(srv.kubeconfig.read_text())["users"][0]["user"]["token"]
        ds, manager = await start_stack(tmp, None, "lat")
        try:
            await connect(ds, srv.kubeconfig, "lat", pods)
            arrivals: dict[tuple, float] = {}

            def on_batch(batch) -> None:
                now = time.perf_counter()
                for change in batch:
                    if change.path == VPORT and change.key not in arrivals:
                        arrivals[change.key] = now

            ds.feed.subscribe(on_batch)
            latencies, floor = [], []
            headers = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession(headers=headers) as http:
                for i in range(events):
                    octet = 10 + i % 240
                    ip = f"10.244.250.{octet}" if i < 240 else f"10.244.{251 + i // 240}.{octet}"
                    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"lat-{i:05d}", "namespace": "default",
                            "labels": {"app": "latency"}},
                            "spec": {"nodeName": "worker-001", "containers": [{"name": "c", "image": "busybox"}]},
                            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                                       "hostIP": "192.168.100.10"}}
                    start = time.perf_counter()
                    async with http.post(f"{srv.url}/api/v1/namespaces/default/pods", json=body) as resp:
                        assert resp.status == 201, await resp.text()
                    floor.append(time.perf_counter() - start)
                    while (ip,) not in arrivals:
                        await asyncio.sleep(0.0005)
                        if time.perf_counter() - start > 5:
                            raise RuntimeError("event never reached the datastore")
                    latencies.append(arrivals[(ip,)] - start)
                    await asyncio.sleep(0.005)     # paced: measure latency, not queueing
        finally:
            await manager.stop()
            await ds.stop()
    return {"p50": pct(latencies, 50), "p99": pct(latencies, 99), "max": max(latencies),
            "floor_p50": pct(floor, 50)}


async def bench_memory(tmp: Path, pods: int) -> dict:
    async with ServerProcess(tmp, "mem", pods) as srv:
        kc = srv.kubeconfig
        ds = Datastore("leaf1", tmp / "ds-mem", EmbeddedFabricStore(tmp / "ds-mem", "leaf1"))
        await ds.start()
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.take_snapshot()
        history = HistoryStore(tmp / "k8s-mem" / "history.sqlite3")
        manager = K8sManager(ds.state, ds, history, ds.node_name, tmp / "k8s-mem")
        await manager.start()
        try:
            await connect(ds, kc, "mem", pods, timeout=300)
            history.flush()
            await asyncio.sleep(0.5)
            gc.collect()
            snap = tracemalloc.take_snapshot()
            stats = snap.compare_to(base, "filename")
            grown = sum(s.size_diff for s in stats)
            top = sorted(stats, key=lambda s: -s.size_diff)[:5]
        finally:
            tracemalloc.stop()
            await manager.stop()
            history.close()
            await ds.stop()
        from kubernetes_asyncio import client, config
        api = await config.new_client_from_config(config_file=str(kc))
        resp = await client.CoreV1Api(api).list_pod_for_all_namespaces(limit=pods, _preload_content=False)
        raw = len(await resp.read()) / pods
        await api.close()
    return {"per_pod": grown / pods, "raw_json": raw,
            "top": [(s.traceback[0].filename.rsplit("/", 2)[-1], s.size_diff / pods) for s in top]}


def bench_history(tmp: Path, records: int, queries: int = 300) -> dict:
    rng = random.Random(7)
    h = HistoryStore(tmp / "history-bench.sqlite3", retention_days=30)
    now = time.time()
    span = 30 * 86400.0
    t0 = now - span
    ips = [f"10.244.{i // 256}.{i % 256}" for i in range(65536)]
    services = [(f"ns{i % 5}", f"svc{i}") for i in range(50)]
    mean_life = 9 * 3600.0   # ~5,000 vPorts alive at any time with this churn

    def gen():
        """Compact (kind, ip, name, ns, svc, start, end) tuples; loaded in time order as the agent writes them."""
        cursor = {ip: t0 + rng.random() * mean_life for ip in ips}
        produced = 0
        while produced < records:
            ip = rng.choice(ips)
            start = cursor[ip]
            if start >= now:
                continue
            end = start + rng.expovariate(1 / mean_life)
            cursor[ip] = end + rng.expovariate(1 / (mean_life * 12))
            name = f"app-{rng.randrange(500)}-{rng.randrange(1 << 30):08x}"
            ns, svc = rng.choice(services)
            end_v = None if end >= now else end
            yield ("pod", ip, name, ns, svc, start, end_v)
            yield ("vport", ip, name, ns, svc, start, end_v)
            produced += 2
            if rng.random() < 0.5:
                yield ("member", ip, name, ns, svc, start, end_v)
                produced += 1

    def record(t):
        kind, ip, name, ns, svc, start, end_v = t
        if kind == "pod":
            return ("pod", "bench", ip, name, {"namespace": ns, "name": name, "uid": name, "node": "w1",
                                               "phase": "Running", "labels": f"app:{svc}", "host-network": False,
                                               "node-ip": "192.168.100.10"}, start, end_v)
        if kind == "vport":
            return ("vport", "bench", ip, "", {"ip": ip, "owner": "leaf1", "mac": "88:88:88:00:00:01", "vlan": 4090,
                                               "svc-name": "bench", "hostname": "w1", "entity": name,
                                               "power": "Running", "portgroup": f"app:{svc}",
                                               "status": "host,pod,k8s", "namespace": ns}, start, end_v)
        return ("member", "bench", f"{ns}/{svc}", f"{ns}/{name}@{ip}", {"pod": name, "ip": ip, "node": "w1"},
                start, end_v)

    load_start = time.perf_counter()
    compact = sorted(gen(), key=lambda t: t[5])
    for i in range(0, len(compact), 50_000):
        h.bulk_load(record(t) for t in compact[i:i + 50_000])
    del compact
    load = time.perf_counter() - load_start
    total = h.count()

    def timed(fn, n=queries):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return pct(times, 50), pct(times, 99)

    def rand_t():
        return t0 + mean_life + rng.random() * (span - 2 * mean_life)

    sizes = []
    out = {"records": total, "load": load}
    out["pod_at"] = timed(lambda: h.pod_at(rng.choice(ips), rand_t()))
    ns_svc = services
    out["service_backends"] = timed(lambda: h.service_backends("bench", *rng.choice(ns_svc), rand_t()))
    out["vports_at"] = timed(lambda: sizes.append(len(h.rows_at(VPORT, rand_t()))), n=60)
    out["vports_rows"] = statistics.mean(sizes)
    texts = [json.dumps(row.values, separators=(",", ":")) for row in h.rows_at(VPORT, rand_t())]
    per_row = timed(lambda: json.loads("[" + ",".join(texts) + "]"), n=20)[0] / max(1, len(texts))
    out["decode_floor"] = per_row * out["vports_rows"]     # the ceiling: just turning that many rows into dicts

    def window():
        t = rand_t()
        return h.changes(t, t + 60)

    out["changes_60s"] = timed(window)
    db = h._db   # the peer: the same point query without its index

    def unindexed():
        ip, t = rng.choice(ips), rand_t()
        db.execute("SELECT data FROM record NOT INDEXED WHERE kind='pod' AND key=? AND valid_from <= ? "
                   "AND valid_to > ?", (ip, t, t)).fetchall()

    out["scan"] = timed(unindexed, n=5)
    h.close()
    return out


async def main_async(args) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="kubefabric-k8s-bench-"))
    print(f"kubefabric Kubernetes collector benchmark ({sys.version.split()[0]}, data in {tmp})")
    ok = True
    parts = [args.only] if args.only else ["sync", "latency", "memory", "history"]
    if "sync" in parts:
        sync = await bench_sync(tmp, args.pods)
        print(f"\ninitial sync, {args.pods} pods (flannel-vxlan, {args.pods // 110 + 1} nodes, 12 services)")
        line("list+watch -> connected, all vPorts written", f"{sync['sync']:.2f} s", "<= 5 s",
             f"peer: raw client list {sync['raw_json']:.2f} s (JSON), {sync['raw_models']:.2f} s (V1Pod models)")
        ok &= sync["sync"] <= 5
    if "latency" in parts:
        lat = await bench_latency(tmp, args.pods, args.events)
        print(f"\nwatch event -> datastore change feed ({args.events} pod creations, paced)")
        line("latency p50", f"{lat['p50'] * 1000:.2f} ms", "",
             f"floor: the POST that creates the pod {lat['floor_p50'] * 1000:.2f} ms")
        line("latency p99", f"{lat['p99'] * 1000:.2f} ms", "<= 100 ms", f"max {lat['max'] * 1000:.1f} ms")
        ok &= lat["p99"] <= 0.1
    if "memory" in parts:
        mem = await bench_memory(tmp, args.pods)
        print(f"\nmemory, {args.pods} pods synced (tracemalloc: collector + datastore rows + history buffers)")
        line("per pod", f"{mem['per_pod'] / 1024:.2f} KB", "<= 2 KB",
             f"peer: raw Pod JSON {mem['raw_json'] / 1024:.2f} KB/pod")
        print("    largest: " + ", ".join(f"{f} {b:.0f} B" for f, b in mem["top"]))
        ok &= mem["per_pod"] <= 2048
    if "history" in parts:
        ok &= report_history(bench_history(tmp, args.records)) == 0
    print("\nall targets met" if ok else "\nsome targets missed")
    return 0 if ok else 1


def report_history(hist: dict) -> int:
    print(f"\ntime machine over {hist['records']:,} records (SQLite, loaded in {hist['load']:.1f} s)")
    line("pod_at(ip, t) p50 / p99", f"{hist['pod_at'][0] * 1000:.2f} / {hist['pod_at'][1] * 1000:.2f} ms", "<= 20 ms",
         f"peer: same query NOT INDEXED {hist['scan'][0] * 1000:.0f} ms")
    line("service_backends(svc, t) p50 / p99",
         f"{hist['service_backends'][0] * 1000:.2f} / {hist['service_backends'][1] * 1000:.2f} ms", "<= 20 ms", "")
    line(f"vports_at(t) p50 / p99 ({hist['vports_rows']:.0f} rows)",
         f"{hist['vports_at'][0] * 1000:.1f} / {hist['vports_at'][1] * 1000:.1f} ms", "<= 20 ms",
         f"floor: decoding {hist['vports_rows']:.0f} rows alone {hist['decode_floor'] * 1000:.1f} ms")
    line("changes(t, t+60 s) p50 / p99",
         f"{hist['changes_60s'][0] * 1000:.2f} / {hist['changes_60s'][1] * 1000:.2f} ms", "<= 20 ms", "")
    missed = [name for name in ("pod_at", "service_backends", "vports_at", "changes_60s") if hist[name][1] > 0.02]
    if missed:
        print("  p99 over 20 ms: " + ", ".join(missed))
    return 1 if missed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["sync", "latency", "memory", "history"], help="run one part")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
