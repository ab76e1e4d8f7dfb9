"""TopologyProducer: where every Kubernetes node is plugged in, learned here and shared fabric-wide.

Every ``interval`` it reads this switch's sources (LLDP, netlink, sFlow;
each optional, each with its own health row), matches their evidence
against the Kubernetes nodes of the fabric (:mod:`.match`), writes this
switch's attachments and LLDP neighbours, and publishes them as per-node
state (kind ``topology``) through the fabric store.  The other switches'
published attachments become rows too, so every agent lists every
attachment; from all of them it derives

- the nodes no switch could place (``topology/unplaced``, with the reason);
- the :class:`~core.ports.topology.NodeLocator` answers the Kubernetes
  collector puts into vPort rows (switches and ports of a node, the real
  MAC and VLAN of an address);
- the time machine's ``attachment`` versions (what was plugged where, and
  the port's utilisation and discards then).

The Kubernetes nodes come from the ``k8s/node`` rows of the clusters this
agent watches; it shares them (kind ``k8s-nodes``) so switches that do not
own the cluster connection can match them too.

What is published changes rarely: a new value goes out at once when an
attachment appears, goes or changes, and at most every ``publish_interval``
when only its volatile leaves (last-seen, counters) moved.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable, Iterable, Mapping

from core import schema_paths
from core.errors import UnavailableError
from core.ports.fabric import FabricMembership, NodeStateChannel
from core.ports.history import HistoryWriter
from core.ports.state import ChangeSource, StateWriter
from core.ports.topology import Endpoint, InterfaceCounters, LocationChange, NodeLocation, SourceSighting
from core.times import format_rfc3339

from .lldp import LldpSource, SourceReport
from .match import K8sNode, MatchResult, SwitchView, match
from .netlink import NetlinkSnapshot, NetlinkSource
from .sflowports import SflowPorts

__all__ = ["TopologyProducer", "TOPOLOGY_KIND", "NODES_KIND", "SOURCES"]

log = logging.getLogger(__name__)

ATTACHMENT = schema_paths.ATTACHMENT
UNPLACED = schema_paths.UNPLACED
SOURCE = schema_paths.TOPOLOGY_SOURCE
NEIGHBOR = schema_paths.LLDP_NEIGHBOR
K8S_NODE = schema_paths.K8S_NODE
TOPOLOGY_KIND = "topology"
NODES_KIND = "k8s-nodes"
SOURCES = ("lldp", "netlink", "sflow")
#: leaves that move without the attachment changing
VOLATILE = frozenset({"last-seen", "in-utilization", "out-utilization", "in-errors", "out-errors", "in-discards",
                      "out-discards", "in-discard-percent", "out-discard-percent", "counters-interval"})
#: counter leaves the time machine keeps (rounded), at most once per history_interval
HISTORY_COUNTERS = {"in-utilization": 0, "out-utilization": 0, "in-discard-percent": 1, "out-discard-percent": 1}
_HISTORY_DROP = frozenset({"last-seen", "first-seen", "in-errors", "out-errors", "in-discards", "out-discards",
                           "counters-interval"})
#: how many rows of one remote switch are taken (a bad value cannot flood the datastore)
MAX_REMOTE_ATTACHMENTS = 100_000


def _node_label(cluster: str, node: str) -> str:
    return f"{cluster}/{node}"


class TopologyProducer:
    """``TopologyProducer(state, feed, history, channel, switch, lldp=..., netlink=..., sflow=...)``.

    ``await start()`` / ``await stop()``; ``await refresh()`` runs one round
    now (tests, benchmarks).  It is the agent's ``InterfaceSink`` (sFlow) and
    ``NodeLocator`` (vPorts).
    """

    def __init__(self, state: StateWriter, feed: ChangeSource, history: HistoryWriter | None,
                 channel: NodeStateChannel | None, switch: str, *, lldp: LldpSource | None = None,
                 netlink: NetlinkSource | None = None, sflow: SflowPorts | None = None,
                 membership: FabricMembership | None = None, off: Mapping[str, str] | None = None,
                 interval: float = 5.0, publish_interval: float = 30.0, history_interval: float = 60.0,
                 last_seen_interval: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.feed = feed
        self.history = history
        self.channel = channel
        self.switch = switch
        self.lldp = lldp
        self.netlink = netlink
        self.sflow = sflow
        self.membership = membership
        self.off = dict(off or {})      # source name -> why it is not used
        self.interval = interval
        self.publish_interval = publish_interval
        self.history_interval = history_interval
        self.last_seen_interval = last_seen_interval
        self.clock = clock
        self.rounds = 0
        self.last_refresh_seconds = 0.0
        self._reports: dict[str, SourceReport] = {}
        self._result = MatchResult()
        self._first_seen: dict[tuple, float] = {}
        self._last_seen: dict[tuple, float] = {}
        self._remote_nodes: dict[str, list[K8sNode]] = {}
        self._remote_meta: dict[str, dict] = {}     # switch -> {"endpoints": ..., "hints": ...}
        self._local_nodes: list[K8sNode] = []
        self._nodes_dirty = True
        self._published: tuple[object, float] | None = None  # (structure without volatile values, time)
        self._published_nodes: str | None = None
        self._publish_lock = asyncio.Lock()
        self._locations: dict[tuple[str, str], NodeLocation] = {}
        self._endpoints: dict[str, Endpoint] = {}
        self._listeners: list[Callable[[LocationChange], None]] = []
        self._history_written: dict[tuple, tuple[dict, float, dict]] = {}   # key -> (structure, time, data)
        self._history_clusters: set[str] = set()
        self._unsubscribe: list[Callable[[], None]] = []
        self._task: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._rebuild_handle: asyncio.Handle | None = None

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        self._unsubscribe.append(self.feed.subscribe(self._on_changes))
        if self.channel is not None:
            self._unsubscribe.append(self.channel.on_node_state(TOPOLOGY_KIND, self._on_remote_topology))
            self._unsubscribe.append(self.channel.on_node_state(NODES_KIND, self._on_remote_nodes))
            for node, value in self.channel.node_states(NODES_KIND).items():
                self._on_remote_nodes(node, value, rebuild=False)
            for node, value in self.channel.node_states(TOPOLOGY_KIND).items():
                self._on_remote_topology(node, value, rebuild=False)
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="topology")

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._rebuild_handle is not None:
            self._rebuild_handle.cancel()
        for task in [t for t in (self._task, *self._pending) if t is not None]:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._task = None

    async def _loop(self) -> None:
        while True:
            # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a cancel that races the event
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=self.interval)
            finally:
                waiter.cancel()
            self._wake.clear()
            try:
                await self.refresh()
            except Exception:
                log.exception("topology refresh failed")

    # ------------------------------------------------------------------ InterfaceSink (sFlow)
    def interface_counters(self, batch: Iterable[InterfaceCounters]) -> None:
        if self.sflow is not None:
            self.sflow.interface_counters(batch)

    def source_sightings(self, batch: Iterable[SourceSighting]) -> None:
        if self.sflow is not None:
            self.sflow.source_sightings(batch)

    # ------------------------------------------------------------------ NodeLocator (vPorts)
    def location(self, cluster: str, node: str) -> NodeLocation | None:
        return self._locations.get((cluster, node))

    def endpoint(self, ip: str) -> Endpoint | None:
        return self._endpoints.get(ip)

    def on_change(self, listener: Callable[[LocationChange], None]) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            try:
                self._listeners.remove(listener)
            except ValueError:
                pass

        return unsubscribe

    # ------------------------------------------------------------------ one round
    async def refresh(self) -> None:
        """Read every source, match, write and publish this switch's rows, rebuild the fabric view."""
        reports = await self._read_sources()
        started = time.perf_counter()
        self._reports = reports
        self._write_sources(reports)
        self._rematch()
        self.rounds += 1
        self.last_refresh_seconds = time.perf_counter() - started

    async def _read_sources(self) -> dict[str, SourceReport]:
        names = [n for n in ("lldp", "netlink") if getattr(self, n) is not None and n not in self.off]
        results = await asyncio.gather(*(getattr(self, n).read() for n in names), return_exceptions=True)
        reports: dict[str, SourceReport] = {}
        for name, result in zip(names, results):
            if isinstance(result, BaseException):
                log.error("topology source %s failed: %r", name, result)
                reports[name] = SourceReport("error", f"{type(result).__name__}: {result}")
            else:
                reports[name] = result
        netlink = reports.get("netlink")
        local = netlink.data.addresses if netlink is not None and isinstance(netlink.data, NetlinkSnapshot) else None
        if self.sflow is not None and "sflow" not in self.off:
            reports["sflow"] = self.sflow.report(local)
        return reports

    def _write_sources(self, reports: dict[str, SourceReport]) -> None:
        rows = {}
        for name in SOURCES:
            report = reports.get(name)
            if report is None:
                why = self.off.get(name) or {"lldp": "turned off", "netlink": "turned off",
                                              "sflow": "sFlow is off (no --sflow-addr)"}[name]
                rows[(name,)] = {"status": "unavailable", "detail": why, "entries": 0}
                continue
            row: dict[str, Any] = {"status": report.status, "detail": report.detail, "entries": report.entries}
            if report.at:
                row["last-update"] = format_rfc3339(report.at)
            rows[(name,)] = row
        self.state.replace_where(SOURCE, rows)

    def _view(self) -> SwitchView:
        reports = self._reports
        lldp = reports.get("lldp")
        netlink = reports.get("netlink")
        sflow = reports.get("sflow")
        counters, sightings = (sflow.data if sflow is not None and sflow.data else ({}, {}))
        members = frozenset(self.membership.online_names()) if self.membership is not None else frozenset()
        members |= frozenset(self._remote_meta) | {self.switch}
        return SwitchView(switch=self.switch, lldp=lldp.data if lldp is not None else None,
                          netlink=netlink.data if netlink is not None else None,
                          counters=counters, sightings=sightings, fabric_members=members)

    def nodes(self) -> list[K8sNode]:
        """Every Kubernetes node of the fabric's clusters (ours from k8s/node, the others' shared)."""
        if self._nodes_dirty:
            self._local_nodes = [_k8s_node(key, row) for key, row in self.state.entries(K8S_NODE).items()]
            self._nodes_dirty = False
            self._schedule(self._publish_nodes())
        seen = {n.ident for n in self._local_nodes}
        out = list(self._local_nodes)
        for nodes in self._remote_nodes.values():
            for n in nodes:
                if n.ident not in seen:
                    seen.add(n.ident)
                    out.append(n)
        return out

    def _rematch(self) -> None:
        """Match the last reports against the nodes we know now; write, publish, rebuild."""
        result = match(self._view(), self.nodes())
        self._result = result
        now = self.clock()
        rows: dict[tuple, dict] = {}
        for (port, cluster, node), row in result.attachments.items():
            key = (self.switch, port, cluster, node)
            first = self._first_seen.setdefault(key, now)
            last = self._last_seen.get(key)
            if last is None or now - last >= self.last_seen_interval:
                last = self._last_seen[key] = now
            row["first-seen"] = format_rfc3339(first)
            row["last-seen"] = format_rfc3339(last)
            rows[key] = row
        for key in [k for k in self._first_seen if k not in rows]:
            del self._first_seen[key]
            self._last_seen.pop(key, None)
        switch = self.switch
        with self.state.batch():
            self.state.replace_where(ATTACHMENT, rows, lambda k, _v: k[0] == switch)
            self.state.replace_where(NEIGHBOR, result.neighbors)
        self._schedule(self._publish(rows, result))
        self._rebuild()

    # ------------------------------------------------------------------ sharing
    def _schedule(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, rows: dict[tuple, dict], result: MatchResult) -> None:
        if self.channel is None:
            return
        attachments = list(rows.values())
        endpoints = {ip: [mac, vlan] for ip, (mac, vlan) in result.endpoints.items()}
        hints = {_node_label(*k): v for k, v in result.hints.items()}
        # volatile values wait for publish_interval; a volatile leaf appearing (first counters) goes out at once
        structure = ([{k: (v if k not in VOLATILE else True) for k, v in r.items()} for r in attachments],
                     endpoints, hints)
        now = self.clock()
        async with self._publish_lock:
            last = self._published
            if last is not None and last[0] == structure and now - last[1] < self.publish_interval:
                return
            value = {"attachments": attachments, "endpoints": endpoints, "hints": hints,
                     "time": format_rfc3339(now)}
            try:
                await self.channel.publish_node_state(TOPOLOGY_KIND, value)
            except (UnavailableError, ValueError) as exc:
                log.warning("topology: cannot share this switch's attachments now: %s", exc)
                return
            self._published = (structure, now)

    async def _publish_nodes(self) -> None:
        if self.channel is None:
            return
        nodes = [{"cluster-name": n.cluster, "name": n.name, "addresses": list(n.addresses),
                  **({"hostname": n.hostname} if n.hostname else {})} for n in self._local_nodes]
        text = json.dumps(nodes, sort_keys=True)
        async with self._publish_lock:
            if text == self._published_nodes:
                return
            try:
                await self.channel.publish_node_state(NODES_KIND, {"nodes": nodes} if nodes else None)
            except (UnavailableError, ValueError) as exc:
                log.warning("topology: cannot share this switch's Kubernetes nodes now: %s", exc)
                self._nodes_dirty = True   # try again next round
                return
            self._published_nodes = text

    def _on_remote_nodes(self, node: str, value: Mapping | None, rebuild: bool = True) -> None:
        nodes: list[K8sNode] = []
        for entry in (value or {}).get("nodes") or ():
            try:
                nodes.append(K8sNode(str(entry["cluster-name"]), str(entry["name"]),
                                     tuple(str(a) for a in entry.get("addresses") or ()),
                                     str(entry.get("hostname") or "")))
            except (KeyError, TypeError):
                continue   # another version's or a broken entry: skip it, keep the rest
        if nodes:
            self._remote_nodes[node] = nodes
        else:
            self._remote_nodes.pop(node, None)
        if rebuild:
            self._rematch_soon()

    def _on_remote_topology(self, node: str, value: Mapping | None, rebuild: bool = True) -> None:
        rows: dict[tuple, dict] = {}
        value = value or {}
        attachments = value.get("attachments") or ()
        for row in list(attachments)[:MAX_REMOTE_ATTACHMENTS]:
            if not isinstance(row, dict):
                continue
            try:
                key = (node, str(row["port"]), str(row["cluster-name"]), str(row["node"]))
            except KeyError:
                continue
            rows[key] = {**row, "switch": node}
        if value:
            self._remote_meta[node] = {"endpoints": value.get("endpoints") or {}, "hints": value.get("hints") or {}}
        else:
            self._remote_meta.pop(node, None)
        self.state.replace_where(ATTACHMENT, rows, lambda k, _v: k[0] == node)
        if rebuild:
            self._rebuild_soon()

    def _rematch_soon(self) -> None:
        self._wake.set()

    def _rebuild_soon(self) -> None:
        if self._rebuild_handle is None:
            self._rebuild_handle = asyncio.get_running_loop().call_soon(self._rebuild)

    def _on_changes(self, changes: list) -> None:
        for change in changes:
            if change.path == K8S_NODE:
                self._nodes_dirty = True
                self._rematch_soon()
                return

    # ------------------------------------------------------------------ the fabric view
    def _rebuild(self) -> None:
        """Locations, endpoints, unplaced nodes and history from every switch's attachments."""
        self._rebuild_handle = None
        attachments = self.state.entries(ATTACHMENT)
        links: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for (switch, port, cluster, node) in attachments:
            links.setdefault((cluster, node), []).append((switch, port))
        locations = {}
        for ident, pairs in links.items():
            pairs.sort()
            locations[ident] = NodeLocation(tuple(s for s, _ in pairs), tuple(p for _, p in pairs))
        endpoints: dict[str, Endpoint] = {}
        for meta in self._remote_meta.values():
            for ip, pair in (meta.get("endpoints") or {}).items():
                if isinstance(pair, list) and len(pair) == 2:
                    endpoints.setdefault(str(ip), Endpoint(str(pair[0]), int(pair[1] or 0)))
        for ip, (mac, vlan) in self._result.endpoints.items():
            endpoints[ip] = Endpoint(mac, vlan)      # our own view wins
        changed_nodes = frozenset(k for k in set(locations) | set(self._locations)
                                  if locations.get(k) != self._locations.get(k))
        changed_ips = frozenset(ip for ip in set(endpoints) | set(self._endpoints)
                                if endpoints.get(ip) != self._endpoints.get(ip))
        self._locations, self._endpoints = locations, endpoints
        self._write_unplaced(locations)
        self._record_history(attachments)
        if changed_nodes or changed_ips:
            change = LocationChange(changed_nodes, changed_ips)
            for listener in tuple(self._listeners):
                try:
                    listener(change)
                except Exception:
                    log.exception("location listener failed")

    def _write_unplaced(self, locations: Mapping[tuple[str, str], NodeLocation]) -> None:
        hints: dict[str, list[str]] = {}
        for label, reason in ((_node_label(*k), v) for k, v in self._result.hints.items()):
            hints.setdefault(label, []).append(reason)
        for meta in self._remote_meta.values():
            for label, reason in (meta.get("hints") or {}).items():
                hints.setdefault(str(label), []).append(str(reason))
        lldp = self._reports.get("lldp")
        rows = {}
        for node in self.nodes():
            if node.ident in locations:
                continue
            reasons = hints.get(_node_label(*node.ident))
            if reasons:
                reason = "; ".join(sorted(set(reasons)))
            elif not node.addresses:
                reason = (f"no switch sees an LLDP neighbour named {node.name}, and the node reports no "
                          "InternalIP address to look up in the switches' neighbour tables")
            else:
                reason = (f"no switch sees an LLDP neighbour named {node.name}, and no switch's neighbour "
                          f"table and bridge FDB place {', '.join(node.addresses)}")
                if lldp is not None and lldp.status != "up":
                    reason += f" (LLDP on {self.switch}: {lldp.status})"
            rows[node.ident] = {"address": list(node.addresses), "reason": reason}
        self.state.replace_where(UNPLACED, rows)

    def _record_history(self, attachments: Mapping[tuple, Mapping]) -> None:
        """Attachment versions into the time machine; counter-only changes at most once per history_interval."""
        history = self.history
        if history is None:
            return
        now = self.clock()
        current: dict[str, dict[tuple[str, str], Mapping]] = {}
        written = self._history_written
        for key, row in attachments.items():
            switch, port, cluster, node = key
            data = {k: v for k, v in row.items() if k not in _HISTORY_DROP}
            for leaf, digits in HISTORY_COUNTERS.items():
                if isinstance(data.get(leaf), (int, float)):
                    data[leaf] = round(float(data[leaf]), digits) if digits else int(round(float(data[leaf])))
            # counter values wait for history_interval; counters appearing or going are a change at once
            structure = {k: (v if k not in HISTORY_COUNTERS else True) for k, v in data.items()}
            held = written.get(key)
            if held is not None and held[0] == structure and held[2] != data and now - held[1] < self.history_interval:
                data = held[2]       # only counters moved, and recently recorded: keep that version
            elif held is None or held[2] != data:
                written[key] = (structure, now, data)
            current.setdefault(cluster, {})[(f"{switch}/{port}", node)] = data
        for key in [k for k in written if k not in attachments]:
            del written[key]
        for cluster in self._history_clusters | set(current):
            history.sync("attachment", cluster, current.get(cluster, {}), now)
        self._history_clusters = set(current)


def _k8s_node(key: tuple, row: Mapping) -> K8sNode:
    cluster, name = key
    addresses = tuple(str(a) for a in (row.get("internal-ip") or ())) + \
        tuple(str(a) for a in (row.get("external-ip") or ()))
    return K8sNode(str(cluster), str(name), addresses, str(row.get("hostname") or ""))
