"""The Get RPC: one Notification per requested path, built from the datastore.

JSON and JSON_IETF answer each matched node with one Update carrying its
whole subtree (a list path answers one Update per entry); PROTO answers
one Update per leaf with a scalar TypedValue.  A wildcard or container
with no data answers an empty Notification; a path naming one list entry
that does not exist is NOT_FOUND.
"""
from __future__ import annotations

import time

from agent.gnmi_proto import gnmi_pb2

from core.datastore import Datastore

from . import encode, history
from .paths import PathError, resolve, restrict_models, with_depth
from .read import collect, entry_exists

_DATATYPES = set(gnmi_pb2.GetRequest.DataType.values())


def get(ds: Datastore, request: gnmi_pb2.GetRequest, snapshot_rows=None, depth: int = 0, allowed=None) -> bytes:
    """GetResponse bytes, or PathError (with a gRPC status name) for the client.

    `snapshot_rows` is `history.snapshot(...)`, fetched off the event loop by
    the caller for a snapshot_time request.
    """
    if request.encoding not in encode.SUPPORTED:
        name = gnmi_pb2.Encoding.Name(request.encoding) if request.encoding in gnmi_pb2.Encoding.values() else request.encoding
        raise PathError("UNIMPLEMENTED", f"encoding {name} is not supported (JSON, JSON_IETF, PROTO are)")
    if request.type not in _DATATYPES:
        raise PathError("INVALID_ARGUMENT", f"unknown data type {request.type}")
    hist = history.from_extensions(request.extension)
    if hist is not None and hist.is_range:
        raise PathError("INVALID_ARGUMENT", "a history range needs a STREAM subscription; Get takes snapshot_time")
    paths = list(request.path) or [gnmi_pb2.Path()]
    resolved = [[with_depth(sel, depth) for sel in
                 restrict_models(ds.schema, resolve(ds.schema, request.prefix, p), request.use_models)]
                for p in paths]  # all errors before any work
    if hist is not None:
        for selectors in resolved:
            history.check(ds, hist, selectors)
    rows = None
    if hist is not None:
        if snapshot_rows is None:
            raise PathError("UNIMPLEMENTED", "no history store on this agent")
        rows = snapshot_rows
    target = request.prefix.target
    notifications = []
    for path, selectors in zip(paths, resolved):
        origin = path.origin or request.prefix.origin
        enc = encode.Encoder(request.encoding, origin=origin, target=target)
        items: list[bytes] = []
        for sel in selectors:
            nodes = collect(ds, sel, request.type, rows=rows, allowed=allowed)
            if not nodes and sel.concrete and sel.keys and rows is None and not entry_exists(ds, sel):
                raise PathError("NOT_FOUND", f"no list entry for {_describe(sel)}")
            _encode(ds, enc, sel, nodes, items)
        ts = hist.snapshot_ns if hist is not None else time.time_ns()
        notifications.append(enc.notification(ts, items))
    return encode.get_response(notifications)


def _describe(sel) -> str:
    from .paths import node_path, to_string

    return to_string(node_path(sel.node, sel.keys, sel.leaf))


def _encode(ds: Datastore, enc: encode.Encoder, sel, nodes: list, items: list) -> None:
    if sel.leaf is not None:
        for info, key, values, _ts in sorted(nodes, key=_order):
            items.append(enc.leaf_update(info, key, sel.leaf, values[sel.leaf]))
        return
    if enc.encoding == encode.PROTO:
        for info, key, values, _ts in sorted(nodes, key=_order):
            enc.node_updates(info, key, values, items)
        return
    depth = len(sel.node.keys)
    groups: dict[tuple, list] = {}
    for info, key, values, _ts in nodes:
        groups.setdefault(key[:depth], []).append((info, key, values))
    for root_key in sorted(groups, key=_sortable):
        value = enc.subtree_json(ds.schema, sel.node, root_key, groups[root_key])
        items.append(enc.subtree_update(sel.node, root_key, value))


def _sortable(key: tuple) -> tuple:
    return tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)) for v in key)


def _order(node) -> tuple:
    info, key = node[0], node[1]
    return (_sortable(key), info.path.count("/"), info.path)
