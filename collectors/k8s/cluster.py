"""One Kubernetes connection: its watchers and what they feed into the datastore.

:class:`ClusterConnection` is the watch :class:`~collectors.k8s.watcher.Handler`
for every resource of one cluster.  It keeps a small projection of each
object (never the raw pods), turns events into datastore rows (connection
state, vPorts through the shared arbitration, services, CNI) and
time-machine records, synchronously in the event loop, so an event is in
the datastore as soon as its line is parsed.  It writes only through its
:class:`~collectors.k8s.sink.ClusterSink`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time

from core import schema_paths
from core.times import format_rfc3339

from . import cni
from .kubeconfig import KubeClient, KubeconfigError, open_client
from .location import node_row
from .services import BackendKey, ServiceIndex, member_id
from .sink import ClusterSink
from .vports import PodView, pod_view
from .watcher import Backoff, Resource, Watcher

__all__ = ["ClusterConnection", "CONNECTION_STATE", "CNI_PATH", "SERVICE_PATH", "VPORT_PATH",
           "CORE_RESOURCES", "CNI_RESOURCES"]

log = logging.getLogger(__name__)

CONNECTION_STATE = schema_paths.K8S_CONNECTION_STATE
CNI_PATH = schema_paths.K8S_CNI
SERVICE_PATH = schema_paths.K8S_SERVICE
BACKEND_PATH = schema_paths.K8S_SERVICE_BACKEND
VPORT_PATH = schema_paths.VPORT
NODE_PATH = schema_paths.K8S_NODE

PODS = Resource("pods")
SERVICES = Resource("services")
SLICES = Resource("endpointslices", group="discovery.k8s.io")
NODES = Resource("nodes")
CORE_RESOURCES = (PODS, SERVICES, SLICES, NODES)
# ConfigMaps are watched one by one by name, so the Role can grant exactly these (resourceNames)
CNI_RESOURCES = (
    *(Resource("configmaps", namespace=ns, name=name, optional=True) for ns, name in cni.CNI_CONFIGMAPS),
    Resource("ippools", group="crd.projectcalico.org", optional=True),
    Resource("ippools", group="projectcalico.org", version="v3", optional=True),
    Resource("felixconfigurations", group="crd.projectcalico.org", optional=True),
    Resource("installations", group="operator.tigera.io", optional=True),
)


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


class ClusterConnection:
    """Watchers and derived state of one cluster."""

    def __init__(self, sink: ClusterSink, name: str, config: dict) -> None:
        self.sink = sink
        self.name = name
        self.config = dict(config)
        self.client: KubeClient | None = None
        self.watchers: list[Watcher] = []
        self.status = "connecting"
        self.api_server = ""
        self.last_error = ""
        self.events = 0
        self.last_sync: float | None = None
        self.pods: dict[str, PodView] = {}
        self.services = ServiceIndex()
        self._members: dict[tuple[str, str], dict[BackendKey, dict]] = {}   # backends last recorded in history
        self._shown: dict[tuple[str, str], dict[BackendKey, dict]] = {}     # backend rows last written to state
        self.nodes: dict[str, dict] = {}                             # name -> minimal node
        self.cni_sources = cni.CniSources()
        self._ippools: dict[tuple[str, str], dict] = {}            # (group, name) -> pool
        self._felix: dict[str, dict] = {}
        self._installations: dict[str, dict] = {}
        self.cni_info: cni.CniInfo | None = None
        self._errors: dict[str, str] = {}
        self._fatal: set[str] = set()
        self._task: asyncio.Task | None = None
        self._state_dirty = True
        self._kubeconfig_mtime: float | None = None
        self._reloading = False

    # ------------------------------------------------------------------ life cycle

    @property
    def create_vport(self) -> bool:
        return bool(self.config.get("create-vport", False))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self.status = "connecting"
        self._errors.clear()
        self._fatal.clear()
        self._task = asyncio.create_task(self._run(), name=f"k8s-connection-{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        for watcher in self.watchers:
            await watcher.stop()
        self.watchers = []
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self.client is not None:
            client, self.client = self.client, None
            try:
                await client.close()
            except Exception:
                pass

    async def _run(self) -> None:
        sink = self.sink
        backoff = Backoff(1.0, 60.0)
        while True:
            self.status = "connecting"
            self._write_state()
            try:
                self._kubeconfig_mtime = _mtime(self.config["kube-config"])
                self.client = await open_client(self.config["kube-config"], sink.credentials_dir / self.name)
                break
            except KubeconfigError as exc:
                self._set_error(str(exc), status="error")
                log.warning("k8s connection %s: %s", self.name, exc)
                await asyncio.sleep(backoff.next_delay())  # the file may be fixed in place
        self.api_server = self.client.server
        opts = sink.watch_options
        for resource in (*CORE_RESOURCES, *CNI_RESOURCES):
            watcher = Watcher(self.client.api, resource, self, redact=self.client.redact,
                              backoff=Backoff(opts.get("backoff_base", 0.5), opts.get("backoff_cap", 30.0)),
                              **{k: v for k, v in opts.items() if k not in ("backoff_base", "backoff_cap")})
            self.watchers.append(watcher)
            watcher.start()
        self._write_state()
        await asyncio.gather(*(w.synced.wait() for w in self.watchers))
        self._detect_cni()
        self._refresh_status()
        await asyncio.gather(*(w.task for w in self.watchers if w.task is not None))  # run until stopped

    # ------------------------------------------------------------------ status

    def _set_error(self, message: str, status: str | None = None) -> None:
        self.last_error = message
        if status:
            self.status = status
        self._write_state()

    def _refresh_status(self) -> None:
        if self._fatal:
            status = "error"
        elif self.watchers and all(w.synced.is_set() for w in self.watchers) and not self._errors:
            status = "connected"
        else:
            status = "connecting"
        if status != self.status:
            self.status = status
            self._write_state()

    def on_healthy(self, resource: Resource) -> None:
        if self.cni_info is None:
            self._maybe_detect()   # first full sync: detect before reporting "connected"
        self._errors.pop(resource.label, None)
        self._fatal.discard(resource.label)
        self._refresh_status()

    def on_error(self, resource: Resource, message: str, fatal: bool) -> None:
        log.warning("k8s connection %s: %s", self.name, message)
        self._errors[resource.label] = message
        if fatal:
            self._fatal.add(resource.label)
            self._reload_if_kubeconfig_changed()
        self.last_error = message
        self._refresh_status()
        self._write_state()

    def _reload_if_kubeconfig_changed(self) -> None:
        """Credentials rejected: when the kubeconfig file was replaced since it was read, read it again."""
        mtime = _mtime(self.config["kube-config"])
        if self._reloading or mtime is None or mtime == self._kubeconfig_mtime:
            return
        self._reloading = True

        async def reload() -> None:
            try:
                log.info("k8s connection %s: kube-config changed; reconnecting with it", self.name)
                await self.stop()
                self.start()
            finally:
                self._reloading = False

        asyncio.get_running_loop().create_task(reload())

    def state_row(self) -> dict:
        row = {"status": self.status, "api-server": self.api_server, "last-error": self.last_error,
               "pod-count": len(self.pods), "service-count": len(self.services.services),
               "node-count": len(self.nodes), "events": self.events}
        if self.last_sync is not None:
            row["last-sync"] = format_rfc3339(self.last_sync)
        return row

    def _write_state(self) -> None:
        self.sink.state.upsert(CONNECTION_STATE, (self.name,), self.state_row())
        self._state_dirty = False

    def flush_state(self, force: bool = False) -> None:
        """Write counters when they moved (the manager calls this about once a second)."""
        if self._state_dirty or force:
            self._write_state()

    # ------------------------------------------------------------------ handler

    def on_list(self, resource: Resource, items: list[dict]) -> None:
        with self.sink.batch():       # one feed batch per (re-)list
            self._on_list(resource, items)

    def _on_list(self, resource: Resource, items: list[dict]) -> None:
        now = time.time()
        self.last_sync = now
        self._state_dirty = True
        if resource == PODS:
            self._replace_pods(items, now)
        elif resource == SERVICES:
            self._replace_services(items, now)
        elif resource == SLICES:
            self._replace_slices(items, now)
        elif resource == NODES:
            self.nodes = {str(_meta(n).get("name")): _minimal_node(n) for n in items}
            cluster = self.name
            self.sink.state.replace_where(NODE_PATH, {(cluster, str(_meta(n).get("name"))): node_row(n) for n in items},
                                          lambda key, _v: key[0] == cluster)
            self._maybe_detect()
        else:
            self._replace_cni_source(resource, items)
            self._maybe_detect()

    def on_event(self, resource: Resource, kind: str, obj: dict) -> None:
        now = time.time()
        self.events += 1
        self.last_sync = now
        self._state_dirty = True
        deleted = kind == "DELETED"
        if resource == PODS:
            if deleted:
                self._drop_pod(str(_meta(obj).get("uid") or f"{_meta(obj).get('namespace')}/{_meta(obj).get('name')}"), now)
            else:
                self._set_pod(pod_view(obj), now)
        elif resource == SERVICES:
            meta = _meta(obj)
            ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
            if deleted:
                self._drop_service(ns, name, now)
            else:
                self.services.set_service(obj)
                self._write_service(ns, name, now)
        elif resource == SLICES:
            meta = _meta(obj)
            if deleted:
                affected = self.services.drop_slice(str(meta.get("namespace") or ""), str(meta.get("name") or ""))
            else:
                affected = self.services.set_slice(obj)
            if affected is not None:
                self._write_members(*affected, now)
        elif resource == NODES:
            name = str(_meta(obj).get("name"))
            before = self.nodes.get(name)
            if deleted:
                self.nodes.pop(name, None)
                self.sink.state.delete(NODE_PATH, (self.name, name))
            else:
                self.nodes[name] = _minimal_node(obj)
                self.sink.state.upsert(NODE_PATH, (self.name, name), node_row(obj))
            if before != self.nodes.get(name):
                self._maybe_detect()
        else:
            self._cni_event(resource, kind, obj)
            self._maybe_detect()

    # ------------------------------------------------------------------ pods

    def _replace_pods(self, items: list[dict], now: float) -> None:
        seen = set()
        for obj in items:
            view = pod_view(obj)
            seen.add(view.uid)
            self._set_pod(view, now)
        for uid in [u for u in self.pods if u not in seen]:
            self._drop_pod(uid, now)
        # records left open by an earlier run of the agent for pods that are gone now
        history = self.sink.history
        held = {(ip, v.uid) for v in self.pods.values() if v.holds_ips for ip in v.ips}
        for ip, uid in history.open_members("pod", self.name):
            if (ip, uid) not in held:
                history.end("pod", self.name, ip, uid, now)
        shown = self.sink.shown_cluster
        for ip, _ in history.open_members("vport", self.name):
            if shown(ip) != self.name:
                history.end("vport", self.name, ip, "", now)

    def _set_pod(self, view: PodView, now: float) -> None:
        old = self.pods.get(view.uid)
        self.pods[view.uid] = view
        history = self.sink.history
        new_ips = view.ips if view.holds_ips else ()
        if old is not None and old.holds_ips:
            for ip in old.ips:
                if ip not in new_ips:
                    history.end("pod", self.name, ip, view.uid, now)
                    self.sink.release_ip(ip, self.name, view.uid, now)
        summary = view.summary()
        for ip in new_ips:
            history.set("pod", self.name, ip, view.uid, summary, now)
            if self.create_vport:
                self.sink.claim_ip(ip, self.name, view, now)

    def _drop_pod(self, uid: str, now: float) -> None:
        old = self.pods.pop(uid, None)
        if old is None:
            return
        for ip in old.ips:
            self.sink.history.end("pod", self.name, ip, uid, now)
            self.sink.release_ip(ip, self.name, uid, now)

    def set_create_vport(self, enabled: bool) -> None:
        """Claim or release every pod IP when create-vport changes."""
        if enabled == self.create_vport:
            return
        self.config["create-vport"] = enabled
        now = time.time()
        for view in self.pods.values():
            if view.holds_ips:
                for ip in view.ips:
                    if enabled:
                        self.sink.claim_ip(ip, self.name, view, now)
                    else:
                        self.sink.release_ip(ip, self.name, view.uid, now)

    # ------------------------------------------------------------------ services

    def _replace_services(self, items: list[dict], now: float) -> None:
        seen = set()
        for obj in items:
            key = self.services.set_service(obj)
            seen.add(key)
            self._write_service(*key, now)
        for ns, name in [k for k in self.services.services if k not in seen]:
            self._drop_service(ns, name, now)
        history = self.sink.history
        for key, _ in history.open_members("service", self.name):
            if tuple(key.split("/", 1)) not in seen:
                history.end("service", self.name, key, "", now)

    def _replace_slices(self, items: list[dict], now: float) -> None:
        affected = set(self._members)
        for ns, name in self.services.slice_keys():
            self.services.drop_slice(ns, name)
        for obj in items:
            key = self.services.set_slice(obj)
            if key is not None:
                affected.add(key)
        for key in affected:
            self._write_members(*key, now)
        history = self.sink.history
        for key, member in history.open_members("member", self.name):
            ns, _, name = key.partition("/")
            if member not in {member_id(k) for k in self._members.get((ns, name), ())}:
                history.end("member", self.name, key, member, now)

    def _write_service(self, ns: str, name: str, now: float) -> None:
        row = self.services.row(ns, name)
        if row is None:
            return
        row = {"cluster-name": self.name, "namespace": ns, "name": name, **row}
        state = self.sink.state
        with state.batch():
            state.upsert(SERVICE_PATH, (self.name, ns, name), row)
            self._write_backends(ns, name, self.services.backends(ns, name))
        self.sink.history.set("service", self.name, f"{ns}/{name}", "", row, now)

    def _write_backends(self, ns: str, name: str, backends: dict[BackendKey, dict]) -> None:
        """k8s/service/backend entries of one service: only the ones that changed are written."""
        shown = self._shown.get((ns, name), {})
        state = self.sink.state
        base = (self.name, ns, name)
        for key in shown.keys() - backends.keys():
            state.delete(BACKEND_PATH, base + key)
        for key, row in backends.items():
            if shown.get(key) != row:
                state.upsert(BACKEND_PATH, base + key, row)
        if backends:
            self._shown[(ns, name)] = dict(backends)
        else:
            self._shown.pop((ns, name), None)

    def _drop_service(self, ns: str, name: str, now: float) -> None:
        if self.services.drop_service(ns, name):
            self.sink.state.delete(SERVICE_PATH, (self.name, ns, name))  # its backend entries with it
            self._shown.pop((ns, name), None)
            self.sink.history.end("service", self.name, f"{ns}/{name}", "", now)

    def _write_members(self, ns: str, name: str, now: float) -> None:
        """A slice changed: record the service's backends in the time machine, then show them."""
        members = self.services.backends(ns, name)
        before = self._members.get((ns, name), {})
        if members == before:
            return
        history = self.sink.history
        key = f"{ns}/{name}"
        for backend in before.keys() - members.keys():
            history.end("member", self.name, key, member_id(backend), now)
        for backend, row in members.items():
            if before.get(backend) != row:
                history.set("member", self.name, key, member_id(backend), dict(row), now)
        if members:
            self._members[(ns, name)] = dict(members)
        else:
            self._members.pop((ns, name), None)
        self._write_service(ns, name, now)

    # ------------------------------------------------------------------ CNI

    def _replace_cni_source(self, resource: Resource, items: list[dict]) -> None:
        if resource.plural == "configmaps":
            self.cni_sources.configmaps.pop((resource.namespace or "", resource.name or ""), None)
        elif resource.plural == "ippools":
            for key in [k for k in self._ippools if k[0] == resource.group]:
                del self._ippools[key]
        elif resource.plural == "felixconfigurations":
            self._felix.clear()
        elif resource.plural == "installations":
            self._installations.clear()
        for obj in items:
            self._cni_event(resource, "ADDED", obj)

    def _cni_event(self, resource: Resource, kind: str, obj: dict) -> None:
        meta = _meta(obj)
        name = str(meta.get("name") or "")
        deleted = kind == "DELETED"
        if resource.plural == "configmaps":
            if name not in cni.CNI_CONFIGMAP_NAMES:
                return
            key = (str(meta.get("namespace") or resource.namespace), name)
            if deleted:
                self.cni_sources.configmaps.pop(key, None)
            else:
                self.cni_sources.configmaps[key] = {"metadata": {"name": name, "namespace": key[0]},
                                                    "data": dict(obj.get("data") or {})}
            return
        if not obj.get("apiVersion"):
            obj = {**obj, "apiVersion": f"{resource.group}/{resource.version}"}
        table = {"ippools": self._ippools, "felixconfigurations": self._felix,
                 "installations": self._installations}[resource.plural]
        key = (resource.group, name) if resource.plural == "ippools" else name
        if deleted:
            table.pop(key, None)
        else:
            table[key] = obj

    def _maybe_detect(self) -> None:
        if self.watchers and all(w.synced.is_set() for w in self.watchers):
            self._detect_cni()

    def _detect_cni(self) -> None:
        src = self.cni_sources
        src.nodes = list(self.nodes.values())
        src.ippools = list(self._ippools.values())
        src.felix = list(self._felix.values())
        src.installations = list(self._installations.values())
        info = cni.detect(src)
        if info == self.cni_info:
            return
        self.cni_info = info
        row = {"cluster-name": self.name, **info.row()}
        self.sink.state.upsert(CNI_PATH, (self.name,), row)
        self.sink.history.set("cni", self.name, "", "", row, time.time())

    # ------------------------------------------------------------------ removal

    def purge(self) -> None:
        """Remove every row this connection produced (its connection was deleted or moved)."""
        now = time.time()
        for uid in list(self.pods):
            self._drop_pod(uid, now)
        for ns, name in list(self.services.services):
            self._drop_service(ns, name, now)
        for ns, name in list(self._members):
            for backend in self._members[(ns, name)]:
                self.sink.history.end("member", self.name, f"{ns}/{name}", member_id(backend), now)
        self._members.clear()
        self._shown.clear()
        if self.cni_info is not None:
            self.sink.state.delete(CNI_PATH, (self.name,))
            self.cni_info = None
        self.sink.history.end_cluster(self.name, now)
        for name in self.nodes:
            self.sink.state.delete(NODE_PATH, (self.name, name))
        self.nodes.clear()


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None


def _minimal_node(node: dict) -> dict:
    meta = _meta(node)
    spec = node.get("spec") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k.startswith(("flannel.alpha.coreos.com/", "projectcalico.org/", "k3s.io/node-args"))}
    return {"metadata": {"name": meta.get("name"), "annotations": annotations},
            "spec": {"podCIDR": spec.get("podCIDR"), "podCIDRs": spec.get("podCIDRs")}}
