"""The NETCONF operations (RFC 6241, 5277, 6022, 6243) of one session.

`Operations.dispatch(op_element)` returns the elements to put in
`<rpc-reply>` (none means `<ok/>`) or raises RpcError.  Sessions own
transport and framing (server.py); this module owns what each operation
does to the datastores.
"""
from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING

from lxml import etree

from core.datastore.tree import build_tree, flatten, iter_descendants

from agent.nacm import prune_tree
from core.datastore.config import diff_flat
from core.errors import ConfigError

from .datastores import CANDIDATE, NAMES, RUNNING, STARTUP
from .edit import EditErrors, Editor
from .filters import Filter
from .monitoring import NS as MON_NS
from .monitoring import YANGLIB_NS, get_schema, netconf_state, yang_library
from .notifications import NOTIF_NS, NETMOD_NS, REPLAY_STREAMS, Subscription, parse_time, streams_element, STREAMS
from .rpcerror import BASE_NS, RpcError

if TYPE_CHECKING:
    from .server import NetconfServer, Session

WD_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults"
_B = "{%s}" % BASE_NS
WRITE_OPS = {"edit-config", "copy-config", "delete-config", "lock", "unlock", "commit", "cancel-commit",
             "discard-changes", "kill-session"}
_EXTRA_TOPS = {
    f"{{{MON_NS}}}netconf-state": "netconf-state",
    f"{{{NETMOD_NS}}}netconf": "netconf-streams",
    f"{{{YANGLIB_NS}}}yang-library": "yang-library",
}


class Operations:
    """Operation handlers bound to one session."""

    def __init__(self, server: "NetconfServer", session: "Session") -> None:
        self.server = server
        self.session = session
        self.ds = server.ds
        self.stores = server.datastores
        self.codec = server.codec
        self._replay_since: float | None = None
        self._table = {
            (BASE_NS, "get"): self.get,
            (BASE_NS, "get-config"): self.get_config,
            (BASE_NS, "edit-config"): self.edit_config,
            (BASE_NS, "copy-config"): self.copy_config,
            (BASE_NS, "delete-config"): self.delete_config,
            (BASE_NS, "lock"): self.lock,
            (BASE_NS, "unlock"): self.unlock,
            (BASE_NS, "close-session"): self.close_session,
            (BASE_NS, "kill-session"): self.kill_session,
            (BASE_NS, "commit"): self.commit,
            (BASE_NS, "cancel-commit"): self.cancel_commit,
            (BASE_NS, "discard-changes"): self.discard_changes,
            (BASE_NS, "validate"): self.validate,
            (NOTIF_NS, "create-subscription"): self.create_subscription,
            (MON_NS, "get-schema"): self.get_schema,
        }

    async def dispatch(self, op: etree._Element) -> list[etree._Element]:
        qn = etree.QName(op)
        handler = self._table.get((qn.namespace, qn.localname))
        if handler is None:
            raise RpcError("operation-not-supported", f"unknown operation {qn.localname!r}"
                           + (f" in namespace {qn.namespace}" if qn.namespace else ""), type="protocol",
                           info={"bad-element": qn.localname})
        module = {BASE_NS: "ietf-netconf", NOTIF_NS: "notifications", MON_NS: "ietf-netconf-monitoring"}.get(
            qn.namespace or BASE_NS, "")
        if not self.server.nacm.may_exec(self.session.user.name, qn.localname, module):
            self.server.nacm._count("denied-operations")
            raise RpcError("access-denied", f"user {self.session.user.name!r} ({self.session.user.role}) may not "
                           f"run {qn.localname} (NACM)", type="protocol")
        result = await handler(_Params(op))
        return result or []

    # -- reading -------------------------------------------------------------------------------
    async def get(self, p: "_Params") -> list:
        p.only("filter", "with-defaults")
        filt = Filter(p.elem("filter"))
        wd = _with_defaults(p)
        self._replay_since = await self._replay_log_start()
        return [self._data(RUNNING, filt, wd, state=True)]

    async def _replay_log_start(self) -> float | None:
        """When the replay log (the time machine) begins; None without one (no stream replays then)."""
        if not self.ds.history.available:
            return None
        try:
            oldest = await self.ds.history.oldest()
        except Exception:  # noqa: BLE001 - a history that cannot answer replays nothing
            return None
        return oldest if oldest is not None else time.time()

    async def get_config(self, p: "_Params") -> list:
        p.only("source", "filter", "with-defaults")
        source = p.datastore("source")
        filt = Filter(p.elem("filter"))
        wd = _with_defaults(p)
        return [self._data(source, filt, wd, state=False)]

    def _data(self, source: str, filt: Filter, wd: str, state: bool) -> etree._Element:
        data = etree.Element(_B + "data", nsmap={None: BASE_NS})
        if filt.kind is not None and filt.empty:
            return data
        filt.check_names(self.codec, _extra_names(self.server))
        tops = filt.wanted_tops(self.codec, _EXTRA_TOPS)
        tree = self._config_view(source, wd)
        if state:
            tree = self._merge_state(tree, tops)
        allowed = self.server.nacm.read_filter(self.session.user.name)
        if allowed is not None:  # NACM: nodes the user may not read are left out (RFC 8341 3.4.5)
            tree = prune_tree(tree, self.ds.schema, allowed)
        self.codec.to_xml(tree, data, tops)
        if state:
            if tops is None or "netconf-state" in tops:
                data.append(netconf_state(self.server))
            if tops is None or "netconf-streams" in tops:
                data.append(streams_element(self._replay_since))
            if tops is None or "yang-library" in tops:
                data.append(yang_library(self.server))
        if filt.kind is None:
            return data
        return filt.apply(data, self.codec)

    def _config_view(self, source: str, wd: str) -> dict:
        tree = self.stores.tree(source)
        if wd == "explicit":
            return tree
        full = self.stores.with_defaults(source, tree)
        return _trim(full, self.ds.schema) if wd == "trim" else full

    def _merge_state(self, tree: dict, tops: set[str] | None) -> dict:
        schema = self.ds.schema
        flat = flatten(tree, schema, config_only=True)
        out = {}
        for qname, top in schema.top.items():
            if tops is not None and qname not in tops:
                continue
            nodes = []
            for info in iter_descendants(top):
                conf = flat.get(info.path, {})
                state = self.ds.state.entries(info.path)
                for key in conf.keys() | state.keys():
                    c, s = conf.get(key), state.get(key)
                    nodes.append((info, key, s if c is None else c if s is None else {**c, **s}))
            if nodes:
                out[qname] = build_tree(schema, top, (), nodes, ietf=True)
        return out

    # -- writing ----------------------------------------------------------------------------------
    async def edit_config(self, p: "_Params") -> list:
        p.only("target", "default-operation", "test-option", "error-option", "config", "url")
        target = p.datastore("target")
        default_op = p.choice("default-operation", ("merge", "replace", "none"), "merge")
        test = p.choice("test-option", ("test-then-set", "set", "test-only"), "test-then-set")
        error_opt = p.choice("error-option", ("stop-on-error", "continue-on-error", "rollback-on-error"), "stop-on-error")
        if p.elem("url") is not None:
            raise RpcError("operation-not-supported", ":url is not supported", type="protocol", info={"bad-element": "url"})
        config = p.elem("config")
        if config is None:
            raise RpcError("missing-element", "edit-config needs <config>", type="protocol", info={"bad-element": "config"})
        continue_on_error = error_opt == "continue-on-error"
        errors: list[RpcError] = []

        def edit(base: dict) -> dict:
            editor = Editor(self.codec, "merge" if default_op == "replace" else default_op, continue_on_error)
            tree = editor.apply({} if default_op == "replace" else base, config)
            errors[:] = editor.errors
            return tree

        sid = self.session.id
        if target == RUNNING and test != "test-only":
            # the one write path validates every change to running, whatever the test-option
            await self.stores.write_running(edit, self.session.user.name, sid)
        else:
            if test != "test-only":
                self.stores.check_writable(target, sid)
            before = self.stores.tree(target)
            tree = edit(copy.deepcopy(before))
            if test == "test-only":
                self.stores.validate(tree)
            elif test == "test-then-set" and target != CANDIDATE:
                # a candidate may be built in several edits (NSO, OpenDaylight): the edit checks names, keys and
                # value syntax as it decodes them; the candidate is validated as a whole at validate and commit
                self.stores.validate(tree)
            if test != "test-only":
                self._check_writes(target, before, tree)
                if target == CANDIDATE:
                    self.stores.set_candidate(tree, sid)
                else:
                    self.stores.set_startup(tree, sid)
        if errors:
            raise EditErrors(errors)
        return []

    async def copy_config(self, p: "_Params") -> list:
        p.only("target", "source", "with-defaults")
        target = p.datastore("target")
        source_elem = p.elem("source")
        inline = _child(source_elem, BASE_NS, "config") if source_elem is not None else None
        if inline is not None:
            tree = self.codec.tree_from_xml(inline)
        else:
            source = p.datastore("source")
            if source == target:
                raise RpcError("invalid-value", "source and target are the same datastore", info={"bad-element": "target"})
            tree = self.stores.tree(source)
        sid = self.session.id
        if target == RUNNING:
            await self.stores.write_running(lambda _base: copy.deepcopy(tree), self.session.user.name, sid)
        else:
            self.stores.validate(tree)
            self._check_writes(target, self.stores.tree(target), tree)
            if target == CANDIDATE:
                self.stores.set_candidate(tree, sid)
            else:
                self.stores.set_startup(tree, sid)
        return []

    async def delete_config(self, p: "_Params") -> list:
        p.only("target")
        target = p.datastore("target")
        if target != STARTUP:
            raise RpcError("operation-not-supported", f"{target} cannot be deleted (only startup)", type="protocol",
                           info={"bad-element": target})
        self._check_writes(STARTUP, self.stores.tree(STARTUP), {})
        self.stores.set_startup({}, self.session.id)
        return []

    def _check_writes(self, target: str, before: dict, after: dict) -> None:
        """NACM write access for an edit of candidate or startup (running is checked in propose)."""
        schema = self.ds.schema
        old = flatten(before, schema, config_only=True)
        try:
            self.server.nacm.check_writes(self.session.user.name, "netconf",
                                          diff_flat(old, flatten(after, schema, config_only=True), 0), old)
        except ConfigError as exc:
            raise RpcError("access-denied", exc.message, path=exc.path) from None

    async def lock(self, p: "_Params") -> list:
        p.only("target")
        self.stores.lock(p.datastore("target"), self.session.id, self.session.user.name)
        return []

    async def unlock(self, p: "_Params") -> list:
        p.only("target")
        self.stores.unlock(p.datastore("target"), self.session.id)
        return []

    async def commit(self, p: "_Params") -> list:
        p.only("confirmed", "confirm-timeout", "persist", "persist-id")
        timeout = p.number("confirm-timeout", 600)
        if timeout < 1:
            raise RpcError("invalid-value", "confirm-timeout must be at least 1", info={"bad-element": "confirm-timeout"})
        await self.stores.commit(
            self.session.id, self.session.user.name, confirmed=p.elem("confirmed") is not None,
            timeout=timeout, persist=p.text("persist"), persist_id=p.text("persist-id"),
        )
        return []

    async def cancel_commit(self, p: "_Params") -> list:
        p.only("persist-id")
        await self.stores.cancel_commit(self.session.id, p.text("persist-id"))
        return []

    async def discard_changes(self, p: "_Params") -> list:
        p.only()
        self.stores.discard_changes(self.session.id)
        return []

    async def validate(self, p: "_Params") -> list:
        p.only("source")
        source_elem = p.elem("source")
        inline = _child(source_elem, BASE_NS, "config") if source_elem is not None else None
        tree = self.codec.tree_from_xml(inline) if inline is not None else self.stores.tree(p.datastore("source"))
        self.stores.validate(tree)
        return []

    # -- sessions ----------------------------------------------------------------------------------------
    async def close_session(self, p: "_Params") -> list:
        p.only()
        self.session.close_after_reply = True
        return []

    async def kill_session(self, p: "_Params") -> list:
        p.only("session-id")
        target = p.number("session-id", None)
        if target is None:
            raise RpcError("missing-element", "kill-session needs <session-id>", type="protocol",
                           info={"bad-element": "session-id"})
        if target == self.session.id:
            raise RpcError("invalid-value", "use close-session to end your own session", info={"bad-element": "session-id"})
        victim = self.server.sessions.get(target)
        if victim is None:
            raise RpcError("invalid-value", f"no session {target}", info={"bad-element": "session-id"})
        await victim.abort(f"killed by session {self.session.id}")
        return []

    # -- notifications and monitoring ----------------------------------------------------------------------
    async def create_subscription(self, p: "_Params") -> list:
        p.only("stream", "filter", "startTime", "stopTime", ns=NOTIF_NS)
        if self.session.subscription is not None:
            raise RpcError("operation-failed", "this session already has a subscription")
        stream = p.text("stream") or "NETCONF"
        if stream not in STREAMS:
            raise RpcError("invalid-value", f"no stream {stream!r}; streams: {', '.join(STREAMS)}",
                           info={"bad-element": "stream"})
        start_text, stop_text = p.text("startTime"), p.text("stopTime")
        start = parse_time(start_text, "startTime") if start_text else None
        stop = parse_time(stop_text, "stopTime") if stop_text else None
        if stop is not None and start is None:
            raise RpcError("missing-element", "stopTime needs a startTime", type="protocol", info={"bad-element": "startTime"})
        if start is not None and stop is not None and stop < start:
            raise RpcError("bad-element", "stopTime is before startTime", type="protocol", info={"bad-element": "stopTime"})
        import datetime as dt
        if start is not None and start > dt.datetime.now(dt.timezone.utc):
            raise RpcError("bad-element", "startTime is in the future", type="protocol", info={"bad-element": "startTime"})
        if start is not None and (not self.ds.history.available or stream not in REPLAY_STREAMS):
            raise RpcError("operation-failed", "replay is not supported for this stream: the agent has no history "
                           "store" if not self.ds.history.available else
                           f"the {stream} stream has no replay (replaySupport false; the streams that replay are "
                           f"{', '.join(REPLAY_STREAMS)})", info={"bad-element": "startTime"})
        filt = Filter(p.elem("filter"))
        sub = Subscription(self.server.events, stream, filt, self.session.send_notification,
                           self.server.writer_of_change, self.session.writable)
        self.session.subscription = sub
        self.session.after_reply.append(lambda: sub.start(self.ds.feed, self.ds.history, start, stop))
        return []

    async def get_schema(self, p: "_Params") -> list:
        p.only("identifier", "version", "format", ns=MON_NS)
        identifier = p.text("identifier")
        if not identifier:
            raise RpcError("missing-element", "get-schema needs <identifier>", type="protocol",
                           info={"bad-element": "identifier"})
        text = get_schema(self.server.schema_files, identifier, p.text("version"), p.text("format"))
        data = etree.Element(f"{{{MON_NS}}}data", nsmap={None: MON_NS})
        data.text = text
        return [data]


class _Params:
    """Access to an operation element's parameters (children in the operation's namespace)."""

    def __init__(self, op: etree._Element) -> None:
        self.op = op
        self.ns = etree.QName(op).namespace

    def only(self, *names: str, ns: str | None = None) -> None:
        """Refuse unknown parameters (unknown-element)."""
        allowed = set(names)
        for child in self.op:
            if not isinstance(child.tag, str):
                continue
            qn = etree.QName(child)
            if qn.localname == "with-defaults" and qn.namespace == WD_NS and "with-defaults" in allowed:
                continue
            if qn.localname not in allowed or qn.namespace not in (ns or self.ns, None, BASE_NS):
                raise RpcError("unknown-element", f"{etree.QName(self.op).localname} has no parameter "
                               f"{qn.localname!r}" + ("" if qn.namespace == (ns or self.ns) else
                                                      f" in namespace {qn.namespace}"),
                               type="protocol", info={"bad-element": qn.localname})

    def elem(self, name: str) -> etree._Element | None:
        # clients (ncclient among them) often send parameters such as <config> without a namespace
        return _child(self.op, self.ns, name)

    def text(self, name: str) -> str | None:
        e = self.elem(name)
        return None if e is None else (e.text or "").strip()

    def number(self, name: str, default):
        t = self.text(name)
        if t is None:
            return default
        try:
            return int(t)
        except ValueError:
            raise RpcError("invalid-value", f"{name} must be an integer", info={"bad-element": name}) from None

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        t = self.text(name)
        if t is None:
            return default
        if t not in allowed:
            raise RpcError("invalid-value", f"{name} must be one of {', '.join(allowed)}", info={"bad-element": name})
        return t

    def datastore(self, name: str) -> str:
        holder = self.elem(name)
        if holder is None:
            raise RpcError("missing-element", f"<{name}> is required", type="protocol", info={"bad-element": name})
        found = [c for c in holder if isinstance(c.tag, str)]
        if len(found) != 1:
            raise RpcError("bad-element", f"<{name}> must name exactly one datastore", type="protocol",
                           info={"bad-element": name})
        qn = etree.QName(found[0])
        if qn.localname == "url":
            raise RpcError("operation-not-supported", ":url is not supported", type="protocol", info={"bad-element": "url"})
        if qn.localname not in NAMES or qn.namespace not in (BASE_NS, None):
            raise RpcError("invalid-value", f"unknown datastore {qn.localname!r}", type="protocol",
                           info={"bad-element": qn.localname})
        return qn.localname


def _extra_names(server) -> set[str]:
    """Names of the non-datastore trees a get returns (netconf-state, streams, yang-library), for XPath checks."""
    names: set[str] = set()
    for tree in (netconf_state(server), streams_element(0.0), yang_library(server)):
        names.update(etree.QName(e).localname for e in tree.iter() if isinstance(e.tag, str))
    return names


def _child(parent: etree._Element, ns: str, name: str) -> etree._Element | None:
    # the operation's namespace first; then none, and base:1.0 (ncclient puts create-subscription's filter there)
    for tag in (f"{{{ns}}}{name}", name, f"{{{BASE_NS}}}{name}"):
        found = parent.find(tag)
        if found is not None:
            return found
    return None


def _with_defaults(p: _Params) -> str:
    e = p.op.find(f"{{{WD_NS}}}with-defaults")
    if e is None:
        return "explicit"
    mode = (e.text or "").strip()
    if mode not in ("report-all", "trim", "explicit"):
        raise RpcError("invalid-value", f"with-defaults {mode!r} is not supported (report-all, trim, explicit)",
                       info={"bad-element": "with-defaults"})
    return mode


def _trim(tree: dict, schema) -> dict:
    """Remove leaves whose value is the schema default (RFC 6243 trim)."""

    def strip(body: dict, info) -> dict:
        out = {}
        for name, value in body.items():
            leaf = info.leaves.get(name)
            if leaf is not None:
                if leaf.default is not None and name not in info.own_keys and _same(value, leaf.default):
                    continue
                out[name] = value
                continue
            child = info.children.get(name)
            if child is None:
                continue
            if child.kind == "list":
                out[name] = [strip(e, child) for e in value]
            else:
                sub = strip(value, child)
                if sub:
                    out[name] = sub
        return out

    trimmed = {k: strip(v, schema.top[k]) for k, v in tree.items() if k in schema.top}
    return {k: v for k, v in trimmed.items() if v}


def _same(value, default) -> bool:
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default or value == default
    return value == default or str(value) == str(default)
