"""The fabric store port: where fabric-scope config lives, and who is in the fabric.

A :class:`FabricStore` holds the fabric-scope config tree under a revision.
The datastore proposes a whole tree with the revision it read; the store
makes it the next revision or refuses (``ConflictError``: another writer got
there first; ``UnavailableError``: it cannot commit now).  So the caps that
YANG validation checks hold fabric-wide: a write based on a stale revision
never lands.

The store raises its events into :class:`FabricEvents` (the datastore): the
config tree at each new revision, the member table, and its sync state.  The
datastore turns them into ``/fabric/node`` and ``/fabric/sync-state``; the
store itself writes nothing into the datastore.

Producers that must coordinate across the fabric (the Kubernetes collector
moving a connection away from an offline owner) see the store as a
:class:`FabricMembership`: who is online, for how long a node has been
offline, and a fabric-wide lock that dies with its holder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncContextManager, Mapping, Protocol, Sequence

__all__ = ["FabricEvents", "FabricMembership", "FabricStore", "MemberInfo", "SYNC_STATES"]

#: "in-sync": the store is reachable and followed; "stale": reads serve the last applied state.
SYNC_STATES = ("in-sync", "stale")


@dataclass(frozen=True)
class MemberInfo:
    """A fabric node as ``/fabric/node`` shows it."""

    name: str
    state: str  # online | offline
    address: str = ""
    role: str = ""
    last_seen: str = ""


class FabricEvents(Protocol):
    """What a fabric store reports (implemented by the datastore)."""

    def fabric_config(self, tree: dict, revision: int) -> None:
        """The fabric-scope tree at a newer revision (the initial load, or another node's write)."""
        ...

    def fabric_members(self, members: Sequence[MemberInfo]) -> None:
        """The whole member table, after any change."""
        ...

    def fabric_sync(self, state: str) -> None:
        """The store's sync state changed (see SYNC_STATES)."""
        ...


class FabricMembership(Protocol):
    """The fabric as a producer may see it: members, and a lock bound to this node's life."""

    node_name: str
    #: True when other nodes share the store (a standalone store has nobody to coordinate with)
    replicated: bool

    @property
    def sync_state(self) -> str:
        """ "in-sync" or "stale"."""
        ...

    def online_names(self) -> list[str]:
        """Names of the online members, sorted."""
        ...

    def offline_for(self, name: str) -> float | None:
        """Seconds ``name`` has been offline as seen from here; None while it is online."""
        ...

    def lock(self, name: str) -> AsyncContextManager[bool]:
        """Hold the fabric-wide lock ``name`` for the block when the block receives True.

        At most one node holds a lock at a time; a holder that dies releases it
        with its membership.  False: another node holds it (or the store is
        unreachable); do nothing.
        """
        ...


class FabricStore(Protocol):
    """A backend holding the fabric-scope config tree (embedded file, etcd)."""

    replicated: bool

    @property
    def sync_state(self) -> str:
        """ "in-sync" or "stale"."""
        ...

    async def start(self, events: FabricEvents) -> None:
        """Load the current tree (raising ``fabric_config`` once) and follow changes."""
        ...

    async def commit(self, base_revision: int, tree: dict, meta: Mapping[str, str]) -> int:
        """Store ``tree`` when the store is still at ``base_revision``; returns the new revision."""
        ...

    async def stop(self) -> None:
        """Stop following changes and release resources (leases, files)."""
        ...

    def members(self) -> list[MemberInfo]:
        """Known fabric nodes (a standalone store knows only itself)."""
        ...
