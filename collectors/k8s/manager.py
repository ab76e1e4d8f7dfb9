"""K8sManager: the producer the agent runs for Kubernetes connections.

It follows the running config (``ds.on_config``): for each connection in
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
:mod:`collectors.k8s.vports`), the :class:`~collectors.k8s.history.HistoryStore`
(also published as ``ds.history``), and the periodic jobs (history flush
every 0.25 s and retention hourly, both in a worker thread; counters once
a second).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from .cluster import CONNECTION_STATE, VPORT_PATH, ClusterConnection
from .history import HistoryStore
from .vports import IpTable, PodView

__all__ = ["K8sManager", "MAX_CONNECTIONS"]

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 4
K8S_TOP = "kubefabric-k8s:k8s"


class K8sManager:
    """Runs this node's Kubernetes connections and feeds the datastore.

    ``K8sManager(ds, data_dir, retention_days=30)``; ``await start()``,
    ``await stop()``.  ``watch_options`` (keyword arguments of
    :class:`~collectors.k8s.watcher.Watcher`, plus ``backoff_base`` and
    ``backoff_cap``) tune timeouts; tests shorten them.
    """

    def __init__(self, ds, data_dir: Path, retention_days: float = 30, *,
                 watch_options: dict | None = None, flush_interval: float = 0.25,
                 retention_interval: float = 3600.0, history_max_bytes: int | None = None) -> None:
        self.ds = ds
        self.node_name = str(getattr(ds, "node_name", "") or "")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.history = HistoryStore(self.data_dir / "k8s-history.sqlite3", retention_days, history_max_bytes)
        self.watch_options = dict(watch_options or {})
        self.flush_interval = flush_interval
        self.retention_interval = retention_interval
        self.connections: dict[str, ClusterConnection] = {}
        self.ip_table = IpTable()
        self._shown: dict[str, str] = {}          # ip -> cluster whose vPort row is shown
        self._config: dict[str, dict] = {}
        self._states: dict[str, str] = {}         # cluster -> status written for non-running connections
        self._tasks: list[asyncio.Task] = []
        self._reconcile_lock = asyncio.Lock()
        self._pending_config: dict | None = None
        self._reconcile_task: asyncio.Task | None = None
        self._started = False

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Publish the history store, follow the config and start periodic jobs."""
        if self._started:
            return
        self._started = True
        self.ds.history = self.history
        self._tasks = [asyncio.create_task(self._flusher(), name="k8s-history-flush"),
                       asyncio.create_task(self._retention(), name="k8s-history-retention")]
        self.ds.on_config(self._on_config)
        await self.settle()

    async def stop(self) -> None:
        """Stop every watcher and periodic job; flush and close the history."""
        self._started = False
        for task in self._tasks:
            task.cancel()
        if self._reconcile_task is not None:
            self._reconcile_task.cancel()
        for task in [*self._tasks, *([self._reconcile_task] if self._reconcile_task else [])]:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        for conn in list(self.connections.values()):
            await conn.stop()
        if getattr(self.ds, "history", None) is self.history:
            self.ds.history = None       # faces answer "no history store" rather than touch a closed one
        self.history.close()

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
        ds = self.ds
        # deleted connections
        for name in [n for n in self._config if n not in wanted]:
            conn = self.connections.pop(name, None)
            if conn is not None:
                await conn.stop()
                conn.purge()
            self._states.pop(name, None)
            ds.state.delete(CONNECTION_STATE, (name,))
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
        self.ds.state.upsert(CONNECTION_STATE, (name,), row)

    def batch(self):
        """The datastore's change batch when it has one (publishes a re-list as one feed batch)."""
        batch = getattr(self.ds.state, "batch", None)
        return batch() if batch is not None else contextlib.nullcontext()

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
                self.ds.state.delete(VPORT_PATH, (ip,))
                self.history.end("vport", previous, ip, "", now)
            return
        row = winner.row(ip, self.node_name)
        if previous is not None and previous != winner.cluster:
            self.history.end("vport", previous, ip, "", now)
        self._shown[ip] = winner.cluster
        self.ds.state.upsert(VPORT_PATH, (ip,), row)
        self.history.set("vport", winner.cluster, ip, "", row, now)

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

    async def _flusher(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(self.flush_interval)
            tick += 1
            try:
                # in a worker thread: SQLite releases the GIL, and a WAL checkpoint's fsync
                # must never stall watch events; chunks keep each transaction short
                while await asyncio.to_thread(self.history.flush, 2000) == 2000:
                    pass
            except Exception:
                log.exception("k8s: history flush failed")
            if tick * self.flush_interval >= 1.0:
                tick = 0
                for conn in list(self.connections.values()):
                    if conn.running:
                        conn.flush_state()

    async def _retention(self) -> None:
        while True:
            try:
                removed = await asyncio.to_thread(self.history.enforce_retention, time.time())
                if removed:
                    log.info("k8s history: removed %d records older than %g days", removed,
                             self.history.retention_days)
            except Exception:
                log.exception("k8s: history retention failed")
            await asyncio.sleep(self.retention_interval)
