"""Prometheus metrics, computed at scrape time from the datastore.

Nothing on a hot path is instrumented: the sFlow collector, the connection
tracker and the Kubernetes watchers already publish their counters as YANG
state (``sflow-collector/statistics``, ``connections/statistics``,
``k8s/connection/state``), and the faces report a typed
``core.ports.stats.ComponentStats`` (``statistics()``).  A scrape reads those
once, in the event loop that owns them, so a scrape costs the scraper and
never the producers.  The metrics face reads producers only through the
datastore and faces only through their statistics.

Served by ``MetricsServer`` (aiohttp, same event loop as the datastore) on
``--metrics-addr`` at ``/metrics``; no authentication, like most exporters:
bind it to a management or loopback address.  The metric names are listed
in ``METRICS`` and used by ``examples/grafana/kubefabric.json``.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from agent.settings import split_addr
from core import schema_paths
from core.datastore import Datastore
from core.ports.stats import ComponentStats, StatsSource
from core.times import try_parse_rfc3339

__all__ = ["FabricCollector", "MetricsServer", "METRICS", "StatsSources"]

log = logging.getLogger("kubefabric.metrics")

SFLOW_STATS = schema_paths.SFLOW_STATS
SFLOW_EXPORTER = schema_paths.SFLOW_EXPORTER
CONNECTION = schema_paths.CONNECTION
K8S_STATE = schema_paths.K8S_CONNECTION_STATE
K8S_CONNECTION = schema_paths.K8S_CONNECTION
VPORT = schema_paths.VPORT
FABRIC = schema_paths.FABRIC
FABRIC_NODE = schema_paths.FABRIC_NODE
CONNECTION_STATISTICS = schema_paths.CONNECTION_STATISTICS
CONNECTION_SETTINGS = schema_paths.CONNECTION_SETTINGS

K8S_STATUSES = ("disabled", "connecting", "connected", "error", "remote")
SYNC_STATES = ("in-sync", "stale")

#: the running components that report statistics: (name, source) pairs, asked at every scrape
StatsSources = Callable[[], Iterable[tuple[str, StatsSource]]]

#: every metric family this module exports: name -> (type, help)
METRICS: dict[str, tuple[str, str]] = {
    "kubefabric_info": ("gauge", "Always 1; labels name the node and the fabric."),
    "kubefabric_sflow_datagrams_total": ("counter", "sFlow datagrams received (all exporters)."),
    "kubefabric_sflow_samples_total": ("counter", "sFlow samples decoded (all exporters)."),
    "kubefabric_sflow_malformed_total": ("counter", "sFlow datagrams that could not be decoded (all exporters)."),
    "kubefabric_sflow_lost_total": ("counter", "sFlow datagrams lost, from sequence-number gaps (all exporters)."),
    "kubefabric_sflow_exporter_datagrams_total": ("counter", "sFlow datagrams received per exporter."),
    "kubefabric_sflow_exporter_samples_total": ("counter", "sFlow samples decoded per exporter."),
    "kubefabric_sflow_exporter_malformed_total": ("counter", "Malformed sFlow datagrams per exporter."),
    "kubefabric_sflow_exporter_lost_total": ("counter", "sFlow datagrams lost per exporter (sequence gaps)."),
    "kubefabric_sflow_exporter_last_seen_seconds": ("gauge", "Unix time of the exporter's last datagram."),
    "kubefabric_connections": ("gauge", "Rows in the connection table, by cur-state."),
    "kubefabric_connection_table_size": ("gauge", "Rows in the connection table."),
    "kubefabric_connection_table_max": ("gauge", "connection-stats-settings max-connections."),
    "kubefabric_connection_stats_enabled": ("gauge", "1 when connection-stats-settings enable is true."),
    "kubefabric_connection_evictions_total": ("counter", "Connections evicted because the table was full."),
    "kubefabric_connection_refused_total": ("counter", "New connections refused: table full, exporter held none."),
    "kubefabric_connection_skipped_samples_total": ("counter", "Samples without ports (header cut short)."),
    "kubefabric_k8s_connection_status": ("gauge", "1 for the current status of each Kubernetes connection."),
    "kubefabric_k8s_events_total": ("counter", "Kubernetes watch events received per connection."),
    "kubefabric_k8s_pods": ("gauge", "Pods seen per Kubernetes connection."),
    "kubefabric_k8s_services": ("gauge", "Services seen per Kubernetes connection."),
    "kubefabric_k8s_nodes": ("gauge", "Kubernetes nodes seen per connection."),
    "kubefabric_k8s_last_sync_seconds": ("gauge", "Unix time of the connection's last successful list."),
    "kubefabric_vports": ("gauge", "vPorts on this node, by Kubernetes host name."),
    "kubefabric_face_sessions": ("gauge", "Open client sessions per face (gNMI, NETCONF, CLI-SSH)."),
    "kubefabric_face_subscriptions": ("gauge", "Active subscriptions per face."),
    "kubefabric_face_coalesced_updates_total": ("counter", "Updates merged in slow clients' queues per face."),
    "kubefabric_component_stat": ("gauge", "Any other counter a component reports in its statistics."),
    "kubefabric_fabric_sync_state": ("gauge", "1 for the fabric store's current sync-state."),
    "kubefabric_fabric_nodes": ("gauge", "Fabric members by state."),
    "kubefabric_fabric_revision": ("gauge", "Fabric config revision applied on this node."),
    "kubefabric_config_commits_total": ("counter", "Config changes committed through this node."),
    "kubefabric_changefeed_listeners": ("gauge", "Listeners on the datastore change feed."),
    "kubefabric_history_available": ("gauge", "1 when the time-machine history store is available."),
}


def _family(name: str, labels: Iterable[str] = ()):
    kind, doc = METRICS[name]
    if kind == "counter":
        # prometheus_client appends _total itself
        return CounterMetricFamily(name[: -len("_total")], doc, labels=list(labels))
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _num(value: object) -> float | None:
    """A leaf or stats value as a float (counter64 may arrive as text); None if not numeric."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _epoch(text: object) -> float | None:
    """A yang:date-and-time leaf as Unix time."""
    return try_parse_rfc3339(text) if isinstance(text, str) else None


class FabricCollector:
    """prometheus_client collector: one pass over the datastore and the faces' statistics per scrape."""

    def __init__(self, ds: Datastore, sources: StatsSources | None = None, fabric_name: str = "") -> None:
        self.ds = ds
        self.sources = sources or (lambda: ())
        self.fabric_name = fabric_name

    def describe(self):  # no fixed description: families depend on what has landed
        return []

    def collect(self):
        ds = self.ds
        yield from self._info()
        yield from self._sflow(ds)
        yield from self._connections(ds)
        yield from self._k8s(ds)
        yield from self._vports(ds)
        yield from self._faces()
        yield from self._fabric(ds)

    # -- families ------------------------------------------------------------
    def _info(self):
        ds = self.ds
        fabric = (ds.read_node(FABRIC) or {}).get("name", "")
        if not fabric:  # the fabric name leaf is unset: show the etcd prefix the agent joined
            fabric = self.fabric_name
        f = _family("kubefabric_info", ["node", "fabric"])
        f.add_metric([ds.node_name, str(fabric or "")], 1)
        yield f

    def _sflow(self, ds):
        totals = ds.read_node(SFLOW_STATS) or {}
        exporters = list(ds.read(SFLOW_EXPORTER))
        for leaf in ("datagrams", "samples", "malformed", "lost"):
            f = _family(f"kubefabric_sflow_{leaf}_total")
            value = _num(totals.get(leaf))
            if value is None:  # the collector keeps only per-exporter rows: sum them
                value = sum(_num(row.get(leaf)) or 0.0 for _, row, _ in exporters)
            f.add_metric([], value)
            yield f
        labels = ["agent_address", "sub_agent_id"]
        for leaf in ("datagrams", "samples", "malformed", "lost"):
            f = _family(f"kubefabric_sflow_exporter_{leaf}_total", labels)
            for key, row, _ts in exporters:
                f.add_metric([str(key[0]), str(key[1])], _num(row.get(leaf)) or 0.0)
            yield f
        f = _family("kubefabric_sflow_exporter_last_seen_seconds", labels)
        for key, row, _ts in exporters:
            seen = _epoch(row.get("last-seen"))
            if seen is not None:
                f.add_metric([str(key[0]), str(key[1])], seen)
        yield f

    def _connections(self, ds):
        states: Counter = Counter()
        for _key, row in ds.state.entries(CONNECTION).items():
            states[str(row.get("cur-state", "unknown"))] += 1
        f = _family("kubefabric_connections", ["state"])
        for state, count in sorted(states.items()):
            f.add_metric([state], count)
        yield f
        size = _family("kubefabric_connection_table_size")
        size.add_metric([], sum(states.values()))
        yield size
        settings = ds.read_node(CONNECTION_SETTINGS) or {}
        full = ds.config.full.get("kubefabric-connection:connection-stats-settings") or {}
        enabled = settings.get("enable", full.get("enable", False))
        maximum = settings.get("max-connections", full.get("max-connections"))
        f = _family("kubefabric_connection_stats_enabled")
        f.add_metric([], 1.0 if enabled else 0.0)
        yield f
        if _num(maximum) is not None:
            f = _family("kubefabric_connection_table_max")
            f.add_metric([], _num(maximum))
            yield f
        counters = ds.read_node(CONNECTION_STATISTICS) or {}
        for name, leaf in (("kubefabric_connection_evictions_total", "evicted"),
                           ("kubefabric_connection_refused_total", "refused"),
                           ("kubefabric_connection_skipped_samples_total", "skipped")):
            value = _num(counters.get(leaf))
            if value is not None:
                f = _family(name)
                f.add_metric([], value)
                yield f

    def _k8s(self, ds):
        status = _family("kubefabric_k8s_connection_status", ["cluster_name", "status"])
        events = _family("kubefabric_k8s_events_total", ["cluster_name"])
        pods = _family("kubefabric_k8s_pods", ["cluster_name"])
        services = _family("kubefabric_k8s_services", ["cluster_name"])
        nodes = _family("kubefabric_k8s_nodes", ["cluster_name"])
        synced = _family("kubefabric_k8s_last_sync_seconds", ["cluster_name"])
        for key, row, _ts in ds.read(K8S_STATE):
            cluster = str(key[0])
            current = row.get("status")
            for name in K8S_STATUSES:
                status.add_metric([cluster, name], 1.0 if current == name else 0.0)
            events.add_metric([cluster], _num(row.get("events")) or 0.0)
            pods.add_metric([cluster], _num(row.get("pod-count")) or 0.0)
            services.add_metric([cluster], _num(row.get("service-count")) or 0.0)
            nodes.add_metric([cluster], _num(row.get("node-count")) or 0.0)
            seen = _epoch(row.get("last-sync"))
            if seen is not None:
                synced.add_metric([cluster], seen)
        yield from (status, events, pods, services, nodes, synced)

    def _vports(self, ds):
        hosts: Counter = Counter()
        for _key, row in ds.state.entries(VPORT).items():
            hosts[str(row.get("hostname", ""))] += 1
        f = _family("kubefabric_vports", ["hostname"])
        for host, count in sorted(hosts.items()):
            f.add_metric([host], count)
        yield f

    def _faces(self):
        sessions = _family("kubefabric_face_sessions", ["face"])
        subscriptions = _family("kubefabric_face_subscriptions", ["face"])
        coalesced = _family("kubefabric_face_coalesced_updates_total", ["face"])
        other = _family("kubefabric_component_stat", ["component", "stat"])
        for name, source in self.sources():
            try:
                stats: ComponentStats = source.statistics()
            except Exception:  # a face's bug must not break the scrape
                log.exception("reading the statistics of %s failed", name)
                continue
            for family, value in ((sessions, stats.sessions), (subscriptions, stats.subscriptions),
                                  (coalesced, stats.coalesced)):
                if value is not None:
                    family.add_metric([name], float(value))
            for stat, number in sorted(stats.other.items()):
                other.add_metric([name, stat], float(number))
        yield from (sessions, subscriptions, coalesced, other)

    def _fabric(self, ds):
        fabric = ds.read_node(FABRIC) or {}
        current = fabric.get("sync-state")
        f = _family("kubefabric_fabric_sync_state", ["state"])
        for name in SYNC_STATES:
            f.add_metric([name], 1.0 if current == name else 0.0)
        yield f
        members: Counter = Counter()
        for _key, row, _ts in ds.read(FABRIC_NODE):
            members[str(row.get("state", "unknown"))] += 1
        f = _family("kubefabric_fabric_nodes", ["state"])
        for state in sorted(set(members) | {"online", "offline"}):
            f.add_metric([state], members.get(state, 0))
        yield f
        f = _family("kubefabric_fabric_revision")
        f.add_metric([], float(max(ds.revision, 0)))
        yield f
        f = _family("kubefabric_config_commits_total")
        f.add_metric([], float(ds.commits))
        yield f
        f = _family("kubefabric_changefeed_listeners")
        f.add_metric([], float(ds.feed.listener_count))
        yield f
        f = _family("kubefabric_history_available")
        f.add_metric([], 1.0 if ds.history.available else 0.0)
        yield f


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The exposition text for an Accept header: (body, content type)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


class MetricsServer:
    """`/metrics` over HTTP on --metrics-addr, in the agent's event loop."""

    def __init__(self, ds: Datastore, addr: str, sources: StatsSources | None = None, fabric_name: str = "") -> None:
        self.ds = ds
        self.host, self.port = split_addr(addr, 9464)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(FabricCollector(ds, sources, fabric_name))
        self.scrapes = 0
        self._runner = None
        self.address: str | None = None

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._index)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []  # the bound port when 0 was asked
        port = sockets[0].getsockname()[1] if sockets else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.address = f"{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def statistics(self) -> ComponentStats:
        """Scrapes served."""
        return ComponentStats(other={"scrapes": float(self.scrapes)})

    async def _metrics(self, request):
        from aiohttp import web

        started = time.perf_counter()
        body, content_type = render(self.registry, request.headers.get("Accept"))
        self.scrapes += 1
        log.debug("scrape took %.1f ms", (time.perf_counter() - started) * 1000)
        return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    async def _index(self, request):
        from aiohttp import web

        return web.Response(text="kubefabric metrics: see /metrics\n")
