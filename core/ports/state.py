"""State, config and change-feed ports.

Producers hold a :class:`StateWriter` (they never see config writes) and a
:class:`ConfigFollower`; faces hold a :class:`ConfigWriter` (``propose``, the
one validated write path) and a :class:`ChangeSource`.  The datastore
implements all of them (``ds.state``, ``ds``, ``ds.feed``).

Rows are plain dicts of YANG leaf values keyed by leaf name; a node is
addressed by its schema path (``core.schema_paths``) and the tuple of list
keys along it.
"""
from __future__ import annotations

from typing import Any, Callable, ContextManager, Mapping, Protocol

from ..changefeed import Change

__all__ = ["ChangeSource", "ConfigFollower", "ConfigListener", "ConfigWriter", "EditFn", "StateReader",
           "StateWriter", "SYSTEM_SESSION", "Unsubscribe", "WriteAuthorizer"]

#: The session of the agent's own config writes (a confirmed-commit rollback, loading startup, a connection
#: takeover): no user's lock or access rules stop them.
SYSTEM_SESSION = "system"

#: Called with the running config (RFC 7951, defaults filled in); may return a coroutine.
ConfigListener = Callable[[dict], object]
#: Receives a private copy of the running config and returns the candidate.
EditFn = Callable[[dict], dict]
#: Undoes a subscription.
Unsubscribe = Callable[[], None]


class StateReader(Protocol):
    """Reading operational state (producers that correlate, e.g. attribution)."""

    def get(self, path: str, key: tuple = ()) -> Mapping[str, Any] | None:
        """A node's leaves, or None. Do not mutate."""
        ...

    def entries(self, path: str) -> Mapping[tuple, Mapping[str, Any]]:
        """Every node at a schema path, by key. Do not mutate."""
        ...


class StateWriter(StateReader, Protocol):
    """Writing operational state: trusted producer output, published on the change feed.

    Only leaves that really changed are published, so a producer may write
    the same row again freely.  Must be called from the event-loop thread.
    """

    def upsert(self, path: str, key: tuple, values: Mapping[str, Any], ts: int | None = None) -> None:
        """Set a node to exactly these leaves (leaves not given are removed)."""
        ...

    def merge(self, path: str, key: tuple, values: Mapping[str, Any], ts: int | None = None) -> None:
        """Update some leaves of a node, creating it when needed."""
        ...

    def delete(self, path: str, key: tuple = (), ts: int | None = None) -> bool:
        """Remove a node and everything below it; True when it existed."""
        ...

    def replace_where(self, path: str, rows: Mapping[tuple, Mapping[str, Any]],
                      where: Callable[[tuple, Mapping[str, Any]], bool] | None = None) -> None:
        """Make the nodes at ``path`` matching ``where`` exactly ``rows`` (a resync after a re-list)."""
        ...

    def batch(self) -> ContextManager[None]:
        """Publish every change made inside the block as one feed batch."""
        ...


class ConfigFollower(Protocol):
    """Following the running config."""

    def on_config(self, listener: ConfigListener) -> Unsubscribe:
        """Call ``listener(running)`` now and after every applied change, until unsubscribed."""
        ...


class ConfigWriter(Protocol):
    """The one write path of config, whatever the face."""

    async def propose(self, edit: EditFn, *, user: str, face: str, peer: str = "", session: str | None = None) -> int:
        """Validate, replicate and apply ``edit``; raises ConfigError and changes nothing on refusal.

        ``session`` is the writer's identity for the running lock (a NETCONF
        session holding it refuses every other session's writes);
        ``SYSTEM_SESSION`` marks the agent's own writes, which neither the
        lock nor NACM stops.
        """
        ...


class WriteAuthorizer(Protocol):
    """Decides whether a user may make these config changes (NACM, RFC 8341), the same on every face.

    Called inside ``propose`` with the changes the candidate makes to the
    running config (``Change.values is None`` for a removed node) and the
    running config's flat node index before them (a change to a node not in
    ``before`` creates it); raises ConfigError("access-denied") to refuse the
    whole write.
    """

    def __call__(self, user: str, face: str, changes: list[Change],
                 before: Mapping[str, Mapping[tuple, Any]]) -> None:
        ...


class ChangeSource(Protocol):
    """The change feed: every config and state change, in batches."""

    def subscribe(self, listener: Callable[[list[Change]], None]) -> Unsubscribe:
        """Deliver every batch to ``listener`` (synchronously, in the event loop) until unsubscribed."""
        ...
