"""What one cluster connection may touch: a narrow sink, not the manager.

A :class:`~collectors.k8s.cluster.ClusterConnection` turns one cluster's
watch events into rows and history.  Everything it writes goes through this
sink: the datastore's state port, the time machine's writer, and the vPort
arbitration shared by every cluster (one IP may be claimed by pods of
several clusters; the manager decides which row is shown).  The manager
implements it; nothing else of the manager is reachable from a cluster.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ContextManager, Protocol

from core.ports.history import HistoryWriter
from core.ports.state import StateWriter

from .vports import PodView

__all__ = ["ClusterSink"]


class ClusterSink(Protocol):
    """The writes and shared pieces a cluster connection needs."""

    #: operational state (k8s/connection/state, k8s/service, k8s/cni rows)
    state: StateWriter
    #: the time machine (pod, vport, member, service, cni versions)
    history: HistoryWriter
    #: where a connection may keep files derived from its kubeconfig (mode 0700)
    credentials_dir: Path
    #: keyword arguments for each Watcher (tests shorten timeouts)
    watch_options: dict[str, Any]

    def batch(self) -> ContextManager[None]:
        """Publish the changes made inside the block as one feed batch (a re-list)."""
        ...

    def claim_ip(self, ip: str, cluster: str, pod: PodView, now: float) -> None:
        """A pod of ``cluster`` holds ``ip`` (create-vport is on)."""
        ...

    def release_ip(self, ip: str, cluster: str, uid: str, now: float) -> None:
        """The pod no longer holds ``ip``."""
        ...

    def shown_cluster(self, ip: str) -> str | None:
        """The cluster whose vPort row is shown for ``ip``."""
        ...
