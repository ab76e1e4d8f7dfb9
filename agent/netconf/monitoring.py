"""ietf-netconf-monitoring (RFC 6022): /netconf-state and get-schema."""
from __future__ import annotations

import hashlib
import re
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
    """A module get-schema can return (and the YANG library lists)."""

    identifier: str
    version: str
    namespace: str
    path: Path
    implemented: bool = True  # False: only its types are used (import-only-module)

    @property
    def yang_1_1(self) -> bool:
        """YANG 1.1 modules are announced by the YANG library only, never in the hello (RFC 7950 5.6.4)."""
        return bool(re.search(r"^\s*yang-version\s+\"?1\.1", self.path.read_text(), re.M))


def schema_files(schema) -> list[SchemaFile]:
    """Our YANG modules plus the NETCONF face's own (core/yang/netconf): every module it implements or imports.

    ietf-netconf, ietf-netconf-with-defaults, ietf-netconf-monitoring,
    ietf-netconf-notifications, ietf-yang-library (with ietf-datastores)
    and kubefabric-notifications, as published (copied from pyang's module
    collection), so get-schema serves every module the server advertises.
    """
    files = [SchemaFile(m.name, m.revision, m.namespace, Path(m.path), m.implemented) for m in schema.modules]
    for path in sorted(_OWN_YANG.glob("*.yang")):
        name, _, revision = path.stem.partition("@")
        namespace = re.search(r'namespace\s+"([^"]+)"', path.read_text())
        files.append(SchemaFile(name, revision, namespace.group(1) if namespace else "", path,
                                name != "ietf-datastores"))
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


# -- the YANG library (RFC 8525) ---------------------------------------------------------------
YANGLIB_NS = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
YANGLIB_REVISION = "2019-01-04"
DATASTORES_NS = "urn:ietf:params:xml:ns:yang:ietf-datastores"
_L = "{%s}" % YANGLIB_NS
MODULE_SET = "kubefabric"


def content_id(files: list[SchemaFile]) -> str:
    """Changes whenever the set of modules does (RFC 8525 content-id)."""
    text = "\n".join(f"{f.identifier}@{f.version}:{int(f.implemented)}" for f in sorted(files, key=lambda f: f.identifier))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def yang_library_capability(files: list[SchemaFile]) -> str:
    """The hello capability of a server that implements YANG 1.1 modules (RFC 8525 section 5, RFC 7950 5.6.4)."""
    return (f"urn:ietf:params:netconf:capability:yang-library:1.1?revision={YANGLIB_REVISION}"
            f"&content-id={content_id(files)}")


def module_capabilities(files: list[SchemaFile]) -> list[str]:
    """Hello capabilities of the YANG 1.0 modules (YANG 1.1 modules are in the YANG library only)."""
    return [f"{f.namespace}?module={f.identifier}&revision={f.version}" for f in files if not f.yang_1_1]


def yang_library(server) -> etree._Element:
    """/yang-library (ietf-yang-library, RFC 8525): one module set, one schema, the three datastores."""
    sub = etree.SubElement
    files = server.schema_files
    root = etree.Element(_L + "yang-library", nsmap={None: YANGLIB_NS})
    module_set = sub(root, _L + "module-set")
    sub(module_set, _L + "name").text = MODULE_SET
    for f in files:
        entry = sub(module_set, _L + ("module" if f.implemented else "import-only-module"))
        sub(entry, _L + "name").text = f.identifier
        sub(entry, _L + "revision").text = f.version
        sub(entry, _L + "namespace").text = f.namespace
    schema = sub(root, _L + "schema")
    sub(schema, _L + "name").text = MODULE_SET
    sub(schema, _L + "module-set").text = MODULE_SET
    for name in ("running", "candidate", "startup"):
        ds = sub(root, _L + "datastore")
        sub(ds, _L + "name", nsmap={"ds": DATASTORES_NS}).text = f"ds:{name}"
        sub(ds, _L + "schema").text = MODULE_SET
    sub(root, _L + "content-id").text = content_id(files)
    return root
