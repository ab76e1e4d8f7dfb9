"""The connection table producer: tracker + attribution -> datastore rows.

Follows ``kubefabric-connection:connection-stats-settings`` (node-local):
tracking runs only while ``enable`` is true (turning it off removes every
row), ``max-connections`` and ``idle-timeout`` resize the tracker.  Flow
sources hand it sampled observations through the ``FlowSink`` port
(:meth:`ConnectionTable.observe`, the sFlow collector) and exact control
packets through the ``ControlSink`` port (:meth:`observe_control`, the
capture); it flushes every
``flush_interval`` (0.25 s), writing the changed rows in one
``state.batch()``, so the change feed sees one batch per flush however many
observations arrived.  The tracker's counters are published once a second
as ``connections-statistics`` (evictions, refusals, skipped samples...).

Per service and port (``connections/service-stats``): the tracker's events
(connections opened, outcomes, latencies, retransmitted SYNs) are named
with the connection's service -- the Kubernetes service it went to, else
its destination address -- at each flush and counted over the last minute
(:mod:`.service_stats`); the rows are written with the statistics, once a
second, only those that changed.

A flush writes at most ``max_rows_per_flush`` (10,000) changed rows, about
0.2 s of the event loop; the rest wait for the next flush, so a burst of
new connections never stalls reception or the faces for long.

``age`` is written with every change of a row; a row that stops changing
(an idle or quiet connection) is rewritten every ``age_refresh`` seconds so
its age does not go stale, at most ``max_refresh_per_flush`` rows a flush
(a queue of write times, so this costs nothing per sample and nothing
when the table is empty).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Iterable

from core import schema_paths
from core.ports.flows import ControlPacket, FlowObservation
from core.ports.history import History
from core.ports.state import ChangeSource, ConfigFollower, StateWriter, Unsubscribe
from core.tasks import cancel_and_wait

from .attribution import Attributor
from .service_stats import ServiceStats
from .tracker import CONNECTIONS_PATH, EVENT_LATENCY, EVENT_NEW, EVENT_OUTCOME, ConnectionTracker

__all__ = ["ConnectionTable", "SETTINGS_TOP", "STATISTICS_PATH", "SERVICE_STATS_PATH"]

log = logging.getLogger(__name__)

SETTINGS_TOP = "kubefabric-connection:connection-stats-settings"
STATISTICS_PATH = schema_paths.CONNECTION_STATISTICS
SERVICE_STATS_PATH = schema_paths.CONNECTION_SERVICE_STATS


class ConnectionTable:
    """``ConnectionTable(state, config, feed, history)``; ``configure(running)``; ``observe(batch)``; ``flush(now)``.

    As a component: ``start()`` follows the config and flushes periodically,
    ``stop()`` writes the last rows.  (Tests may leave ``config`` out and call
    ``configure`` and ``flush`` themselves.)
    """

    def __init__(self, state: StateWriter, config: ConfigFollower | None = None, feed: ChangeSource | None = None,
                 history: History | None = None,
                 max_rows_per_flush: int = 10_000, attribution_retry: float = 5.0,
                 age_refresh: float = 30.0, max_refresh_per_flush: int = 2_000,
                 flush_interval: float = 0.25, stats_interval: float = 1.0) -> None:
        self.state = state
        self.config = config
        self.tracker = ConnectionTracker()
        self.tracker.events = []
        self.service_stats = ServiceStats()
        self.attributor = Attributor(state, feed, history)
        self.enabled = False
        self.flush_interval = flush_interval
        self.stats_interval = stats_interval
        self._task: asyncio.Task | None = None
        self._unsubscribe: Unsubscribe | None = None
        self._published_stats: dict | None = None
        self.max_rows_per_flush = max_rows_per_flush
        self.attribution_retry = attribution_retry
        self.rows_written = 0
        self.age_refresh = age_refresh
        self.max_refresh_per_flush = max_refresh_per_flush
        self._written: deque = deque()  # (written_at, conn), oldest first
        self.rows_deleted = 0

    def configure(self, running: dict) -> None:
        """Apply connection-stats-settings and the k8s analytics cluster from the running config."""
        settings = running.get(SETTINGS_TOP) or {}
        enable = bool(settings.get("enable", False))
        max_connections = int(settings.get("max-connections", 100_000))
        idle_timeout = float(settings.get("idle-timeout", 300))
        self.tracker.resize(max_connections, idle_timeout)
        self.tracker.no_response_timeout = float(settings.get("no-response-timeout", 5))
        before = self.attributor.analytics_cluster
        self.attributor.configure(running)
        if self.attributor.analytics_cluster != before:
            for conn in self.tracker.table.values():  # re-attribute on the next write
                if conn.encapsulation != "none":
                    conn.attribution = None
        if enable != self.enabled:
            self.enabled = enable
            log.info("connection tracking %s", "enabled" if enable else "disabled")
            if not enable:
                gone = self.tracker.clear()
                self._written.clear()
                self._write([], gone, time.time())
                self._clear_service_stats()

    def close(self) -> None:
        """Stop following the feed (rows stay until the agent stops)."""
        self.attributor.close()

    # -- FlowSink -------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        """Whether observations are wanted (connection-stats-settings enable)."""
        return self.enabled

    def observe(self, batch: Iterable[FlowObservation]) -> None:
        """Account a batch of observations (ignored while tracking is off)."""
        if self.enabled:
            observe = self.tracker.observe
            for observation in batch:
                observe(observation)

    def observe_control(self, batch: Iterable[ControlPacket]) -> None:
        """Account a batch of captured control packets (ControlSink; ignored while tracking is off)."""
        if self.enabled:
            observe = self.tracker.observe_control
            for packet in batch:
                observe(packet)

    # -- component ------------------------------------------------------------
    async def start(self) -> None:
        """Follow the running config and flush every ``flush_interval``."""
        if self.config is None:
            raise RuntimeError("ConnectionTable.start() needs the config port")
        self._unsubscribe = self.config.on_config(self.configure)
        self._task = asyncio.create_task(self._flusher(), name="connection-table")

    async def stop(self) -> None:
        """Stop flushing; write the last rows and counters."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await cancel_and_wait(self._task)
        self._task = None
        try:
            self.flush()
            self.publish_stats()
        except Exception:
            log.exception("final connection table flush failed")
        self.close()

    async def _flusher(self) -> None:
        next_stats = 0.0
        while True:
            await asyncio.sleep(self.flush_interval)
            now = time.time()
            try:
                if self.enabled:
                    self.flush(now)
                if now >= next_stats:
                    next_stats = now + self.stats_interval
                    self.publish_stats()
            except Exception:
                log.exception("connection table flush failed")

    def publish_stats(self) -> None:
        """Write the tracker's counters as connections-statistics when they moved."""
        leaves = self.tracker.stats().as_leaves()
        leaves["rows-written"] = self.rows_written
        leaves["rows-deleted"] = self.rows_deleted
        leaves["service-stats-dropped"] = self.service_stats.dropped
        if leaves != self._published_stats:
            self._published_stats = leaves
            self.state.merge(STATISTICS_PATH, (), leaves)
        self.publish_service_stats()

    def publish_service_stats(self, now: float | None = None) -> None:
        """Write the per-service rows that changed; delete those with nothing left in the last minute."""
        changed, gone = self.service_stats.rows(now or time.time())
        if not changed and not gone:
            return
        state = self.state
        with state.batch():
            for key in gone:
                state.delete(SERVICE_STATS_PATH, key)
            for key, row in changed.items():
                state.upsert(SERVICE_STATS_PATH, key, row)

    def _clear_service_stats(self) -> None:
        keys = list(self.service_stats.keys)
        self.service_stats = ServiceStats(self.service_stats.window, self.service_stats.max_keys)
        with self.state.batch():
            for key in keys:
                self.state.delete(SERVICE_STATS_PATH, key)

    def _count_events(self, now: float) -> None:
        """Name each tracker event with its service and port and count it (see the module docstring)."""
        tracker = self.tracker
        events = tracker.events
        if not events:
            return
        tracker.events = []
        stats = self.service_stats
        leaves = self.attributor.leaves
        for kind, conn, value in events:
            attribution = conn.attribution
            if attribution is None:
                attribution = conn.attribution = leaves(conn)
                conn.attributed_at = now
            key = (attribution.get("service") or conn.dst_ip, conn.dst_port)
            if kind == EVENT_NEW:
                stats.add_new(key, now, value)
            elif kind == EVENT_OUTCOME:
                stats.add_outcome(key, now, value)
            elif kind == EVENT_LATENCY:
                stats.add_latency(key, now, value)
            else:
                stats.add_retransmit(key, now)

    def flush(self, now: float | None = None) -> int:
        """Expire idle entries and write changed rows; returns the rows written or deleted."""
        if not self.enabled:
            return 0
        now = now or time.time()
        self.tracker.expire(now)
        self._refresh_ages(now)
        changed, gone = self.tracker.take_changes(self.max_rows_per_flush)
        written = self._write(changed, gone, now)
        self._count_events(now)
        return written

    def _refresh_ages(self, now: float) -> None:
        written = self._written
        limit = now - self.age_refresh
        mark = self.tracker.mark
        budget = self.max_refresh_per_flush
        while written and written[0][0] <= limit and budget:
            at, conn = written.popleft()
            if conn.alive and conn.written_at == at:  # its latest write: due for a refresh
                mark(conn)
                budget -= 1

    def _write(self, changed: list, gone: list, now: float) -> int:
        if not changed and not gone:
            return 0
        state = self.state
        leaves = self.attributor.leaves
        retry = self.attribution_retry
        with state.batch():
            for key in gone:
                state.delete(CONNECTIONS_PATH, key)
            for conn in changed:
                row = conn.row(now)
                attribution = conn.attribution
                if attribution is None or (not attribution and now - conn.attributed_at > retry):
                    attribution = conn.attribution = leaves(conn)
                    conn.attributed_at = now
                if attribution:
                    row.update(attribution)
                state.upsert(CONNECTIONS_PATH, conn.key, row)
                conn.written_at = now
                self._written.append((now, conn))
        self.rows_written += len(changed)
        self.rows_deleted += len(gone)
        return len(changed) + len(gone)
