"""End to end, as root, in network namespaces (tests/e2e_capture/lab.py): real TCP between "pods" across a
Flannel-like VXLAN overlay, a switch mirroring TCP control packets with tc u32 + mirred to an interface,
pmacctd's sfprobe sampling the switch ports at 1:1,000 -- both into one connection table -- and tshark on
the mirror interface as the independent reading of every handshake.

What a user checks, per connection: the state and the outcome (completed, refused by a closed port,
no-response to SYNs the switch drops, reset by the server), the handshake latency (about twice the
relay's delay) within 1 ms or 5 % of tshark's, latency-source capture, retransmitted SYNs; per service
and port: the refusals of a service whose backends refuse, new connections and latency p50; the capture's
counters (no kernel drop, every control packet tshark saw turned into an event); and sFlow's volume in
the same rows.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.agentproc import REPO, free_port
from tests.e2e_capture.lab import Lab
from tests.netns import read_line, stop

HERE = Path(__file__).parent
TRAFFIC = HERE / "traffic.py"
DELAY = 0.020
PODS = {"10.244.1.2": ["client-0", "shop"], "10.244.2.3": ["web-0", "shop"]}


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc", "pmacctd", "tshark"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


pytestmark = [pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""), pytest.mark.netns]


@pytest.fixture
def lab():
    built = Lab(delay=DELAY)
    try:
        built.build()
        yield built
    finally:
        built.close()


def handshakes_from_tshark(pcap: Path) -> dict[int, dict]:
    """Per client port: SYN and SYN-ACK times, flags seen, tshark's initial RTT (from the mirrored copies)."""
    fields = ["frame.time_epoch", "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.analysis.initial_rtt"]
    done = subprocess.run(["tshark", "-r", str(pcap), "-d", "udp.port==8472,vxlan", "-Y", "tcp", "-T", "fields",
                           "-E", "occurrence=l", "-E", "separator=|"] + sum((["-e", f] for f in fields), []),
                          capture_output=True, text=True, timeout=120, check=True)
    out: dict[int, dict] = {}
    for line in done.stdout.splitlines():
        t, sport, dport, flags, irtt = line.split("|")
        t, sport, dport, flags = float(t), int(sport), int(dport), int(flags, 16)
        client = dport if flags & 0x12 == 0x12 or (sport < 10000 and dport >= 10000) else sport
        entry = out.setdefault(client, {"syn": [], "synack": None, "control": 0, "irtt": None})
        if flags & 0x07:
            entry["control"] += 1
        if flags & 0x12 == 0x02:
            entry["syn"].append(t)
        elif flags & 0x12 == 0x12 and entry["synack"] is None:
            entry["synack"] = t
        if irtt:
            entry["irtt"] = float(irtt)
    return out


def test_every_handshake_through_the_mirror_beside_sflow_at_1_in_1000(lab, tmp_path):
    port = free_port()
    out = tmp_path / "table.json"
    setup = tmp_path / "setup.json"
    setup.write_text(json.dumps({
        "addr": f"127.0.0.1:{port}", "data_dir": str(tmp_path / "data"), "out": str(out), "vports": PODS,
        "cluster": "lab", "fake_cluster": True, "capture": ["mir0c"], "no_response_timeout": 2,
        "services": [{"name": "api", "namespace": "shop", "port": 80, "target_port": 9998}]}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    agent = lab.run(lab.sw, sys.executable, "-m", "tests.e2e_sflow.netns_collector", str(setup),
                    stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
    read_line(agent, "ready", timeout=60)
    pcap = tmp_path / "mirror.pcap"
    shark = lab.run(lab.sw, "tshark", "-q", "-i", "mir0c", "-w", str(pcap), stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, text=True)
    read_line_err(shark, "Capturing on")
    for i, dev in enumerate(("p1", "p2b")):
        conf = tmp_path / f"sfprobe-{dev}.conf"
        conf.write_text(f"daemonize: false\npcap_interface: {dev}\npcap_direction: in\nplugins: sfprobe\n"
                        f"sfprobe_receiver: 127.0.0.1:{port}\nsfprobe_agentip: 10.99.0.25{i + 1}\n"
                        "sampling_rate: 1000\nsnaplen: 256\n")
        lab.run(lab.sw, "pmacctd", "-f", str(conf), stdout=open(tmp_path / f"pmacctd-{dev}.log", "w"),
                stderr=subprocess.STDOUT)
    server = lab.run(lab.n2, sys.executable, str(TRAFFIC), "server", "10.244.2.3:8080:echo", "10.244.2.3:8081:reset",
                     "10.244.2.3:8082:bulk", "10.99.0.2:7070:echo", stdout=subprocess.PIPE, text=True)
    read_line(server, "listening")
    time.sleep(1.0)  # pmacctd opens its interfaces

    expected: dict[int, tuple[str, int, str]] = {}  # client port -> (server, port, what the client saw)
    for host, dport, count, timeout in (("10.244.2.3", 8080, 8, 5), ("10.244.2.3", 9998, 3, 5),
                                        ("10.244.2.3", 9999, 2, 2.5), ("10.244.2.3", 8081, 2, 5),
                                        ("10.244.2.3", 8082, 1, 20), ("10.99.0.2", 7070, 2, 5)):
        done = subprocess.run(["ip", "netns", "exec", lab.n1, sys.executable, str(TRAFFIC), "client", host,
                               str(dport), str(count), str(timeout)], capture_output=True, text=True, timeout=120)
        for line in done.stdout.splitlines():
            _, local, result = line.split()
            expected[int(local)] = (host, dport, result)
    seen = [r for _, _, r in expected.values()]
    assert seen.count("completed") == 11 and seen.count("refused") == 3 and seen.count("timeout") == 2, expected
    assert seen.count("reset") == 2, expected

    outcome_of = {"completed": "completed", "refused": "refused", "timeout": "no-response", "reset": "reset"}

    def snapshot() -> dict:
        try:
            return json.loads(out.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def rows() -> dict[int, dict]:
        return {r["src-port"]: r for r in snapshot().get("connections", []) if r["src-port"] in expected}

    deadline = time.monotonic() + 60
    while True:
        current = rows()
        if len(current) == len(expected) and all(current[p].get("outcome") == outcome_of[expected[p][2]]
                                                 and current[p]["cur-state"] in ("closed", "rst", "syn")
                                                 for p in expected):
            break
        assert time.monotonic() < deadline, json.dumps({"rows": current, "expected": expected}, indent=1)
        time.sleep(0.5)
    time.sleep(1.5)  # statistics are published once a second
    snap = snapshot()
    stop(shark, signal.SIGINT)
    shark_view = handshakes_from_tshark(pcap)

    current = rows()
    for client_port, (host, dport, result) in expected.items():
        row = current[client_port]
        assert (row["dst-ip"], row["dst-port"], row["protocol"]) == (host, dport, 6)
        assert row["vxlan"] == (1 if host.startswith("10.244") else 0)
        assert row["encapsulation"] == ("vxlan" if host.startswith("10.244") else "none")
        shark = shark_view[client_port]
        if result == "timeout":
            assert row["cur-state"] == "syn" and "latency" not in row
            assert row["syn-retransmits"] == len(shark["syn"]) - 1 >= 1
            continue
        if result == "refused":
            assert row["cur-state"] in ("rst", "closed") and "latency" not in row
            continue
        expect = (shark["synack"] - max(t for t in shark["syn"] if t <= shark["synack"])) * 1e6
        assert row["latency-source"] == "capture"
        assert abs(row["latency"] - expect) <= max(1000, 0.05 * expect), (row, expect)
        assert row["latency"] >= 2 * DELAY * 1e6 * 0.9  # the relay's delay, both ways
        if shark["irtt"] is not None:  # tshark's SYN -> ACK covers the SYN -> SYN-ACK part
            assert shark["irtt"] * 1e6 >= row["latency"] - 1000
        if host.startswith("10.244"):
            assert shark["irtt"] is not None  # the lab mirrors the handshake ACK in the overlay
        if result == "completed":
            assert row["cur-state"] == "closed"
        assert row.get("src-pod") == "client-0" or not host.startswith("10.244"), row

    capture = {c["name"]: c for c in snap["capture"]}["mir0c"]
    control = sum(s["control"] for p, s in shark_view.items() if p in expected)
    assert capture["status"] == "capturing" and capture["kernel-drops"] == 0 and capture["malformed"] == 0
    assert capture["events"] == capture["received"] >= control  # the filter kept control packets only
    services = {(s["service"], s["port"]): s for s in snap["service_stats"]}
    web = services[("shop/web", 8080)]
    assert web["new-connections"] == 8 and web["completed"] == 8 and web["failures"] == 0
    latencies = sorted(current[p]["latency"] for p, (h, d, _) in expected.items() if d == 8080)
    middle = len(latencies) // 2  # p50 of the sketch lies between the two middle latencies (2 % buckets)
    assert latencies[middle - 1] * 0.95 <= web["latency-p50"] <= latencies[middle] * 1.05, (web, latencies)
    assert latencies[-2] * 0.95 <= web["latency-p99"] <= latencies[-1] * 1.05  # rank 0.99 x 7 of 8
    api = services[("shop/api", 9998)]  # a service whose backends refuse
    assert api["refused"] == 3 and api["failures"] == 3 and api["new-connections"] == 3
    silent = services[("10.244.2.3", 9999)]
    assert silent["no-response"] == 2 and silent["syn-retransmits"] >= 2
    # sFlow at 1:1,000 counts the volume of the bulk transfer (16 MB: ~17,000 packets, ~17 samples) into the same row
    bulk = current[next(p for p, (_, d, _) in expected.items() if d == 8082)]
    assert bulk["packets"] >= 1000 and bulk["packets"] % 1000 == 0, bulk
    assert bulk["switch"].startswith("10.99.0.25") and bulk["outcome"] == "completed"
    assert snap["statistics"]["datagrams"] > 0 and snap["statistics"]["lost"] == 0


def read_line_err(proc: subprocess.Popen, prefix: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if prefix in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"tshark did not start: {proc.args}")
