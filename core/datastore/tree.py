"""Conversions between RFC 7951 JSON trees and the flat node index.

The datastore keeps every container and list entry as a *node*: a schema
path plus the tuple of list keys along it, mapping to that node's own
leaves.  Faces match, diff and encode nodes without walking nested JSON;
config arrives as RFC 7951 JSON (that is what yangson validates) and is
flattened here after each commit.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from ..schema import NodeInfo, Schema

NodeKey = tuple[str, tuple]


def flatten(tree: dict, schema: Schema, config_only: bool = True) -> dict[str, dict[tuple, dict]]:
    """RFC 7951 tree -> {schema path: {key tuple: {leaf: value}}}."""
    out: dict[str, dict[tuple, dict]] = {}
    for top_name, body in tree.items():
        info = schema.top.get(top_name)
        if info is not None and isinstance(body, dict):
            _flatten_node(body, info, (), out, config_only)
    return out


def _flatten_node(body: dict, info: NodeInfo, key: tuple, out: dict, config_only: bool) -> None:
    leaves = {}
    for name, value in body.items():
        leaf = info.leaves.get(name)
        if leaf is not None:
            if config_only and not leaf.config:
                continue
            leaves[name] = _from_json(value, leaf.is_64bit)
            continue
        child = info.children.get(name)
        if child is None or (config_only and not child.config):
            continue
        if child.kind == "list":
            for entry in value or ():
                ckey = key + tuple(_from_json(entry.get(k), child.leaves[k].is_64bit) for k in child.own_keys)
                _flatten_node(entry, child, ckey, out, config_only)
        elif isinstance(value, dict):
            _flatten_node(value, child, key, out, config_only)
    if leaves or info.kind == "list":
        out.setdefault(info.path, {})[key] = leaves


def _from_json(value: object, is_64bit: bool) -> object:
    if is_64bit and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    if is_64bit and isinstance(value, list):
        return [_from_json(v, True) for v in value]
    return value


def leaf_json(value: object, leaf_is_64bit: bool) -> object:
    """A leaf value as RFC 7951 wants it (64-bit integers become strings)."""
    if leaf_is_64bit:
        if isinstance(value, list):
            return [str(v) for v in value]
        return str(value)
    return value


def node_json(info: NodeInfo, values: dict, module_qualified: bool) -> dict:
    """One node's own leaves as a JSON object (JSON_IETF when 64-bit aware)."""
    out = {}
    for name, value in values.items():
        leaf = info.leaves.get(name)
        if leaf is None:
            continue
        out[name] = leaf_json(value, leaf.is_64bit) if module_qualified else value
    return out


def build_tree(
    schema: Schema,
    root: NodeInfo,
    root_key: tuple,
    nodes: Iterable[tuple[NodeInfo, tuple, dict]],
    ietf: bool,
) -> dict:
    """Nest flat nodes below (root, root_key) into one JSON object.

    `nodes` are (info, key, values) of root itself and of its descendants;
    the result is the JSON value of the root node (without its own name).
    Lists become arrays ordered by key, as RFC 7951 represents them.
    """
    result: dict = {}
    # containers of each (path, key) created so far, so children find their parent
    holders: dict[tuple[str, tuple], dict] = {(root.path, root_key): result}
    pending = sorted(nodes, key=lambda n: (n[0].path.count("/"), n[0].path, _sortable(n[1])))
    for info, key, values in pending:
        obj = holders.get((info.path, key))
        if obj is None:
            obj = _ensure(holders, info, key, root, root_key)
            if obj is None:
                continue
        obj.update(node_json(info, values, ietf))
    return result


def _ensure(holders: dict, info: NodeInfo, key: tuple, root: NodeInfo, root_key: tuple) -> dict | None:
    """Create (and register) the JSON object for a node below the root."""
    existing = holders.get((info.path, key))
    if existing is not None:
        return existing
    if info.parent is None or len(info.path) <= len(root.path):
        return None
    parent_key = key[: len(info.parent.keys)]
    parent_obj = _ensure(holders, info.parent, parent_key, root, root_key)
    if parent_obj is None:
        return None
    if info.kind == "list":
        own = key[len(info.parent.keys):]
        entry = dict(zip(info.own_keys, (leaf_json(v, info.leaves[k].is_64bit) for k, v in zip(info.own_keys, own))))
        parent_obj.setdefault(info.name, []).append(entry)
        obj = entry
    else:
        obj = parent_obj.setdefault(info.name, {})
    holders[(info.path, key)] = obj
    return obj


def _sortable(key: tuple) -> tuple:
    return tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)) for v in key)


def iter_descendants(info: NodeInfo) -> Iterator[NodeInfo]:
    """The node and every container/list below it, parents first."""
    yield info
    for child in info.children.values():
        yield from iter_descendants(child)
