"""Benchmark: mirrored TCP control packets captured, decoded and tracked on one core, beside tcpdump.

In a network namespace this script creates (and deletes), ``tcpreplay`` sends
a file of VXLAN-encapsulated TCP control packets (per connection: SYN,
SYN-ACK, FIN, FIN -- what a fabric mirror copies; ``--connections``
distinct connections, replayed in a loop) into one end of a veth pair at
each ``--rates`` packets/s for ``--duration`` seconds.  On the other end, at
the same time and with the same kernel filter (collectors/capture/bpf.py):

* the agent's capture path in its own process: libpcap ring (pcapy-ng),
  ``decode_frame``, ``ConnectionTracker.observe_control`` -- what
  ``CaptureSource`` does in the agent, read from an asyncio loop;
* the peer: ``tcpdump -w /dev/null`` (C, libpcap, the same ring size).

For each rate: packets offered (tcpreplay's own figure), captured and
dropped by the kernel for both, CPU of both (share of one core), and the
ratio agent/tcpdump.  Then the drain measurement, free of scheduling: 100,000
packets are queued in the agent's ring first and read flat out; CPU seconds
per packet give the rate one core carries, beside a bare ``next_batch`` loop
that only counts (the ceiling of reading in Python).

Targets (issue 14): >= 100,000 control packets/s with zero kernel drops, and
>= 0.5 x tcpdump.  Needs root, tcpreplay and tcpdump.

Usage: python benchmarks/capture.py [--rates 50000,100000,150000,200000] [--duration 5] [--connections 25000]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collectors.capture.bpf import control_filter  # noqa: E402

PORTS = (4789, 8472)
FILTER = control_filter(PORTS, 6081)


# ----------------------------------------------------------------------------- traffic file
def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, src, dst)
    return header[:10] + struct.pack(">H", _checksum(header)) + header[12:] + payload


def control_frames(connections: int) -> list[bytes]:
    """SYN, SYN-ACK, FIN, FIN of each connection, in VXLAN 8472 between two nodes, rounds interleaved."""
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    node1, node2 = socket.inet_aton("10.99.0.1"), socket.inet_aton("10.99.0.2")
    out = []
    for step, (forward, flags) in enumerate(((True, 0x02), (False, 0x12), (True, 0x11), (False, 0x11))):
        for i in range(connections):
            client = socket.inet_aton(f"10.244.{(i >> 8) & 255}.{i & 255}")
            server = socket.inet_aton(f"10.245.{(i >> 12) & 15}.{(i >> 4) & 255}")
            cport = 32768 + i % 28000
            src, dst, sport, dport = (client, server, cport, 8080) if forward else (server, client, 8080, cport)
            tcp = struct.pack(">HHIIBBHHH", sport, dport, 1000 + i + step, 5000 + i, 0x50, flags, 64240, 0, 0)
            inner = eth + _ipv4(src, dst, 6, tcp)
            udp = struct.pack(">HHHH", 49152 + i % 16000, 8472, 8 + 8 + len(inner), 0)
            vxlan = struct.pack(">II", 0x08000000, 1 << 8)
            outer = _ipv4(node1 if forward else node2, node2 if forward else node1, 17, udp + vxlan + inner)
            out.append(eth + outer)
    return out


def write_pcap(path: Path, frames: list[bytes]) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames):
            f.write(struct.pack("<IIII", i // 1000000, i % 1000000, len(frame), len(frame)))
            f.write(frame)


# ----------------------------------------------------------------------------- the agent side (a child process)
def consume(interface: str, out: Path, drain: bool) -> None:
    """Capture, decode and track until SIGTERM (or, with ``drain``, read a queued burst after a line on stdin)."""
    from collectors.capture.interface import InterfaceCapture
    from collectors.conntrack.tracker import ConnectionTracker

    capture = InterfaceCapture(interface, buffer_bytes=64 << 20)
    capture.open(FILTER)
    tracker = ConnectionTracker(max_connections=1_000_000, idle_timeout=3600)
    tracker.events = []  # as in the connection table
    vxlan, geneve = frozenset(PORTS), 6081
    if drain:
        print("ready", flush=True)
        sys.stdin.readline()
        results = {}
        # the ceiling: read the ring and count, nothing else
        start = time.process_time()
        count = 0
        cap = capture._cap
        while True:
            packets, meta = cap.next_batch(1024)
            if not meta:
                break
            count += len(meta) >> 4
        results["bare"] = (count, time.process_time() - start)
        print("bare-done", flush=True)
        sys.stdin.readline()  # the second burst is queued
        start = time.process_time()
        batch: list = []
        while capture.read(vxlan, geneve, batch.append, max_batches=1):
            observe = tracker.observe_control
            for packet in batch:
                observe(packet)
            batch.clear()
        for packet in batch:
            tracker.observe_control(packet)
        results["agent"] = (capture.events, time.process_time() - start)
        capture.update_kernel_stats()
        results["drops"] = capture.kernel_drops
        out.write_text(json.dumps(results))
        return

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        observe = tracker.observe_control

        def readable() -> None:
            batch: list = []
            capture.read(vxlan, geneve, batch.append)
            for packet in batch:
                observe(packet)
            tracker.events.clear()

        loop.add_reader(capture.fileno(), readable)
        print("ready", flush=True)
        start = time.process_time()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 0.25)
            except asyncio.TimeoutError:
                tracker.expire(time.time())
        readable()
        capture.update_kernel_stats()
        out.write_text(json.dumps({
            "received": capture.received, "events": capture.events, "drops": capture.kernel_drops,
            "filtered": capture.filtered, "malformed": capture.malformed, "cpu": time.process_time() - start,
            "connections": len(tracker), "controls": tracker.controls}))

    asyncio.run(run())


# ----------------------------------------------------------------------------- orchestration
def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if check and done.returncode:
        raise SystemExit(f"{' '.join(args)}: {done.stderr.strip()}")
    return done


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_rate(ns: str, rate: int, duration: float, pcap: Path, tmp: Path) -> dict:
    out = tmp / f"agent-{rate}.json"
    agent = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, __file__, "--consume", "cap0", str(out)],
                             stdout=subprocess.PIPE, text=True)
    assert agent.stdout.readline().startswith("ready"), "the agent side did not start"
    dump = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-Q", "in", "-B", str(64 << 10), "-s", "256",
                             "-i", "cap0", "-w", "/dev/null", FILTER], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while "listening on" not in (dump.stderr.readline() or ""):
        if time.monotonic() > deadline or dump.poll() is not None:
            raise SystemExit("tcpdump did not start")
    dump_cpu0 = cpu_seconds(dump.pid)
    replay = sh("ip", "netns", "exec", ns, "tcpreplay", "-i", "tx0", f"--pps={rate}", "--loop=0",
                f"--limit={int(rate * duration)}", str(pcap))
    time.sleep(0.5)
    dump_cpu = cpu_seconds(dump.pid) - dump_cpu0
    dump.send_signal(signal.SIGINT)
    _, err = dump.communicate(timeout=30)
    agent.send_signal(signal.SIGTERM)
    agent.wait(30)
    ours = json.loads(out.read_text())
    sent = offered = seconds = 0.0
    for line in replay.stdout.splitlines():
        line = line.strip()
        if line.startswith("Actual:"):  # Actual: 100000 packets (10400000 bytes) sent in 1.99 seconds
            sent = float(line.split()[1])
            seconds = float(line.split("sent in")[1].split()[0])
        elif line.startswith("Rated:"):  # Rated: 5200052.0 Bps, 41.60 Mbps, 50000.50 pps
            offered = float(line.split(",")[2].split()[0])
    theirs = {"captured": 0, "dropped": 0}
    for line in err.splitlines():
        words = line.split()
        if "captured" in line:
            theirs["captured"] = int(words[0])
        elif "dropped by kernel" in line:
            theirs["dropped"] = int(words[0])
    return {"rate": rate, "sent": sent, "offered": offered, "tcpdump": theirs, "tcpdump_cpu": dump_cpu,
            "agent": ours, "seconds": seconds or duration}


def drain(ns: str, pcap: Path, tmp: Path, packets: int = 100_000) -> dict:
    out = tmp / "drain.json"
    agent = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, __file__, "--consume", "cap0", str(out),
                              "--drain"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert agent.stdout.readline().startswith("ready")
    for phase in ("bare", "agent"):
        sh("ip", "netns", "exec", ns, "tcpreplay", "-i", "tx0", "--topspeed", "--loop=0", f"--limit={packets}",
           str(pcap))
        time.sleep(0.3)
        agent.stdin.write("go\n")
        agent.stdin.flush()
        if phase == "bare":
            assert agent.stdout.readline().startswith("bare-done")
    agent.wait(120)
    return json.loads(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="50000,100000,150000,200000")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=25_000)
    ap.add_argument("--consume", nargs=2, metavar=("INTERFACE", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--drain", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.consume:
        consume(args.consume[0], Path(args.consume[1]), args.drain)
        return 0
    for tool in ("tcpreplay", "tcpdump", "ip"):
        if shutil.which(tool) is None:
            print(f"capture benchmark: {tool} is not installed (scripts/install-system-deps.sh installs it)")
            return 1
    if os.geteuid() != 0:
        print("capture benchmark: needs root (network namespace, packet sockets)")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="kf-capture-bench-"))
    pcap = tmp / "control.pcap"
    write_pcap(pcap, control_frames(args.connections))
    ns = f"kfbench{os.getpid()}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
           "net.ipv6.conf.default.disable_ipv6=1", check=False)
        sh("ip", "-n", ns, "link", "add", "tx0", "type", "veth", "peer", "name", "cap0")
        for dev in ("tx0", "cap0", "lo"):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.connections} connections x 4 "
              f"control packets (VXLAN), kernel filter of the agent on both readers")
        print(f"{'offered/s':>10} {'sent':>9} | {'tcpdump got':>11} {'drops':>7} {'cpu':>5} | {'agent got':>10} "
              f"{'drops':>7} {'cpu':>5} {'agent/s':>9} | {'ratio':>5}  verdict")
        for rate in [int(r) for r in args.rates.split(",")]:
            r = run_rate(ns, rate, args.duration, pcap, tmp)
            ours, theirs = r["agent"], r["tcpdump"]
            seconds = r["seconds"] or args.duration
            ratio = ours["events"] / theirs["captured"] if theirs["captured"] else 0.0
            ok = ours["drops"] == 0 and ours["events"] >= r["sent"] * 0.999 and ratio >= 0.5
            print(f"{r['offered']:>10,.0f} {r['sent']:>9,.0f} | {theirs['captured']:>11,} {theirs['dropped']:>7,} "
                  f"{r['tcpdump_cpu'] / seconds:>5.0%} | {ours['events']:>10,} {ours['drops']:>7,} "
                  f"{ours['cpu'] / seconds:>5.0%} {ours['events'] / seconds:>9,.0f} | {ratio:>5.2f}  "
                  f"{'zero drops' if ok else 'DROPS or short'}")
        d = drain(ns, pcap, tmp)
        bare_n, bare_s = d["bare"]
        agent_n, agent_s = d["agent"]
        print(f"drain (100,000 packets queued, then read flat out; CPU per packet): bare next_batch loop "
              f"{bare_s / max(bare_n, 1) * 1e6:.2f} us ({bare_n / max(bare_s, 1e-9):,.0f}/s); capture + decode + "
              f"track {agent_s / max(agent_n, 1) * 1e6:.2f} us ({agent_n / max(agent_s, 1e-9):,.0f}/s of one core); "
              f"kernel drops {d['drops']}")
    finally:
        sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
