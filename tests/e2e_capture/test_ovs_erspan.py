"""A real ERSPAN exporter: Open vSwitch (userspace datapath) mirrors a switch's traffic into an ERSPAN type III
session to the agent's receiver; every GRE datagram is also read by tshark on the receiving interface.

    a: 10.98.0.1 --veth-- pa ┐
                             ├ ovs: br-int (netdev), mirror select-all -> erspan0 (type III, session 7)
    b: 10.98.0.2 --veth-- pb ┘       br-phy (netdev) 172.31.1.1 --veth-- c: eth0 172.31.1.2 (the receiver)

Checks: the receiver's decode of each datagram equals tshark's (version, session, sequence, hardware
timestamp); no loss; completed and refused connections between a and b with their outcomes; latency-source
capture from the session's hardware timestamps (OVS stamps in 100 us ticks), equal to the difference of the
timestamps tshark read, and within 1 ms of the arrival times.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pcapy
import pytest

from collectors.capture.erspan import parse_gre
from tests.agentproc import REPO
from tests.netns import read_line, remove_stale, sh, stop

pytestmark = [pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ovs-vswitchd") is None
                                 or shutil.which("tshark") is None,
                                 reason="needs root, Open vSwitch (ovs-vswitchd) and tshark"), pytest.mark.netns]

PREFIX = "kfovs"
TX_CSUM_OFF = """
import array, fcntl, socket, struct, sys
value = array.array("I", [0x17, 0])  # struct ethtool_value {ETHTOOL_STXCSUM, 0}
request = struct.pack("16sP", sys.argv[1].encode(), value.buffer_info()[0])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    fcntl.ioctl(s.fileno(), 0x8946, request)  # SIOCETHTOOL
"""
SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("10.98.0.2", 7070)); s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept(); c.recv(100); c.sendall(b"ok"); c.close()
"""
CLIENT = """
import socket, sys
for port in (7070, 7070, 7070, 7071, 7071):
    s = socket.socket(); s.settimeout(5); s.bind(("10.98.0.1", 0)); local = s.getsockname()[1]
    try:
        s.connect(("10.98.0.2", port)); s.sendall(b"hi"); s.recv(10); result = "completed"
    except ConnectionRefusedError:
        result = "refused"
    s.close(); print("conn", local, result, flush=True)
"""


class OvsLab:
    def __init__(self) -> None:
        tag = f"{PREFIX}{os.getpid()}"
        self.sw, self.a, self.b, self.c = f"{tag}s", f"{tag}a", f"{tag}b", f"{tag}c"
        self.run_dir = Path(tempfile.mkdtemp(prefix="kfovs"))  # short: OVS's unix socket paths
        self.created: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.env = {**os.environ, "OVS_RUNDIR": str(self.run_dir), "OVS_DBDIR": str(self.run_dir),
                    "OVS_LOGDIR": str(self.run_dir), "OVS_SYSCONFDIR": str(self.run_dir)}

    def ovs(self, *args: str) -> None:
        done = subprocess.run(["ip", "netns", "exec", self.sw, *args], env=self.env, capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, (args, done.stderr)

    def vsctl(self, *args: str) -> None:
        self.ovs("ovs-vsctl", f"--db=unix:{self.run_dir}/db.sock", "--timeout=20", *args)

    def build(self) -> None:
        remove_stale(PREFIX)
        for ns in (self.sw, self.a, self.b, self.c):
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=False)
        d = self.run_dir
        schema = "/usr/share/openvswitch/vswitch.ovsschema"
        sh("ovsdb-tool", "create", f"{d}/conf.db", schema)
        self.ovs("ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock", f"--pidfile={d}/ovsdb.pid",
                 "--detach", f"--log-file={d}/ovsdb.log", f"--unixctl={d}/ovsdb.ctl")
        self.vsctl("--no-wait", "init")
        self.ovs("ovs-vswitchd", f"unix:{d}/db.sock", f"--pidfile={d}/vswitchd.pid", "--detach",
                 f"--log-file={d}/vswitchd.log", f"--unixctl={d}/vswitchd.ctl")
        for ns, peer, addr in ((self.a, "pa", "10.98.0.1/24"), (self.b, "pb", "10.98.0.2/24"),
                               (self.c, "pc", "172.31.1.2/24")):
            sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", self.sw)
            sh("ip", "-n", ns, "addr", "add", addr, "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", self.sw, "link", "set", peer, "up")
            # veth would hand the userspace datapath TCP packets whose checksum is still to be completed; there
            # is no ethtool here, so turn transmit checksumming off with its ioctl (ETHTOOL_STXCSUM)
            sh("ip", "netns", "exec", ns, sys.executable, "-c", TX_CSUM_OFF, "eth0")
        self.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
        self.vsctl("add-port", "br-int", "pa", "--", "add-port", "br-int", "pb")
        self.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev")
        self.vsctl("add-port", "br-phy", "pc")
        sh("ip", "-n", self.sw, "addr", "add", "172.31.1.1/24", "dev", "br-phy")
        sh("ip", "-n", self.sw, "link", "set", "br-phy", "up")
        self.vsctl("add-port", "br-int", "erspan0", "--", "set", "interface", "erspan0", "type=erspan",
                   "options:remote_ip=172.31.1.2", "options:key=7", "options:erspan_ver=2",
                   "options:erspan_dir=0", "options:erspan_hwid=4")
        self.vsctl("--", "--id=@p", "get", "port", "erspan0", "--", "--id=@m", "create", "mirror", "name=m0",
                   "select-all=true", "output-port=@p", "--", "set", "bridge", "br-int", "mirrors=@m")

    def run(self, ns: str, *cmd: str, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kwargs)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        for name in ("vswitchd", "ovsdb"):
            try:
                os.kill(int((self.run_dir / f"{name}.pid").read_text()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        for ns in self.created:
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)


@pytest.fixture
def lab():
    built = OvsLab()
    try:
        built.build()
        yield built
    finally:
        built.close()


def test_open_vswitch_erspan_session_into_the_receiver(lab, tmp_path):
    out = tmp_path / "erspan.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    collector = lab.run(lab.c, sys.executable, "-m", "tests.e2e_capture.erspan_collector", "172.31.1.2", str(out),
                        stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
    read_line(collector, "ready", timeout=30)
    pcap = tmp_path / "gre.pcap"
    shark = lab.run(lab.c, "tshark", "-q", "-i", "eth0", "-w", str(pcap), "-f", "ip proto 47",
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while "Capturing on" not in (shark.stderr.readline() or ""):
        assert time.monotonic() < deadline and shark.poll() is None, "tshark did not start"
    server = lab.run(lab.b, sys.executable, "-c", SERVER, stdout=subprocess.PIPE, text=True)
    read_line(server, "listening")
    done = subprocess.run(["ip", "netns", "exec", lab.a, sys.executable, "-c", CLIENT], capture_output=True,
                          text=True, timeout=60)
    made = {int(line.split()[1]): line.split()[2] for line in done.stdout.splitlines()}
    assert sorted(made.values()) == ["completed"] * 3 + ["refused"] * 2, done.stdout + done.stderr
    time.sleep(3.0)  # the last FINs, and the ERSPAN copies, arrive
    stop(shark, signal.SIGINT)
    stop(collector)
    result = json.loads(out.read_text())

    fields = ["frame.time_epoch", "gre.sequence_number", "erspan.version", "erspan.spanid", "erspan.timestamp",
              "erspan.gra", "tcp.srcport", "tcp.dstport", "tcp.flags"]
    decoded = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-E", "separator=|"]
                             + sum((["-e", f] for f in fields), []), capture_output=True, text=True, timeout=60,
                             check=True).stdout.splitlines()
    shark_rows = [dict(zip(fields, line.split("|"))) for line in decoded]
    ours = []  # the same datagrams, through our parser (libpcap reads the file)
    reader = pcapy.open_offline(str(pcap))
    while True:
        header, data = reader.next()
        if header is None:
            break
        ours.append(parse_gre(data, 14 + 20))
    assert len(ours) == len(shark_rows) == result["received"] > 0
    for gre, row in zip(ours, shark_rows):
        assert (gre.erspan, gre.session, gre.sequence) == (int(row["erspan.version"]) + 1, int(row["erspan.spanid"]),
                                                           int(row["gre.sequence_number"]))
        assert gre.timestamp == int(row["erspan.timestamp"]) and gre.unit == 100e-6  # OVS: gra 0, 100 us ticks
    assert result["sessions"] == [{"source": "172.31.1.1", "session": 7, "type": 3, "packets": result["received"],
                                   "lost": 0, "hardware": True}]
    assert result["malformed"] == 0 and result["filtered"] > 0  # OVS mirrors every packet; data is filtered

    connections = {c["sport"]: c for c in result["connections"] if c["sport"] in made}
    assert len(connections) == len(made), (made, result)
    for port, outcome in made.items():
        conn = connections[port]
        assert conn["switch"] == "172.31.1.1 session 7" and conn["dport"] == (7070 if outcome == "completed" else 7071)
        assert conn["outcome"] == outcome
        if outcome != "completed":
            continue
        assert conn["state"] == "closed" and conn["source"] == "capture"
        syn = next(r for r in shark_rows if r["tcp.srcport"] == str(port) and int(r["tcp.flags"] or "0", 16) & 0x12 == 2)
        synack = next(r for r in shark_rows if r["tcp.dstport"] == str(port)
                      and int(r["tcp.flags"] or "0", 16) & 0x12 == 0x12)
        hardware = (int(synack["erspan.timestamp"]) - int(syn["erspan.timestamp"])) * 100  # microseconds
        arrival = (float(synack["frame.time_epoch"]) - float(syn["frame.time_epoch"])) * 1e6
        assert conn["latency"] == hardware, (conn, hardware, arrival)
        assert abs(conn["latency"] - arrival) <= 1000 + 100
