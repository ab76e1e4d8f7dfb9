"""The time machine's background work: flushing buffered versions and enforcing retention.

Producers record versions into the store's buffer from the event loop;
this upkeep commits the buffer every ``flush_interval`` (0.25 s) and
applies retention (age, then the size cap) every ``retention_interval``
(an hour), both in a worker thread: SQLite releases the GIL, and a WAL
checkpoint's fsync must never stall the event loop.  Chunks of 2,000
operations keep each transaction short.
"""
from __future__ import annotations

import asyncio
import logging
import time

from ..tasks import cancel_and_wait
from .store import HistoryStore

__all__ = ["HistoryUpkeep"]

log = logging.getLogger("kubefabric.history")

FLUSH_CHUNK = 2000


class HistoryUpkeep:
    """``HistoryUpkeep(store)``; ``await start()``, ``await stop()`` (which flushes and closes the store)."""

    def __init__(self, store: HistoryStore, flush_interval: float = 0.25, retention_interval: float = 3600.0) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.retention_interval = retention_interval
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Start the flush and retention jobs."""
        self._tasks = [asyncio.create_task(self._flusher(), name="history-flush"),
                       asyncio.create_task(self._retention(), name="history-retention")]

    async def stop(self) -> None:
        """Stop the jobs, then flush what is buffered and close the store."""
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        await asyncio.to_thread(self.store.close)

    async def flush(self) -> None:
        """Commit everything buffered now (in chunks, in a worker thread)."""
        while await asyncio.to_thread(self.store.flush, FLUSH_CHUNK) == FLUSH_CHUNK:
            pass

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception:
                log.exception("history flush failed (the versions stay buffered)")

    async def _retention(self) -> None:
        while True:
            try:
                removed = await asyncio.to_thread(self.store.enforce_retention, time.time())
                if removed:
                    log.info("history: removed %d versions older than %g days", removed, self.store.retention_days)
            except Exception:
                log.exception("history retention failed")
            await asyncio.sleep(self.retention_interval)
