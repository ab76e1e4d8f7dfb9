"""The time-machine ports: recording versions, and typed queries over them.

The time machine keeps every version of a recorded thing with its validity
interval ``[valid_from, valid_to)``.  Producers record through a
:class:`HistoryWriter` (buffered: the write path never waits on the disk);
faces and correlating producers query a :class:`History`.  Every range query
carries a row limit and says when it was reached (:class:`Page`), so no
query can load an unbounded table into memory.

Record kinds (``kind``) and what their ``key`` and ``member`` mean:

========  ==================  ============  ==========================
kind      key                 member        data
========  ==================  ============  ==========================
pod       pod IP              pod UID       pod summary
vport     pod IP              ""            the vPort row
member    "ns/service"        "ip/port"     the k8s/service/backend entry
service   "ns/service"        ""            the service row
cni       ""                  ""            the k8s/cni row
========  ==================  ============  ==========================

Kinds that are whole datastore rows (vport, service, member, cni) map to a schema
path and key tuple (``Row``, ``HistoryChange.path``/``keys``), so a face can
serve them like live rows.  Times are epoch seconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Iterable, Mapping, NamedTuple, Protocol, TypeVar

__all__ = ["DEFAULT_LIMIT", "History", "HistoryChange", "HistoryWriter", "Page", "Row", "Version"]

#: Rows a range query returns unless the caller asks for fewer.
DEFAULT_LIMIT = 100_000

T = TypeVar("T")


class Row(NamedTuple):
    """A datastore row as it was: its key tuple and leaves."""

    key: tuple
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Version:
    """One version of one recorded thing. ``valid_to`` is None while it is current."""

    kind: str
    cluster: str
    key: str
    member: str
    data: Mapping[str, Any]
    valid_from: float
    valid_to: float | None


@dataclass(frozen=True, slots=True)
class HistoryChange:
    """A version opened ("update") or closed without successor ("delete") at ``time``.

    ``path`` and ``keys`` name the datastore node for row kinds (vport,
    service, member as k8s/service/backend, cni); they are None for pod records.
    """

    time: float
    op: str
    kind: str
    cluster: str
    key: str
    member: str
    data: Mapping[str, Any]
    path: str | None
    keys: tuple | None

    @property
    def deleted(self) -> bool:
        return self.op == "delete"


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """The answer of a range query: at most ``limit`` items, and whether more were left out."""

    items: list[T]
    truncated: bool = False

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class HistoryWriter(Protocol):
    """Recording versions (the event loop; buffered, flushed in the background)."""

    def set(self, kind: str, cluster: str, key: str, member: str, data: Mapping[str, Any],
            t: float | None = None) -> bool:
        """Make ``data`` the current version; True when a new version was opened."""
        ...

    def end(self, kind: str, cluster: str, key: str, member: str, t: float | None = None) -> bool:
        """Close the current version, if any; True when one was closed."""
        ...

    def sync(self, kind: str, cluster: str, current: Mapping[tuple[str, str], Mapping[str, Any]],
             t: float | None = None) -> None:
        """Make the open records of ``kind`` in ``cluster`` exactly ``current`` ((key, member) -> data)."""
        ...

    def end_cluster(self, cluster: str, t: float | None = None) -> int:
        """Close every open record of a cluster; returns how many."""
        ...

    def open_members(self, kind: str, cluster: str) -> list[tuple[str, str]]:
        """(key, member) of the open records of a kind in a cluster."""
        ...


class History(Protocol):
    """Queries over the time machine. Blocking and thread-safe: faces call them off the event loop."""

    retention_days: float

    def rows_at(self, path: str, t: float, *, cluster: str | None = None,
                limit: int = DEFAULT_LIMIT) -> Page[Row]:
        """The rows of a table (``history_paths``) as they were at ``t``."""
        ...

    def history_paths(self) -> frozenset[str]:
        """Schema paths whose rows have history."""
        ...

    def oldest(self) -> float | None:
        """When the oldest version still kept begins (epoch s), or None when nothing is kept."""
        ...

    def changes(self, start: float, end: float, *, kinds: Iterable[str] | None = None,
                cluster: str | None = None, limit: int = DEFAULT_LIMIT) -> Page[HistoryChange]:
        """Every version opened or closed in ``[start, end)``, in time order."""
        ...

    def pods_at(self, ip: str, t: float, cluster: str | None = None) -> list[Version]:
        """Every pod version holding ``ip`` at ``t``, the best claim first (own IP over host network, newest)."""
        ...

    def service_backends(self, cluster: str, namespace: str, name: str, t: float) -> list[Version]:
        """The ready backends (member versions) of a service at ``t``, by member."""
        ...

    def service_backends_between(self, cluster: str, namespace: str, name: str, start: float, end: float,
                                 limit: int = DEFAULT_LIMIT) -> Page[Version]:
        """Backends that served the service at any time in ``[start, end)``, by valid_from."""
        ...
