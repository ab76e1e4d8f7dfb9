"""Assembles one agent: datastore, fabric store, producers and faces.

The order matters: the datastore (and the fabric store under it) comes
first so faces never serve an empty config that is about to be restored;
faces come next; producers last, so their first writes reach subscribers.
Stopping runs in reverse.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Any

from agent.auth import Authenticator
from agent.datastore import Datastore
from agent.settings import Settings, SettingsError
from fabric_sync.embedded import EmbeddedFabricStore

log = logging.getLogger("kubefabric")


class Agent:
    """A running kubefabric agent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.auth = Authenticator(settings.users)
        self.ds: Datastore | None = None
        self.components: list[tuple[str, Any]] = []

    def _fabric_store(self):
        s = self.settings
        if not s.etcd:
            return EmbeddedFabricStore(s.data_dir, s.node_name)
        try:
            from fabric_sync.etcd import EtcdFabricStore
        except ModuleNotFoundError:
            raise SettingsError("--etcd is not available in this build") from None
        return EtcdFabricStore(
            endpoints=s.etcd,
            fabric=s.fabric or "default",
            node_name=s.node_name,
            address=s.gnmi_addr,
            role=s.role,
            owner_grace=s.owner_grace,
        )

    async def start(self) -> None:
        """Start everything; raises on the first component that cannot start."""
        s = self.settings
        if not s.users:
            log.warning("no users configured: every request will be refused (see 'kubefabric passwd')")
        self.ds = Datastore(s.node_name, s.data_dir, self._fabric_store())
        await self.ds.start()
        log.info("node %s: config restored (fabric revision %s) from %s", s.node_name, self.ds.revision, s.data_dir)
        for name, factory in self._plan():
            component = factory()
            try:
                await component.start()
            except BaseException:
                await self.stop()
                raise
            self.components.append((name, component))
            log.info("%s %s", name, _listening(component))

    def _plan(self):
        """(name, factory) of every component these settings ask for, in start order."""
        s, ds = self.settings, self.ds

        def gnmi():
            from agent.gnmi.server import GnmiServer

            return GnmiServer(
                ds, self.auth, addr=s.gnmi_addr, insecure=s.insecure,
                tls_cert=s.tls_cert, tls_key=s.tls_key, tls_client_ca=s.tls_client_ca,
            )

        plan = [("gNMI", gnmi)]
        if s.netconf_addr:
            plan.append(("NETCONF", lambda: _load("agent.netconf.server", "NetconfServer")(ds, self.auth, addr=s.netconf_addr)))
        if s.cli_ssh_addr:
            plan.append(("CLI-SSH", lambda: _load("agent.cli.ssh", "CliSshServer")(ds, self.auth, addr=s.cli_ssh_addr, settings=s)))
        if s.metrics_addr:
            plan.append(("metrics", lambda: _load("agent.metrics", "MetricsServer")(ds, addr=s.metrics_addr, agent=self)))
        if s.web_addr:
            plan.append(("web", lambda: _load("agent.web.server", "WebServer")(ds, self.auth, addr=s.web_addr)))
        if importlib.util.find_spec("collectors.k8s.manager") is not None:
            plan.append(("kubernetes", lambda: _load("collectors.k8s.manager", "K8sManager")(
                ds, s.data_dir, retention_days=s.history_retention_days,
                history_max_bytes=int(s.history_max_mb * 2**20) if s.history_max_mb else None)))
        if s.sflow_addr:
            plan.append(("sFlow", lambda: _load("collectors.sflow.collector", "SflowCollector")(
                ds, addr=s.sflow_addr, workers=s.sflow_workers)))
        return plan

    def component(self, name: str) -> Any:
        """A started component by name (e.g. "gNMI"), or None."""
        return dict(self.components).get(name)

    async def stop(self) -> None:
        """Stop components in reverse order, then the datastore."""
        while self.components:
            name, component = self.components.pop()
            try:
                await component.stop()
            except Exception:
                log.exception("stopping %s failed", name)
        if self.ds is not None:
            await self.ds.stop()
            self.ds = None


def _listening(component: Any) -> str:
    """The start-up line's tail: where a listener listens."""
    address = getattr(component, "address", None)
    if address is None and getattr(component, "bound_port", None):
        host = getattr(component, "host", None) or "0.0.0.0"
        address = f"{host}:{component.bound_port}"
    security = getattr(component, "security", None)
    suffix = f" ({security})" if security else ""
    return f"listening on {address}{suffix}" if address else "started"


def _load(module: str, name: str):
    """A component class, or a SettingsError when this build lacks it."""
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise SettingsError(f"{module} is not available in this build") from None
        raise
