"""The read-only web page on --web-addr: the operator's picture of the fabric.

One static page (``static/``: HTML, CSS and plain JavaScript, no build
step) and a few JSON endpoints it polls:

=====================  ===================================================
``/api/summary``       node, fabric, sync-state, fabric members, Kubernetes
                       connections and CNI, table sizes, history available
``/api/vports``        the vPort table; ``?at=T`` (Unix seconds or RFC 3339)
                       as it was at T, from the time machine
``/api/services``      services and their backends; ``?at=T`` likewise
``/api/connections``   top talkers of the connection table (``?limit=N``)
``/api/changes``       vPort and service-backend changes in ``?from=T1&to=T2``
                       (the ticks under the time slider)
``/api/fabric``        the fabric drawing: switches, their ports (health),
                       the nodes on them and the pods in the nodes, and the
                       unplaced nodes; ``?at=T`` as it was at T
=====================  ===================================================

Live answers come from ``ds.read()``; past answers from the time machine
``ds.history`` (``rows_at``, ``service_backends``, ``changes``), and when
the agent has no history store the past endpoints answer 404 with a reason
the page shows next to its time slider.

Everything, the page included, needs HTTP Basic credentials of a
configured user (the same users and scrypt hashes as gNMI, NETCONF and the
CLI); any role may read, and nothing here writes.  Served by aiohttp in the
agent's event loop, so reading the datastore needs no locking.
"""
from __future__ import annotations

import base64
import binascii
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.settings import split_addr
from core.ports.stats import ComponentStats
from core.times import TimeFormatError, format_rfc3339_ns, parse_rfc3339
from core import schema_paths
from agent.auth import Authenticator
from core.datastore import Datastore

__all__ = ["WebServer", "parse_time"]

log = logging.getLogger("kubefabric.web")

STATIC = Path(__file__).resolve().parent / "static"

VPORT = schema_paths.VPORT
SERVICE = schema_paths.K8S_SERVICE
BACKEND = schema_paths.K8S_SERVICE_BACKEND
CONNECTION = schema_paths.CONNECTION
K8S_CONNECTION = schema_paths.K8S_CONNECTION
K8S_STATE = schema_paths.K8S_CONNECTION_STATE
CNI = schema_paths.K8S_CNI
FABRIC = schema_paths.FABRIC
FABRIC_NODE = schema_paths.FABRIC_NODE
SFLOW_STATS = schema_paths.SFLOW_STATS
ATTACHMENT = schema_paths.ATTACHMENT
UNPLACED = schema_paths.UNPLACED
#: port leaves the drawing shows
PORT_LEAVES = ("ifindex", "oper-status", "speed", "in-utilization", "out-utilization", "in-discard-percent",
               "out-discard-percent", "in-errors", "out-errors")
CONN_SETTINGS = schema_paths.CONNECTION_SETTINGS

MAX_CONNECTIONS_SHOWN = 500
MAX_CHANGES = 2000
#: rows of one past table the page may ask for
MAX_ROWS = 200_000
# the authenticated user, in request storage (RequestKey exists from aiohttp 3.12 on)
USER = web.RequestKey("user", object) if hasattr(web, "RequestKey") else "kubefabric.user"
REALM = "kubefabric"

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
    "Cache-Control": "no-store",
}


class TimeError(ValueError):
    """A ?at= value that is not a time."""


def parse_time(text: str) -> float:
    """Unix seconds or RFC 3339 text -> Unix seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_rfc3339(text)
    except TimeFormatError:
        raise TimeError(f"not a time: {text!r} (give Unix seconds or RFC 3339)") from None


def _backend_order(backend: dict) -> tuple:
    return (str(backend.get("pod", "")), str(backend.get("ip", "")), int(backend.get("port") or 0))


def _iso(t: float) -> str:
    return format_rfc3339_ns(int(t * 1e9), digits=0)


def _port_order(name: str) -> tuple:
    """eth2 before eth10: names compared by their text and number parts."""
    import re

    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part)


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class WebServer:
    """The page and its JSON endpoints; `await start()`, `await stop()`, `.address`."""

    def __init__(self, ds: Datastore, authenticator: Authenticator, addr: str) -> None:
        self.ds = ds
        self.auth = authenticator
        self.host, self.port = split_addr(addr, 8080)
        self.address: str | None = None
        self.requests = 0
        self.refused = 0
        self._runner: web.AppRunner | None = None

    def statistics(self) -> ComponentStats:
        """Requests served and refused."""
        return ComponentStats(other={"requests": float(self.requests), "refused": float(self.refused)})

    # -- life cycle ----------------------------------------------------------
    def app(self) -> web.Application:
        """The aiohttp application (tests may serve it themselves)."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/", self._index)
        app.router.add_get("/api/summary", self._summary)
        app.router.add_get("/api/vports", self._vports)
        app.router.add_get("/api/services", self._services)
        app.router.add_get("/api/connections", self._connections)
        app.router.add_get("/api/changes", self._changes)
        app.router.add_get("/api/fabric", self._fabric)
        app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []
        port = sockets[0].getsockname()[1] if sockets else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.address = f"{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- authentication ------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        self.requests += 1
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        user = self._user(request.headers.get("Authorization", ""))
        if user is None:
            self.refused += 1
            return web.Response(
                status=401, text="authentication required\n",
                headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"', **_SECURITY_HEADERS},
            )
        request[USER] = user
        try:
            response = await handler(request)
        except TimeError as exc:
            response = web.json_response({"error": str(exc)}, status=400)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def _user(self, header: str):
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, password = decoded.partition(":")
        if not sep:
            return None
        return self.auth.authenticate(name, password)

    # -- handlers ------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Content-Type": "text/html; charset=utf-8"})

    async def _summary(self, request: web.Request) -> web.Response:
        ds = self.ds
        fabric = ds.read_node(FABRIC) or {}
        nodes = [{"name": key[0], **row} for key, row, _ in ds.read(FABRIC_NODE)]
        states = {key[0]: row for key, row, _ in ds.read(K8S_STATE)}
        connections = []
        for key, row, _ in ds.read(K8S_CONNECTION):
            entry = {k: v for k, v in row.items() if k != "kube-config"}  # a path on the owner: not needed here
            entry["cluster-name"] = key[0]
            entry["state"] = states.pop(key[0], {})
            connections.append(entry)
        cni = [{"cluster-name": key[0], **row} for key, row, _ in ds.read(CNI)]
        settings = ds.read_node(CONN_SETTINGS) or {}
        sflow = ds.read_node(SFLOW_STATS) or {}
        body = {
            "node": ds.node_name,
            "user": request[USER].name,
            "fabric": {"name": fabric.get("name", ""), "sync-state": fabric.get("sync-state", ""),
                       "revision": ds.revision, "nodes": nodes},
            "k8s": {"connections": connections, "cni": cni},
            "counts": {
                "vports": len(ds.state.entries(VPORT)),
                "services": len(ds.state.entries(SERVICE)),
                "connections": len(ds.state.entries(CONNECTION)),
            },
            "connection-stats": {"enable": bool(settings.get("enable", False)),
                                 "max-connections": settings.get("max-connections")},
            "sflow": {k: _int(sflow.get(k)) for k in ("datagrams", "samples", "malformed", "lost") if k in sflow},
            "history": self._history_status(),
            "now": time.time(),
        }
        return web.json_response(body)

    def _history_status(self) -> dict:
        history = self.ds.history
        if not history.available:
            return {"available": False, "reason": f"history is unavailable: {history.reason}"}
        return {"available": True, "retention-days": history.retention_days}

    def _at(self, request: web.Request) -> float | None:
        text = request.query.get("at", "").strip()
        if not text or text == "now":
            return None
        return parse_time(text)

    def _history_or_404(self) -> None:
        if not self.ds.history.available:
            raise web.HTTPNotFound(
                text='{"error": "history is unavailable on this agent"}', content_type="application/json")

    async def _vports(self, request: web.Request) -> web.Response:
        at = self._at(request)
        if at is None:
            rows = [{**row, "ip": key[0]} for key, row, _ in self.ds.read(VPORT)]
            source = "live"
        else:
            self._history_or_404()
            page = await self.ds.history.rows_at(VPORT, at, limit=MAX_ROWS)
            rows = [{**row.values, "ip": row.key[0]} for row in page.items]
            source = "history"
        rows.sort(key=lambda r: (str(r.get("hostname", "")), str(r.get("namespace", "")), str(r.get("entity", ""))))
        return web.json_response({"source": source, "at": at, "at-text": _iso(at) if at else None, "vports": rows})

    async def _services(self, request: web.Request) -> web.Response:
        at = self._at(request)
        services = []
        if at is None:
            backends: dict[tuple, list[dict]] = {}
            for key, row, _ in self.ds.read(BACKEND):
                backends.setdefault(key[:3], []).append({**row, "ip": key[3], "port": key[4]})
            for key, row, _ in self.ds.read(SERVICE):
                cluster, ns, name = key
                services.append({**row, "cluster-name": cluster, "namespace": ns, "name": name,
                                 "backends": sorted(backends.get(key, []), key=_backend_order)})
            source = "live"
        else:
            self._history_or_404()
            page = await self.ds.history.rows_at(SERVICE, at, limit=MAX_ROWS)
            for row in page.items:
                cluster, ns, name = row.key
                versions = await self.ds.history.service_backends(cluster, ns, name, at)
                services.append({**row.values, "cluster-name": cluster, "namespace": ns, "name": name,
                                 "backends": sorted((dict(v.data) for v in versions), key=_backend_order)})
            source = "history"
        services.sort(key=lambda s: (s["cluster-name"], s["namespace"], s["name"]))
        return web.json_response({"source": source, "at": at, "at-text": _iso(at) if at else None,
                                  "services": services})

    async def _connections(self, request: web.Request) -> web.Response:
        limit = max(1, min(_int(request.query.get("limit"), 50), MAX_CONNECTIONS_SHOWN))
        names = ("vlan", "vxlan", "src-ip", "dst-ip", "src-port", "dst-port", "protocol")
        table = self.ds.state.entries(CONNECTION)
        top = sorted(table.items(), key=lambda item: _int(item[1].get("bytes")), reverse=True)[:limit]
        rows = []
        for key, row in top:
            entry = {**row, **dict(zip(names, key))}
            for leaf in ("bytes", "packets", "latency", "age"):
                if leaf in entry:
                    entry[leaf] = _int(entry[leaf])
            rows.append(entry)
        return web.json_response({"total": len(table), "connections": rows})

    async def _fabric(self, request: web.Request) -> web.Response:
        """Switches -> ports -> nodes -> pods, live or at ?at=T (attachments and vPorts from the time machine)."""
        at = self._at(request)
        members = {key[0]: row.get("state", "") for key, row, _ in self.ds.read(FABRIC_NODE)}
        if at is None:
            attachments = [(key, row) for key, row, _ in self.ds.read(ATTACHMENT)]
            vports = [row for _key, row, _ in self.ds.read(VPORT)]
            unplaced = [{"cluster-name": key[0], "node": key[1], **row} for key, row, _ in self.ds.read(UNPLACED)]
            source = "live"
        else:
            self._history_or_404()
            attachments = [(row.key, row.values) for row in
                           (await self.ds.history.rows_at(ATTACHMENT, at, limit=MAX_ROWS)).items]
            vports = [{**row.values, "ip": row.key[0]} for row in
                      (await self.ds.history.rows_at(VPORT, at, limit=MAX_ROWS)).items]
            unplaced = []
            source = "history"
        pods: dict[tuple[str, str], list[dict]] = {}
        for v in vports:
            pods.setdefault((str(v.get("svc-name", "")), str(v.get("hostname", ""))), []).append(
                {"ip": v.get("ip"), "entity": v.get("entity"), "namespace": v.get("namespace"),
                 "power": v.get("power")})
        switches: dict[str, dict] = {}
        for (switch, port, cluster, node), row in attachments:
            sw = switches.setdefault(switch, {"name": switch, "state": members.get(switch, "unknown"), "ports": {}})
            entry = sw["ports"].setdefault(port, {"port": port, **{k: row[k] for k in PORT_LEAVES if k in row},
                                                  "nodes": []})
            entry["nodes"].append({"node": node, "cluster-name": cluster, "learned-by": row.get("learned-by", []),
                                   "note": row.get("note", ""),
                                   "pods": sorted(pods.get((cluster, node), []), key=lambda p: str(p["entity"]))})
        out = []
        for name in sorted(switches):
            sw = switches[name]
            out.append({**sw, "ports": [sw["ports"][p] for p in sorted(sw["ports"], key=_port_order)]})
        return web.json_response({"source": source, "at": at, "at-text": _iso(at) if at else None,
                                  "switches": out, "unplaced": unplaced})

    async def _changes(self, request: web.Request) -> web.Response:
        self._history_or_404()
        now = time.time()
        end = parse_time(request.query["to"]) if request.query.get("to") else now
        start = parse_time(request.query["from"]) if request.query.get("from") else end - 3600
        if start >= end:
            raise TimeError("from must be before to")
        page = await self.ds.history.changes(start, end, kinds=("vport", "member", "attachment"), limit=MAX_CHANGES)
        changes = []
        for change in page.items:
            data = change.data or {}
            name = data.get("entity") or data.get("pod") or data.get("node") or ""
            changes.append({"time": change.time, "op": change.op, "kind": change.kind,
                            "cluster": change.cluster, "key": change.key,
                            "member": change.member or "", "name": name})
        return web.json_response({"from": start, "to": end, "truncated": page.truncated, "changes": changes})
