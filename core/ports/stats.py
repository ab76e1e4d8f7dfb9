"""What a component tells the metrics face about itself.

Producers publish their counters as YANG state (the metrics face reads the
datastore); faces, which have no YANG state of their own, expose a
:class:`ComponentStats` through :class:`StatsSource`.  One fixed shape, so
the metrics face never guesses names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["ComponentStats", "StatsSource"]


@dataclass
class ComponentStats:
    """Counters of one component (a face: gNMI, NETCONF, CLI-SSH, web, metrics)."""

    #: open client sessions (None: the component has no sessions)
    sessions: int | None = None
    #: active subscriptions (streams, notification subscriptions)
    subscriptions: int | None = None
    #: updates merged in slow clients' queues since start
    coalesced: int | None = None
    #: any other counter, by name (exported as kubefabric_component_stat)
    other: dict[str, float] = field(default_factory=dict)


class StatsSource(Protocol):
    """A component that reports ComponentStats."""

    def statistics(self) -> ComponentStats:
        """Counters as of now (cheap: called at every scrape)."""
        ...
