"""Which pods and service a connection belongs to, as they were when it was seen.

Rules (Netvisor's overlay-vxlan-analytics):

* an **encapsulated** connection (the inner flow of VXLAN, Geneve, IP-in-IP)
  is attributed only when a Kubernetes connection has
  ``overlay-vxlan-analytics`` true, and only to that cluster's pods and
  services;
* a plain connection is attributed to whatever pod holds its addresses in
  any connected cluster (a routed CNI such as Calico without overlay puts
  pod addresses on the wire directly).

Pods come from the time machine (``History.pods_at(ip, t, cluster)``) at
the connection's first-seen time when the agent keeps history, else from
the live vPort table.  History answers carry
their validity interval, so they are cached per address for any time inside
it; open intervals and misses are re-asked after ``ttl`` seconds.

The service is the one whose ClusterIP is the destination, else whose
NodePort is the destination port (the destination not being a pod), else
the one backed by the destination pod on a matching target port.  Services
come from the live ``k8s/service`` rows; the index is rebuilt after a
service change reaches the feed.
"""
from __future__ import annotations

import logging
import time

from typing import Any, Mapping

from core import schema_paths
from core.ports.history import History
from core.ports.state import ChangeSource, StateReader

from .tracker import Connection

__all__ = ["Attributor", "VPORT_PATH", "SERVICE_PATH", "K8S_TOP"]

log = logging.getLogger(__name__)

VPORT_PATH = schema_paths.VPORT
SERVICE_PATH = schema_paths.K8S_SERVICE
BACKEND_PATH = schema_paths.K8S_SERVICE_BACKEND
K8S_TOP = "kubefabric-k8s:k8s"

_INF = float("inf")


class _ServiceIndex:
    """ClusterIPs, NodePorts and backends (k8s/service/backend entries) of the live services."""

    def __init__(self, rows: Mapping[tuple, Mapping[str, Any]], backends: Mapping[tuple, Mapping[str, Any]]) -> None:
        self.cluster_ips: dict[str, list[tuple[str, str]]] = {}
        self.node_ports: dict[int, list[tuple[str, str]]] = {}
        self.backends: dict[str, list[tuple[str, str, set | None]]] = {}
        for (cluster, ns, name), row in rows.items():
            svc = f"{ns}/{name}"
            for ip in row.get("cluster-ips") or ():
                self.cluster_ips.setdefault(str(ip), []).append((cluster, svc))
            for port in row.get("node-ports") or ():
                self.node_ports.setdefault(int(port), []).append((cluster, svc))
        ports: dict[tuple, set[int] | None] = {}
        for (cluster, ns, name, ip, port), _row in backends.items():
            ident = (cluster, f"{ns}/{name}", str(ip))
            if ident not in ports:
                ports[ident] = set()
            known = ports[ident]
            if known is not None:
                if int(port):
                    known.add(int(port))
                else:
                    ports[ident] = None  # an endpoint without a port: any port of the pod
        for (cluster, svc, ip), targets in ports.items():
            self.backends.setdefault(ip, []).append((cluster, svc, targets))

    def lookup(self, ip: str, port: int, cluster: str | None, dst_is_pod: bool) -> tuple[str, str] | None:
        for c, svc in self.cluster_ips.get(ip, ()):
            if cluster is None or c == cluster:
                return c, svc
        if not dst_is_pod:
            for c, svc in self.node_ports.get(port, ()):
                if cluster is None or c == cluster:
                    return c, svc
        for c, svc, targets in self.backends.get(ip, ()):
            if (cluster is None or c == cluster) and (targets is None or port in targets):
                return c, svc
        return None


class Attributor:
    """Pod, namespace, service and cluster leaves for connection rows.

    ``Attributor(state, feed, history)``; ``configure(running)`` on every config change;
    ``leaves(conn)`` returns the attribution leaves of a tracker
    :class:`~collectors.conntrack.tracker.Connection` (possibly empty).
    """

    def __init__(self, state: StateReader, feed: ChangeSource | None = None, history: History | None = None,
                 ttl: float = 5.0) -> None:
        self.state = state
        self.history = history
        self.ttl = ttl
        self.analytics_cluster: str | None = None
        self._pods: dict[tuple[str, str | None], tuple[float, float, float, dict | None]] = {}
        self._services: _ServiceIndex | None = None
        self._unsubscribe = feed.subscribe(self._on_changes) if feed is not None else None
        self.history_errors = 0

    def close(self) -> None:
        """Stop following the feed."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def configure(self, running: dict) -> None:
        """Pick the cluster with overlay-vxlan-analytics from the running config."""
        cluster = None
        for conn in (running.get(K8S_TOP) or {}).get("connection") or ():
            if conn.get("overlay-vxlan-analytics"):  # a disabled connection keeps its frozen rows and history
                cluster = conn.get("cluster-name")
                break
        if cluster != self.analytics_cluster:
            self.analytics_cluster = cluster
            self._pods.clear()

    def _on_changes(self, changes: list) -> None:
        for change in changes:
            path = change.path
            if path == SERVICE_PATH or path == BACKEND_PATH:
                self._services = None
            elif path == VPORT_PATH and self._pods:
                # only this IP's open answers can be stale; closed intervals never change
                ip = change.key[0]
                for key in ((ip, None), (ip, self.analytics_cluster)):
                    hit = self._pods.get(key)
                    if hit is not None and hit[1] == _INF:
                        del self._pods[key]

    # ------------------------------------------------------------------ lookups
    def pod(self, ip: str, t: float, cluster: str | None) -> dict | None:
        """{cluster, namespace, name} of the pod holding ``ip`` at ``t`` (restricted to ``cluster``), or None."""
        history = self.history
        if history is None:
            row = self.state.get(VPORT_PATH, (ip,))
            if row is None or not row.get("entity"):
                return None
            owner = row.get("svc-name") or ""
            if cluster is not None and owner != cluster:
                return None
            return {"cluster": owner, "namespace": row.get("namespace") or "", "name": row["entity"]}
        now = time.monotonic()
        key = (ip, cluster)
        hit = self._pods.get(key)
        if hit is not None:
            start, end, expires, found = hit
            if start <= t < end and now < expires:
                return found
        try:
            found_pods = history.pods_at(ip, t, cluster)
        except Exception:  # a broken history must not stop the table
            self.history_errors += 1
            if self.history_errors == 1:
                log.exception("history lookup failed; attributing without history")
            return None
        if not found_pods:
            self._pods[key] = (-_INF, _INF, now + self.ttl, None)
            return None
        rec = found_pods[0]
        found = {"cluster": rec.cluster, "namespace": str(rec.data.get("namespace") or ""),
                 "name": str(rec.data.get("name") or "")}
        if rec.valid_to is None:
            self._pods[key] = (rec.valid_from, _INF, now + self.ttl, found)
        else:
            self._pods[key] = (rec.valid_from, rec.valid_to, _INF, found)
        if len(self._pods) > 200_000:
            self._pods.clear()
        return found

    def service(self, ip: str, port: int, cluster: str | None, dst_is_pod: bool) -> tuple[str, str] | None:
        """(cluster, "namespace/name") of the service the destination belongs to, or None."""
        index = self._services
        if index is None:
            index = self._services = _ServiceIndex(self.state.entries(SERVICE_PATH), self.state.entries(BACKEND_PATH))
        return index.lookup(ip, port, cluster, dst_is_pod)

    def leaves(self, conn: Connection) -> dict:
        """src-pod, dst-pod, src-namespace, dst-namespace, service, cluster-name for a connection."""
        if conn.encapsulation != "none":
            cluster = self.analytics_cluster
            if cluster is None:
                return {}
        else:
            cluster = None
        t = conn.first_seen
        out: dict = {}
        src = self.pod(conn.src_ip, t, cluster)
        dst = self.pod(conn.dst_ip, t, cluster)
        if src is not None:
            out["src-pod"] = src["name"]
            out["src-namespace"] = src["namespace"]
            out["cluster-name"] = src["cluster"]
        if dst is not None:
            out["dst-pod"] = dst["name"]
            out["dst-namespace"] = dst["namespace"]
            out["cluster-name"] = dst["cluster"]
        svc = self.service(conn.dst_ip, conn.dst_port, cluster or out.get("cluster-name"), dst is not None)
        if svc is not None:
            out["service"] = svc[1]
            out.setdefault("cluster-name", svc[0])
        if cluster is not None:
            out.setdefault("cluster-name", cluster)
        return out
