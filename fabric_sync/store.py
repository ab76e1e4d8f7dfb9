"""The fabric store interface: where fabric-scope config lives.

The datastore proposes a whole fabric-scope tree together with the
revision it read; the store either makes it the new revision or refuses
(ConflictError when another writer got there first, UnavailableError when
it cannot commit).  Every backend shares this contract, so the caps checked
by YANG validation hold fabric-wide: a write based on a stale revision can
never land.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

# Called with (fabric tree, revision) for the initial state and every change.
OnFabricChange = Callable[[dict, int], None]


@dataclass
class MemberInfo:
    """A fabric node as /fabric/node shows it."""

    name: str
    state: str  # online | offline
    address: str = ""
    role: str = ""
    last_seen: str = ""


class FabricStore(ABC):
    """A backend holding the fabric-scope config tree."""

    revision: int = 0
    #: "in-sync" or "stale" (reads served from the last applied state)
    sync_state: str = "in-sync"

    @abstractmethod
    async def start(self, on_change: OnFabricChange) -> None:
        """Load the current tree (calling on_change once) and follow changes."""

    @abstractmethod
    async def commit(self, base_revision: int, tree: dict, meta: dict) -> int:
        """Store `tree` if the store is still at `base_revision`; returns the new revision."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop following changes and release resources (leases, files)."""

    def members(self) -> list[MemberInfo]:
        """Known fabric nodes (a single-node store knows only itself)."""
        return []
