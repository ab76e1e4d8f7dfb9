"""The topology lab: two leaf switches and four servers in network namespaces, real lldpd everywhere.

    mgmt   brm 10.99.0.1-4/24: three etcd members (.2-.4), the fake Kubernetes API server, the test's clients
      |------ mg0 10.99.0.11  leaf1  br0 10.20.1.1/24: p1 - node1, p2 - node2, p4 - node4 (eth0)
      `------ mg0 10.99.0.12  leaf2  br0 10.20.2.1/24: p1 - node3,              p4 - node4 (eth1)

Every leaf and node namespace runs Debian's lldpd with its own control socket (``-u``) and config
(``-O``: the system name, a 1 s transmit interval); one agent runs in each leaf namespace.  Every
namespace, process and file is this lab's own; ``close()`` removes them, and a lab left behind by a
killed run is removed by the next one (its pid is in the names).
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.agentproc import REPO, USERS, AgentProcess, free_port
from tests.fabric.etcdcluster import EtcdCluster

LEAVES = {"leaf1": ("10.99.0.11", "10.20.1.1"), "leaf2": ("10.99.0.12", "10.20.2.1")}
#: node -> [(its interface, leaf, leaf port, address)]
LINKS = {
    "node1": [("eth0", "leaf1", "p1", "10.20.1.11")],
    "node2": [("eth0", "leaf1", "p2", "10.20.1.12")],
    "node3": [("eth0", "leaf2", "p1", "10.20.2.13")],
    "node4": [("eth0", "leaf1", "p4", "10.20.1.14"), ("eth1", "leaf2", "p4", "10.20.2.14")],
}
MGMT_IP = "10.99.0.1"
ETCD_IPS = ("10.99.0.2", "10.99.0.3", "10.99.0.4")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "lldpd", "lldpcli"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-system-deps.sh installs lldpd)"
    return None


def in_netns(name: str, fn):
    """Run ``fn()`` in a thread that entered network namespace ``name`` (plain sockets only)."""
    out: dict = {}

    def run() -> None:
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if _libc.setns(fd, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {name}")
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out["error"] = exc
        finally:
            os.close(fd)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


class NetnsEtcd(EtcdCluster):
    """Three etcd members inside the lab's management namespace (one address each; metrics on their own ports)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for i, m in enumerate(self.members):
            m.metrics_port = 2381 + 10 * i    # every member listens for metrics on 0.0.0.0 of the one namespace

    def member_healthy(self, m) -> bool:
        return in_netns(m.netns, lambda: EtcdCluster.member_healthy(self, m))


class LabAgent(AgentProcess):
    """`kubefabric run` inside a leaf's namespace, listening on its management address."""

    def __init__(self, lab: "Lab", name: str, extra: list[str]) -> None:
        super().__init__(lab.workdir, node_name=name, extra_args=extra)
        self.netns = lab.ns[name]
        self.gnmi_addr = f"{LEAVES[name][0]}:{self.gnmi_port}"

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *super().command()]


class Lab:
    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.tag = f"kft{os.getpid()}"
        self.ns = {name: f"{self.tag}{name}" for name in ("mgmt", *LEAVES, *LINKS)}
        self.created: list[str] = []
        self.procs: dict[str, subprocess.Popen] = {}
        self.etcd: NetnsEtcd | None = None
        self.agents: dict[str, LabAgent] = {}
        self.kubeconfig = self.workdir / "lab.kubeconfig"
        # lldpcli drops to the _lldpd user to reach the socket: its directory must be traversable
        self.sockets = Path(f"/tmp/{self.tag}-lldpd")

    # -- building -------------------------------------------------------------------
    @staticmethod
    def remove_stale() -> None:
        listing = sh("ip", "netns", "list", check=False).stdout
        for match in re.finditer(r"^(kft(\d+)\w+)", listing, re.M):
            if not Path(f"/proc/{match.group(2)}").exists():
                sh("ip", "netns", "del", match.group(1), check=False)
        for stale in Path("/tmp").glob("kft*-lldpd"):
            pid = stale.name[3:].split("-")[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(stale, ignore_errors=True)

    def ip(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "-n", self.ns[ns], *args, check=check)

    def build(self) -> None:
        self.remove_stale()
        for name, ns in self.ns.items():
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
            self.ip(name, "link", "set", "lo", "up")
        self.ip("mgmt", "link", "add", "brm", "type", "bridge")
        for address in (MGMT_IP, *ETCD_IPS):
            self.ip("mgmt", "addr", "add", f"{address}/24", "dev", "brm")
        self.ip("mgmt", "link", "set", "brm", "up")
        for leaf, (mgmt_ip, gateway) in LEAVES.items():
            self.ip(leaf, "link", "add", "mg0", "type", "veth", "peer", "name", f"m{leaf[-1]}", "netns",
                    self.ns["mgmt"])
            self.ip("mgmt", "link", "set", f"m{leaf[-1]}", "master", "brm", "up")
            self.ip(leaf, "addr", "add", f"{mgmt_ip}/24", "dev", "mg0")
            self.ip(leaf, "link", "set", "mg0", "up")
            self.ip(leaf, "link", "add", "br0", "type", "bridge")
            self.ip(leaf, "addr", "add", f"{gateway}/24", "dev", "br0")
            self.ip(leaf, "link", "set", "br0", "up")
        for node, links in LINKS.items():
            for dev, leaf, port, address in links:
                self.plug(node, dev, leaf, port, address)

    def plug(self, node: str, dev: str, leaf: str, port: str, address: str) -> None:
        """A cable: veth ``port`` on the leaf's bridge <-> ``dev`` in the node, with its address."""
        self.ip(leaf, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", self.ns[node])
        self.ip(leaf, "link", "set", port, "master", "br0", "up")
        self.ip(node, "addr", "add", f"{address}/24", "dev", dev)
        self.ip(node, "link", "set", dev, "up")

    def unplug(self, leaf: str, port: str) -> None:
        self.ip(leaf, "link", "del", port)

    def mac(self, ns: str, dev: str) -> str:
        return json.loads(self.ip(ns, "-j", "link", "show", dev).stdout)[0]["address"]

    # -- processes ------------------------------------------------------------------
    def spawn(self, key: str, ns: str, *cmd: str, **kwargs) -> subprocess.Popen:
        log = open(self.workdir / f"{key}.log", "ab")
        try:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns[ns], *cmd], stdout=log, stderr=subprocess.STDOUT,
                                    cwd=REPO, **kwargs)
        finally:
            log.close()
        self.procs[key] = proc
        return proc

    def lldp_socket(self, ns: str) -> Path:
        self.sockets.mkdir(mode=0o755, exist_ok=True)
        return self.sockets / f"{ns}.socket"

    def start_lldpd(self, ns: str) -> None:
        conf = self.lldp_socket(ns).with_suffix(".conf")   # read by the lldpcli lldpd runs (as _lldpd)
        conf.write_text(f"configure system hostname {ns}\nconfigure lldp tx-interval 1\n")
        conf.chmod(0o644)
        self.spawn(f"lldpd-{ns}", ns, "lldpd", "-d", "-u", str(self.lldp_socket(ns)), "-O", str(conf))

    def stop(self, key: str) -> None:
        proc = self.procs.pop(key, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def start_etcd(self) -> None:
        self.etcd = NetnsEtcd(self.workdir / "etcd", size=3, hosts=list(ETCD_IPS), netns=[self.ns["mgmt"]] * 3)
        self.etcd.start(60)

    def start_apiserver(self, setup: dict) -> None:
        path = self.workdir / "apiserver.json"
        path.write_text(json.dumps({**setup, "host": MGMT_IP, "kubeconfig": str(self.kubeconfig)}))
        self.spawn("apiserver", "mgmt", sys.executable, "-m", "tests.topology.lab_apiserver", str(path))
        deadline = time.monotonic() + 60
        while not self.kubeconfig.exists():
            if self.procs["apiserver"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the lab API server did not start:\n" + (self.workdir / "apiserver.log").read_text())
            time.sleep(0.1)

    def start_agent(self, leaf: str) -> LabAgent:
        sflow_port = free_port(socket.SOCK_DGRAM)
        agent = LabAgent(self, leaf, [
            "--etcd", self.etcd.endpoints_arg, "--fabric", "lab", "--role", "leaf", "--owner-grace", "60",
            "--lldp-socket", str(self.lldp_socket(leaf)), "--topology-interval", "1",
            "--sflow-addr", f"127.0.0.1:{sflow_port}"])
        agent.sflow_port = sflow_port
        agent.start(timeout=90)
        self.agents[leaf] = agent
        return agent

    # -- traffic and clients --------------------------------------------------------
    def send(self, node: str, dev_address: str, gateway: str) -> None:
        """One UDP datagram from the node to its leaf's gateway (ARP + a frame: neighbour table and FDB learn)."""
        code = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                f"s.bind(({dev_address!r}, 0)); s.sendto(b'lab', ({gateway!r}, 9))")
        sh("ip", "netns", "exec", self.ns[node], sys.executable, "-c", code)

    def ifindex(self, ns: str, dev: str) -> int:
        return json.loads(self.ip(ns, "-j", "link", "show", dev).stdout)[0]["ifindex"]

    def sflow_counters(self, leaf: str, port: str, **counters: int) -> None:
        """The leaf's "ASIC" exports one sFlow counter sample of ``port`` to its own agent (loopback in its namespace)."""
        values = {"if_index": self.ifindex(leaf, port), "if_type": 6, "if_speed": 10_000_000_000, "if_direction": 1,
                  "if_status": 3, "in_octets": 0, "in_ucast_pkts": 0, "in_multicast_pkts": 0, "in_broadcast_pkts": 0,
                  "in_discards": 0, "in_errors": 0, "in_unknown_protos": 0, "out_octets": 0, "out_ucast_pkts": 0,
                  "out_multicast_pkts": 0, "out_broadcast_pkts": 0, "out_discards": 0, "out_errors": 0,
                  "promiscuous_mode": 0, **counters}
        code = ("import socket, sys; from tests.sflow import encoder as e; "
                f"v = {values!r}; "
                "d = e.datagram([e.counter_sample([e.generic_interface(**v)], source_index=v['if_index'])], "
                "agent='127.0.0.1'); "
                f"socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(d, ('127.0.0.1', {self.agents[leaf].sflow_port}))")
        sh("ip", "netns", "exec", self.ns[leaf], sys.executable, "-c", code)

    def chatter(self) -> None:
        for node, links in LINKS.items():
            for _dev, leaf, _port, address in links:
                self.send(node, address, LEAVES[leaf][1])

    def cli(self, leaf: str, *words: str, user: str = "admin") -> subprocess.CompletedProcess:
        env = {**os.environ, "KUBEFABRIC_PASSWORD": USERS[user][0]}
        return subprocess.run(["ip", "netns", "exec", self.ns["mgmt"], sys.executable, "-m", "agent.main", "cli",
                               "--gnmi-addr", self.agents[leaf].gnmi_addr, "--insecure", "--username", user,
                               "--timeout", "20", *words], capture_output=True, text=True, cwd=REPO, env=env,
                              timeout=90)

    def cli_json(self, leaf: str, *words: str, user: str = "admin") -> list:
        done = self.cli(leaf, *words, "--json", user=user)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(words)} on {leaf}: {done.stderr}")
        return json.loads(done.stdout or "[]")

    def gnmi_get(self, leaf: str, path: str, target: str, user: str = "admin", at: float | None = None) -> dict:
        """pygnmi Get with a prefix target, run in the management namespace; JSON of its reply.

        With ``at``: one Get of every ``|``-separated path with the History extension's snapshot_time.
        """
        extra = [str(at)] if at is not None else []
        done = subprocess.run(["ip", "netns", "exec", self.ns["mgmt"], sys.executable, "-m", "tests.topology.lab_gnmi",
                               self.agents[leaf].gnmi_addr, user, USERS[user][0], path, target, *extra],
                              capture_output=True, text=True, cwd=REPO, timeout=90)
        if done.returncode != 0:
            raise AssertionError(done.stderr)
        return json.loads(done.stdout)

    # -- teardown -------------------------------------------------------------------
    def close(self) -> None:
        for agent in self.agents.values():
            try:
                agent.stop(timeout=20)
            except Exception:
                agent.kill()
        for key in list(self.procs):
            self.stop(key)
        if self.etcd is not None:
            self.etcd.stop()
        for ns in self.created:
            sh("ip", "netns", "del", ns, check=False)
        self.created.clear()
        shutil.rmtree(self.sockets, ignore_errors=True)


def eventually(fn, timeout: float = 60.0, interval: float = 0.5, what: str = "condition"):
    """Poll ``fn`` until it returns a truthy value (returned); AssertionError with the last value otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:g}s; last: {last!r}")
        time.sleep(interval)


__all__ = ["LINKS", "LEAVES", "Lab", "eventually", "free_port", "in_netns", "why_not"]
