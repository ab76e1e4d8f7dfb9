"""The time machine: every pod, vPort, service and CNI version with its validity interval.

Each record is one version of one thing, valid over ``[valid_from, valid_to)``
(``valid_to`` is :data:`OPEN_END` while the version is current):

========  ==================  ============  =====================  ===========================
kind      key                 member        data                   closed when
========  ==================  ============  =====================  ===========================
pod       pod IP              pod UID       pod summary            pod deleted, finished
                                                                   (Succeeded/Failed), IP lost
vport     pod IP              ""            the vPort row          vPort removed
member    "ns/service"        "ip/port"     the backend entry      endpoint gone or changed
                                            (k8s/service/backend)  (conditions are part of it)
service   "ns/service"        ""            the service row        service deleted
cni       ""                  ""            the k8s/cni row        detection changes
attachment "switch/port"      node name     the attachment row     the attachment goes, or
                                            (counters rounded)     changes (counters: at most
                                                                   once a minute, by the producer)
========  ==================  ============  =====================  ===========================

Writers call :meth:`HistoryStore.set` (open or replace a version),
:meth:`HistoryStore.end` (close it) and :meth:`HistoryStore.sync` (make a
kind's open records equal to a full snapshot, after a list).  Writes are
buffered and committed by :meth:`flush` in one transaction (the manager
flushes every few hundred milliseconds, every query flushes first), so the
watch path never waits on the disk.

The store is SQLite (WAL) under the agent's data directory.  It implements
the two ports of ``core.ports.history``: producers record through
``HistoryWriter`` (``set``, ``end``, ``sync``...), faces query through
``History`` (``rows_at``, ``changes``, ``pods_at``, ``service_backends``...,
typed answers, a row limit on every range), so a server database can
replace it behind the same ports.

Indexes keep queries flat as history grows: ``(kind, key, valid_from,
valid_to, cluster, member)`` answers "who held IP X at T" and, without
touching the table, "backends of S at T"; an R*Tree over
``(kind, valid_from, valid_to)``, carrying the rows of vPorts and services
in auxiliary columns, answers "the whole vPort table at T" as a stabbing
query that never touches the main table; ``valid_from`` and ``valid_to``
indexes serve ``changes`` and retention.  The R*Tree stores 32-bit floats
rounded outward, so it only pre-selects; the exact bounds, kept in its
auxiliary columns too, decide.
"""
from __future__ import annotations

import functools
import json
import logging
import sqlite3
import threading
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar, cast

from .. import schema_paths
from ..ports.history import DEFAULT_LIMIT, HistoryChange, Page, Row, Version
from ..times import to_epoch

__all__ = ["HistoryStore", "OPEN_END", "KINDS", "ROW_PATHS"]

log = logging.getLogger(__name__)

OPEN_END = 1e12  # valid_to of a current version (year 33658)
KINDS = ("pod", "vport", "member", "service", "cni", "attachment")
_KIND_CODE = {k: i for i, k in enumerate(KINDS)}
VOLATILE = frozenset({"last-seen"})  # leaves that change without making a new version

_SNAPSHOT_KINDS = frozenset({"vport", "service", "attachment"})   # read as whole tables at a time (rows_at)

#: record kinds that are whole datastore rows, and their schema paths
ROW_PATHS = {
    "vport": schema_paths.VPORT,
    "service": schema_paths.K8S_SERVICE,
    "member": schema_paths.K8S_SERVICE_BACKEND,
    "cni": schema_paths.K8S_CNI,
    "attachment": schema_paths.ATTACHMENT,
}
_KIND_OF_PATH = {path: kind for kind, path in ROW_PATHS.items()}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS record (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    cluster TEXT NOT NULL,
    key TEXT NOT NULL,
    member TEXT NOT NULL,
    data TEXT NOT NULL,
    valid_from REAL NOT NULL,
    valid_to REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS record_by_key_span ON record(kind, key, valid_from, valid_to, cluster, member);
CREATE UNIQUE INDEX IF NOT EXISTS record_open ON record(kind, cluster, key, member) WHERE valid_to = {OPEN_END!r};
CREATE INDEX IF NOT EXISTS record_by_from ON record(valid_from);
CREATE INDEX IF NOT EXISTS record_by_to ON record(valid_to);
CREATE VIRTUAL TABLE IF NOT EXISTS record_span USING rtree(id, k0, k1, t0, t1, +valid_from, +valid_to, +cluster, +key, +data);
"""


def _digest(data: Mapping) -> int:
    """Hash of a version's non-volatile leaves (cheaper than JSON; only compared within one process).

    Kept to 30 bits so CPython stores it as a one-digit int: tens of
    thousands are held, and a collision only merges two versions.
    """
    # insertion order, not sorted: each producer builds its rows in a fixed order (and JSON keeps it),
    # so sorting would only cost time; a different order at worst records one extra version
    try:
        value = hash(tuple([(k, tuple(v) if type(v) is list else v)
                            for k, v in data.items() if k not in VOLATILE]))
    except TypeError:   # nested structures: fall back to canonical JSON
        value = hash(json.dumps({k: v for k, v in data.items() if k not in VOLATILE}, sort_keys=True,
                                separators=(",", ":")))
    return value & 0x3FFFFFFF


class _OpenIndex:
    """Digest of each current version: (kind, cluster) -> {key, or (key, member): digest}.

    Nested rather than one dict of 4-tuples: per pod it holds three
    records, and this layout saves about 100 bytes per pod.
    """

    def __init__(self) -> None:
        self._by: dict[tuple[str, str], dict[object, int]] = {}

    def get(self, kind: str, cluster: str, key: str, member: str) -> int | None:
        table = self._by.get((kind, cluster))
        return None if table is None else table.get((key, member) if member else key)

    def put(self, kind: str, cluster: str, key: str, member: str, digest: int) -> None:
        self._by.setdefault((kind, cluster), {})[(key, member) if member else key] = digest

    def pop(self, kind: str, cluster: str, key: str, member: str) -> int | None:
        table = self._by.get((kind, cluster))
        return None if table is None else table.pop((key, member) if member else key, None)

    def members(self, kind: str, cluster: str) -> list[tuple[str, str]]:
        table = self._by.get((kind, cluster)) or {}
        return [k if isinstance(k, tuple) else (k, "") for k in table]


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _locked(method: _Method) -> _Method:
    """Run a method holding the store's lock, after committing what is buffered."""
    @functools.wraps(method)
    def wrapper(self: "HistoryStore", *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._flush(None)
            return method(self, *args, **kwargs)
    return cast(_Method, wrapper)


class HistoryStore:
    """SQLite-backed history of pods, vPorts, service membership, services and CNI.

    ``HistoryStore(path, retention_days=30, max_bytes=None)``; ``path`` may be
    ``":memory:"``.  Times are epoch seconds (float), an aware ``datetime`` or
    RFC 3339 text.  ``max_bytes`` caps the database's used pages: retention
    then also drops the oldest closed versions until it fits (current
    versions are never dropped).
    """

    def __init__(self, path: str | Path, retention_days: float = 30.0, max_bytes: int | None = None) -> None:
        self.path = str(path)
        self.retention_days = float(retention_days)
        self.max_bytes = max_bytes
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA cache_size=-65536")       # 64 MiB of page cache: snapshots touch many rows
        self._db.execute("PRAGMA mmap_size=268435456")
        self._db.execute("PRAGMA temp_store=MEMORY")
        self._db.executescript(_SCHEMA)
        self._open = _OpenIndex()           # digest of every current version
        self._pending: deque[tuple] = deque()   # appended by the event loop, drained by flush (any thread)
        self._lock = threading.RLock()          # one user of the connection at a time
        for kind, cluster, key, member, data in self._db.execute(
            f"SELECT kind, cluster, key, member, data FROM record WHERE valid_to = {OPEN_END!r}"
        ):
            self._open.put(kind, cluster, key, member, _digest(json.loads(data)))

    # ------------------------------------------------------------------ writing

    def set(self, kind: str, cluster: str, key: str, member: str, data: Mapping, t: float | None = None) -> bool:
        """Make ``data`` the current version; returns True when a new version was opened.

        Only leaves outside :data:`VOLATILE` decide whether the version changed.
        ``data`` is kept until the next flush: the caller must not mutate it.
        """
        ident = (kind, cluster, key, member)
        digest = _digest(data)
        previous = self._open.get(kind, cluster, key, member)
        if previous == digest:
            return False
        ts = to_epoch(t)
        if previous is not None:
            self._pending.append(("close", ident, ts))
        self._open.put(kind, cluster, key, member, digest)
        self._pending.append(("open", ident, ts, data))   # serialized at flush time, off the event path
        return True

    def end(self, kind: str, cluster: str, key: str, member: str, t: float | None = None) -> bool:
        """Close the current version, if any; returns True when one was closed."""
        if self._open.pop(kind, cluster, key, member) is None:
            return False
        self._pending.append(("close", (kind, cluster, key, member), to_epoch(t)))
        return True

    def is_open(self, kind: str, cluster: str, key: str, member: str = "") -> bool:
        """Whether a current version exists for this identity."""
        return self._open.get(kind, cluster, key, member) is not None

    def sync(self, kind: str, cluster: str, current: Mapping[tuple[str, str], Mapping], t: float | None = None) -> None:
        """Make the open ``kind`` records of ``cluster`` exactly ``current`` ((key, member) -> data)."""
        ts = to_epoch(t)
        for (key, member), data in current.items():
            self.set(kind, cluster, key, member, data, ts)
        stale = [km for km in self._open.members(kind, cluster) if km not in current]
        for key, member in stale:
            self.end(kind, cluster, key, member, ts)

    def end_cluster(self, cluster: str, t: float | None = None) -> int:
        """Close every open Kubernetes record of a cluster (its connection was deleted); attachments stay."""
        ts = to_epoch(t)
        # attachments are the topology producer's: a cluster connection going away does not unplug servers
        idents = [(kind, key, member) for kind in KINDS if kind != "attachment"
                  for key, member in self._open.members(kind, cluster)]
        for kind, key, member in idents:
            self.end(kind, cluster, key, member, ts)
        return len(idents)

    def open_members(self, kind: str, cluster: str) -> list[tuple[str, str]]:
        """(key, member) of the open records of a kind in a cluster."""
        return self._open.members(kind, cluster)

    @property
    def pending(self) -> int:
        """Buffered operations not yet committed."""
        return len(self._pending)

    def flush(self, max_ops: int | None = None) -> int:
        """Commit buffered operations in one transaction; returns how many.

        ``max_ops`` bounds the work of one call; the rest stays buffered, in
        order.  Safe to call from a worker thread while the event loop keeps
        buffering (the manager flushes in a thread so a WAL checkpoint's
        fsync never stalls watch events).
        """
        with self._lock:
            return self._flush(max_ops)

    def _flush(self, max_ops: int | None) -> int:
        count = len(self._pending) if max_ops is None else min(max_ops, len(self._pending))
        if not count:
            return 0
        ops = [self._pending.popleft() for _ in range(count)]
        db = self._db
        db.execute("BEGIN")
        try:
            for op in ops:
                if op[0] == "open":
                    _, (kind, cluster, key, member), ts, data = op
                    data = json.dumps(data, separators=(",", ":"))
                    cur = db.execute(
                        "INSERT INTO record(kind, cluster, key, member, data, valid_from, valid_to) VALUES (?,?,?,?,?,?,?)",
                        (kind, cluster, key, member, data, ts, OPEN_END),
                    )
                    code = _KIND_CODE[kind]
                    snap = kind in _SNAPSHOT_KINDS
                    db.execute("INSERT INTO record_span(id, k0, k1, t0, t1, valid_from, valid_to, cluster, key, data) "
                               "VALUES (?,?,?,?,?,?,?,?,?,?)",
                               (cur.lastrowid, code, code, ts, OPEN_END, ts, OPEN_END,
                                cluster if snap else None, key if snap else None, data if snap else None))
                else:
                    _, (kind, cluster, key, member), ts = op
                    row = db.execute(
                        f"SELECT id, valid_from FROM record WHERE kind=? AND cluster=? AND key=? AND member=? AND valid_to = {OPEN_END!r}",
                        (kind, cluster, key, member),
                    ).fetchone()
                    if row is None:
                        continue
                    end = max(ts, row[1])
                    db.execute("UPDATE record SET valid_to=? WHERE id=?", (end, row[0]))
                    db.execute("UPDATE record_span SET t1=?, valid_to=? WHERE id=?", (end, end, row[0]))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._pending.extendleft(reversed(ops))    # nothing acknowledged is lost: retry next time
            raise
        return len(ops)

    @_locked
    def bulk_load(self, records: Iterable[tuple[str, str, str, str, Mapping, float, float | None]]) -> int:
        """Import (kind, cluster, key, member, data, valid_from, valid_to or None) records in one transaction.

        For migrations from another store and for benchmarks; records must not
        overlap open records already held for the same identity.
        """
        rows: list[tuple[str, str, str, str, str, float, float]] = []
        for kind, cluster, key, member, data, start, end in records:
            rows.append((kind, cluster, key, member, json.dumps(data, separators=(",", ":")), float(start),
                         OPEN_END if end is None else float(end)))
        db = self._db
        db.execute("BEGIN")
        try:
            first = (db.execute("SELECT coalesce(max(id), 0) FROM record").fetchone()[0]) + 1
            db.executemany("INSERT INTO record(kind, cluster, key, member, data, valid_from, valid_to) "
                           "VALUES (?,?,?,?,?,?,?)", rows)
            db.executemany(
                "INSERT INTO record_span(id, k0, k1, t0, t1, valid_from, valid_to, cluster, key, data) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                ((first + i, _KIND_CODE[r[0]], _KIND_CODE[r[0]], r[5], r[6], r[5], r[6],
                  *((r[1], r[2], r[4]) if r[0] in _SNAPSHOT_KINDS else (None, None, None)))
                 for i, r in enumerate(rows)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for kind, cluster, key, member, text, _start, stop in rows:
            if stop >= OPEN_END:
                self._open.put(kind, cluster, key, member, _digest(json.loads(text)))
        return len(rows)

    def enforce_retention(self, now: float | None = None, batch: int = 20000) -> int:
        """Delete versions that closed before ``now - retention_days``, then enforce ``max_bytes``; returns rows deleted.

        Works in batches of ``batch`` rows per transaction, taking the lock per
        batch, so a large purge never holds the database (and the queries the
        faces make) for long.
        """
        horizon = to_epoch(now) - self.retention_days * 86400.0
        total = 0
        with self._lock:
            self._flush(None)
        while True:
            with self._lock:
                ids = [r[0] for r in self._db.execute(
                    "SELECT id FROM record INDEXED BY record_by_to WHERE valid_to < ? LIMIT ?", (horizon, batch))]
                if ids:
                    self._delete_ids(ids)
            if not ids:
                with self._lock:
                    return total + self.enforce_size(batch)
            total += len(ids)

    def size_bytes(self) -> int:
        """Bytes of database pages in use (free pages, which SQLite reuses, excluded)."""
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self._db.execute("PRAGMA page_size").fetchone()[0]

    def enforce_size(self, batch: int = 20000) -> int:
        """Delete the oldest closed versions while the database holds more than ``max_bytes``; returns rows deleted."""
        if not self.max_bytes:
            return 0
        self.flush()
        total = 0
        step = 0
        while self.size_bytes() > self.max_bytes:
            step = step or max(100, min(batch, self.count() // 20))  # about 5 % of the records a round
            ids = [r[0] for r in self._db.execute(
                "SELECT id FROM record INDEXED BY record_by_to WHERE valid_to < ? ORDER BY valid_to LIMIT ?",
                (OPEN_END, step))]
            if not ids:
                break  # only current versions are left: they stay
            self._delete_ids(ids)
            total += len(ids)
        if total:
            log.warning("k8s history: over its %d-byte cap; removed the %d oldest closed versions",
                        self.max_bytes, total)
        return total

    def _delete_ids(self, ids: list[int]) -> None:
        marks = ",".join("?" * len(ids))
        self._db.execute("BEGIN")
        self._db.execute(f"DELETE FROM record WHERE id IN ({marks})", ids)
        self._db.execute(f"DELETE FROM record_span WHERE id IN ({marks})", ids)
        self._db.execute("COMMIT")

    @_locked
    def count(self, kind: str | None = None) -> int:
        """Records stored (all versions, open and closed)."""
        if kind is None:
            return self._db.execute("SELECT count(*) FROM record").fetchone()[0]
        return self._db.execute("SELECT count(*) FROM record WHERE kind=?", (kind,)).fetchone()[0]

    def close(self) -> None:
        """Flush and close the database."""
        with self._lock:
            try:
                self._flush(None)
            finally:
                self._db.close()

    # ------------------------------------------------------------------ queries (the History port)

    def history_paths(self) -> frozenset[str]:
        """Schema paths whose rows ``rows_at`` can answer."""
        return frozenset(ROW_PATHS.values())

    @_locked
    def oldest(self) -> float | None:
        """When the oldest version still kept begins (epoch s), or None when nothing is kept."""
        row = self._db.execute("SELECT min(valid_from) FROM record").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    @_locked
    def pods_at(self, ip: str, t: float | datetime | str | None = None, cluster: str | None = None) -> list[Version]:
        """Every pod version holding ``ip`` at ``t`` (several only for host-network pods or clusters sharing a
        range): a pod with its own IP before host-network pods, then the most recent claim first."""
        ts = to_epoch(t)
        sql = ("SELECT kind, cluster, key, member, data, valid_from, valid_to FROM record "
               "WHERE kind='pod' AND key=? AND valid_from <= ? AND valid_to > ?")
        args: list = [ip, ts, ts]
        if cluster is not None:
            sql += " AND cluster=?"
            args.append(cluster)
        rows = [_version(r) for r in self._db.execute(sql, args)]
        rows.sort(key=lambda v: (bool(v.data.get("host-network")), -v.valid_from))
        return rows

    def pod_at(self, ip: str, t: float | datetime | str | None = None, cluster: str | None = None) -> Version | None:
        """The pod version that held ``ip`` at ``t`` (the best claim of ``pods_at``), or None.

        Its ``data`` is the pod summary: namespace, name, uid, node, phase,
        labels, host-network.
        """
        rows = self.pods_at(ip, t, cluster)
        return rows[0] if rows else None

    @_locked
    def service_backends(self, cluster: str, namespace: str, name: str,
                         t: float | datetime | str | None = None) -> list[Version]:
        """The backends of a service at ``t``: member versions (``member`` is "ip/port", ``data`` the
        k8s/service/backend entry with its conditions), by member."""
        ts = to_epoch(t)
        rows = self._db.execute(
            "SELECT kind, cluster, key, member, data, valid_from, valid_to FROM record "
            "WHERE kind='member' AND key=? AND valid_from <= ? AND valid_to > ? AND cluster=?",
            (f"{namespace}/{name}", ts, ts, cluster),
        )
        return sorted((_version(r) for r in rows), key=lambda v: v.member)

    @_locked
    def service_backends_between(self, cluster: str, namespace: str, name: str,
                                 start: float | datetime | str, end: float | datetime | str,
                                 limit: int = DEFAULT_LIMIT) -> Page[Version]:
        """Backends that served the service at any time in ``[start, end)``, ordered by valid_from."""
        a, b = to_epoch(start), to_epoch(end)
        rows = self._db.execute(
            "SELECT kind, cluster, key, member, data, valid_from, valid_to FROM record "
            "WHERE kind='member' AND key=? AND valid_from < ? AND valid_to > ? AND cluster=? "
            "ORDER BY valid_from LIMIT ?",
            (f"{namespace}/{name}", b, a, cluster, limit + 1),
        ).fetchall()
        return Page([_version(r) for r in rows[:limit]], truncated=len(rows) > limit)

    def rows_at(self, path: str, t: float | datetime | str | None = None, *, cluster: str | None = None,
                limit: int = DEFAULT_LIMIT) -> Page[Row]:
        """The rows of a table with history (``history_paths``) as they were at ``t``."""
        kind = _KIND_OF_PATH.get(path)
        if kind is None:
            raise KeyError(f"no history is kept for {path}")
        rows = self._rows_at(kind, t, cluster, limit + 1)
        return Page([Row(_row_keys(kind, clus, key, data), data) for clus, key, data in rows[:limit]],
                    truncated=len(rows) > limit)

    @_locked
    def changes(self, start: float | datetime | str, end: float | datetime | str | None = None, *,
                kinds: Iterable[str] | None = None, cluster: str | None = None,
                limit: int = DEFAULT_LIMIT) -> Page[HistoryChange]:
        """Every version opened or closed in ``[start, end)``, in time order, at most ``limit``.

        ``op`` is "update" when a version opened and "delete" when one closed
        without a successor at the same instant.  ``path``/``keys`` name the
        datastore node for row kinds (vport, service, cni) and are None for
        pod and member records.
        """
        a, b = to_epoch(start), to_epoch(end)
        wanted = tuple(kinds) if kinds else KINDS
        marks = ",".join("?" * len(wanted))
        extra, args = "", []
        if cluster is not None:
            extra, args = " AND cluster=?", [cluster]
        # each side ordered and cut at limit + 1: the merged first limit + 1 events are among them
        opened = self._db.execute(
            f"SELECT kind, cluster, key, member, data, valid_from FROM record INDEXED BY record_by_from "
            f"WHERE valid_from >= ? AND valid_from < ? AND kind IN ({marks}){extra} ORDER BY valid_from LIMIT ?",
            [a, b, *wanted, *args, limit + 1]).fetchall()
        closed = self._db.execute(
            f"SELECT kind, cluster, key, member, data, valid_to FROM record INDEXED BY record_by_to "
            f"WHERE valid_to >= ? AND valid_to < ? AND kind IN ({marks}){extra} ORDER BY valid_to LIMIT ?",
            [a, b, *wanted, *args, limit + 1]).fetchall()
        reopened = {(r[0], r[1], r[2], r[3], r[5]) for r in opened}
        events = []
        for kind, clus, key, member, data, ts in opened:
            events.append((ts, 1, "update", kind, clus, key, member, data))
        for kind, clus, key, member, data, ts in closed:
            if (kind, clus, key, member, ts) not in reopened:
                events.append((ts, 0, "delete", kind, clus, key, member, data))
        events.sort(key=lambda e: (e[0], e[1]))
        truncated = len(events) > limit
        out = []
        for ts, _, op, kind, clus, key, member, data in events[:limit]:
            values = json.loads(data)
            out.append(HistoryChange(ts, op, kind, clus, key, member, values, ROW_PATHS.get(kind),
                                     _row_keys(kind, clus, key, values, member) if kind in ROW_PATHS else None))
        return Page(out, truncated=truncated)

    # ------------------------------------------------------------------ helpers

    @_locked
    def _rows_at(self, kind: str, t: float | datetime | str | None, cluster: str | None,
                 limit: int) -> list[tuple[str, str, dict]]:
        ts = to_epoch(t)
        code = _KIND_CODE[kind]
        if kind in _SNAPSHOT_KINDS:
            # whole-table kinds carry their rows in the R*Tree's auxiliary columns: the stabbing
            # query reads the tree only, rows of one era sit together in its leaves
            sql = ("SELECT cluster, key, data FROM record_span "
                   "WHERE k0 <= ? AND k1 >= ? AND t0 <= ? AND t1 > ? AND valid_from <= ? AND valid_to > ?")
            args: list = [code, code, ts, ts, ts, ts]
        else:
            sql = "SELECT cluster, key, data FROM record WHERE kind = ? AND valid_from <= ? AND valid_to > ?"
            args = [kind, ts, ts]
        if cluster is not None:
            sql += " AND cluster = ?"
            args.append(cluster)
        sql += " LIMIT ?"
        args.append(limit)
        rows = self._db.execute(sql, args).fetchall()
        if not rows:
            return []
        datas = json.loads("[" + ",".join(r[2] for r in rows) + "]")   # one parse for the whole table
        return [(r[0], r[1], d) for r, d in zip(rows, datas)]


def _row_keys(kind: str, cluster: str, key: str, data: Mapping | None = None, member: str = "") -> tuple:
    """The datastore key tuple of a row kind's record."""
    if kind == "vport":
        return (key,)
    if kind == "cni":
        return (cluster,)
    if kind == "attachment":   # key "switch/port" (a port name may hold "/"), member the node
        switch, _, port = key.partition("/")
        node = member or str((data or {}).get("node", ""))
        return (switch, port, cluster, node)
    ns, _, name = key.partition("/")
    if kind == "member":  # a k8s/service/backend entry: keyed by its ip and port
        data = data or {}
        return (cluster, ns, name, str(data.get("ip", "")), int(data.get("port") or 0))
    return (cluster, ns, name)


def _version(row: tuple) -> Version:
    kind, cluster, key, member, data, valid_from, valid_to = row
    return Version(kind, cluster, key, member, json.loads(data), valid_from,
                   None if valid_to >= OPEN_END else valid_to)
