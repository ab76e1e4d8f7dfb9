"""Three-way merge of RFC 7951 config trees.

Undoing one change (a confirmed commit that timed out) must not undo the
changes other writers made after it.  `merge3(base, ours, theirs)` applies
the difference base -> ours onto theirs: wherever theirs still equals base
the node takes our value; wherever theirs moved on, theirs is kept.  List
entries are matched by their YANG keys, so an entry another writer added
survives a rollback that removes ours.
"""
from __future__ import annotations

from typing import Any, Union, cast

from ..schema import NodeInfo, Schema

_MISSING = object()


def merge3(base: dict, ours: dict, theirs: dict, schema: Schema) -> dict:
    """`theirs` with the changes from `base` to `ours` applied where theirs did not change them."""
    return _merge_object(base or {}, ours or {}, theirs or {}, None, schema)


def _child(info: "_Node | None", name: str, schema: Schema) -> "_Node | None":
    return schema.top.get(name) if info is None else info.children.get(name)


def _as_list(value: object) -> list:
    return [] if value is _MISSING else cast(list, value)


def _as_dict(value: object) -> dict:
    return {} if value is _MISSING else cast(dict, value)


def _merge_object(base: dict, ours: dict, theirs: dict, info: "_Node | None", schema: Schema) -> dict:
    out: dict = {}
    for name in list(theirs) + [k for k in ours if k not in theirs]:
        b, o, t = base.get(name, _MISSING), ours.get(name, _MISSING), theirs.get(name, _MISSING)
        if t == b:
            value = o
        elif o == b:
            value = t
        else:
            child = _child(info, name, schema)
            if child is not None and all(x is _MISSING or isinstance(x, (dict, list)) for x in (b, o, t)):
                # both sides changed this subtree: merge inside it (a missing side is empty)
                if isinstance(child, NodeInfo) and child.kind == "list":
                    value = _merge_list(_as_list(b), _as_list(o), _as_list(t), child, schema)
                else:
                    value = _merge_object(_as_dict(b), _as_dict(o), _as_dict(t), child, schema)
                if not value and (o is _MISSING or t is _MISSING):
                    value = _MISSING
            else:
                value = t  # both changed it differently: the later write wins
        if value is not _MISSING:
            out[name] = value
    return out


def _merge_list(base: list, ours: list, theirs: list, info: NodeInfo, schema: Schema) -> list:
    def index(entries: list) -> dict:
        return {tuple(e.get(k) for k in info.own_keys): e for e in entries if isinstance(e, dict)}

    b, o, t = index(base), index(ours), index(theirs)
    out = []
    for key in list(t) + [k for k in o if k not in t]:
        merged = _merge_object({"e": b[key]} if key in b else {}, {"e": o[key]} if key in o else {},
                               {"e": t[key]} if key in t else {}, _EntryHolder(info), schema)
        if "e" in merged:
            out.append(merged["e"])
    return out


class _EntryHolder:
    """Lets a list entry be merged as the only child 'e' of a pseudo-container."""

    def __init__(self, entry_info: NodeInfo) -> None:
        self.kind = "container"
        self.children: dict[str, Any] = {"e": _AsContainer(entry_info)}


class _AsContainer:
    """A list's schema node seen as one entry (a container) for the recursion."""

    def __init__(self, info: NodeInfo) -> None:
        self.kind = "container"
        self.children: dict[str, Any] = dict(info.children)


#: what the recursion walks: a schema node, or a list entry seen as a container
_Node = Union[NodeInfo, _EntryHolder, _AsContainer]
