"""Per-subscriber queue that merges a node's intermediate values.

The datastore's change feed calls every listener synchronously; a
subscriber's listener only puts changes here, so a slow client never
stalls producers or other subscribers.  While a node waits in the queue,
newer changes to it are merged into the waiting entry (latest leaf values
win, a delete supersedes everything, a delete followed by a re-create
becomes "delete then full update"), so the queue holds at most one entry
per node however far the client falls behind; each merge is counted
(`coalesced`, and per entry `duplicates` as gNMI's Update.duplicates).

A queue holding more distinct nodes than `max_nodes` is marked
`overflowed`; the subscription then ends with RESOURCE_EXHAUSTED rather
than grow without bound.
"""
from __future__ import annotations

import asyncio
from itertools import islice

from core.changefeed import Change


class Pending:
    """A node's merged, not yet sent change (same fields as a Change, plus the merge record)."""

    __slots__ = ("path", "key", "values", "removed", "deleted", "recreated", "ts", "duplicates", "_owned")

    def __init__(self, change: Change) -> None:
        self.path = change.path
        self.key = change.key
        self.values = change.values  # None when deleted
        self.removed = change.removed
        self.deleted = change.values is None
        self.recreated = False  # deleted, then created again: send a delete before the update
        self.ts = change.ts
        self.duplicates = 0
        self._owned = False

    def merge(self, change: Change) -> None:
        """Fold a newer change of the same node into this entry."""
        self.duplicates += 1
        self.ts = change.ts
        if change.values is None:
            self.values, self.removed, self.deleted, self.recreated = None, (), True, False
            return
        if self.deleted:
            # a new node after a delete: its values are complete
            self.values, self.removed, self.deleted, self.recreated = change.values, change.removed, False, True
            self._owned = False
            return
        if not self._owned:
            self.values = dict(self.values)
            self._owned = True
        self.values.update(change.values)
        if change.removed:
            for name in change.removed:
                self.values.pop(name, None)
            self.removed = tuple(set(self.removed) | set(change.removed))
        if self.removed and change.values:
            self.removed = tuple(n for n in self.removed if n not in change.values)


class CoalescingQueue:
    """Ordered changes waiting for one subscriber, one entry per node."""

    def __init__(self, stats: dict | None = None, max_nodes: int = 1_000_000) -> None:
        self._entries: dict[tuple[str, tuple], Pending] = {}
        self._stats = stats if stats is not None else {}
        self._stats.setdefault("coalesced", 0)
        self.max_nodes = max_nodes
        self.overflowed = False
        self.event = asyncio.Event()

    def put(self, change: Change) -> None:
        """Queue a change (called from the feed listener: cheap, never blocks).

        The Change itself waits in the queue until a second change of the
        same node arrives; only then is a mergeable Pending made.
        """
        ident = (change.path, change.key)
        entries = self._entries
        entry = entries.get(ident)
        if entry is None:
            if len(entries) >= self.max_nodes:
                self.overflowed = True
                self.event.set()
                return
            entries[ident] = change
        else:
            if type(entry) is not Pending:
                entry = entries[ident] = Pending(entry)
            entry.merge(change)
            self._stats["coalesced"] += 1
        if not self.event.is_set():
            self.event.set()

    def drain(self, limit: int | None = None) -> list:
        """Take up to `limit` entries (Change, or Pending when merged), oldest first."""
        entries = self._entries
        if limit is None or limit >= len(entries):
            out = list(entries.values())
            entries.clear()
        else:
            idents = list(islice(entries, limit))
            out = [entries.pop(ident) for ident in idents]
        if not entries:
            self.event.clear()
        return out

    def __len__(self) -> int:
        return len(self._entries)
