"""Single-node fabric store: a JSON file under --data-dir, no extra process.

It keeps the same revision contract as the etcd backend, so code above
it cannot tell the difference except that only this node writes.  As a
``FabricMembership`` it is a fabric of one: always in sync, its locks are
local asyncio locks, and nobody else is ever online or offline.  Per-node
state is accepted (and counted in its revision) but there is nobody to
tell, so nothing is kept.
"""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import AsyncIterator, Mapping

from core.errors import ConflictError, ConfigError
from core.persist import read_json, write_json_atomic
from core.ports.fabric import FabricEvents, MemberInfo

from .nodestate import encode_state


class EmbeddedFabricStore:
    """File-backed ``FabricStore`` for a standalone agent."""

    replicated = False
    sync_state = "in-sync"

    def __init__(self, data_dir: Path, node_name: str) -> None:
        self._file = Path(data_dir) / "fabric-config.json"
        self.node_name = node_name
        self.revision = 0
        self._tree: dict = {}
        self._lock = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        self._state_revision = 0

    async def start(self, events: FabricEvents) -> None:
        stored = read_json(self._file, {"revision": 0, "config": {}})
        if not isinstance(stored, dict):
            stored = {"revision": 0, "config": {}}
        self.revision = int(stored.get("revision", 0))
        self._tree = stored.get("config", {})
        events.fabric_config(self._tree, self.revision)

    async def commit(self, base_revision: int, tree: dict, meta: Mapping[str, str]) -> int:
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
        return [MemberInfo(self.node_name, "online", role="standalone")]

    async def publish_node_state(self, kind: str, value: Mapping | None) -> int:
        """Accepted (checked as etcd would check it); a fabric of one has nobody to tell."""
        if value is not None:
            encode_state(value)       # the size limit etcd's store has (ValueError), compressed as it stores it
        self._state_revision += 1
        return self._state_revision

    # -- FabricMembership: a fabric of one --------------------------------------
    def online_names(self) -> list[str]:
        return [self.node_name]

    def offline_for(self, name: str) -> float | None:
        return None

    @contextlib.asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[bool]:
        """A local lock: within one process, one holder at a time; never waits."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        if lock.locked():
            yield False
            return
        async with lock:
            yield True
