"""Single-node fabric store: a JSON file under --data-dir, no extra process.

It keeps the same revision contract as the etcd backend, so code above
it cannot tell the difference except that only this node writes.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from agent.datastore.errors import ConflictError, ConfigError
from agent.datastore.persist import read_json, write_json_atomic

from .store import FabricStore, MemberInfo, OnFabricChange


class EmbeddedFabricStore(FabricStore):
    """File-backed fabric store for a standalone agent."""

    def __init__(self, data_dir: Path, node_name: str) -> None:
        self._file = data_dir / "fabric-config.json"
        self._node = node_name
        self._tree: dict = {}
        self._lock = asyncio.Lock()

    async def start(self, on_change: OnFabricChange) -> None:
        stored = read_json(self._file, {"revision": 0, "config": {}})
        self.revision = int(stored.get("revision", 0))
        self._tree = stored.get("config", {})
        on_change(self._tree, self.revision)

    async def commit(self, base_revision: int, tree: dict, meta: dict) -> int:
        async with self._lock:
            if base_revision != self.revision:
                raise ConflictError(f"revision {base_revision} is stale (now {self.revision})")
            try:
                write_json_atomic(self._file, {"revision": self.revision + 1, "config": tree})
            except OSError as exc:
                raise ConfigError("resource-denied", f"cannot persist config: {exc.strerror or exc}") from None
            self.revision += 1
            self._tree = tree
            return self.revision

    async def stop(self) -> None:
        return None

    def members(self) -> list[MemberInfo]:
        return [MemberInfo(self._node, "online", role="standalone")]
