"""One Subscribe RPC: ONCE, POLL and STREAM (ON_CHANGE, SAMPLE, TARGET_DEFINED).

Life of a STREAM session:
1. the feed listener is registered first, so nothing that changes while
   the snapshot is being read and sent is missed (it waits in the queue);
2. the initial snapshot (unless updates_only), then sync_response;
3. a single sender loop drains the coalescing queue in chunks, packs many
   Updates per Notification, and also serves sample and heartbeat timers
   and polls, so exactly one coroutine writes to the stream.

The listener only filters and queues (never encodes, never awaits): a
slow client makes its own queue coalesce, never the datastore wait.
Subscriptions to paths with no data yet simply match nothing until the
data appears.

How a session ends (gNMI specification 3.5.1.5): STREAM lasts until the
client cancels the RPC (or the server fails); a half-close only says the
client will send nothing more, so it ends ONCE (which ends after its
sync_response anyway) and POLL (after the outstanding polls), never STREAM.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from agent.gnmi_proto import gnmi_pb2

from core.changefeed import Change
from core.datastore import Datastore
from core.schema import NodeInfo

from . import encode, extensions, history
from .coalesce import CoalescingQueue
from .match import Index
from .paths import PathError, Selector, resolve, restrict_models, with_depth
from .read import collect

log = logging.getLogger("kubefabric.gnmi")

STREAM, ONCE, POLL = (gnmi_pb2.SubscriptionList.Mode.Value(n) for n in ("STREAM", "ONCE", "POLL"))
TARGET_DEFINED, ON_CHANGE, SAMPLE = (gnmi_pb2.SubscriptionMode.Value(n) for n in ("TARGET_DEFINED", "ON_CHANGE", "SAMPLE"))
MIN_INTERVAL_NS = 10_000_000  # 10 ms: the shortest sample or heartbeat interval served
#: what SAMPLE with sample_interval 0 ("the lowest interval possible for the target") samples at: the
#: shortest interval at which a sample of any subscribable path (a 100,000-entry vPort table) is sustained
LOWEST_SAMPLE_NS = 1_000_000_000
#: how often a history range whose end lies in the future reads what the time machine recorded since
HISTORY_FOLLOW_S = 0.5

_COUNTER_TYPES = frozenset({"counter32", "counter64", "zero-based-counter32", "zero-based-counter64"})
_counter_cache: dict[str, frozenset] = {}


def counter_leaves(schema, info: NodeInfo) -> frozenset:
    """Leaves of a node typed as YANG counters (TARGET_DEFINED samples these)."""
    found = _counter_cache.get(info.path)
    if found is None:
        names = []
        for name, leaf in info.leaves.items():
            if leaf.config:
                continue
            try:
                dtype = schema.model.get_data_node(f"{info.path}/{name}").type
            except Exception:  # noqa: BLE001 - a node yangson cannot address is simply not a counter
                continue
            if getattr(dtype, "name", None) in _COUNTER_TYPES:
                names.append(name)
        found = _counter_cache[info.path] = frozenset(names)
    return found


@dataclass(eq=False)
class Sub:
    """One Subscription (TARGET_DEFINED makes an on-change and a sampled one)."""

    selectors: list[Selector]
    on_change: bool
    sample_ns: int = 0
    heartbeat_ns: int = 0
    suppress: bool = False
    leaf_filter: Callable[[NodeInfo], frozenset | None] | None = None
    last: dict = field(default_factory=dict)  # sampled: (path, key) -> leaves last sent
    due: bool = False
    heartbeat_due: bool = False


@dataclass
class Limits:
    """Server-wide knobs a session uses."""

    max_updates: int = 1000  # Updates per Notification (bundling; 1 disables it)
    max_bytes: int = 1 << 20  # bytes per Notification
    drain_chunk: int = 1000  # queue entries encoded per send round (bounds how long one round holds the loop)
    # distinct nodes a stalled subscriber may hold before its session is ended:
    # above the largest table (max-connections defaults to 100,000), ~120 MiB at most
    max_pending: int = 200_000
    counter_sample_ns: int = 10_000_000_000  # TARGET_DEFINED sample interval for counters


class Session:
    """The server side of one Subscribe RPC."""

    def __init__(self, ds: Datastore, context, request: gnmi_pb2.SubscribeRequest, stats: dict, limits: Limits,
                 allowed: Callable[[NodeInfo, tuple], bool] | None = None) -> None:
        self.ds = ds
        #: NACM read access per node (None: nothing can be denied to this user, the usual case)
        self.allowed = allowed
        self.schema = ds.schema
        self.context = context
        self.stats = stats
        self.limits = limits
        if request.WhichOneof("request") != "subscribe":
            raise PathError("INVALID_ARGUMENT", "the first SubscribeRequest must carry a SubscriptionList")
        sl = request.subscribe
        self.mode = sl.mode
        if sl.mode not in (STREAM, ONCE, POLL):
            raise PathError("INVALID_ARGUMENT", f"unknown subscription list mode {sl.mode}")
        if sl.encoding not in encode.SUPPORTED:
            name = gnmi_pb2.Encoding.Name(sl.encoding) if sl.encoding in gnmi_pb2.Encoding.values() else sl.encoding
            raise PathError("UNIMPLEMENTED", f"encoding {name} is not supported (JSON, JSON_IETF, PROTO are)")
        if not sl.subscription:
            raise PathError("INVALID_ARGUMENT", "a SubscriptionList needs at least one Subscription")
        self.updates_only = sl.updates_only
        exts = extensions.parse("Subscribe", request.extension)
        self.history = history.from_extensions(request.extension)
        self.subs: list[Sub] = []
        origins = set()
        for s in sl.subscription:
            selectors = [with_depth(sel, exts.depth) for sel in
                         restrict_models(self.schema, resolve(self.schema, sl.prefix, s.path), sl.use_models)]
            origins.add(s.path.origin or sl.prefix.origin)
            self.subs.extend(self._subs_for(s, selectors))
        self.n_subscriptions = len(sl.subscription)
        if self.history is not None:
            self._check_history()
        origin = sl.prefix.origin or (origins.pop() if len(origins) == 1 else "")
        self.enc = encode.Encoder(sl.encoding, origin=origin, target=sl.prefix.target)
        self.queue = CoalescingQueue(stats, limits.max_pending)
        self.wake = self.queue.event
        self.index = Index()
        for sub in self.subs:
            if sub.on_change:
                for sel in sub.selectors:
                    self.index.add(sel, leaf_filter=sub.leaf_filter)
        self.leaf_only = self.index.leaf_only_paths()
        self.whole = self.index.whole_paths()
        self.polls = 0
        self.half_closed = False
        self.error: PathError | None = None
        self._tasks: list[asyncio.Task] = []

    # -- request parsing --------------------------------------------------------
    def _subs_for(self, s: gnmi_pb2.Subscription, selectors: list[Selector]) -> list[Sub]:
        if self.mode != STREAM:
            return [Sub(selectors, on_change=True)]
        hb = s.heartbeat_interval
        if hb and hb < MIN_INTERVAL_NS:
            raise PathError("INVALID_ARGUMENT", f"heartbeat_interval below {MIN_INTERVAL_NS} ns is not supported")
        if s.mode == ON_CHANGE:
            return [Sub(selectors, on_change=True, heartbeat_ns=hb)]
        if s.mode == SAMPLE:
            interval = s.sample_interval or LOWEST_SAMPLE_NS  # 0: "the lowest interval possible for the target"
            if interval < MIN_INTERVAL_NS:
                raise PathError("INVALID_ARGUMENT", f"sample_interval below {MIN_INTERVAL_NS} ns is not supported")
            return [Sub(selectors, on_change=False, sample_ns=interval, heartbeat_ns=hb,
                        suppress=s.suppress_redundant)]
        if s.mode == TARGET_DEFINED:
            if s.sample_interval:
                raise PathError("INVALID_ARGUMENT", "TARGET_DEFINED chooses its own sample interval; "
                                "leave sample_interval unset (specification 3.5.1.5.2)")
            schema = self.schema

            def events(info):
                counters = counter_leaves(schema, info)
                return frozenset(info.leaves) - counters if counters else None

            def counters(info):
                return counter_leaves(schema, info)

            subs = [Sub(selectors, on_change=True, heartbeat_ns=hb, leaf_filter=events)]
            has_counters = any(counter_leaves(schema, schema.nodes[p]) for sel in selectors for p in sel.covered)
            if has_counters:
                subs.append(Sub(selectors, on_change=False, sample_ns=self.limits.counter_sample_ns,
                                leaf_filter=counters))
            return subs
        raise PathError("INVALID_ARGUMENT", f"unknown subscription mode {s.mode}")

    def _check_history(self) -> None:
        h = self.history
        if h.is_range and self.mode != STREAM:
            raise PathError("INVALID_ARGUMENT", "a history range needs a STREAM subscription")
        if not h.is_range and self.mode != ONCE:
            raise PathError("INVALID_ARGUMENT", "a history snapshot_time needs a ONCE subscription")
        history.check(self.ds, h, [sel for sub in self.subs for sel in sub.selectors])

    # -- running ----------------------------------------------------------------
    async def run(self, requests) -> None:
        """Serve the RPC until it is done: ONCE after sync_response, POLL at half-close, STREAM when cancelled."""
        self.stats["sessions"] = self.stats.get("sessions", 0) + 1
        self.stats["subscriptions"] = self.stats.get("subscriptions", 0) + self.n_subscriptions
        unsubscribe = None
        try:
            if self.history is not None:
                await self._serve_history()
                return
            if self.mode == STREAM:
                unsubscribe = self.ds.feed.subscribe(self._on_changes)
            self._tasks.append(asyncio.ensure_future(self._read(requests)))
            if not self.updates_only:
                nodes = list(self._gather(self.subs).values())
                for sub in self.subs:  # what suppress_redundant compares against: this same instant
                    if sub.suppress:
                        sub.last = {ident: dict(e[2]) for ident, e in self._gather([sub]).items()}
                await self._send_nodes(nodes)
            await self._write(encode.SYNC_RESPONSE, 0)
            if self.mode == ONCE:
                return
            if self.mode == STREAM:
                for sub in self.subs:
                    if not sub.on_change:
                        self._tasks.append(asyncio.ensure_future(self._tick(sub, "due", sub.sample_ns)))
                    if sub.heartbeat_ns:
                        self._tasks.append(asyncio.ensure_future(self._tick(sub, "heartbeat_due", sub.heartbeat_ns)))
            await self._loop()
        finally:
            if unsubscribe is not None:
                unsubscribe()
            for task in self._tasks:
                task.cancel()
            self.stats["sessions"] -= 1
            self.stats["subscriptions"] -= self.n_subscriptions

    async def _loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.error is not None:
                raise self.error
            if self.queue.overflowed:
                raise PathError("RESOURCE_EXHAUSTED", "the subscriber fell too far behind; resubscribe")
            while self.polls:
                self.polls -= 1
                await self._send_snapshot(self.subs, at=time.time_ns())
                await self._write(encode.SYNC_RESPONSE, 0)
            for sub in self.subs:
                if sub.heartbeat_due and sub.on_change:
                    sub.heartbeat_due = False
                    await self._send_snapshot([sub], at=time.time_ns())  # a heartbeat is a reading taken now
                elif (sub.due or sub.heartbeat_due) and not sub.on_change:
                    heartbeat = sub.heartbeat_due
                    sub.due = sub.heartbeat_due = False
                    await self._send_sample(sub, full=heartbeat or not sub.suppress)
            if len(self.queue):  # one chunk per round: polls and timers get their turn in between
                await self._send_queued()
                if len(self.queue):
                    self.wake.set()
            if self.half_closed and self.mode == POLL and not self.polls:
                return  # a STREAM session outlives its client's half-close: it ends when the client cancels

    async def _read(self, requests) -> None:
        """Client messages: polls, and the half-close (which ends a POLL session, never a STREAM one)."""
        try:
            async for req in requests:
                kind = req.WhichOneof("request")
                if kind == "poll":
                    if self.mode != POLL:
                        self.error = PathError("INVALID_ARGUMENT", "Poll on a subscription that is not POLL mode")
                    else:
                        self.polls += 1
                elif kind == "subscribe":
                    self.error = PathError("INVALID_ARGUMENT", "a Subscribe RPC takes one SubscriptionList")
                elif kind == "aliases":
                    self.error = PathError("UNIMPLEMENTED", "client-defined aliases are not supported")
                self.wake.set()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the RPC is going away; the sender notices
            pass
        self.half_closed = True
        self.wake.set()

    async def _tick(self, sub: Sub, flag: str, interval_ns: int) -> None:
        interval = interval_ns / 1e9
        next_at = time.monotonic() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            setattr(sub, flag, True)
            self.wake.set()

    # -- feed listener (synchronous, cheap) --------------------------------------
    def _on_changes(self, batch: list[Change]) -> None:
        if self.allowed is not None:
            nodes, allowed = self.schema.nodes, self.allowed
            batch = [ch for ch in batch if allowed(nodes[ch.path], ch.key)]
        index, put = self.index, self.queue.put
        by_path, whole = index.by_path, self.whole
        for ch in batch:
            if ch.path in whole:
                put(ch)
                continue
            if ch.path not in by_path:
                if ch.values is None and index.deletes_ancestor(ch.path, ch.key):
                    put(ch)
                continue
            wanted = index.match(ch.path, ch.key)
            if wanted is False:
                continue
            if wanted is True or ch.values is None:
                put(ch)
                continue
            values = {k: v for k, v in ch.values.items() if k in wanted}
            removed = tuple(n for n in ch.removed if n in wanted)
            if values or removed:
                put(Change(ch.path, ch.key, values, removed, ch.ts))

    # -- sending ------------------------------------------------------------------
    async def _write(self, message: bytes, n_updates: int) -> None:
        await self.context.write(message)
        self.stats["notifications"] = self.stats.get("notifications", 0) + 1
        if n_updates:
            self.stats["updates"] = self.stats.get("updates", 0) + n_updates

    async def _send_items(self, items: list[bytes], ts: int) -> None:
        limits = self.limits
        start = 0
        n = len(items)
        while start < n:
            end = min(n, start + limits.max_updates)
            size = 0
            for i in range(start, end):
                size += len(items[i])
                if size >= limits.max_bytes:
                    end = i + 1
                    break
            msg = encode.subscribe_update(self.enc.notification(ts, items[start:end]))
            await self._write(msg, end - start)
            start = end

    async def _send_queued(self) -> None:
        entries = self.queue.drain(self.limits.drain_chunk)
        nodes = self.schema.nodes
        enc = self.enc
        leaf_only = self.leaf_only
        items: list[bytes] = []
        ts = 0
        for p in entries:
            info = nodes[p.path]
            if p.ts > ts:
                ts = p.ts
            values = p.values
            if values is None:
                items.append(enc.delete(info, p.key))
                continue
            if type(p) is Change:
                dup, removed = 0, p.removed
            else:
                dup, removed = p.duplicates, p.removed
                if p.recreated:
                    items.append(enc.delete(info, p.key))
            if values:
                if p.path in leaf_only:
                    for name, value in values.items():
                        items.append(enc.leaf_update(info, p.key, name, value, dup))
                else:
                    enc.node_updates(info, p.key, values, items, dup)
            for name in removed:
                items.append(enc.delete(info, p.key, name))
        if items:
            await self._send_items(items, ts)

    def _gather(self, subs: list[Sub], rows=None) -> dict:
        """Current nodes of these subscriptions, one entry per node: [info, key, leaves, ts, leaf_only]."""
        merged: dict = {}
        for sub in subs:
            for sel in sub.selectors:
                for info, key, values, ts in collect(self.ds, sel, leaf_filter=sub.leaf_filter, rows=rows,
                                                     allowed=self.allowed):
                    ident = (info.path, key)
                    entry = merged.get(ident)
                    if entry is None:
                        merged[ident] = [info, key, values, ts, sel.leaf is not None]
                    else:
                        entry[2] = {**entry[2], **values}
                        entry[3] = max(entry[3], ts)
                        entry[4] = entry[4] and sel.leaf is not None
        return merged

    async def _send_nodes(self, nodes, chunk: int = 2000, at: int = 0) -> None:
        """Encode and send nodes a chunk at a time (the loop stays responsive)."""
        enc = self.enc
        nodes = list(nodes)
        for start in range(0, len(nodes), chunk):
            items: list[bytes] = []
            ts = 0
            for info, key, values, node_ts, leaf_only in nodes[start:start + chunk]:
                ts = max(ts, node_ts)
                if leaf_only:
                    for name, value in values.items():
                        items.append(enc.leaf_update(info, key, name, value))
                else:
                    enc.node_updates(info, key, values, items)
            if items:
                await self._send_items(items, at or ts or time.time_ns())

    async def _send_snapshot(self, subs: list[Sub], rows=None, at: int = 0) -> None:
        """The current nodes of `subs`; `at`: the Notification timestamp (polls and heartbeats: when read)."""
        await self._send_nodes(self._gather(subs, rows).values(), at=at)

    async def _send_sample(self, sub: Sub, full: bool) -> None:
        current = self._gather([sub])
        enc = self.enc
        items: list[bytes] = []
        now = time.time_ns()
        for ident, (info, key, values, _ts, leaf_only) in current.items():
            prev = sub.last.get(ident)
            if full or prev is None:
                send = values
            else:
                send = {k: v for k, v in values.items() if prev.get(k, _MISSING) != v}
                for name in prev:
                    if name not in values:
                        items.append(enc.delete(info, key, name))
            if send:
                if leaf_only:
                    for name, value in send.items():
                        items.append(enc.leaf_update(info, key, name, value))
                else:
                    enc.node_updates(info, key, send, items)
        if sub.leaf_filter is None:  # TARGET_DEFINED leaves node deletes to its on-change half
            for ident in sub.last:
                if ident not in current:
                    items.append(enc.delete(self.schema.nodes[ident[0]], ident[1]))
        sub.last = {ident: dict(entry[2]) for ident, entry in current.items()}
        if items:
            await self._send_items(items, now)

    # -- history ------------------------------------------------------------------
    async def _serve_history(self) -> None:
        h = self.history
        start = h.snapshot_ns if h.snapshot_ns is not None else h.start_ns
        if not self.updates_only:
            rows = await history.snapshot(self.ds, start)
            await self._send_nodes(self._gather(self.subs, rows).values())
        await self._write(encode.SYNC_RESPONSE, 0)
        if not h.is_range:
            return
        # gnmi-history 2.2.2: every update in [start, end), then the RPC closes.  An end in the future
        # is honoured: what the time machine records is streamed as it is recorded until the end passes
        # (an end of max int64 is an open-ended STREAM that began in the past).
        cursor = h.start_ns
        while True:
            now = time.time_ns()
            until = min(h.end_ns, now)
            if until > cursor:
                await self._send_history_changes(await history.changes(self.ds, cursor, until))
                cursor = until
            if until >= h.end_ns:
                return
            await asyncio.sleep(min(HISTORY_FOLLOW_S, (h.end_ns - now) / 1e9))

    async def _send_history_changes(self, changes) -> None:
        items: list[bytes] = []
        group_ts = None
        for path, key, values, ts in changes:
            wanted = self.index.match(path, key)
            if wanted is False or (self.allowed is not None and not self.allowed(self.schema.nodes[path], key)):
                continue
            if group_ts is not None and ts != group_ts and items:
                await self._send_items(items, group_ts)
                items = []
            group_ts = ts
            info = self.schema.nodes[path]
            if values is None:
                items.append(self.enc.delete(info, key))
                continue
            if wanted is not True:
                values = {k: v for k, v in values.items() if k in wanted}
            self.enc.node_updates(info, key, values, items)
        if items:
            await self._send_items(items, group_ts)


_MISSING = object()
