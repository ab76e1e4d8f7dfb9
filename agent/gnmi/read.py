"""Read the datastore nodes a selector names (Get, subscription snapshots, samples).

Returns flat nodes `(info, key, leaves, ts)`; callers nest them (Get's JSON
subtrees) or encode them one node at a time (Subscribe).  Leaves are
filtered by the selector's leaf, Get's data type, and an optional per-node
leaf filter (TARGET_DEFINED splits a node's leaves into sampled counters
and on-change leaves).
"""
from __future__ import annotations

from typing import Callable, Iterable

from core.datastore import Datastore
from core.datastore.tree import iter_descendants
from core.schema import NodeInfo

from .paths import Selector

ALL, CONFIG, STATE, OPERATIONAL = 0, 1, 2, 3

Node = tuple  # (NodeInfo, key tuple, leaves dict, ts ns)
LeafFilter = Callable[[NodeInfo], "frozenset | None"]


def _datatype_filter(info: NodeInfo, values: dict, datatype: int) -> dict:
    if datatype == ALL:
        return values
    want_config = datatype == CONFIG
    leaves = info.leaves
    return {k: v for k, v in values.items() if (li := leaves.get(k)) is not None and li.config == want_config}


def selector_paths(schema, sel: Selector) -> list[NodeInfo]:
    """Schema nodes a selector reads, parents first."""
    if not sel.subtree:
        return [sel.node]
    return list(iter_descendants(sel.node))


def collect(ds: Datastore, sel: Selector, datatype: int = ALL, leaf_filter: LeafFilter | None = None,
            rows: Callable[[str], Iterable] | None = None) -> list[Node]:
    """Nodes a selector matches now (or in `rows(path)` -> (key, leaves, ts), for history)."""
    out: list[Node] = []
    depth = len(sel.keys)
    concrete = sel.concrete and depth > 0
    for info in selector_paths(ds.schema, sel):
        allowed = leaf_filter(info) if leaf_filter is not None else None
        if leaf_filter is not None and allowed is not None and not allowed:
            continue
        if rows is not None:
            source = rows(info.path)
        elif concrete and info is sel.node:
            values = ds.read_node(info.path, sel.keys)
            source = () if values is None else ((sel.keys, values, _timestamp(ds, info.path, sel.keys)),)
        else:
            source = ds.read(info.path)
        for key, values, ts in source:
            if depth and not sel.key_matches(key):
                continue
            if sel.leaf is not None:
                if sel.leaf not in values:
                    continue
                values = {sel.leaf: values[sel.leaf]}
            if allowed is not None:
                values = {k: v for k, v in values.items() if k in allowed}
            values = _datatype_filter(info, values, datatype)
            if values or (info.kind == "list" and sel.leaf is None and (info.config or datatype != CONFIG)):
                out.append((info, key, values, ts))  # (a CONFIG read has no entry of a config-false list)
    return out


def _timestamp(ds: Datastore, path: str, key: tuple) -> int:
    return max(ds.config.timestamp(path, key), ds.state.timestamp(path, key))


def entry_exists(ds: Datastore, sel: Selector) -> bool:
    """For a path naming one list entry (or something below it): does the entry exist?"""
    node = sel.node
    while node is not None and node.kind != "list":
        node = node.parent
    if node is None:
        return True
    key = sel.keys[: len(node.keys)]
    return ds.read_node(node.path, key) is not None
