"""What the demo will run: port numbers, and which optional parts this build has.

The demo degrades part by part: every piece another module provides is
looked up here once, and a missing one becomes one clear line in the
banner ("… is not available in this build yet") instead of a failure.
"""
from __future__ import annotations

import importlib.util
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

NODES = ("leaf1", "leaf2", "leaf3")
DEFAULT_BASE_PORT = 17300


def _source_tree_on_path() -> None:
    """Running from a checkout whose editable install predates sim/: make the tree importable."""
    root = Path(__file__).resolve().parents[2]
    if (root / "sim" / "__init__.py").is_file() and str(root) not in sys.path:
        try:
            importlib.util.find_spec("sim")
        except (ImportError, ValueError):
            pass
        if importlib.util.find_spec("sim") is None:
            sys.path.append(str(root))


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@dataclass(frozen=True)
class Part:
    """An optional part: the module that provides it and what is lost without it."""

    name: str
    module: str
    without: str


PARTS = (
    Part("gNMI face", "agent.gnmi.server", "the agents cannot start"),
    Part("etcd fabric replication", "fabric_sync.etcd",
         "the three agents run standalone: config made on leaf1 stays on leaf1"),
    Part("Kubernetes collector", "collectors.k8s.manager", "no vPorts, services or time machine"),
    Part("simulated Kubernetes API server", "sim.k8s_apiserver", "no simulated cluster to watch"),
    Part("sFlow collector and connection tracker", "collectors.sflow.collector",
         "no connection table: the simulated switch is not started"),
    Part("NETCONF face", "agent.netconf.server", "no NETCONF port"),
    Part("CLI over SSH", "agent.cli.ssh", "no SSH CLI port"),
    Part("kubefabric cli", "agent.commands.cli", "no `kubefabric cli` one-liners"),
    Part("metrics", "agent.metrics", "no /metrics"),
    Part("web page", "agent.web.server", "no web page"),
)


def available_parts() -> dict[str, bool]:
    """{part name: present in this build}."""
    _source_tree_on_path()
    return {p.name: _present(p.module) for p in PARTS}


@dataclass
class NodePorts:
    """The TCP (and sFlow UDP) ports of one agent."""

    name: str
    gnmi: int
    netconf: int
    cli_ssh: int
    metrics: int
    web: int
    sflow: int


@dataclass
class PortPlan:
    """Every port the demo binds on 127.0.0.1."""

    etcd: list[tuple[int, int, int]] = field(default_factory=list)  # (client, peer, metrics) per member
    k8s_api: int = 0
    nodes: list[NodePorts] = field(default_factory=list)

    @classmethod
    def from_base(cls, base: int) -> "PortPlan":
        """Fixed layout: etcd base+0..8, API server base+9, agent i at base+10*i (+0 gNMI … +5 sFlow)."""
        plan = cls(etcd=[(base + i, base + 3 + i, base + 6 + i) for i in range(3)], k8s_api=base + 9)
        for i, name in enumerate(NODES, start=1):
            b = base + 10 * i
            plan.nodes.append(NodePorts(name, b, b + 1, b + 2, b + 3, b + 4, b + 5))
        return plan

    @classmethod
    def free(cls) -> "PortPlan":
        """Ports the kernel says are free now (for tests and --base-port 0)."""
        socks = []

        def port(kind=socket.SOCK_STREAM) -> int:
            s = socket.socket(socket.AF_INET, kind)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            return s.getsockname()[1]

        try:
            plan = cls(etcd=[(port(), port(), port()) for _ in range(3)], k8s_api=port())
            for name in NODES:
                plan.nodes.append(NodePorts(name, port(), port(), port(), port(), port(),
                                            port(socket.SOCK_DGRAM)))
        finally:
            for s in socks:
                s.close()
        return plan

    def busy(self) -> list[int]:
        """Ports of the plan that something already uses."""
        taken = []
        tcp = [p for member in self.etcd for p in member] + [self.k8s_api]
        for n in self.nodes:
            tcp += [n.gnmi, n.netconf, n.cli_ssh, n.metrics, n.web]
        for p in tcp:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    taken.append(p)
        for n in self.nodes:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", n.sflow))
                except OSError:
                    taken.append(n.sflow)
        return taken
