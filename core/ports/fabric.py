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

Besides config, the store carries **per-node state**: each node publishes
small typed values under a ``kind`` (``publish_node_state(kind, value)``;
the topology producer's attachments, the gNMI forwarding key), each one
revisioned by the store, and every other node receives them as
``fabric_node_state(node, kind, value, revision)`` (value None: withdrawn).
The store keeps a node's last value when the node goes offline (its
attachments are still the best knowledge of where servers are plugged in);
what a value means is its producer's business, never the store's.  The
datastore passes the values on to the producers that follow a kind
(:class:`NodeStateChannel`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncContextManager, Callable, Mapping, Protocol, Sequence

__all__ = ["FabricEvents", "FabricMembership", "FabricStore", "MemberInfo", "NodeStateChannel",
           "NodeStateListener", "SYNC_STATES", "MAX_NODE_STATE_BYTES"]

#: Largest encoded per-node state value a store accepts (etcd refuses requests over 1.5 MiB by default).
MAX_NODE_STATE_BYTES = 1_400_000

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

    def fabric_node_state(self, node: str, kind: str, value: Mapping | None, revision: int) -> None:
        """Another node's state of ``kind`` at ``revision`` (None: withdrawn)."""
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

    async def publish_node_state(self, kind: str, value: Mapping | None) -> int:
        """Make ``value`` this node's state of ``kind`` (None withdraws it); returns its revision.

        Raises ``UnavailableError`` when the store cannot take it now (the
        caller publishes again later) and ``ValueError`` when the encoded
        value is over MAX_NODE_STATE_BYTES.  A standalone store accepts it
        and has nobody to tell.
        """
        ...


#: Called with (node, value or None) for every change of another node's state of one kind.
NodeStateListener = Callable[[str, "Mapping | None"], None]


class NodeStateChannel(Protocol):
    """Per-node state as a producer sees it (implemented by the datastore)."""

    node_name: str

    async def publish_node_state(self, kind: str, value: Mapping | None) -> int:
        """Publish this node's state of ``kind`` (see ``FabricStore.publish_node_state``)."""
        ...

    def node_states(self, kind: str) -> dict[str, Mapping]:
        """The other nodes' current states of ``kind``, by node name."""
        ...

    def on_node_state(self, kind: str, listener: NodeStateListener) -> Callable[[], None]:
        """Call ``listener(node, value)`` for each change of another node's ``kind`` state; returns the unsubscribe."""
        ...
