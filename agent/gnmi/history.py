"""The gNMI History extension (gnmi-history.md) over the agent's time machine.

The time machine (``ds.history``, a ``core.history.TimeMachine``) keeps every
version of the tables listed by ``ds.history.paths()``; this module turns
its typed answers into datastore-shaped rows so the normal read and encode
code serves them:

- ``snapshot_time`` (Get, Subscribe ONCE): the tables as they were then;
- ``range`` (Subscribe STREAM): the tables at ``start``, then every change
  in ``[start, end)`` with its own timestamp, then the RPC ends; an end in
  the future is honoured (the changes stream as they are recorded until then).

A path whose subtree holds data without history (config, counters) is
UNIMPLEMENTED rather than answered with a silently partial tree.  Queries
are bounded: a snapshot larger than ``SNAPSHOT_LIMIT`` rows is refused
with RESOURCE_EXHAUSTED, and a range is read in pages of ``PAGE_LIMIT``
changes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from core.datastore import Datastore
from core.history import HistoryUnavailable
from core.history.store import ROW_PATHS
from core.schema import Schema

from .paths import PathError, Selector

#: rows one snapshot may hold (a vPort table of 150,000 pods fits)
SNAPSHOT_LIMIT = 500_000
#: changes read per query while a range is streamed
PAGE_LIMIT = 100_000

RowsFn = Callable[[str], Iterable[tuple[tuple, dict, int]]]
_KIND_OF_PATH = {path: kind for kind, path in ROW_PATHS.items()}


@dataclass(frozen=True)
class HistoryRequest:
    """What the client asked for: a snapshot time or a [start, end) range, in ns."""

    snapshot_ns: int | None = None
    start_ns: int | None = None
    end_ns: int | None = None

    @property
    def is_range(self) -> bool:
        return self.start_ns is not None


def from_extensions(extensions) -> HistoryRequest | None:
    """The History extension of a request, or None."""
    for ext in extensions:
        if ext.WhichOneof("ext") != "history":
            continue
        h = ext.history
        which = h.WhichOneof("request")
        if which == "snapshot_time":
            return HistoryRequest(snapshot_ns=h.snapshot_time)
        if which == "range":
            if h.range.start > h.range.end:
                raise PathError("INVALID_ARGUMENT", "history range start is after its end")
            return HistoryRequest(start_ns=h.range.start, end_ns=h.range.end)
        raise PathError("INVALID_ARGUMENT", "history extension without snapshot_time or range")
    return None


def _covered(schema: Schema, path: str, kept: frozenset[str]) -> bool:
    """Whether everything under ``path`` has history (a kept list, below one, or containers of only such)."""
    if path in kept or any(path.startswith(k + "/") for k in kept):
        return True
    node = schema.nodes.get(path)
    if node is None or node.kind == "list" or node.leaves or not node.children:
        return False
    return all(_covered(schema, child.path, kept) for child in node.children.values())


def check(ds: Datastore, request: HistoryRequest, selectors: list[Selector]) -> None:
    """Refuse what the time machine cannot answer."""
    if not ds.history.available:
        raise PathError("UNIMPLEMENTED", "no history store on this agent")
    kept = ds.history.paths()
    for sel in selectors:
        if not _covered(ds.schema, sel.node.path, kept):
            raise PathError("UNIMPLEMENTED", f"history is kept for {', '.join(sorted(kept))}, not {sel.node.path}")
    now = time.time_ns()
    t = request.snapshot_ns if request.snapshot_ns is not None else request.start_ns
    if t is not None and t > now + 1_000_000_000:
        raise PathError("UNIMPLEMENTED", "history times in the future are not served")


async def snapshot(ds: Datastore, t_ns: int) -> RowsFn:
    """A ``rows(path)`` function for read.collect: every table with history as it was at ``t_ns``."""
    tables: dict[str, list[tuple[tuple, dict, int]]] = {}
    try:
        for path in ds.history.paths():
            page = await ds.history.rows_at(path, t_ns / 1e9, limit=SNAPSHOT_LIMIT)
            if page.truncated:
                raise PathError("RESOURCE_EXHAUSTED",
                                f"{path} held more than {SNAPSHOT_LIMIT} rows at that time; ask for a narrower path")
            node = ds.schema.nodes[path]
            tables[path] = [(row.key, {**row.values, **_own_keys(node.own_keys, row.key)}, t_ns) for row in page.items]
    except HistoryUnavailable as exc:
        raise PathError("UNIMPLEMENTED", str(exc)) from None

    def rows(path: str) -> Iterable[tuple[tuple, dict, int]]:
        return tables.get(path, ())

    return rows


async def changes(ds: Datastore, start_ns: int, end_ns: int) -> list[tuple[str, tuple, dict | None, int]]:
    """(path, key, leaves or None for a delete, ts ns) of every change of a table with history in [start, end).

    Read in pages of PAGE_LIMIT: a page that ends inside a run of changes
    sharing one timestamp is cut before that timestamp and the next page
    starts at it, so nothing is lost or repeated.
    """
    kinds = [_KIND_OF_PATH[p] for p in ds.history.paths() if p in _KIND_OF_PATH]
    end_s = min(end_ns, time.time_ns()) / 1e9  # callers never ask past now: nothing is recorded there yet
    start_s = start_ns / 1e9
    out: list[tuple[str, tuple, dict | None, int]] = []
    try:
        while True:
            page = await ds.history.changes(start_s, end_s, kinds=kinds, limit=PAGE_LIMIT)
            items = page.items
            if page.truncated:
                last = items[-1].time
                items = [c for c in items if c.time < last]
                if not items:
                    raise PathError("RESOURCE_EXHAUSTED",
                                    f"more than {PAGE_LIMIT} changes share one instant; cannot stream them")
            out.extend(_rows(items))
            if not page.truncated:
                return out
            start_s = last
    except HistoryUnavailable as exc:
        raise PathError("UNIMPLEMENTED", str(exc)) from None


def _own_keys(names: tuple[str, ...], key: tuple) -> dict:
    """The list's own key leaves from a key tuple (rows as the live table holds them)."""
    return dict(zip(names, key[len(key) - len(names):])) if names else {}


def _rows(items) -> Iterator[tuple[str, tuple, dict | None, int]]:
    for ch in items:
        if ch.path is None or ch.keys is None:
            continue
        ts = int(ch.time * 1e9)
        yield ch.path, tuple(ch.keys), (None if ch.deleted else dict(ch.data)), ts
