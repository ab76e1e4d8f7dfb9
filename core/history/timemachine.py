"""The faces' view of the time machine: typed async queries that never block the event loop.

A ``History`` answers from SQLite; a query over a large table takes tens of
milliseconds, during which no gNMI stream, NETCONF session or sFlow
datagram would be served if it ran on the loop.  ``TimeMachine`` runs each
query in a worker thread.  It exists whether or not a store is attached
(``ds.history``); without one every query raises :class:`HistoryUnavailable`
with the reason, which each face reports in its own words.
"""
from __future__ import annotations

import asyncio
from typing import Iterable

from ..ports.history import DEFAULT_LIMIT, History, HistoryChange, Page, Row, Version

__all__ = ["HistoryUnavailable", "TimeMachine"]


class HistoryUnavailable(LookupError):
    """No history store is attached to this agent."""


class TimeMachine:
    """Async, typed queries over the attached ``History`` (see ``core.ports.history``)."""

    def __init__(self) -> None:
        self._store: History | None = None
        self.reason = "this agent keeps no history (no time-machine store is running)"

    def attach(self, store: History) -> None:
        """Serve queries from ``store`` from now on."""
        self._store = store

    def detach(self) -> None:
        """Stop serving queries (the store is closing)."""
        self._store = None

    @property
    def available(self) -> bool:
        """Whether a store is attached."""
        return self._store is not None

    @property
    def retention_days(self) -> float | None:
        """How long closed versions are kept, or None without a store."""
        return self._store.retention_days if self._store is not None else None

    def paths(self) -> frozenset[str]:
        """Schema paths whose rows have history (empty without a store)."""
        return self._store.history_paths() if self._store is not None else frozenset()

    def _require(self) -> History:
        store = self._store
        if store is None:
            raise HistoryUnavailable(self.reason)
        return store

    async def rows_at(self, path: str, t: float, *, cluster: str | None = None,
                      limit: int = DEFAULT_LIMIT) -> Page[Row]:
        """The rows of ``path`` as they were at ``t``."""
        store = self._require()
        return await asyncio.to_thread(store.rows_at, path, t, cluster=cluster, limit=limit)

    async def changes(self, start: float, end: float, *, kinds: Iterable[str] | None = None,
                      cluster: str | None = None, limit: int = DEFAULT_LIMIT) -> Page[HistoryChange]:
        """Versions opened or closed in ``[start, end)``, in time order."""
        store = self._require()
        kinds = tuple(kinds) if kinds is not None else None
        return await asyncio.to_thread(store.changes, start, end, kinds=kinds, cluster=cluster, limit=limit)

    async def oldest(self) -> float | None:
        """When the oldest version kept begins (the replay log's start), or None when nothing is kept."""
        store = self._require()
        return await asyncio.to_thread(store.oldest)

    async def pods_at(self, ip: str, t: float, cluster: str | None = None) -> list[Version]:
        """Pod versions holding ``ip`` at ``t``, the best claim first."""
        store = self._require()
        return await asyncio.to_thread(store.pods_at, ip, t, cluster)

    async def service_backends(self, cluster: str, namespace: str, name: str, t: float) -> list[Version]:
        """Ready backends of a service at ``t``."""
        store = self._require()
        return await asyncio.to_thread(store.service_backends, cluster, namespace, name, t)

    async def service_backends_between(self, cluster: str, namespace: str, name: str, start: float, end: float,
                                       limit: int = DEFAULT_LIMIT) -> Page[Version]:
        """Backends of a service at any time in ``[start, end)``."""
        store = self._require()
        return await asyncio.to_thread(store.service_backends_between, cluster, namespace, name, start, end, limit)
