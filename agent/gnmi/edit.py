"""The Set RPC as one config edit: deletes, then replaces, then updates.

A SetRequest becomes one edit function over the running config (RFC 7951
JSON) handed to `ds.propose`, which validates the whole candidate against
YANG (types, must, max-elements), replicates it and applies it, or
changes nothing.  So a Set is all-or-nothing, whatever face wrote before.

Paths are checked before anything runs: wildcards only in deletes (the
spec's "subset of keys"), no config-false targets, keys in the path that
agree with keys in the value.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass

from agent.gnmi_proto import gnmi_pb2

from core.schema import NodeInfo, Schema

from .encode import typed_value_from_proto
from .paths import WILD, PathError, join, key_text, resolve

DELETE, REPLACE, UPDATE = (gnmi_pb2.UpdateResult.Operation.Value(n) for n in ("DELETE", "REPLACE", "UPDATE"))


@dataclass
class Op:
    """One checked operation of a SetRequest."""

    kind: int
    path: gnmi_pb2.Path
    node: NodeInfo | None  # None: the root
    keys: tuple
    leaf: str | None
    collection: bool  # the path names a whole list (no keys on its last element)
    value: object = None
    module: str | None = None  # the root path's origin when it names one module: the op covers that module only


def plan(schema: Schema, request: gnmi_pb2.SetRequest) -> list[Op]:
    """Check and decode every operation, in the spec's order; raises PathError."""
    _refuse_unknown_operations(request)
    ops = [_op(schema, request.prefix, p, DELETE, None) for p in request.delete]
    ops += [_op(schema, request.prefix, u.path, REPLACE, u) for u in request.replace]
    ops += [_op(schema, request.prefix, u.path, UPDATE, u) for u in request.update]
    return ops


def _refuse_unknown_operations(request) -> None:
    """An operation we do not serve (union_replace) or a newer client's field our gnmi.proto lacks is refused."""
    if len(request.union_replace):
        raise PathError("UNIMPLEMENTED", "SetRequest union_replace is not supported (it unions CLI and YANG "
                        "origins; this target has one); nothing was changed", error_tag="operation-not-supported")
    try:
        from google.protobuf.unknown_fields import UnknownFieldSet
    except ImportError:  # pragma: no cover - older protobuf
        return
    numbers = sorted({f.field_number for f in UnknownFieldSet(request)})
    if numbers:
        what = f"fields {numbers}"
        raise PathError("UNIMPLEMENTED", f"SetRequest {what} is not supported; nothing was changed")


def _op(schema: Schema, prefix, path, kind: int, update) -> Op:
    origin, elems = join(prefix, path)
    wild = any(e.name in ("*", "...") or "*" in e.key.values() for e in elems)
    if wild and kind != DELETE:
        raise PathError("INVALID_ARGUMENT", "wildcards are allowed in Set deletes only")
    if not elems:
        if kind == DELETE:
            raise PathError("INVALID_ARGUMENT", "deleting the whole config is not allowed; delete its top-level containers")
        sel = None
    else:
        selectors = resolve(schema, prefix, path)
        if len(selectors) != 1 and kind != DELETE:
            raise PathError("INVALID_ARGUMENT", "a Set path must name one node")
        sel = selectors[0] if len(selectors) == 1 else None
        for s in selectors:
            node_config = s.node.config and (s.leaf is None or s.node.leaves[s.leaf].config)
            if not node_config:
                where = s.node.path + (f"/{s.leaf}" if s.leaf else "")
                raise PathError("INVALID_ARGUMENT", f"{where} is config false (operational state) and cannot be set")
        if sel is None:  # wildcard delete over several nodes
            return Op(kind, path, None, (), None, False, selectors)
    collection = False
    if sel is not None:
        # which list elements came without keys
        missing = [i for i, k in enumerate(sel.keys) if k is WILD]
        last_list_keys = len(sel.node.own_keys) if sel.node.kind == "list" and sel.leaf is None else 0
        collection = bool(last_list_keys) and not elems[-1].key and elems[-1].name == sel.node.name
        allowed_missing = set(range(len(sel.keys) - last_list_keys, len(sel.keys))) if collection else set()
        if kind != DELETE and set(missing) - allowed_missing:
            raise PathError("INVALID_ARGUMENT", f"{path_text(path)}: every list on the path needs all its keys")
    value = None
    if update is not None:
        value = _decode(update.val, sel)
    if sel is None:
        module = origin if any(m.name == origin for m in schema.implemented) else None
        return Op(kind, path, None, (), None, False, value, module)
    return Op(kind, path, sel.node, sel.keys, sel.leaf, collection, value)


def path_text(path) -> str:
    from .paths import to_string

    return to_string(path)


def _decode(tv: gnmi_pb2.TypedValue, sel) -> object:
    kind = tv.WhichOneof("value")
    if kind in ("json_ietf_val", "json_val"):
        raw = getattr(tv, kind)
        try:
            return json.loads(raw)
        except ValueError as exc:
            if sel is not None and sel.leaf is not None:
                # a bare string for a leaf, as pygnmi sends str values
                try:
                    return raw.decode()
                except UnicodeDecodeError:
                    pass
            raise PathError("INVALID_ARGUMENT", f"value is not valid JSON: {exc}") from None
    if kind in (None, "bytes_val", "proto_bytes", "any_val"):
        raise PathError("UNIMPLEMENTED", f"value encoding {kind or 'none'} is not supported; use JSON_IETF, JSON or a scalar")
    if sel is None or sel.leaf is None:
        raise PathError("INVALID_ARGUMENT", f"a scalar {kind} can only set a leaf; send a container as JSON_IETF")
    value = typed_value_from_proto(tv)
    leaf = sel.node.leaves[sel.leaf]
    if leaf.is_64bit:  # RFC 7951 carries 64-bit integers as strings
        value = [str(v) for v in value] if isinstance(value, list) else str(value)
    return value


# -- applying to the RFC 7951 tree --------------------------------------------------

def apply(tree: dict, schema: Schema, ops: list[Op]) -> dict:
    """Run the operations on a private copy of the running config; returns the candidate."""
    for op in ops:
        if op.kind == DELETE:
            if op.node is None:
                for sel in op.value:
                    _delete(tree, schema, sel.node, sel.keys, sel.leaf, True)
            else:
                _delete(tree, schema, op.node, op.keys, op.leaf, op.collection)
        elif op.node is None:
            _set_root(tree, schema, op)
        else:
            _set(tree, schema, op)
    return tree


def _chain(info: NodeInfo) -> list[NodeInfo]:
    chain = []
    while info is not None:
        chain.append(info)
        info = info.parent
    return chain[::-1]


def _member(info: NodeInfo) -> str:
    return info.qualified_name if info.parent is None else info.name


def _entry_matches(entry: dict, info: NodeInfo, keys: tuple) -> bool:
    for name, want in zip(info.own_keys, keys):
        if want is WILD:
            continue
        if name not in entry or key_text(entry[name]) != key_text(want):
            return False
    return True


def _holders(tree: dict, info: NodeInfo, keys: tuple, create: bool) -> list[dict]:
    """JSON objects of every instance of `info` matching keys (created when asked)."""
    objs = [tree]
    pos = 0
    for node in _chain(info):
        own = keys[pos:pos + len(node.own_keys)]
        pos += len(node.own_keys)
        nxt = []
        member = _member(node)
        for obj in objs:
            if node.kind == "list":
                entries = obj.get(member)
                if entries is None:
                    if not create:
                        continue
                    entries = obj[member] = []
                found = [e for e in entries if _entry_matches(e, node, own)]
                if not found and create:
                    entry = {k: _raw_key(node, k, v) for k, v in zip(node.own_keys, own)}
                    entries.append(entry)
                    found = [entry]
                nxt.extend(found)
            else:
                child = obj.get(member)
                if child is None:
                    if not create:
                        continue
                    child = obj[member] = {}
                nxt.append(child)
        objs = nxt
    return objs


def _raw_key(info: NodeInfo, name: str, value: object) -> object:
    leaf = info.leaves[name]
    return str(value) if leaf.is_64bit else value


def _delete(tree, schema, info: NodeInfo, keys: tuple, leaf: str | None, collection: bool) -> None:
    if leaf is not None:
        for obj in _holders(tree, info, keys, create=False):
            obj.pop(leaf, None)
        _prune(tree, info, keys)
        return
    parent = info.parent
    member = _member(info)
    own = keys[len(keys) - len(info.own_keys):] if info.own_keys else ()
    holders = [tree] if parent is None else _holders(tree, parent, keys[: len(parent.keys)], create=False)
    for obj in holders:
        if member not in obj:
            continue
        if info.kind == "list" and not collection and any(k is not WILD for k in own):
            obj[member] = [e for e in obj[member] if not _entry_matches(e, info, own)]
            if not obj[member]:
                del obj[member]
        else:
            del obj[member]
    if parent is not None:
        _prune(tree, parent, keys[: len(parent.keys)])


def _prune(tree, info: NodeInfo, keys: tuple) -> None:
    """Drop containers an edit left empty (a list entry keeps its keys)."""
    while info is not None and info.kind == "container":
        parent = info.parent
        holders = [tree] if parent is None else _holders(tree, parent, keys[: len(parent.keys)], create=False)
        member = _member(info)
        for obj in holders:
            if obj.get(member) == {}:
                del obj[member]
        info = parent


def _set(tree, schema, op: Op) -> None:
    info = op.node
    value = copy.deepcopy(op.value)
    if op.leaf is not None:
        if isinstance(value, dict) and len(value) == 1:
            (name, inner), = value.items()
            if name.split(":")[-1] == op.leaf:
                value = inner  # {"leaf": v} as some clients send it
        for obj in _holders(tree, info, op.keys, create=True):
            obj[op.leaf] = value
        return
    if op.collection:
        entries = _unwrap_list(value, info)
        entries = [_normalize(e, info) for e in entries]
        for e in entries:
            for k in info.own_keys:
                if k not in e:
                    raise PathError("INVALID_ARGUMENT", f"{info.path} entry without its key {k}")
        parent = info.parent
        holders = [tree] if parent is None else _holders(tree, parent, op.keys[: len(parent.keys)], create=True)
        for obj in holders:
            current = obj.get(_member(info), [])
            if op.kind == REPLACE:
                obj[_member(info)] = entries
            else:
                for e in entries:
                    keys = tuple(e[k] for k in info.own_keys)
                    match = next((c for c in current if _entry_matches(c, info, keys)), None)
                    if match is None:
                        current.append(e)
                    else:
                        _merge(match, e, info)
                obj[_member(info)] = current
        return
    if not isinstance(value, dict):
        raise PathError("INVALID_ARGUMENT", f"{info.path} is a {info.kind}; its value must be a JSON object")
    value = _normalize(_unwrap_object(value, info), info)
    if info.kind == "list":
        own = op.keys[len(op.keys) - len(info.own_keys):]
        for k, want in zip(info.own_keys, own):
            if k in value and key_text(value[k]) != key_text(want):
                raise PathError("INVALID_ARGUMENT", f"key {k}={value[k]!r} in the value differs from [{k}={want}] in the path")
            value[k] = _raw_key(info, k, want)
    if op.kind == REPLACE:
        parent = info.parent
        if info.kind == "list":
            holders = [tree] if parent is None else _holders(tree, parent, op.keys[: len(parent.keys)], create=True)
            own = op.keys[len(op.keys) - len(info.own_keys):]
            for obj in holders:
                entries = obj.setdefault(_member(info), [])
                for i, e in enumerate(entries):
                    if _entry_matches(e, info, own):
                        entries[i] = value
                        break
                else:
                    entries.append(value)
        else:
            holders = [tree] if parent is None else _holders(tree, parent, op.keys[: len(parent.keys)], create=True)
            for obj in holders:
                obj[_member(info)] = value
    else:
        for obj in _holders(tree, info, op.keys, create=True):
            _merge(obj, value, info)


def _set_root(tree, schema, op: Op) -> None:
    """Set at "/": the whole config, or with a module as origin only that module's top-level containers."""
    value = op.value
    if not isinstance(value, dict):
        raise PathError("INVALID_ARGUMENT", "the value at / must be a JSON object of top-level containers")
    if op.kind == REPLACE:
        for name in [n for n, top in schema.top.items() if op.module is None or top.module == op.module]:
            tree.pop(name, None)
    for name, body in value.items():
        top = schema.top.get(name) or next((t for t in schema.top.values() if t.name == name
                                            and (op.module is None or t.module == op.module)), None)
        if top is None:
            raise PathError("NOT_FOUND", f"unknown top-level node {name!r}", error_tag="unknown-element", path="/")
        if op.module is not None and top.module != op.module:
            raise PathError("INVALID_ARGUMENT", f"{name!r} is not in module {op.module}, the path's origin", path="/")
        if not top.config:
            raise PathError("INVALID_ARGUMENT", f"{top.path} is config false and cannot be set")
        body = _normalize(copy.deepcopy(body), top)
        if op.kind == REPLACE or top.qualified_name not in tree:
            tree[top.qualified_name] = body
        else:
            _merge(tree[top.qualified_name], body, top)


def _unwrap_list(value, info: NodeInfo) -> list:
    if isinstance(value, dict) and len(value) == 1:
        (name, inner), = value.items()
        if name.split(":")[-1] == info.name and isinstance(inner, list):
            return copy.deepcopy(inner)
    if not isinstance(value, list):
        raise PathError("INVALID_ARGUMENT", f"{info.path} is a list; its value must be a JSON array of entries")
    return value


def _unwrap_object(value: dict, info: NodeInfo) -> dict:
    """Accept {"name": {...}} wrapping around a container's contents, as some clients send."""
    if len(value) == 1:
        (name, inner), = value.items()
        if name.split(":")[-1] == info.name and name.split(":")[-1] not in info.leaves \
                and name.split(":")[-1] not in info.children and isinstance(inner, dict):
            return inner
    return value


def _normalize(body, info: NodeInfo):
    """Strip same-module prefixes from member names (RFC 7951 allows them)."""
    if not isinstance(body, dict):
        return body
    out = {}
    for name, value in body.items():
        mod, sep, bare = name.rpartition(":")
        if sep and mod == info.module:
            name = bare
        child = info.children.get(name)
        if child is not None:
            if child.kind == "list" and isinstance(value, list):
                value = [_normalize(e, child) for e in value]
            else:
                value = _normalize(value, child)
        out[name] = value
    return out


def _merge(dst: dict, src: dict, info: NodeInfo) -> None:
    for name, value in src.items():
        child = info.children.get(name)
        if child is None or name not in dst:
            dst[name] = value
        elif child.kind == "list" and isinstance(value, list) and isinstance(dst[name], list):
            for e in value:
                keys = tuple(e.get(k) for k in child.own_keys)
                match = next((c for c in dst[name] if _entry_matches(c, child, keys)), None)
                if match is None:
                    dst[name].append(e)
                else:
                    _merge(match, e, child)
        elif isinstance(value, dict) and isinstance(dst[name], dict):
            _merge(dst[name], value, child)
        else:
            dst[name] = value
