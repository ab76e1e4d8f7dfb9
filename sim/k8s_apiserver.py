"""A fake Kubernetes API server that speaks the real wire protocol to real clients.

Used by the tests, the benchmark and the demo.  It serves, over HTTP or
HTTPS (aiohttp):

* discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>/<version>``;
* collections and objects under ``/api/v1`` and ``/apis/<group>/<version>``,
  cluster-wide or ``/namespaces/<ns>/``: GET (single object), list with
  ``limit``/``continue`` over a consistent snapshot, ``resourceVersion``,
  ``labelSelector`` (``k=v`` terms) and ``fieldSelector``
  (``metadata.name``/``metadata.namespace``/``spec.nodeName``), and POST /
  PUT / DELETE;
* watches (``?watch=1``): chunked JSON lines, synthetic ADDED events when no
  resourceVersion is given, replay from a resourceVersion, BOOKMARK events
  when ``allowWatchBookmarks=true``, ``timeoutSeconds``;
* 410 Gone for a resourceVersion older than the retained event window,
  either as the ERROR watch event real API servers send
  (``code 410, reason Expired, "too old resource version"``) or as an HTTP
  410 (``gone_mode="http"``), and for an expired ``continue`` token;
* bearer-token auth (401 Status otherwise) and optional TLS with client
  certificates (:func:`make_pki`).

Test controls: :meth:`FakeApiServer.inject_error` (the next N matching
requests fail), :meth:`expire_watches` (compaction: open watches get 410),
:meth:`stall_watches` (half-open: streams stay open, nothing is sent),
:meth:`restart` (the process goes away and comes back on the same port,
state kept as etcd would), and ``quiet=True`` on any mutation (the change
happens without watch events, as if they were lost).

Objects: :meth:`load_scenario` installs the CNI objects of a fixture in
``sim/k8s_fixtures/`` (Flannel's kube-flannel-cfg, Calico's calico-config,
IPPools, FelixConfiguration, the operator's Installation) and nodes with
the annotations Flannel and Calico write; :meth:`populate` adds
deployments' pods spread over the nodes, services and EndpointSlices.  A
small endpoints controller keeps EndpointSlices in step with pods, so
pod churn moves service backends as in a real cluster.

Standalone for the demo::

    python -m sim.k8s_apiserver --port 6443 --scenario flannel-vxlan --pods 200 \\
        --churn 2 --kubeconfig /tmp/fake-kubeconfig
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import ipaddress
import itertools
import json
import logging
import random
import ssl
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import web

__all__ = ["FakeApiServer", "ResourceType", "RESOURCES", "SCENARIOS", "make_pki", "main"]

log = logging.getLogger(__name__)

FIXTURES = Path(__file__).with_name("k8s_fixtures")
SCENARIOS = sorted(p.stem for p in FIXTURES.glob("*.json"))
DEFAULT_TOKEN = "kubefabric-sim-reader-token"


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version


RESOURCES = [
    ResourceType("", "v1", "pods", "Pod", True),
    ResourceType("", "v1", "services", "Service", True),
    ResourceType("", "v1", "nodes", "Node", False),
    ResourceType("", "v1", "configmaps", "ConfigMap", True),
    ResourceType("", "v1", "namespaces", "Namespace", False),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    ResourceType("crd.projectcalico.org", "v1", "ippools", "IPPool", False),
    ResourceType("crd.projectcalico.org", "v1", "felixconfigurations", "FelixConfiguration", False),
    ResourceType("projectcalico.org", "v3", "ippools", "IPPool", False),
    ResourceType("projectcalico.org", "v3", "felixconfigurations", "FelixConfiguration", False),
    ResourceType("operator.tigera.io", "v1", "installations", "Installation", False),
]
_BY_KIND = {(r.api_version, r.kind): r for r in RESOURCES}
_BY_PATH = {(r.group_version, r.plural): r for r in RESOURCES}
BUILTIN_GROUPS = {"v1", "discovery.k8s.io/v1"}


def _now_iso(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


@dataclass(eq=False)
class _Watch:
    rtype: ResourceType
    namespace: str | None
    label_sel: list
    field_sel: list
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    task: asyncio.Task | None = None


@dataclass
class _Injected:
    status: int
    count: int
    match: str
    watch: bool | None


class FakeApiServer:
    """In-memory API server.  ``async with FakeApiServer() as srv: ...`` or start()/stop()."""

    def __init__(self, *, token: str | None = DEFAULT_TOKEN, host: str = "127.0.0.1", port: int = 0,
                 tls: bool = False, pki_dir: Path | None = None, bookmark_interval: float = 1.0,
                 history_limit: int = 100_000, gone_mode: str = "event") -> None:
        self.token = token
        self.host = host
        self.port = port
        self.tls = tls
        self.pki_dir = pki_dir
        self.pki: dict[str, Path] = {}
        self.bookmark_interval = bookmark_interval
        self.history_limit = history_limit
        self.gone_mode = gone_mode
        self.groups: set[str] = set(BUILTIN_GROUPS)
        self.store: dict[ResourceType, dict[tuple[str, str], dict]] = {r: {} for r in RESOURCES}
        self.rv = 1
        self._compacted = 0
        self._log: deque = deque()
        self._watches: set[_Watch] = set()
        self._snapshots: dict[str, tuple[int, list[dict]]] = {}
        self._injected: list[_Injected] = []
        self._stalled = False
        self._runner: web.AppRunner | None = None
        self.requests: list[tuple[str, str, str]] = []   # (method, path, query string)
        self.watch_count = 0
        # scenario state
        self.pod_network = "10.244.0.0/16"
        self._node_nets: dict[str, ipaddress.IPv4Network] = {}
        self._node_ips: dict[str, str] = {}
        self._free_ips: dict[str, list[str]] = {}
        self._next_host: dict[str, int] = {}
        self._node_annotations: dict[str, str] = {}
        self._churn_task: asyncio.Task | None = None
        self._controller_paused = False
        self._seq = itertools.count(1)

    # ------------------------------------------------------------------ life cycle

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    async def __aenter__(self) -> "FakeApiServer":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 2**20)
        app.router.add_get("/version", self._version)
        app.router.add_get("/api", self._core_versions)
        app.router.add_get("/apis", self._group_list)
        app.router.add_route("*", "/api/{version}", self._dispatch)
        app.router.add_route("*", "/api/{version}/{rest:.*}", self._dispatch)
        app.router.add_route("*", "/apis/{group}/{version}", self._dispatch)
        app.router.add_route("*", "/apis/{group}/{version}/{rest:.*}", self._dispatch)
        return app

    async def start(self) -> None:
        """Listen (port 0 picks a free port, kept across restarts)."""
        ssl_ctx = None
        if self.tls:
            if not self.pki:
                self.pki = make_pki(self.pki_dir or Path(f"/tmp/kubefabric-sim-pki-{uuid.uuid4().hex[:8]}"), self.host)
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(self.pki["server.crt"], self.pki["server.key"])
            ssl_ctx.load_verify_locations(self.pki["ca.crt"])
            ssl_ctx.verify_mode = ssl.CERT_OPTIONAL
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.2, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ssl_ctx, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 (aiohttp has no public getter)

    async def stop(self) -> None:
        """Stop listening and drop every connection (watches end abruptly)."""
        if self._churn_task is not None:
            self._churn_task.cancel()
            self._churn_task = None
        runner, self._runner = self._runner, None
        if runner is not None:
            for site in list(runner.sites):
                await site.stop()            # no new connections from here on
        for watch in list(self._watches):
            if watch.task is not None:
                watch.task.cancel()
        self._watches.clear()
        if runner is not None:
            await runner.cleanup()

    async def restart(self, downtime: float = 0.2) -> None:
        """The API server goes away for ``downtime`` seconds and comes back (state kept)."""
        churn = self._churn_task is not None
        await self.stop()
        await asyncio.sleep(downtime)
        await self.start()
        if churn:
            self.start_churn()

    # ------------------------------------------------------------------ test controls

    def inject_error(self, status: int = 500, count: int = 1, match: str = "", watch: bool | None = None) -> None:
        """Fail the next ``count`` requests whose path and query contain ``match`` (watches only / lists only
        when ``watch`` is True / False)."""
        self._injected.append(_Injected(status, count, match, watch))

    def expire_watches(self) -> None:
        """Compact history: older resourceVersions become 410 Gone, open watches are told so."""
        self.rv += 1
        self._compacted = self.rv
        self._log.clear()
        self._snapshots.clear()
        for watch in list(self._watches):
            if self.gone_mode == "event":
                watch.queue.put_nowait(("ERROR", None))
            else:
                watch.queue.put_nowait(("CLOSE", None))

    def stall_watches(self, stalled: bool = True) -> None:
        """Half-open: keep watch streams open but send nothing (no events, no bookmarks)."""
        self._stalled = stalled

    def close_watches(self) -> None:
        """End every open watch normally (as timeoutSeconds would)."""
        for watch in list(self._watches):
            watch.queue.put_nowait(("CLOSE", None))

    def write_kubeconfig(self, path: str | Path, *, token: str | None = None, cluster_name: str = "fake",
                         client_cert: bool = False, ca: bool = True, token_file: bool = False) -> Path:
        """Write a kubeconfig for this server (bearer token by default; client cert when asked)."""
        path = Path(path)
        cluster: dict = {"server": self.url}
        if self.tls:
            if ca:
                cluster["certificate-authority-data"] = base64.b64encode(self.pki["ca.crt"].read_bytes()).decode()
            else:
                cluster["insecure-skip-tls-verify"] = True
        user: dict = {}
        if client_cert and self.tls:
            user["client-certificate-data"] = base64.b64encode(self.pki["client.crt"].read_bytes()).decode()
            user["client-key-data"] = base64.b64encode(self.pki["client.key"].read_bytes()).decode()
        else:
            value = self.token if token is None else token
            if token_file:
                token_path = path.with_suffix(".token")
                token_path.write_text(value or "")
                user["tokenFile"] = str(token_path)
            elif value is not None:
                user["token"] = value
        doc = {"apiVersion": "v1", "kind": "Config", "preferences": {},
               "clusters": [{"name": cluster_name, "cluster": cluster}],
               "users": [{"name": f"{cluster_name}-kubefabric-reader", "user": user}],
               "contexts": [{"name": f"kubefabric@{cluster_name}",
                             "context": {"cluster": cluster_name, "user": f"{cluster_name}-kubefabric-reader"}}],
               "current-context": f"kubefabric@{cluster_name}"}
        import yaml  # local: only needed here
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        path.chmod(0o600)
        return path

    # ------------------------------------------------------------------ objects

    def _rtype(self, obj: dict) -> ResourceType:
        return _BY_KIND[(obj["apiVersion"], obj["kind"])]

    def get(self, rtype: ResourceType | str, namespace: str | None, name: str) -> dict | None:
        rtype = self._resolve(rtype)
        return self.store[rtype].get((namespace or "", name))

    def objects(self, rtype: ResourceType | str) -> list[dict]:
        return list(self.store[self._resolve(rtype)].values())

    def _resolve(self, rtype: ResourceType | str) -> ResourceType:
        if isinstance(rtype, ResourceType):
            return rtype
        for r in RESOURCES:
            if r.plural == rtype or f"{r.plural}.{r.group}" == rtype or r.kind == rtype:
                return r
        raise KeyError(rtype)

    def apply(self, obj: dict, *, quiet: bool = False) -> dict:
        """Create or replace an object (``apiVersion`` and ``kind`` required); emits ADDED/MODIFIED."""
        rtype = self._rtype(obj)
        obj = copy.deepcopy(obj)
        obj.pop("apiVersion", None)
        obj.pop("kind", None)
        meta = obj.setdefault("metadata", {})
        ns = meta.get("namespace", "") if rtype.namespaced else ""
        if rtype.namespaced and not ns:
            ns = meta["namespace"] = "default"
        key = (ns, meta["name"])
        old = self.store[rtype].get(key)
        if old is not None:
            meta.setdefault("uid", old["metadata"]["uid"])
            meta.setdefault("creationTimestamp", old["metadata"]["creationTimestamp"])
        else:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now_iso())
        self._commit(rtype, "MODIFIED" if old is not None else "ADDED", key, obj, quiet)
        if rtype.plural == "pods":
            self._pod_changed(old, obj, quiet)
        elif rtype.plural == "services":
            self._sync_service_endpoints(ns, meta["name"], quiet)
        return obj

    def delete(self, rtype: ResourceType | str, namespace: str | None, name: str, *, quiet: bool = False) -> dict | None:
        """Delete an object; emits DELETED."""
        rtype = self._resolve(rtype)
        key = (namespace or "" if rtype.namespaced else "", name)
        old = self.store[rtype].get(key)
        if old is None:
            return None
        self._commit(rtype, "DELETED", key, None, quiet, old=old)
        if rtype.plural == "pods":
            self._pod_changed(old, None, quiet)
            self._release_ip(old)
        elif rtype.plural == "services":
            for slice_key in [k for k, v in self.store[_SLICES].items()
                              if k[0] == key[0] and (v["metadata"].get("labels") or {}).get(
                                  "kubernetes.io/service-name") == name]:
                self.delete(_SLICES, slice_key[0], slice_key[1], quiet=quiet)
        return old

    def _commit(self, rtype: ResourceType, kind: str, key: tuple[str, str], obj: dict | None, quiet: bool,
                old: dict | None = None) -> None:
        self.rv += 1
        if obj is not None:
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.store[rtype][key] = obj
            event_obj = obj
        else:
            del self.store[rtype][key]
            event_obj = copy.copy(old)
            event_obj["metadata"] = {**old["metadata"], "resourceVersion": str(self.rv)}
        if quiet:
            return
        self._log.append((self.rv, rtype, kind, event_obj))
        while len(self._log) > self.history_limit:
            self._compacted = self._log.popleft()[0]
        for watch in self._watches:
            if watch.rtype == rtype and _matches(event_obj, watch.namespace, watch.label_sel, watch.field_sel):
                watch.queue.put_nowait((kind, event_obj))

    # ------------------------------------------------------------------ HTTP

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        self.requests.append((request.method, request.path, request.query_string))
        if self.token is not None:
            header = request.headers.get("Authorization", "")
            cert_ok = self.tls and request.transport is not None and \
                request.transport.get_extra_info("peercert") is not None
            if header != f"Bearer {self.token}" and not cert_ok:
                return web.json_response(_status(401, "Unauthorized", "Unauthorized"), status=401)
        is_watch = request.query.get("watch") in ("1", "true")
        for inj in self._injected:
            if inj.count > 0 and inj.match in request.path_qs and (inj.watch is None or inj.watch == is_watch):
                inj.count -= 1
                self._injected = [i for i in self._injected if i.count > 0]
                reason = {500: "InternalError", 503: "ServiceUnavailable", 429: "TooManyRequests",
                          403: "Forbidden", 410: "Expired"}.get(inj.status, "Failure")
                return web.json_response(_status(inj.status, reason, f"injected {inj.status}"), status=inj.status)
        return await handler(request)

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "31", "gitVersion": "v1.31.0-kubefabric-sim",
                                  "platform": "linux/amd64"})

    async def _core_versions(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIVersions", "versions": ["v1"],
                                  "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                                  "serverAddress": f"{self.host}:{self.port}"}]})

    async def _group_list(self, request: web.Request) -> web.Response:
        groups: dict[str, list[str]] = {}
        for r in RESOURCES:
            if r.group and r.group_version in self.groups:
                groups.setdefault(r.group, []).append(r.version)
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
             "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}} for g, vs in groups.items()]})

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        group = request.match_info.get("group", "")
        version = request.match_info["version"]
        gv = f"{group}/{version}" if group else version
        if gv not in self.groups:
            return self._not_found(f"the server could not find the requested resource ({request.path})")
        parts = [p for p in request.match_info.get("rest", "").split("/") if p]
        if not parts:
            return web.json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                                      "resources": [{"name": r.plural, "namespaced": r.namespaced, "kind": r.kind,
                                                     "verbs": ["get", "list", "watch", "create", "update", "delete"]}
                                                    for r in RESOURCES if r.group_version == gv]})
        namespace = None
        if parts[0] == "namespaces" and len(parts) >= 3:
            namespace, parts = parts[1], parts[2:]
        rtype = _BY_PATH.get((gv, parts[0]))
        if rtype is None or (namespace is not None and not rtype.namespaced):
            return self._not_found(f"the server could not find the requested resource ({request.path})")
        name = parts[1] if len(parts) > 1 else None
        if request.method == "GET":
            if name is not None:
                obj = self.store[rtype].get((namespace or "", name))
                if obj is None:
                    return self._not_found(f'{rtype.plural} "{name}" not found')
                return web.json_response(self._full(rtype, obj))
            if request.query.get("watch") in ("1", "true"):
                return await self._watch(request, rtype, namespace)
            return self._list(request, rtype, namespace)
        if request.method in ("POST", "PUT"):
            body = await request.json()
            body.setdefault("apiVersion", rtype.api_version)
            body.setdefault("kind", rtype.kind)
            if namespace:
                body.setdefault("metadata", {})["namespace"] = namespace
            exists = self.store[rtype].get((namespace or "", body.get("metadata", {}).get("name", ""))) is not None
            if request.method == "POST" and exists:
                return web.json_response(_status(409, "AlreadyExists", "already exists"), status=409)
            obj = self.apply(body)
            return web.json_response(self._full(rtype, obj), status=201 if request.method == "POST" else 200)
        if request.method == "DELETE" and name is not None:
            old = self.delete(rtype, namespace, name)
            if old is None:
                return self._not_found(f'{rtype.plural} "{name}" not found')
            return web.json_response(self._full(rtype, old))
        return web.json_response(_status(405, "MethodNotAllowed", "method not allowed"), status=405)

    @staticmethod
    def _not_found(message: str) -> web.Response:
        return web.json_response(_status(404, "NotFound", message), status=404)

    @staticmethod
    def _full(rtype: ResourceType, obj: dict) -> dict:
        return {"apiVersion": rtype.api_version, "kind": rtype.kind, **obj}

    def _list(self, request: web.Request, rtype: ResourceType, namespace: str | None) -> web.Response:
        q = request.query
        limit = int(q.get("limit") or 0)
        token = q.get("continue")
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                rv, items = self._snapshots[state["id"]]
                offset = int(state["o"])
            except (ValueError, KeyError, TypeError):
                return web.json_response(_status(
                    410, "Expired", "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter."), status=410)
        else:
            rv = self.rv
            label_sel, field_sel = _parse_selectors(q)
            items = [o for o in self.store[rtype].values() if _matches(o, namespace, label_sel, field_sel)]
            items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            offset = 0
        meta: dict = {"resourceVersion": str(rv)}
        if limit and offset + limit < len(items):
            page = items[offset:offset + limit]
            snap_id = state["id"] if token else uuid.uuid4().hex
            self._snapshots[snap_id] = (rv, items)
            while len(self._snapshots) > 64:
                self._snapshots.pop(next(iter(self._snapshots)))
            meta["continue"] = base64.urlsafe_b64encode(json.dumps({"id": snap_id, "o": offset + limit}).encode()).decode()
            meta["remainingItemCount"] = len(items) - offset - limit
        else:
            page = items[offset:]
            if token:
                self._snapshots.pop(state["id"], None)
        body = json.dumps({"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version, "metadata": meta,
                           "items": page}, separators=(",", ":"))
        return web.Response(text=body, content_type="application/json")

    async def _watch(self, request: web.Request, rtype: ResourceType, namespace: str | None) -> web.StreamResponse:
        q = request.query
        label_sel, field_sel = _parse_selectors(q)
        bookmarks = q.get("allowWatchBookmarks") in ("1", "true")
        timeout = float(q.get("timeoutSeconds") or 1800)
        rv_param = q.get("resourceVersion")
        start_rv = None
        if rv_param not in (None, "", "0"):
            try:
                start_rv = int(rv_param)
            except ValueError:
                return web.json_response(_status(400, "BadRequest", f"invalid resourceVersion {rv_param}"), status=400)
            if start_rv < self._compacted:
                message = f"too old resource version: {start_rv} ({self._compacted})"
                if self.gone_mode == "http":
                    return web.json_response(_status(410, "Expired", message), status=410)
                resp = web.StreamResponse(headers={"Content-Type": "application/json"})
                resp.enable_chunked_encoding()
                await resp.prepare(request)
                await resp.write(json.dumps({"type": "ERROR", "object": _status(410, "Expired", message)}).encode() + b"\n")
                return resp
        watch = _Watch(rtype, namespace, label_sel, field_sel)
        watch.task = asyncio.current_task()
        backlog: list[tuple[str, dict]] = []
        if start_rv is None:
            backlog = [("ADDED", o) for o in self.store[rtype].values() if _matches(o, namespace, label_sel, field_sel)]
        else:
            backlog = [(k, o) for (r, t, k, o) in self._log
                       if r > start_rv and t == rtype and _matches(o, namespace, label_sel, field_sel)]
        self._watches.add(watch)
        self.watch_count += 1
        resp = web.StreamResponse(headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        resp.enable_chunked_encoding()
        deadline = time.monotonic() + timeout
        try:
            await resp.prepare(request)
            if backlog:
                await resp.write(b"".join(self._event_line(rtype, k, o) for k, o in backlog))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    kind, obj = await asyncio.wait_for(watch.queue.get(), min(remaining, self.bookmark_interval))
                except asyncio.TimeoutError:
                    if bookmarks and not self._stalled:
                        await resp.write(json.dumps({"type": "BOOKMARK", "object": {
                            "kind": rtype.kind, "apiVersion": rtype.api_version,
                            "metadata": {"resourceVersion": str(self.rv)}}}).encode() + b"\n")
                    continue
                while self._stalled:
                    await asyncio.sleep(0.05)
                if kind == "CLOSE":
                    break
                if kind == "ERROR":
                    await resp.write(json.dumps({"type": "ERROR", "object": _status(
                        410, "Expired", f"too old resource version: {self._compacted - 1} ({self._compacted})")}
                    ).encode() + b"\n")
                    break
                lines = [self._event_line(rtype, kind, obj)]
                while not watch.queue.empty() and len(lines) < 256:
                    k2, o2 = watch.queue.get_nowait()
                    if k2 in ("CLOSE", "ERROR"):
                        watch.queue.put_nowait((k2, o2))
                        break
                    lines.append(self._event_line(rtype, k2, o2))
                await resp.write(b"".join(lines))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watches.discard(watch)
        return resp

    @staticmethod
    def _event_line(rtype: ResourceType, kind: str, obj: dict) -> bytes:
        return json.dumps({"type": kind, "object": {"kind": rtype.kind, "apiVersion": rtype.api_version, **obj}},
                          separators=(",", ":")).encode() + b"\n"

    # ------------------------------------------------------------------ scenarios

    def load_scenario(self, name: str, nodes: int = 3) -> dict:
        """Install a fixture's CNI objects and ``nodes`` nodes; returns the fixture."""
        fixture = json.loads((FIXTURES / f"{name}.json").read_text())
        self.groups = set(BUILTIN_GROUPS) | set(fixture.get("groups") or [])
        self.pod_network = fixture["pod_network"]
        self._node_annotations = fixture.get("node_annotations") or {}
        for ns in ("default", "kube-system"):
            self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for obj in fixture.get("objects") or []:
            self.apply(obj)
        self.add_nodes(nodes)
        return fixture

    def add_nodes(self, count: int) -> list[str]:
        """Add worker nodes, each with a /24 of the pod network and the scenario's annotations."""
        network = ipaddress.ip_network(self.pod_network)
        subnets = network.subnets(new_prefix=24) if network.prefixlen <= 24 else iter([network])
        used = set(self._node_nets.values())
        names = []
        for _ in range(count):
            index = len(self._node_nets)
            subnet = next(s for s in subnets if s not in used)
            name = f"worker-{index + 1:03d}"
            node_ip = f"192.168.{100 + index // 250}.{10 + index % 250}"
            mac = "0a:%02x:%02x:%02x:%02x:%02x" % tuple(random.Random(name).randrange(256) for _ in range(5))
            ann = {k: v.replace("{node_ip}", node_ip).replace("{vtep_mac}", mac).replace("{i}", str(index))
                   .replace("{node}", name) for k, v in self._node_annotations.items()}
            self._node_nets[name] = subnet
            self._node_ips[name] = node_ip
            self.apply({"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": name, "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                              "volumes.kubernetes.io/controller-managed-attach-detach": "true", **ann},
                "labels": {"kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                           "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux"}},
                "spec": {"podCIDR": str(subnet), "podCIDRs": [str(subnet)]},
                "status": {"addresses": [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": name}],
                           "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                           "message": "kubelet is posting ready status",
                                           "lastHeartbeatTime": _now_iso(), "lastTransitionTime": _now_iso()}],
                           "nodeInfo": {"architecture": "amd64", "containerRuntimeVersion": "containerd://1.7.22",
                                        "kernelVersion": "6.8.0-45-generic", "kubeProxyVersion": "v1.31.0",
                                        "kubeletVersion": "v1.31.0", "operatingSystem": "linux",
                                        "osImage": "Ubuntu 24.04.1 LTS"}}})
            names.append(name)
        return names

    def add_node(self, name: str, internal_ip: str, pod_cidr: str) -> dict:
        """Add one node with the given name, InternalIP and pod /24 (the topology lab's servers)."""
        subnet = ipaddress.ip_network(pod_cidr)
        self._node_nets[name] = subnet
        self._node_ips[name] = internal_ip
        return self.apply({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
            "spec": {"podCIDR": str(subnet), "podCIDRs": [str(subnet)]},
            "status": {"addresses": [{"type": "InternalIP", "address": internal_ip}, {"type": "Hostname", "address": name}],
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "lastHeartbeatTime": _now_iso(), "lastTransitionTime": _now_iso()}]}})

    @property
    def node_names(self) -> list[str]:
        return list(self._node_nets)

    def _allocate_ip(self, node: str) -> str:
        free = self._free_ips.setdefault(node, [])
        if free:
            return free.pop(0)
        net = self._node_nets[node]
        host = self._next_host.get(node, 2)
        if host >= net.num_addresses - 1:
            raise RuntimeError(f"node {node} has no free pod IP")
        self._next_host[node] = host + 1
        return str(net.network_address + host)

    def _release_ip(self, pod: dict) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        ip = (pod.get("status") or {}).get("podIP")
        if node in self._node_nets and ip and not (pod.get("spec") or {}).get("hostNetwork"):
            if ipaddress.ip_address(ip) in self._node_nets[node]:
                self._free_ips.setdefault(node, []).append(ip)

    def pod_object(self, name: str, namespace: str = "default", *, node: str | None = None, ip: str | None = None,
                   labels: dict | None = None, phase: str = "Running", host_network: bool = False,
                   ipv6: str | None = None, app: str | None = None) -> dict:
        """A realistic Pod object (not yet stored)."""
        node = node or random.choice(self.node_names)
        node_ip = self._node_ips.get(node, "192.168.100.10")
        if host_network:
            ip = node_ip
        elif ip is None and phase != "Pending":
            ip = self._allocate_ip(node)
        app = app or (labels or {}).get("app") or name.rsplit("-", 2)[0]
        labels = dict(labels) if labels is not None else {"app": app, "pod-template-hash": "5d8f7c9b6d"}
        now = _now_iso()
        status: dict = {"phase": phase, "qosClass": "BestEffort", "hostIP": node_ip,
                        "hostIPs": [{"ip": node_ip}], "startTime": now,
                        "conditions": [{"type": t, "status": "True" if phase == "Running" else "False",
                                        "lastProbeTime": None, "lastTransitionTime": now}
                                       for t in ("PodReadyToStartContainers", "Initialized", "Ready",
                                                 "ContainersReady", "PodScheduled")]}
        if ip:
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}] + ([{"ip": ipv6}] if ipv6 else [])
        status["containerStatuses"] = [{
            "name": app, "image": f"registry.example.com/{app}:1.4.2",
            "imageID": f"registry.example.com/{app}@sha256:" + "ab" * 32,
            "containerID": "containerd://" + uuid.uuid4().hex * 2, "ready": phase == "Running",
            "restartCount": 0, "started": phase == "Running",
            "state": {"running": {"startedAt": now}} if phase == "Running" else {"waiting": {"reason": "ContainerCreating"}}}]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "namespace": namespace, "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{app}-5d8f7c9b6d",
                                 "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{namespace}/{app}")),
                                 "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"nodeName": node, "hostNetwork": host_network, "restartPolicy": "Always",
                     "schedulerName": "default-scheduler", "serviceAccountName": "default",
                     "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                     "containers": [{"name": app, "image": f"registry.example.com/{app}:1.4.2",
                                     "imagePullPolicy": "IfNotPresent",
                                     "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                                     "resources": {}, "terminationMessagePath": "/dev/termination-log",
                                     "terminationMessagePolicy": "File"}],
                     "tolerations": [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready",
                                      "operator": "Exists", "tolerationSeconds": 300}]},
            "status": status}

    def add_pod(self, name: str, namespace: str = "default", *, quiet: bool = False, **kwargs) -> dict:
        """Create a pod (see :meth:`pod_object`); returns the stored object."""
        return self.apply(self.pod_object(name, namespace, **kwargs), quiet=quiet)

    def set_pod_phase(self, namespace: str, name: str, phase: str, *, quiet: bool = False) -> dict:
        """Move a pod to another phase (Succeeded/Failed finish it; the CNI frees its IP)."""
        pod = copy.deepcopy(self.get("pods", namespace, name))
        pod["status"]["phase"] = phase
        ready = "True" if phase == "Running" else "False"
        for cond in pod["status"].get("conditions") or []:
            if cond["type"] in ("Ready", "ContainersReady"):
                cond["status"] = ready
        out = self.apply({"apiVersion": "v1", "kind": "Pod", **pod}, quiet=quiet)
        if phase in ("Succeeded", "Failed"):
            self._release_ip(pod)
        return out

    def delete_pod(self, namespace: str, name: str, *, quiet: bool = False) -> dict | None:
        return self.delete("pods", namespace, name, quiet=quiet)

    def add_service(self, name: str, namespace: str = "default", *, selector: dict | None = None,
                    svc_type: str = "ClusterIP", port: int = 80, target_port: int | str = 8080,
                    cluster_ip: str | None = None, external_ips: list[str] | None = None,
                    lb_ingress: list[dict] | None = None, quiet: bool = False) -> dict:
        """Create a service; its EndpointSlice follows the pods matching ``selector``."""
        index = next(self._seq)
        ports: dict = {"name": "http", "port": port, "protocol": "TCP", "targetPort": target_port}
        if svc_type in ("NodePort", "LoadBalancer"):
            ports["nodePort"] = 30000 + index % 2767
        cluster_ip = cluster_ip or f"10.96.{index // 250}.{index % 250 + 1}"
        svc = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
               "spec": {"type": svc_type, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                        "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
                        "ports": [ports], "selector": selector if selector is not None else {"app": name},
                        "sessionAffinity": "None"},
               "status": {"loadBalancer": {"ingress": lb_ingress} if lb_ingress else {}}}
        if external_ips:
            svc["spec"]["externalIPs"] = external_ips
        return self.apply(svc, quiet=quiet)

    def populate(self, pods: int, namespaces: tuple[str, ...] = ("default", "shop", "payments"),
                 apps_per_namespace: int = 4, quiet: bool = False) -> None:
        """Add ``pods`` pods as deployments (app labels) over the nodes, with a service per app.

        Adds nodes when the existing ones are full (a /24 each, 110 pods per node at most).
        """
        needed = -(-pods // 110) - len(self._node_nets)
        if needed > 0:
            self.add_nodes(needed)
        apps = [(ns, f"{ns}-app{i}" if ns != "default" else f"web{i}") for ns in namespaces
                for i in range(apps_per_namespace)]
        for ns, app in apps:
            if ns not in ("default", "kube-system"):
                self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, quiet=quiet)
            if self.get("services", ns, app) is None:
                self.add_service(app, ns, selector={"app": app}, quiet=quiet)
        nodes = self.node_names
        self._controller_paused = True
        try:
            for i in range(pods):
                ns, app = apps[i % len(apps)]
                node = nodes[i % len(nodes)]
                self.add_pod(self._fresh_pod_name(ns, app), ns, node=node, labels={"app": app,
                             "pod-template-hash": "5d8f7c9b6d"}, quiet=quiet)
        finally:
            self._controller_paused = False
        for ns, app in apps:
            self._sync_service_endpoints(ns, app, quiet)

    def _fresh_pod_name(self, namespace: str, app: str) -> str:
        """A ReplicaSet-style pod name not in use in the namespace."""
        while True:
            name = f"{app}-5d8f7c9b6d-{_suffix()}"
            if (namespace, name) not in self.store[_PODS]:
                return name

    # ------------------------------------------------------------------ endpoints controller

    def _pod_changed(self, old: dict | None, new: dict | None, quiet: bool) -> None:
        if self._controller_paused:
            return
        pod = new or old
        ns = pod["metadata"]["namespace"]
        labels = {**((old or {}).get("metadata", {}).get("labels") or {}),
                  **((new or {}).get("metadata", {}).get("labels") or {})}
        for (sns, sname), svc in list(self.store[_SERVICES].items()):
            if sns != ns:
                continue
            selector = (svc.get("spec") or {}).get("selector") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                self._sync_service_endpoints(ns, sname, quiet)

    def _sync_service_endpoints(self, ns: str, name: str, quiet: bool) -> None:
        svc = self.store[_SERVICES].get((ns, name))
        if svc is None:
            return
        selector = (svc.get("spec") or {}).get("selector") or {}
        if not selector:
            return
        endpoints = []
        for (pns, _), pod in self.store[_PODS].items():
            if pns != ns:
                continue
            labels = pod["metadata"].get("labels") or {}
            status = pod.get("status") or {}
            if not all(labels.get(k) == v for k, v in selector.items()) or not status.get("podIP"):
                continue
            if status.get("phase") in ("Succeeded", "Failed"):
                continue
            ready = status.get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")
            endpoints.append({"addresses": [status["podIP"]],
                              "conditions": {"ready": ready, "serving": ready, "terminating": False},
                              "nodeName": pod["spec"].get("nodeName"),
                              "targetRef": {"kind": "Pod", "name": pod["metadata"]["name"], "namespace": ns,
                                            "uid": pod["metadata"]["uid"]}})
        endpoints.sort(key=lambda e: e["targetRef"]["name"])
        slice_name = f"{name}-{_suffix(name)}"
        current = self.store[_SLICES].get((ns, slice_name))
        if current is not None and current.get("endpoints") == endpoints:
            return
        port = ((svc.get("spec") or {}).get("ports") or [{}])[0]
        self.apply({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": slice_name, "namespace": ns,
                                 "labels": {"kubernetes.io/service-name": name,
                                            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                                 "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name,
                                                      "uid": svc["metadata"]["uid"], "controller": True,
                                                      "blockOwnerDeletion": True}]},
                    "addressType": "IPv4", "endpoints": endpoints,
                    "ports": [{"name": port.get("name", ""), "port": port.get("targetPort", 8080)
                               if isinstance(port.get("targetPort"), int) else 8080, "protocol": "TCP"}]},
                   quiet=quiet)

    # ------------------------------------------------------------------ churn

    def churn_step(self) -> tuple[str, str]:
        """Replace one random pod by a new one of the same app (a rolling restart step)."""
        pods = list(self.store[_PODS].values())
        victim = random.choice(pods)
        ns, name = victim["metadata"]["namespace"], victim["metadata"]["name"]
        labels = victim["metadata"].get("labels") or {}
        self.delete_pod(ns, name)
        app = labels.get("app", name.rsplit("-", 2)[0])
        new = self.add_pod(self._fresh_pod_name(ns, app), ns, labels=labels,
                           node=random.choice(self.node_names))
        return name, new["metadata"]["name"]

    def start_churn(self, per_second: float = 1.0) -> None:
        """Churn pods in the background (standalone demo)."""
        self._churn_rate = per_second

        async def churn() -> None:
            while True:
                await asyncio.sleep(1.0 / self._churn_rate)
                if self.store[_PODS]:
                    self.churn_step()

        self._churn_task = asyncio.create_task(churn())


_PODS = _BY_PATH[("v1", "pods")]
_SERVICES = _BY_PATH[("v1", "services")]
_SLICES = _BY_PATH[("discovery.k8s.io/v1", "endpointslices")]
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _suffix(seed: str | None = None) -> str:
    rng = random.Random(seed) if seed is not None else random
    return "".join(rng.choice(_ALPHABET) for _ in range(5))


def _parse_selectors(q) -> tuple[list, list]:
    labels = [t.split("=", 1) for t in (q.get("labelSelector") or "").replace("==", "=").split(",") if "=" in t]
    fields = [t.split("=", 1) for t in (q.get("fieldSelector") or "").replace("==", "=").split(",") if "=" in t]
    return labels, fields


def _matches(obj: dict, namespace: str | None, label_sel: list, field_sel: list) -> bool:
    meta = obj.get("metadata") or {}
    if namespace is not None and meta.get("namespace") != namespace:
        return False
    if label_sel:
        labels = meta.get("labels") or {}
        if any(labels.get(k) != v for k, v in label_sel):
            return False
    for key, value in field_sel:
        actual = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
                  "spec.nodeName": (obj.get("spec") or {}).get("nodeName")}.get(key)
        if actual != value:
            return False
    return True


def make_pki(directory: Path, host: str = "127.0.0.1") -> dict[str, Path]:
    """A throw-away CA, server certificate (for ``host``) and client certificate; returns their paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import datetime as dt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str, org: str | None = None):
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    ca_key = key()
    ca = (x509.CertificateBuilder().subject_name(name("kubefabric-sim-ca")).issuer_name(name("kubefabric-sim-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    out: dict[str, Path] = {}

    def leaf(stem: str, cn: str, usage, san=None, org=None):
        k = key()
        builder = (x509.CertificateBuilder().subject_name(name(cn, org)).issuer_name(ca.subject)
                   .public_key(k.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{stem}.key").write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                                                serialization.PrivateFormat.PKCS8,
                                                                serialization.NoEncryption()))
        (directory / f"{stem}.key").chmod(0o600)
        out[f"{stem}.crt"], out[f"{stem}.key"] = directory / f"{stem}.crt", directory / f"{stem}.key"

    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out["ca.crt"] = directory / "ca.crt"
    san = [x509.DNSName("localhost")]
    try:
        san.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        san.append(x509.DNSName(host))
    leaf("server", "kube-apiserver", ExtendedKeyUsageOID.SERVER_AUTH, san)
    leaf("client", "kubefabric-reader", ExtendedKeyUsageOID.CLIENT_AUTH, org="kubefabric:readers")
    return out


async def _serve(args: argparse.Namespace) -> None:
    server = FakeApiServer(token=args.token, host=args.host, port=args.port, tls=args.tls,
                           pki_dir=Path(args.pki_dir) if args.pki_dir else None)
    server.load_scenario(args.scenario, nodes=args.nodes)
    server.populate(args.pods)
    await server.start()
    if args.kubeconfig:
        server.write_kubeconfig(args.kubeconfig, cluster_name=args.cluster_name)
    if args.churn:
        server.start_churn(args.churn)
    print(f"fake Kubernetes API server ({args.scenario}, {len(server.objects('pods'))} pods) at {server.url}"
          + (f"; kubeconfig {args.kubeconfig}" if args.kubeconfig else ""), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sim.k8s_apiserver", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6443)
    parser.add_argument("--scenario", choices=SCENARIOS, default="flannel-vxlan")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--churn", type=float, default=0.0, metavar="PODS_PER_SECOND",
                        help="replace this many random pods per second")
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--pki-dir")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for this server here")
    parser.add_argument("--cluster-name", default="sim")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
