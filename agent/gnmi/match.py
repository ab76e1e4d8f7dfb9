"""Index of subscription selectors by schema path.

A change names one node (schema path + key tuple).  The index answers
"which selectors of this RPC want it, and which of its leaves" with one
dict lookup plus a key-pattern check per candidate, so the feed listener
stays cheap however many paths a client subscribed to.  It also knows the
ancestors of every subscribed node, so deleting an ancestor (a list entry
holding the subscribed container) reaches the subscriber as a delete.
"""
from __future__ import annotations

from typing import Callable

from .paths import WILD, Selector

ALL = True  # every leaf of the node


class Index:
    """Selectors of one subscription list, by the schema paths they cover."""

    def __init__(self) -> None:
        # path -> [(selector, allowed leaves or None)]
        self.by_path: dict[str, list[tuple[Selector, frozenset | None]]] = {}
        self._ancestors: dict[str, list[Selector]] = {}

    def add(self, selector: Selector, leaf_filter: Callable | None = None) -> None:
        """Index a selector for every schema path it covers."""
        nodes = {selector.node.path: selector.node}
        if selector.subtree:
            stack = list(selector.node.children.values())
            while stack:
                n = stack.pop()
                nodes[n.path] = n
                stack.extend(n.children.values())
        for path, info in nodes.items():
            if not selector.within_depth(info):
                continue
            allowed = leaf_filter(info) if leaf_filter is not None else None
            if allowed is not None and not allowed:
                continue
            self.by_path.setdefault(path, []).append((selector, allowed))
        parent = selector.node.parent
        while parent is not None:
            self._ancestors.setdefault(parent.path, []).append(selector)
            parent = parent.parent

    def whole_paths(self) -> frozenset:
        """Paths where some selector takes every node and every leaf (no key or leaf test needed)."""
        return frozenset(p for p, entries in self.by_path.items()
                         if any(s.leaf is None and a is None and all(k is WILD for k in s.keys) for s, a in entries))

    def __contains__(self, path: str) -> bool:
        return path in self.by_path

    def leaf_only_paths(self) -> frozenset:
        """Paths every selector of which names single leaves (sent as leaf Updates)."""
        return frozenset(p for p, entries in self.by_path.items() if all(s.leaf is not None for s, _ in entries))

    def match(self, path: str, key: tuple):
        """Leaves of a node the selectors want: ALL, a set of names, or False for none."""
        candidates = self.by_path.get(path)
        if not candidates:
            return False
        wanted: set = set()
        hit = False
        for sel, allowed in candidates:
            ok = True
            for i, want in enumerate(sel.keys):
                if want is not WILD and want != key[i]:
                    ok = False
                    break
            if not ok:
                continue
            hit = True
            if sel.leaf is None:
                if allowed is None:
                    return ALL
                wanted |= allowed
            elif allowed is None or sel.leaf in allowed:
                wanted.add(sel.leaf)
        return wanted if hit and wanted else False

    def deletes_ancestor(self, path: str, key: tuple) -> bool:
        """Is a deleted node at `path` an ancestor of something subscribed?"""
        for sel in self._ancestors.get(path, ()):
            if all(w is WILD or w == k for w, k in zip(sel.keys, key)):
                return True
        return False
