"""Benchmark: the sFlow collector at a paced rate on loopback, beside a bare receiver (the ceiling).

A sender in a separate process replays the shared pmacct capture
(pmacct_sfprobe_vxlan8472_4789.pcap: 1210-byte datagrams, ~6 VXLAN flow
samples each) at ``--rate`` datagrams/s for ``--duration`` seconds, as
``--exporters`` switches (8 by default: each its own socket, agent address
and sequence numbers 1, 2, 3 ...; SO_REUSEPORT spreads exporters, not
datagrams, over worker processes), so loss shows up both as the
collector's own sequence-gap count and as sent minus received.
The sender paces in 5 ms slices and never bursts to catch up after being
descheduled (it falls behind instead: ``send/s`` shows the rate it really
offered), so a loss is the receiver's, not a flood of the sender's making.

Runs, one after the other, on the same load:

* ``bare``      an asyncio DatagramProtocol that only counts datagrams (the ceiling:
                what receiving alone costs in Python);
* ``collector`` SflowCollector (decode, per-exporter statistics, datastore flushes), with
                connection tracking on (``--no-track`` to turn it off), ``--workers`` processes.

For each: datagrams sent / received, lost by sequence numbers, achieved
rate, and the receiver's CPU (user+system of the process and its workers
over the run, as a percentage of one core, and per datagram received).
The machine's load average is printed beside: on shared cores a receiver
that is not given the CPU it needs loses datagrams whatever its cost; run
under ``nice -n -10`` to measure the collector rather than the neighbours.

Then a drain measurement, free of scheduling: ``--drain`` datagrams are
queued in the receiver's socket buffer first and then read flat out, and the
CPU time per datagram gives the rate one core can carry (bare read vs the
collector's read + decode + statistics + tracking).

Usage: python benchmarks/sflow_collector.py [--duration 60] [--rate 20000] [--workers 1] [--exporters 8]
                                            [--no-track] [--only bare|collector|drain] [--drain 10000]
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CAPTURE = REPO.parent / "shared" / "testdata" / "sflow" / "pmacct_sfprobe_vxlan8472_4789.pcap"


# ---------------------------------------------------------------------- sender
def _sender(port: int, rate: int, duration: float, exporters: int, go, done) -> None:
    from collectors.sflow.pcap import iter_sflow_payloads

    templates = [bytearray(p) for p in iter_sflow_payloads(CAPTURE)]
    total = int(rate * duration)
    socks = []
    for i in range(exporters):  # one socket (source port) and agent address per exporter, as switches would
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", port))
        socks.append((sock.send, socket.inet_aton(f"10.99.{i // 250}.{i % 250 + 1}")))
    seqs = [0] * exporters
    pack = struct.Struct(">I").pack_into
    n = len(templates)
    go.wait()
    start = time.perf_counter()
    seq = 0
    burst = max(1, rate // 200)  # at most 5 ms worth at once, as a paced exporter
    while seq < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        if due <= seq:
            time.sleep(0.0005)
            continue
        if due - seq > burst:  # we were descheduled: do not flood to catch up, fall behind instead
            start += (due - seq - burst) / rate
            due = seq + burst
        while seq < due:
            buf = templates[seq % n]
            index = seq % exporters
            send, agent = socks[index]
            seq += 1
            seqs[index] += 1
            buf[12:16] = agent
            pack(buf, 16, seqs[index])
            try:
                send(buf)
            except OSError:
                pass  # ENOBUFS: counted as loss by the receiver
    done.put((seq, time.perf_counter() - start))


def _proc_cpu(pid: int) -> float:
    """User+system seconds of a process from /proc (workers are children we do not wait for)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ---------------------------------------------------------------------- receivers
class _Counter(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.count = 0

    def datagram_received(self, data, addr) -> None:
        self.count += 1


async def _run(kind: str, args) -> dict:
    loop = asyncio.get_running_loop()
    ctx = multiprocessing.get_context("spawn")
    if kind == "bare":
        from collectors.sflow.workers import bind_udp

        sock = bind_udp("127.0.0.1", 0)
        transport, proto = await loop.create_datagram_endpoint(_Counter, sock=sock)
        port = sock.getsockname()[1]
        received = lambda: proto.count  # noqa: E731
        lost = lambda: None  # noqa: E731
        pids: list[int] = []
    else:
        from core.datastore import Datastore
        from collectors.conntrack.table import ConnectionTable
        from collectors.sflow.collector import SflowCollector
        from fabric_sync.embedded import EmbeddedFabricStore

        tmp = Path(tempfile.mkdtemp(prefix="kf-bench-"))
        ds = Datastore("bench", tmp, EmbeddedFabricStore(tmp, "bench"))
        await ds.start()
        if args.track:
            await ds.propose(lambda t: {**t, "kubefabric-connection:connection-stats-settings": {"enable": True}},
                             user="bench", face="bench")
        table = ConnectionTable(ds.state, ds, ds.feed)
        await table.start()
        collector = SflowCollector(ds.state, ds, ds.feed, table, "127.0.0.1:0", workers=args.workers)
        await collector.start()
        port = collector.port
        received = lambda: collector.stats.datagrams  # noqa: E731
        lost = lambda: collector.stats.lost  # noqa: E731
        pids = collector.worker_pids

    go, done = ctx.Event(), ctx.Queue()
    sender = ctx.Process(target=_sender, args=(port, args.rate, args.duration, args.exporters, go, done), daemon=True)
    sender.start()
    await asyncio.sleep(1.0)  # let the sender import and build its datagrams
    cpu0 = _self_cpu() + sum(_proc_cpu(p) for p in pids)
    t0 = time.perf_counter()
    go.set()
    while sender.is_alive():
        await asyncio.sleep(0.1)
    sent, send_time = done.get()
    deadline = time.perf_counter() + 5
    while received() < sent and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    elapsed = time.perf_counter() - t0
    cpu = _self_cpu() + sum(_proc_cpu(p) for p in pids) - cpu0
    result = {"kind": kind, "sent": sent, "send_rate": sent / send_time, "received": received(), "lost_by_sequence": lost(),
              "rate": received() / send_time, "send_time": send_time, "cpu_percent": 100 * cpu / elapsed,
              "cpu_us": 1e6 * cpu / max(1, received())}
    if kind == "bare":
        transport.close()
    else:
        result["tracker"] = table.tracker.stats().as_leaves() if args.track else None
        await collector.stop()
        await table.stop()
        await ds.stop()
    return result


async def _drain(kind: str, n: int, track: bool) -> float:
    """CPU microseconds per datagram to read (and for the collector, process) ``n`` datagrams already
    queued in the socket buffer: the receiver's own cost, without the waiting a loaded machine adds."""
    from collectors.sflow.pcap import iter_sflow_payloads
    from collectors.sflow.workers import bind_udp

    templates = [bytearray(p) for p in iter_sflow_payloads(CAPTURE)]
    collector = ds = table = None
    if kind == "bare":
        sock = bind_udp("127.0.0.1", 0)
        port = sock.getsockname()[1]
    else:
        from core.datastore import Datastore
        from collectors.conntrack.table import ConnectionTable
        from collectors.sflow.collector import SflowCollector
        from fabric_sync.embedded import EmbeddedFabricStore

        tmp = Path(tempfile.mkdtemp(prefix="kf-bench-"))
        ds = Datastore("bench", tmp, EmbeddedFabricStore(tmp, "bench"))
        await ds.start()
        if track:
            await ds.propose(lambda t: {**t, "kubefabric-connection:connection-stats-settings": {"enable": True}},
                             user="bench", face="bench")
        table = ConnectionTable(ds.state, ds, ds.feed)
        await table.start()
        collector = SflowCollector(ds.state, ds, ds.feed, table, "127.0.0.1:0")
        await collector.start()
        sock = collector._sock
        asyncio.get_running_loop().remove_reader(sock.fileno())  # we drive the reads below
        collector._reading = False
        port = collector.port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        for seq in range(1, n + 1):
            buf = templates[seq % len(templates)]
            struct.pack_into(">I", buf, 16, seq)
            out.sendto(buf, ("127.0.0.1", port))
    start = time.process_time()
    if kind == "bare":
        count = 0
        recv = sock.recv
        while count < n:
            try:
                recv(65535)
            except BlockingIOError:
                break
            count += 1
    else:
        while collector.stats.datagrams < n:
            before = collector.stats.datagrams
            collector._readable()
            if collector.stats.datagrams == before:
                break
        count = collector.stats.datagrams
    cpu = time.process_time() - start
    if collector is not None:
        await collector.stop()
        await table.stop()
        await ds.stop()
    else:
        sock.close()
    if count < n:
        raise RuntimeError(f"only {count} of {n} datagrams were queued (receive buffer too small?)")
    return 1e6 * cpu / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--exporters", type=int, default=8,
                    help="switches sending (own source port, agent address and sequence numbers each)")
    ap.add_argument("--no-track", dest="track", action="store_false", help="connection tracking off")
    ap.add_argument("--only", choices=("bare", "collector", "drain"))
    ap.add_argument("--drain", type=int, default=10_000,
                    help="datagrams queued then drained to measure CPU per datagram (0: skip)")
    args = ap.parse_args()
    if not CAPTURE.exists():
        sys.exit(f"capture not found: {CAPTURE}")
    print(f"load: {args.rate} datagrams/s from {args.exporters} exporters for {args.duration:.0f} s "
          f"from {CAPTURE.name} (1210 B, ~6 samples each); "
          f"collector workers={args.workers} tracking={'on' if args.track else 'off'}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} before the run")
    if args.only != "drain":
        print(f"{'receiver':<10} {'sent':>10} {'received':>10} {'lost(seq)':>10} {'lost(sent-rcvd)':>16} "
              f"{'send/s':>8} {'rcvd/s':>8} {'CPU %':>7} {'CPU us/dg':>10}")
    ok = True
    for kind in ("bare", "collector"):
        if args.only and kind != args.only:
            continue
        if args.only == "drain":
            break
        r = asyncio.run(_run(kind, args))
        missing = r["sent"] - r["received"]
        seq_lost = "-" if r["lost_by_sequence"] is None else r["lost_by_sequence"]
        print(f"{kind:<10} {r['sent']:>10} {r['received']:>10} {seq_lost:>10} {missing:>16} "
              f"{r['send_rate']:>8.0f} {r['rate']:>8.0f} {r['cpu_percent']:>7.1f} {r['cpu_us']:>10.1f}   "
              f"(load average {os.getloadavg()[0]:.2f})", flush=True)
        if kind == "collector":
            if r.get("tracker"):
                print(f"           tracker: {r['tracker']}")
            ok = missing == 0 and not r["lost_by_sequence"]
    if args.drain and args.only in (None, "drain"):
        print(f"drain: {args.drain} datagrams queued in the socket buffer, then read; CPU per datagram "
              f"(process time, best of 3) and the rate one core could carry")
        for kind in ("bare", "collector"):
            cost = min(asyncio.run(_drain(kind, args.drain, args.track)) for _ in range(3))
            label = "bare recv" if kind == "bare" else "collector"
            print(f"{label:<10} {cost:>7.1f} us/datagram  ->  {1e6 / cost:>8,.0f} datagrams/s per core")
    if args.only in (None, "collector"):
        print("PASS: zero loss" if ok else "FAIL: loss")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
