"""K8sManager: the producer the agent runs for Kubernetes connections.

It follows the running config (``ConfigFollower.on_config``): for each connection in
``kubefabric-k8s:k8s/connection`` that is enabled and owned by this node
(``owner`` unset means this node) it runs a
:class:`~collectors.k8s.cluster.ClusterConnection`; connections owned by
another node show status ``remote``, disabled ones ``disabled``.  At most
four connections run (the YANG list allows four).

* disable: watchers stop; the last known rows stay (status ``disabled``
  says they are frozen) and come back up to date on re-enable;
* delete, or ownership moving to another node: watchers stop and the
  connection's vPorts, services, CNI row and state are removed; its
  history intervals are closed;
* kube-config change: watchers restart, the re-list reconciles rows;
* create-vport change: vPorts are added or removed on the spot.

The manager owns the pieces shared by all connections: the vPort
arbitration table (one IP may be claimed by several pods; see
:mod:`collectors.k8s.vports`), the writes into the time machine
(``HistoryWriter``; the core flushes it), the connection-state counters
(once a second) and, on a replicated fabric, the takeover of connections
whose owner stays offline (:mod:`collectors.k8s.ownership`).  Each
connection sees the manager only as its :class:`~collectors.k8s.sink.ClusterSink`.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, ContextManager

from core.ports.fabric import FabricMembership
from core.ports.history import HistoryWriter
from core.ports.state import ConfigFollower, ConfigWriter, StateWriter, Unsubscribe
from core.ports.topology import LocationChange, NodeLocator
from core.tasks import cancel_and_wait

from .cluster import CONNECTION_STATE, VPORT_PATH, ClusterConnection
from .location import Locating, gc_paused, without_location
from .ownership import OwnerTakeover
from .vports import IpTable, PodView

__all__ = ["K8sManager", "MAX_CONNECTIONS"]

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 4
K8S_TOP = "kubefabric-k8s:k8s"


class K8sManager:
    """Runs this node's Kubernetes connections and feeds the datastore (implements ``ClusterSink``).

    ``K8sManager(state, config, history, node_name, data_dir)``; ``await
    start()``, ``await stop()``.  With ``membership`` and ``writer`` on a
    replicated fabric it also takes over connections of owners offline for
    ``owner_grace`` seconds.  With a ``locator`` (the topology producer)
    vPort rows carry the switches and ports of their node and, when a switch
    resolved the pod's address, its real MAC and VLAN.  ``watch_options`` (keyword arguments of
    :class:`~collectors.k8s.watcher.Watcher`, plus ``backoff_base`` and
    ``backoff_cap``) tune timeouts; tests shorten them.
    """

    def __init__(self, state: StateWriter, config: ConfigFollower, history: HistoryWriter, node_name: str,
                 data_dir: Path, *, membership: FabricMembership | None = None, writer: ConfigWriter | None = None,
                 owner_grace: float = 10.0, watch_options: dict | None = None,
                 state_interval: float = 1.0, locator: NodeLocator | None = None) -> None:
        self.state = state
        self.config = config
        self.history = history
        self.node_name = node_name
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.credentials_dir = self.data_dir / "credentials"
        self.watch_options: dict[str, Any] = dict(watch_options or {})
        self.state_interval = state_interval
        self.connections: dict[str, ClusterConnection] = {}
        self.ip_table = IpTable()
        self.takeover = (OwnerTakeover(membership, config, writer, owner_grace)
                         if membership is not None and writer is not None and membership.replicated else None)
        self._shown: dict[str, str] = {}          # ip -> cluster whose vPort row is shown
        self._config: dict[str, dict] = {}
        self._states: dict[str, str] = {}         # cluster -> status written for non-running connections
        self._tasks: list[asyncio.Task] = []
        self._pending_config: dict | None = None
        self._reconcile_task: asyncio.Task | None = None
        self._unsubscribe: Unsubscribe | None = None
        self._started = False
        self.locating = Locating(locator) if locator is not None else None
        self._unlocate: Unsubscribe | None = None

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Follow the config, start the counters job (and the owner takeover)."""
        if self._started:
            return
        self._started = True
        self._tasks = [asyncio.create_task(self._state_ticker(), name="k8s-state")]
        if self.locating is not None:
            self._unlocate = self.locating.locator.on_change(self._relocate)
        self._unsubscribe = self.config.on_config(self._on_config)
        if self.takeover is not None:
            self.takeover.start()
        await self.settle()

    async def stop(self) -> None:
        """Stop every watcher and periodic job."""
        self._started = False
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._unlocate is not None:
            self._unlocate()
            self._unlocate = None
        if self.takeover is not None:
            await self.takeover.stop()
        await cancel_and_wait(*self._tasks, self._reconcile_task)
        self._tasks = []
        for conn in list(self.connections.values()):
            await conn.stop()

    async def settle(self) -> None:
        """Wait until the last config change has been applied."""
        while self._reconcile_task is not None and not self._reconcile_task.done():
            await asyncio.shield(self._reconcile_task)

    # ------------------------------------------------------------------ config

    def _on_config(self, running: dict) -> None:
        self._pending_config = running
        if self._reconcile_task is None or self._reconcile_task.done():
            self._reconcile_task = asyncio.get_event_loop().create_task(self._reconcile_loop())

    async def _reconcile_loop(self) -> None:
        while self._pending_config is not None:
            running, self._pending_config = self._pending_config, None
            try:
                await self._reconcile(running)
            except Exception:
                log.exception("k8s: applying the connection config failed")

    async def _reconcile(self, running: dict) -> None:
        wanted: dict[str, dict] = {}
        for entry in ((running or {}).get(K8S_TOP) or {}).get("connection") or []:
            name = entry.get("cluster-name")
            if name:
                wanted[str(name)] = dict(entry)
        # deleted connections
        for name in [n for n in self._config if n not in wanted]:
            conn = self.connections.pop(name, None)
            if conn is not None:
                await conn.stop()
                conn.purge()
            self._states.pop(name, None)
            self.state.delete(CONNECTION_STATE, (name,))
        self._config = wanted
        local = 0
        for name in sorted(wanted):
            entry = wanted[name]
            owner = entry.get("owner") or self.node_name
            enabled = entry.get("enable", True)
            conn = self.connections.get(name)
            if owner != self.node_name:
                if conn is not None:
                    self.connections.pop(name)
                    await conn.stop()
                    conn.purge()
                self._write_static(name, "remote", f"owned by {owner}")
                continue
            if not enabled:
                if conn is not None:
                    await conn.stop()
                    conn.status = "disabled"
                    conn.last_error = ""
                    conn.flush_state(force=True)
                else:
                    self._write_static(name, "disabled", "")
                continue
            local += 1
            if local > MAX_CONNECTIONS:
                self._write_static(name, "error", f"more than {MAX_CONNECTIONS} Kubernetes connections; not started")
                continue
            if conn is not None and conn.config.get("kube-config") != entry.get("kube-config"):
                await conn.stop()
            if conn is None:
                conn = ClusterConnection(self, name, entry)
                self.connections[name] = conn
            else:
                conn.set_create_vport(bool(entry.get("create-vport", False)))
                conn.config.update(entry)
            self._states.pop(name, None)
            if not conn.running:
                conn.start()

    def _write_static(self, name: str, status: str, note: str) -> None:
        row = {"status": status, "api-server": "", "last-error": note if status == "error" else "",
               "pod-count": 0, "service-count": 0, "node-count": 0, "events": 0}
        if status == "remote":
            row["last-error"] = ""
        self._states[name] = status
        self.state.upsert(CONNECTION_STATE, (name,), row)

    # ------------------------------------------------------------------ ClusterSink

    def batch(self) -> ContextManager[None]:
        """The state port's batch (publishes a re-list as one feed batch)."""
        return self.state.batch()

    # ------------------------------------------------------------------ vPorts

    def claim_ip(self, ip: str, cluster: str, pod: PodView, now: float) -> None:
        """A pod of ``cluster`` holds ``ip`` (create-vport is on)."""
        self.ip_table.claim(ip, cluster, pod, now, first_seen=pod.start)
        self._show(ip, now)

    def release_ip(self, ip: str, cluster: str, uid: str, now: float) -> None:
        """The pod no longer holds ``ip``."""
        if self.ip_table.release(ip, cluster, uid):
            self._show(ip, now)

    def shown_cluster(self, ip: str) -> str | None:
        """The cluster whose vPort row is shown for ``ip``."""
        return self._shown.get(ip)

    def _show(self, ip: str, now: float) -> None:
        winner = self.ip_table.winner(ip)
        previous = self._shown.get(ip)
        if winner is None:
            if previous is not None:
                del self._shown[ip]
                self.state.delete(VPORT_PATH, (ip,))
                self.history.end("vport", previous, ip, "", now)
            return
        row = winner.row(ip, self.node_name)
        if self.locating is not None:
            self.locating.apply(row, winner.cluster, winner.pod.node, ip)
        if previous is not None and previous != winner.cluster:
            self.history.end("vport", previous, ip, "", now)
        self._shown[ip] = winner.cluster
        self.state.upsert(VPORT_PATH, (ip,), row)
        self.history.set("vport", winner.cluster, ip, "", without_location(row) if self.locating else row, now)

    def _relocate(self, change: LocationChange) -> None:
        """Nodes were (re)placed or addresses resolved: update the location leaves of the rows they touch.

        One feed batch of merges (a few leaves per row); the time machine is not written, since
        locations are kept in its attachment versions.  The cyclic garbage collector waits for a large
        batch to end: placing 5,000 nodes at once touches 150,000 rows.
        """
        locating = self.locating
        if locating is None:
            return
        nodes, ips = change.nodes, change.ips
        winner = self.ip_table.winner
        state = self.state
        with gc_paused(len(self._shown) > 10_000), state.batch():
            touched = [(ip, claim) for ip, claim in ((ip, winner(ip)) for ip in self._shown)
                       if claim is not None and (ip in ips or (claim.cluster, claim.pod.node) in nodes)]
            for ip, claim in touched:
                key = (ip,)
                current = state.get(VPORT_PATH, key)
                if current is None:
                    continue
                leaves, gone = locating.changes(current, claim.cluster, claim.pod.node, ip)
                if gone:
                    state.upsert(VPORT_PATH, key, {**without_location(current), **leaves})
                elif leaves:
                    state.merge(VPORT_PATH, key, leaves)

    # ------------------------------------------------------------------ queries

    def overlay_ports(self) -> dict[str, tuple[int, int, str]]:
        """{cluster: (udp port, VNI, encapsulation)} for every local cluster running a VXLAN overlay."""
        out = {}
        for name, conn in self.connections.items():
            info = conn.cni_info
            port = info.overlay_port() if info is not None else None
            if port is not None:
                out[name] = port
        return out

    # ------------------------------------------------------------------ periodic jobs

    async def _state_ticker(self) -> None:
        """Write the connections' counters when they moved, once a ``state_interval``."""
        while True:
            await asyncio.sleep(self.state_interval)
            for conn in list(self.connections.values()):
                if conn.running:
                    try:
                        conn.flush_state()
                    except Exception:
                        log.exception("k8s: writing the state of %s failed", conn.name)
