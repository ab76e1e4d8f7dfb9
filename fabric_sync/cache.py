"""Local copy of the last applied fabric tree, under the agent's data dir.

An agent started while etcd is down serves this copy (flagged stale)
instead of an empty config.  Writes happen off the commit path: the
newest snapshot replaces any pending one and one background task writes
it with the datastore's crash-safe writer.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from core.persist import read_json, write_json_atomic

log = logging.getLogger("kubefabric.fabric.cache")


class LocalCache:
    """`fabric-<name>.json` in the data dir: {fabric, revision, config, members}."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._pending: dict | None = None
        self._task: asyncio.Task | None = None

    def load(self) -> dict | None:
        try:
            data = read_json(self.path, None)
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable fabric cache %s: %s", self.path, exc)
            return None
        return data if isinstance(data, dict) and "config" in data else None

    def save(self, snapshot: dict) -> None:
        """Queue `snapshot` to be written (the latest queued one wins)."""
        self._pending = snapshot
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending is not None:
            snapshot, self._pending = self._pending, None
            try:
                await asyncio.to_thread(write_json_atomic, self.path, snapshot)
            except OSError as exc:
                log.warning("cannot write fabric cache %s: %s", self.path, exc)

    async def close(self) -> None:
        """Write whatever is queued."""
        if self._task is not None:
            await self._task
        if self._pending is not None:
            await self._flush()
