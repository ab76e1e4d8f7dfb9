"""gNMI Subscribe fan-out: burst throughput, ON_CHANGE latency, and the transport ceiling.

    .venv/bin/python benchmarks/gnmi_subscribe.py [--entries 10000] [--rounds 5] [--seconds 5]

Two processes so client and server do not share a GIL: the server process
runs a real Datastore + GnmiServer on loopback (plus a control service that
writes state on request, and a "ceiling" service on the same grpc.aio
server that streams pre-built, pre-serialized notifications of the same
shape); this process is one subscriber using a raw grpc client on
pygnmi's gNMI stubs (pygnmi's own parsing tops out near 13,000 msgs/s).

Figures:
- burst: one subscriber, ON_CHANGE on /vports/vport holding N entries;
  the server changes every entry in one batch; updates/s from the moment
  the writes start to the receipt of the last Update (JSON_IETF: one
  Update per entry; PROTO: one per changed leaf); also from the moment
  the datastore publishes the batch (the gNMI face's own share);
- ceiling: the same server streams notifications with the same Updates,
  pre-built; updates/s from its first write to the last receipt;
- latency: 1,000 changes/s for --seconds; each change carries its write
  time, the client subtracts it from its receipt time (p50/p99).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
from pygnmi.spec.v080 import gnmi_pb2, gnmi_pb2_grpc  # noqa: E402

VPORT = "/kubefabric-vport:vports/vport"
METADATA = [("username", "bench"), ("password", "bench")]


def ip(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def row(i: int) -> dict:
    return {"owner": "leaf1", "mac": "00:00:0a:00:00:01", "vlan": 4090, "svc-name": "bench", "hostname": f"node{i % 8}",
            "entity": f"pod-{i}", "power": "Running", "portgroup": "app:web,tier:front", "status": "host,pod,k8s",
            "namespace": "default", "node-ip": "192.168.0.1", "host-network": False,
            "first-seen": "2026-11-22T10:00:00Z", "last-seen": "2026-11-22T10:00:00Z"}


# ---------------------------------------------------------------------------- server process

def serve(entries: int, gc_freeze: bool = False) -> None:
    from agent.auth import User
    from core.datastore import Datastore
    from agent.gnmi import encode
    from agent.gnmi.server import GnmiServer
    from fabric_sync.embedded import EmbeddedFabricStore

    class Auth:
        def authenticate(self, username, password):
            return User(username, "read-only")

    async def main() -> None:
        data = Path(tempfile.mkdtemp(prefix="kf-bench-"))
        ds = Datastore("bench", data, EmbeddedFabricStore(data, "bench"))
        await ds.start()
        with ds.state.batch():
            for i in range(entries):
                ds.state.upsert(VPORT, (ip(i),), row(i))
        info = ds.schema.nodes[VPORT]
        limits_max = 1000
        rounds = {"n": 0}

        def changed(i: int, r: int) -> dict:
            return {"power": "Pending" if r % 2 else "Running", "last-seen": f"2026-11-22T10:{r % 60:02d}:00Z"}

        async def burst(request: bytes, context) -> bytes:
            rounds["n"] += 1
            r = rounds["n"]
            published = []
            probe = lambda batch: published.append(time.time_ns())  # noqa: E731  (first listener: publish time)
            ds.feed._listeners.insert(0, probe)
            t0 = time.time_ns()
            with ds.state.batch():
                for i in range(entries):
                    ds.state.merge(VPORT, (ip(i),), changed(i, r))
            t1 = time.time_ns()
            ds.feed._listeners.remove(probe)
            return json.dumps({"t0": t0, "write_s": (t1 - t0) / 1e9, "publish_s": (published[0] - t0) / 1e9}).encode()

        async def rate(request: bytes, context) -> bytes:
            args = json.loads(request)
            per_s, seconds = args["rate"], args["seconds"]
            start = time.monotonic()
            n = 0
            total = int(per_s * seconds)
            while n < total:
                due = start + n / per_s
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = time.time_ns()
                ds.state.merge(VPORT, (ip(n % entries),), {"last-seen": str(now)}, ts=now)
                n += 1
            return json.dumps({"sent": n}).encode()

        prebuilt: dict[int, list[bytes]] = {}
        srv_box: dict = {}

        def build(bundle: int) -> None:
            for enc_id in (encode.JSON_IETF, encode.PROTO):
                enc = encode.Encoder(enc_id)
                items: list[bytes] = []
                for i in range(entries):
                    enc.node_updates(info, (ip(i),), changed(i, 1), items)
                prebuilt[enc_id] = [encode.subscribe_update(enc.notification(time.time_ns(), items[s:s + bundle]))
                                    for s in range(0, len(items), bundle)]

        async def set_bundle(request: bytes, context) -> bytes:
            bundle = json.loads(request)["bundle"]
            srv_box["srv"].limits.max_updates = bundle
            build(bundle)
            return b"{}"

        async def ceiling(request_iterator, context):
            first = await request_iterator.__anext__()
            enc_id = json.loads(first)["encoding"]
            t0 = time.time_ns()
            for msg in prebuilt[enc_id]:
                await context.write(msg)
            context.set_trailing_metadata((("t0", str(t0)),))

        ident = lambda b: b  # noqa: E731
        handlers = (
            grpc.method_handlers_generic_handler("bench.Control", {
                "Burst": grpc.unary_unary_rpc_method_handler(burst, ident, ident),
                "Rate": grpc.unary_unary_rpc_method_handler(rate, ident, ident),
                "Bundle": grpc.unary_unary_rpc_method_handler(set_bundle, ident, ident),
            }),
            grpc.method_handlers_generic_handler("bench.Ceiling", {
                "Subscribe": grpc.stream_stream_rpc_method_handler(ceiling, ident, ident),
            }),
        )
        srv = GnmiServer(ds, Auth(), addr="127.0.0.1:0", insecure=True, extra_handlers=handlers)
        if gc_freeze:
            import gc

            gc.freeze()
        srv_box["srv"] = srv
        srv.limits.max_updates = limits_max
        build(limits_max)
        await srv.start()
        print(json.dumps({"port": srv.bound_port}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
        print(json.dumps({"stats": srv.stats}), flush=True)
        await srv.stop(0.5)

    asyncio.run(main())


# ---------------------------------------------------------------------------- client

class Reader:
    """Counts Updates of a subscription in a thread and records receipt times."""

    def __init__(self, call, latency: bool = False) -> None:
        self.call = call
        self.count = 0
        self.last_recv = 0
        self.synced = threading.Event()
        self.target = None
        self.reached = threading.Event()
        self.latency = latency
        self.latencies: list[float] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for resp in self.call:
                now = time.time_ns()
                if resp.sync_response:
                    self.synced.set()
                    continue
                ups = resp.update.update
                if not self.synced.is_set():
                    continue
                self.count += len(ups)
                self.last_recv = now
                if self.latency:
                    for u in ups:
                        stamp = json.loads(u.val.json_ietf_val).get("kubefabric-vport:last-seen", "")
                        if stamp.isdigit():
                            self.latencies.append((now - int(stamp)) / 1e6)
                if self.target is not None and self.count >= self.target:
                    self.reached.set()
        except grpc.RpcError:
            pass


def subscribe(stub, encoding: int):
    req = gnmi_pb2.SubscribeRequest(subscribe=gnmi_pb2.SubscriptionList(
        mode=gnmi_pb2.SubscriptionList.STREAM, encoding=encoding,
        subscription=[gnmi_pb2.Subscription(
            path=gnmi_pb2.Path(elem=[gnmi_pb2.PathElem(name="vports"), gnmi_pb2.PathElem(name="vport")]),
            mode=gnmi_pb2.SubscriptionMode.Value("ON_CHANGE"))]))
    stop = threading.Event()

    def requests():
        yield req
        stop.wait()

    return stub.Subscribe(requests(), metadata=METADATA), stop


def run_bursts(channel, stub, encoding: int, entries: int, rounds: int) -> dict:
    burst = channel.unary_unary("/bench.Control/Burst")
    call, stop = subscribe(stub, encoding)
    reader = Reader(call)
    reader.synced.wait(60)
    per_entry = 1 if encoding == gnmi_pb2.Encoding.Value("JSON_IETF") else 2
    rates, face_rates, writes = [], [], []
    for round_no in range(rounds + 1):  # the first round warms up and is not counted
        reader.reached.clear()
        reader.target = reader.count + entries * per_entry
        t0 = json.loads(burst(b"{}"))
        if not reader.reached.wait(60):
            raise RuntimeError(f"burst not delivered: {reader.count}/{reader.target}")
        n = entries * per_entry
        if round_no == 0:
            continue
        rates.append(n / ((reader.last_recv - t0["t0"]) / 1e9))
        face_rates.append(n / ((reader.last_recv - t0["t0"] - t0["publish_s"] * 1e9) / 1e9))
        writes.append(t0["write_s"])
    stop.set()
    call.cancel()
    return {"updates_per_s": statistics.median(rates), "best": max(rates), "write_s": statistics.median(writes),
            "face_per_s": statistics.median(face_rates)}


def run_ceiling(channel, encoding: int, entries: int, rounds: int) -> float:
    per_entry = 1 if encoding == gnmi_pb2.Encoding.Value("JSON_IETF") else 2
    method = channel.stream_stream("/bench.Ceiling/Subscribe", request_serializer=lambda b: b,
                                   response_deserializer=gnmi_pb2.SubscribeResponse.FromString)
    rates = []
    for _ in range(rounds):
        call = method(iter([json.dumps({"encoding": encoding}).encode()]))
        count = 0
        last = 0
        for resp in call:
            count += len(resp.update.update)
            last = time.time_ns()
        t0 = int(dict(call.trailing_metadata())["t0"])
        assert count == entries * per_entry
        rates.append(count / ((last - t0) / 1e9))
    return statistics.median(rates)


def run_latency(channel, stub, seconds: float, per_s: int) -> dict:
    rate = channel.unary_unary("/bench.Control/Rate")
    call, stop = subscribe(stub, gnmi_pb2.Encoding.Value("JSON_IETF"))
    reader = Reader(call, latency=True)
    reader.synced.wait(60)
    sent = json.loads(rate(json.dumps({"rate": per_s, "seconds": seconds}).encode()))["sent"]
    time.sleep(0.5)
    stop.set()
    call.cancel()
    lat = sorted(reader.latencies)
    return {"sent": sent, "received": len(lat), "p50_ms": lat[len(lat) // 2], "p99_ms": lat[int(len(lat) * 0.99)],
            "max_ms": lat[-1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--bundles", default="1000,1",
                    help="Updates per Notification to measure (comma-separated; 1 disables bundling)")
    ap.add_argument("--only-latency", action="store_true", help="skip the bursts")
    ap.add_argument("--gc-freeze", action="store_true",
                    help="gc.freeze() in the server after loading the table (long-lived objects leave the GC's scans)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.entries, args.gc_freeze)
        return 0
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--entries", str(args.entries)]
                              + (["--gc-freeze"] if args.gc_freeze else []),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        port = json.loads(server.stdout.readline())["port"]
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)])
        stub = gnmi_pb2_grpc.gNMIStub(channel)
        print(f"gNMI Subscribe benchmark: {args.entries} vPorts, {args.rounds} bursts each, "
              f"{os.cpu_count()} CPUs, server and client in separate processes, "
              f"load average {os.getloadavg()[0]:.1f}" + (", gc.freeze()" if args.gc_freeze else ""))
        lat = run_latency(channel, stub, args.seconds, args.rate)
        print(f"  ON_CHANGE latency at {args.rate}/s for {args.seconds:.0f} s: p50 {lat['p50_ms']:.2f} ms  "
              f"p99 {lat['p99_ms']:.2f} ms  max {lat['max_ms']:.2f} ms  ({lat['received']}/{lat['sent']} received)")
        bundle_rpc = channel.unary_unary("/bench.Control/Bundle")
        for bundle in (int(b) for b in args.bundles.split(",") if not args.only_latency):
            bundle_rpc(json.dumps({"bundle": bundle}).encode())
            print(f" up to {bundle} Updates per Notification:")
            for name in ("JSON_IETF", "PROTO"):
                enc = gnmi_pb2.Encoding.Value(name)
                ours = run_bursts(channel, stub, enc, args.entries, args.rounds)
                ceiling = run_ceiling(channel, enc, args.entries, args.rounds)
                print(f"  burst {name:9s}: {ours['updates_per_s']:>9,.0f} updates/s end to end (best {ours['best']:,.0f}), "
                      f"{ours['face_per_s']:>9,.0f}/s from the feed's publish   ceiling {ceiling:>10,.0f} updates/s   "
                      f"ratio {ours['updates_per_s'] / ceiling:.2f}")
        bundle_rpc(json.dumps({"bundle": 1000}).encode())
        channel.close()
    finally:
        server.stdin.close()
        try:
            tail = server.stdout.read()
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            tail = ""
    for line in tail.splitlines():
        if line.startswith("{"):
            print(f"  server stats: {json.loads(line).get('stats')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
