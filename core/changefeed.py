"""The one change feed every face subscribes to.

Producers and the config store publish `Change` records; listeners are
plain callables run synchronously in the event loop, so a listener must be
cheap (append to its own queue) and never block.  A slow gNMI client is
handled by its own coalescing queue, never here.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Change:
    """A node changed: new leaf values, leaves removed, or the whole node deleted.

    `path` is a schema path ("/kubefabric-vport:vports/vport") and `key` the
    tuple of list keys along it; `values` is None when the node was deleted.
    """

    path: str
    key: tuple
    values: dict | None
    removed: tuple = ()
    ts: int = 0

    @property
    def deleted(self) -> bool:
        """True when the node itself is gone."""
        return self.values is None


Listener = Callable[[list[Change]], None]


class ChangeFeed:
    """Fan-out of change batches to listeners."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Register a listener; returns the function that unregisters it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            try:
                self._listeners.remove(listener)
            except ValueError:
                pass

        return unsubscribe

    def publish(self, changes: Iterable[Change]) -> None:
        """Deliver a batch to every listener; a failing listener is logged, not fatal."""
        batch = changes if isinstance(changes, list) else list(changes)
        if not batch:
            return
        for listener in tuple(self._listeners):
            try:
                listener(batch)
            except Exception:  # a face's bug must not stop producers
                log.exception("change listener failed")

    @property
    def listener_count(self) -> int:
        """Number of registered listeners (for metrics)."""
        return len(self._listeners)
