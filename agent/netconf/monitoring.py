"""ietf-netconf-monitoring (RFC 6022): /netconf-state and get-schema."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from core.schema import netconf_yang_dir
from core.times import now_rfc3339

from .rpcerror import RpcError

NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
MODULE = "ietf-netconf-monitoring"
REVISION = "2010-10-04"
_M = "{%s}" % NS
_OWN_YANG = netconf_yang_dir()


def now_iso() -> str:
    """yang:date-and-time for now (UTC)."""
    return now_rfc3339()


@dataclass
class Counters:
    """Per-session or global statistics (RFC 6022 names)."""

    in_rpcs: int = 0
    in_bad_rpcs: int = 0
    out_rpc_errors: int = 0
    out_notifications: int = 0


@dataclass
class Statistics(Counters):
    """Server-wide counters."""

    start_time: str = field(default_factory=now_iso)
    in_bad_hellos: int = 0
    in_sessions: int = 0
    dropped_sessions: int = 0


@dataclass(frozen=True)
class SchemaFile:
    """A module get-schema can return."""

    identifier: str
    version: str
    namespace: str
    path: Path


def schema_files(schema) -> list[SchemaFile]:
    """Our YANG modules plus the NETCONF face's own: ietf-netconf-monitoring and kubefabric-notifications."""
    files = [SchemaFile(m.name, m.revision, m.namespace, Path(m.path)) for m in schema.modules]
    files.append(SchemaFile(MODULE, REVISION, NS, _OWN_YANG / f"{MODULE}@{REVISION}.yang"))
    from .notifications import EVENTS_MODULE, EVENTS_NS, EVENTS_REVISION

    files.append(SchemaFile(EVENTS_MODULE, EVENTS_REVISION, EVENTS_NS,
                            _OWN_YANG / f"{EVENTS_MODULE}@{EVENTS_REVISION}.yang"))
    return files


def get_schema(files: list[SchemaFile], identifier: str, version: str | None, fmt: str | None) -> str:
    """The text of one module (RFC 6022 3.1 errors on unknown or ambiguous requests)."""
    if fmt and fmt.split(":")[-1] != "yang":
        raise RpcError("invalid-value", f"format {fmt!r} is not available; only yang",
                       info={"bad-element": "format"})
    found = [f for f in files if f.identifier == identifier and (not version or f.version == version)]
    if not found:
        raise RpcError("invalid-value", f"no schema {identifier!r}" + (f" revision {version}" if version else ""),
                       info={"bad-element": "identifier"})
    if len(found) > 1:
        raise RpcError("operation-failed", f"more than one revision of {identifier!r}; give a version",
                       app_tag="data-not-unique", info={"bad-element": "version"})
    return found[0].path.read_text()


def netconf_state(server) -> etree._Element:
    """The /netconf-state container for `server` (a NetconfServer)."""
    sub = etree.SubElement
    root = etree.Element(_M + "netconf-state", nsmap={None: NS})
    caps = sub(root, _M + "capabilities")
    for cap in server.capabilities:
        sub(caps, _M + "capability").text = cap
    stores = sub(root, _M + "datastores")
    for name in ("running", "candidate", "startup"):
        ds = sub(stores, _M + "datastore")
        sub(ds, _M + "name").text = name
        holder = server.datastores.locks.get(name)
        if holder is not None:
            locks = sub(ds, _M + "locks")
            glock = sub(locks, _M + "global-lock")
            sub(glock, _M + "locked-by-session").text = str(holder)
            sub(glock, _M + "locked-time").text = server.datastores.lock_times.get(name, now_iso())
    schemas = sub(root, _M + "schemas")
    for f in server.schema_files:
        s = sub(schemas, _M + "schema")
        sub(s, _M + "identifier").text = f.identifier
        sub(s, _M + "version").text = f.version
        sub(s, _M + "format").text = "yang"
        sub(s, _M + "namespace").text = f.namespace
        sub(s, _M + "location").text = "NETCONF"
    sessions = sub(root, _M + "sessions")
    for session in server.sessions.values():
        s = sub(sessions, _M + "session")
        sub(s, _M + "session-id").text = str(session.id)
        sub(s, _M + "transport").text = "netconf-ssh"
        sub(s, _M + "username").text = session.user.name
        if session.peer:
            sub(s, _M + "source-host").text = session.peer
        sub(s, _M + "login-time").text = session.login_time
        _counters(s, session.counters)
    stats = sub(root, _M + "statistics")
    st = server.stats
    sub(stats, _M + "netconf-start-time").text = st.start_time
    sub(stats, _M + "in-bad-hellos").text = str(st.in_bad_hellos)
    sub(stats, _M + "in-sessions").text = str(st.in_sessions)
    sub(stats, _M + "dropped-sessions").text = str(st.dropped_sessions)
    _counters(stats, st)
    return root


def _counters(parent: etree._Element, c: Counters) -> None:
    sub = etree.SubElement
    sub(parent, _M + "in-rpcs").text = str(c.in_rpcs)
    sub(parent, _M + "in-bad-rpcs").text = str(c.in_bad_rpcs)
    sub(parent, _M + "out-rpc-errors").text = str(c.out_rpc_errors)
    sub(parent, _M + "out-notifications").text = str(c.out_notifications)
