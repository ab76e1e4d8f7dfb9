"""Operational state written by producers (vPorts, connections, CNI, counters).

State is trusted producer output: it is not re-validated per update (that
would cost more than the update), only checked to name a real schema node.
Each node is stored as a plain dict of leaves with the time it last
changed; only leaves that really changed are published on the feed, so a
producer may upsert the same row every second without waking subscribers.

All methods must be called from the event-loop thread.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from ..changefeed import Change, ChangeFeed
from ..schema import NodeInfo, Schema


class StateStore:
    """Config-false nodes by schema path and key tuple."""

    def __init__(self, schema: Schema, feed: ChangeFeed) -> None:
        self._schema = schema
        self._feed = feed
        self._nodes: dict[str, dict[tuple, dict]] = {}
        self._times: dict[str, dict[tuple, int]] = {}
        self._batch: list[Change] | None = None

    # -- writing -----------------------------------------------------------
    def upsert(self, path: str, key: tuple, values: dict, ts: int | None = None) -> None:
        """Set a node to exactly these leaves (missing leaves are removed)."""
        self._write(path, key, values, ts, replace=True)

    def merge(self, path: str, key: tuple, values: dict, ts: int | None = None) -> None:
        """Update some leaves of a node, creating it if needed."""
        self._write(path, key, values, ts, replace=False)

    def delete(self, path: str, key: tuple = (), ts: int | None = None) -> bool:
        """Remove a node and everything below it; True when it existed."""
        info = self._info(path)
        ts = ts or time.time_ns()
        removed = False
        table = self._nodes.get(path)
        if table is not None and key in table:
            del table[key]
            del self._times[path][key]
            self._emit(Change(path, key, None, (), ts))
            removed = True
        for child in info.children.values():
            child_table = self._nodes.get(child.path)
            if not child_table:
                continue
            for ckey in [k for k in child_table if k[: len(key)] == key]:
                removed |= self.delete(child.path, ckey, ts)
        return removed

    def replace_where(
        self, path: str, rows: dict[tuple, dict], where: Callable[[tuple, dict], bool] | None = None
    ) -> None:
        """Make the entries matching `where` exactly `rows` (a resync after re-list)."""
        with self.batch():
            table = self._nodes.get(path, {})
            for key in [k for k, v in table.items() if k not in rows and (where is None or where(k, v))]:
                self.delete(path, key)
            for key, values in rows.items():
                self.upsert(path, key, values)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Publish every change made inside the block as one feed batch."""
        if self._batch is not None:
            yield
            return
        self._batch = []
        try:
            yield
        finally:
            batch, self._batch = self._batch, None
            self._feed.publish(batch)

    # -- reading -----------------------------------------------------------
    def get(self, path: str, key: tuple = ()) -> dict | None:
        """A node's leaves, or None. Do not mutate the returned dict."""
        table = self._nodes.get(path)
        return None if table is None else table.get(key)

    def entries(self, path: str) -> dict[tuple, dict]:
        """All nodes at a schema path, by key. Do not mutate."""
        return self._nodes.get(path, {})

    def timestamp(self, path: str, key: tuple = ()) -> int:
        """When the node last changed (ns since the epoch), 0 if unknown."""
        return self._times.get(path, {}).get(key, 0)

    def times_of(self, path: str) -> dict[tuple, int]:
        """Change times of every node at a path, by key. Do not mutate."""
        return self._times.get(path, {})

    def paths(self) -> list[str]:
        """Schema paths that currently hold at least one node."""
        return [p for p, t in self._nodes.items() if t]

    # -- internals ---------------------------------------------------------
    def _info(self, path: str) -> NodeInfo:
        info = self._schema.nodes.get(path)
        if info is None:
            raise KeyError(f"no schema node {path!r}")
        return info

    def _write(self, path: str, key: tuple, values: dict, ts: int | None, replace: bool) -> None:
        info = self._info(path)
        if len(key) != len(info.keys):
            raise ValueError(f"{path} needs keys {info.keys}, got {key!r}")
        table = self._nodes.setdefault(path, {})
        old = table.get(key)
        ts = ts or time.time_ns()
        own = dict(zip(info.own_keys, key[len(key) - len(info.own_keys):])) if info.own_keys else {}
        if old is None:
            new = {**values, **own}
            table[key] = new
            self._times.setdefault(path, {})[key] = ts
            self._emit(Change(path, key, new.copy(), (), ts))
            return
        changed = {k: v for k, v in values.items() if old.get(k, _MISSING) != v}
        removed: tuple = ()
        if replace:
            removed = tuple(k for k in old if k not in values and k not in own)
            for k in removed:
                del old[k]
        if not changed and not removed:
            return
        old.update(changed)
        self._times[path][key] = ts
        self._emit(Change(path, key, changed, removed, ts))

    def _emit(self, change: Change) -> None:
        if self._batch is not None:
            self._batch.append(change)
        else:
            self._feed.publish([change])


_MISSING = object()
