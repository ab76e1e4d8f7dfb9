"""Assembles one agent: the core, the fabric store, the faces and the producers, wired in one place.

The order matters: the datastore (and the fabric store under it) and the
time machine come first, so faces never serve an empty config that is
about to be restored; faces come next; producers last, so their first
writes reach subscribers.  Stopping runs in reverse.

This is the only module that knows every part.  Producers get the core's
ports (``ds.state`` as ``StateWriter``, ``ds`` as ``ConfigFollower`` and
``ConfigWriter``, ``ds.feed`` as ``ChangeSource``, the history store as
``HistoryWriter``/``History``, the fabric store as ``FabricMembership``);
flow sources are wired to flow sinks here (sFlow and the control-packet
capture -> connection table), as goflow2 wires decoder -> producer ->
transport in one place; so is the topology producer: the sFlow collector's
``InterfaceSink`` and the Kubernetes collector's ``NodeLocator``, with the
datastore as its ``NodeStateChannel``.
"""
from __future__ import annotations

import importlib
import logging
from typing import Any, Callable, Iterable, Protocol

from agent.auth import Authenticator
from agent.nacm import NACM_PATH, Nacm, follow
from agent.settings import Settings, SettingsError
from core.datastore import Datastore
from core.history import HistoryStore, HistoryUpkeep
from core.ports.fabric import FabricStore
from core.ports.stats import StatsSource
from fabric_sync.embedded import EmbeddedFabricStore

log = logging.getLogger("kubefabric")

HISTORY_FILE = "k8s-history.sqlite3"  # the time machine's database under --data-dir (name kept from 0.1)
FORWARD_KEY_FILE = "fabric-forward.key"  # this agent's Ed25519 key for forwarded requests (mode 0600)


class Component(Protocol):
    """Anything the agent starts and stops."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Agent:
    """A running kubefabric agent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.auth = Authenticator(settings.users)
        self.ds: Datastore | None = None
        self.history: HistoryStore | None = None
        self.components: list[tuple[str, Any]] = []
        self.nacm: Nacm | None = None

    def _fabric_store(self) -> FabricStore:
        s = self.settings
        if not s.etcd:
            return EmbeddedFabricStore(s.data_dir, s.node_name)
        try:
            from fabric_sync.etcd import EtcdFabricStore
            from fabric_sync.etcd_client import EndpointError, grpc_target
        except ModuleNotFoundError:
            raise SettingsError("--etcd is not available in this build") from None
        try:
            grpc_target(s.etcd)  # refuse unusable endpoints before anything starts
        except EndpointError as exc:
            raise SettingsError(str(exc)) from None
        return EtcdFabricStore(endpoints=s.etcd, fabric=s.fabric or "default", node_name=s.node_name,
                               address=s.gnmi_advertise or s.gnmi_addr, role=s.role, data_dir=s.data_dir,
                               security=etcd_security(s))

    async def start(self) -> None:
        """Start everything; raises on the first component that cannot start."""
        s = self.settings
        if not s.users:
            log.warning("no users configured: every request will be refused (see 'kubefabric passwd')")
        self.ds = Datastore(s.node_name, s.data_dir, self._fabric_store())
        # NACM (RFC 8341): one set of decisions for every face; every config write is checked in propose
        self.nacm = Nacm(self.ds.schema, self.auth.groups)
        self.ds.authorize_writes(self.nacm.check_writes)
        await self.ds.start()
        follow(self.nacm, self.ds)
        ds = self.ds
        self.nacm.on_counters = lambda counters: ds.state.merge(NACM_PATH, (), counters)
        log.info("node %s: config restored (fabric revision %s) from %s", s.node_name, self.ds.revision, s.data_dir)
        self.history = HistoryStore(s.data_dir / HISTORY_FILE, s.history_retention_days,
                                    int(s.history_max_mb * 2**20) if s.history_max_mb else None)
        self.ds.history.attach(self.history)
        upkeep = HistoryUpkeep(self.history)
        await upkeep.start()
        self.components.append(("history", upkeep))
        for name, factory in self._plan(self.ds, self.history):
            component = factory()
            try:
                await component.start()
            except BaseException:
                await self.stop()
                raise
            self.components.append((name, component))
            log.info("%s %s", name, _listening(component))

    def _plan(self, ds: Datastore, history: HistoryStore) -> list[tuple[str, Callable[[], Component]]]:
        """(name, factory) of every component these settings ask for, in start order."""
        s = self.settings

        from agent.forward import FabricForwarder

        forwarder = FabricForwarder(ds, self.auth, s.data_dir / FORWARD_KEY_FILE, insecure=s.insecure,
                                    ca=s.fabric_tls_ca or s.tls_client_ca, cert=s.tls_cert, key=s.tls_key)

        def gnmi() -> Component:
            from agent.gnmi.server import GnmiServer

            return GnmiServer(
                ds, self.auth, addr=s.gnmi_addr, insecure=s.insecure,
                tls_cert=s.tls_cert, tls_key=s.tls_key, tls_client_ca=s.tls_client_ca, nacm=self.nacm,
                forwarder=forwarder,
            )

        topology = self._topology(ds, history)

        def kubernetes() -> Component:
            manager = _load("collectors.k8s.manager", "K8sManager")
            return manager(ds.state, ds, history, s.node_name, s.data_dir, membership=ds.fabric, writer=ds,
                           owner_grace=s.owner_grace, locator=topology)

        plan: list[tuple[str, Callable[[], Component]]] = [("fabric-forwarding", lambda: forwarder), ("gNMI", gnmi)]
        if s.netconf_addr:
            plan.append(("NETCONF", lambda: _load("agent.netconf.server", "NetconfServer")(ds, self.auth, addr=s.netconf_addr,
                                                                                          nacm=self.nacm)))
        if s.cli_ssh_addr:
            plan.append(("CLI-SSH", lambda: _load("agent.cli.ssh", "CliSshServer")(ds, self.auth, addr=s.cli_ssh_addr, settings=s,
                                                                                  nacm=self.nacm, forwarder=forwarder)))
        if s.metrics_addr:
            plan.append(("metrics", lambda: _load("agent.metrics", "MetricsServer")(
                ds, addr=s.metrics_addr, sources=self.stats_sources, fabric_name=s.fabric or "")))
        if s.web_addr:
            plan.append(("web", lambda: _load("agent.web.server", "WebServer")(ds, self.auth, addr=s.web_addr)))
        plan.append(("topology", lambda: topology))
        plan.append(("kubernetes", kubernetes))
        # The connection table takes sampled packets (sFlow) and exact control packets (the capture);
        # the capture follows node-local YANG config too, so it always runs (idle until an input is set).
        table = _load("collectors.conntrack.table", "ConnectionTable")(ds.state, ds, ds.feed, history)
        plan.append(("connections", lambda: table))
        if s.sflow_addr:
            plan.append(("sFlow", lambda: _load("collectors.sflow.collector", "SflowCollector")(
                ds.state, ds, ds.feed, table, addr=s.sflow_addr, workers=s.sflow_workers,
                interface_sink=topology if "sflow" in s.topology_sources else None)))
        plan.append(("capture", lambda: _load("collectors.capture.source", "CaptureSource")(
            ds.state, ds, ds.feed, table, interfaces=s.capture_interfaces, erspan_addr=s.erspan_addr)))
        return plan

    def _topology(self, ds: Datastore, history: HistoryStore) -> Any:
        """The topology producer with the sources these settings allow (each reports why it is off)."""
        s = self.settings
        lldp_source = _load("collectors.topology.lldp", "LldpSource")
        netlink_source = _load("collectors.topology.netlink", "NetlinkSource")
        sflow_ports = _load("collectors.topology.sflowports", "SflowPorts")
        off = {name: "turned off (--topology-sources)" for name in ("lldp", "netlink", "sflow")
               if name not in s.topology_sources}
        if "sflow" not in off and not s.sflow_addr:
            off["sflow"] = "sFlow is off (no --sflow-addr)"
        return _load("collectors.topology.producer", "TopologyProducer")(
            ds.state, ds.feed, history, ds, s.node_name,
            lldp=lldp_source(s.lldp_socket) if "lldp" not in off else None,
            netlink=netlink_source() if "netlink" not in off else None,
            sflow=sflow_ports() if "sflow" not in off else None,
            membership=ds.fabric, off=off, interval=s.topology_interval)

    def component(self, name: str) -> Any:
        """A started component by name (e.g. "gNMI"), or None."""
        return dict(self.components).get(name)

    def stats_sources(self) -> Iterable[tuple[str, StatsSource]]:
        """The started components that report statistics (for the metrics face)."""
        return [(name, c) for name, c in self.components if callable(getattr(c, "statistics", None))]

    async def stop(self) -> None:
        """Stop components in reverse order, then the datastore."""
        while self.components:
            name, component = self.components.pop()
            if name == "history" and self.ds is not None:
                self.ds.history.detach()  # faces answer "no history" rather than touch a closed store
            try:
                await component.stop()
            except Exception:
                log.exception("stopping %s failed", name)
        if self.ds is not None:
            await self.ds.stop()
            self.ds = None


def etcd_security(settings: Settings):
    """The agent's identity towards etcd (TLS files, etcd user) from its settings."""
    from fabric_sync.security import EtcdSecurity

    return EtcdSecurity(ca=settings.etcd_ca, cert=settings.etcd_cert, key=settings.etcd_key,
                        server_name=settings.etcd_server_name, user=settings.etcd_user,
                        password=settings.etcd_password)


def _listening(component: Any) -> str:
    """The start-up line's tail: where a listener listens."""
    address = getattr(component, "address", None)
    if address is None and getattr(component, "bound_port", None):
        host = getattr(component, "host", None) or "0.0.0.0"
        address = f"{host}:{component.bound_port}"
    security = getattr(component, "security", None)
    suffix = f" ({security})" if security else ""
    return f"listening on {address}{suffix}" if address else "started"


def _load(module: str, name: str) -> Any:
    """A component class, or a SettingsError when this build lacks it."""
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise SettingsError(f"{module} is not available in this build") from None
        raise
