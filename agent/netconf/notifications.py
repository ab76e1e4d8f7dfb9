"""RFC 5277 event notifications from the agent's change feed.

Streams: NETCONF (everything), config, vport, connection, kubernetes.
Config changes are sent as ietf-netconf-notifications
`netconf-config-change` (RFC 6470); vPort, connection-table and
Kubernetes state changes as kubefabric-notifications `state-change`,
carrying the instance-identifier of the node, the operation (merge or
delete) and, in `data`, the node's keys and changed leaves in its own
YANG namespace.

Replay (`startTime`) reads the time machine (`ds.history`), page by page;
without a history store, replay is refused.
"""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import math
import time
from typing import Any, Callable

from lxml import etree

from core.changefeed import Change
from core.history import TimeMachine
from core.times import TimeFormatError, format_rfc3339_ns, parse_rfc3339

from .codec import Codec
from .filters import Filter
from .rpcerror import RpcError

log = logging.getLogger("kubefabric.netconf")

NOTIF_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"
NETMOD_NS = "urn:ietf:params:xml:ns:netmod:notification"
NCN_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"
EVENTS_NS = "urn:kubefabric:yang:kubefabric-notifications"
EVENTS_MODULE, EVENTS_REVISION = "kubefabric-notifications", "2026-11-22"

STATE_STREAMS = {
    "/kubefabric-vport:vports/vport": "vport",
    "/kubefabric-connection:connections/connection": "connection",
    "/kubefabric-k8s:k8s/connection/state": "kubernetes",
    "/kubefabric-k8s:k8s/cni": "kubernetes",
    "/kubefabric-k8s:k8s/service": "kubernetes",
    "/kubefabric-k8s:k8s/service/backend": "kubernetes",
}
STREAMS = {
    "NETCONF": "all events: config changes, vPorts, connections, Kubernetes state",
    "config": "netconf-config-change for every change to running, whichever face made it",
    "vport": "vPort table changes",
    "connection": "connection table changes",
    "kubernetes": "Kubernetes connection state, CNI, service and service backend changes",
}
#: streams whose events the time machine keeps, so `startTime` can replay them (RFC 5277 3.2.5.1 replaySupport):
#: the config and connection streams, and so the NETCONF stream holding them, cannot be replayed
REPLAY_STREAMS = ("vport", "kubernetes")
QUEUE_LIMIT = 10_000
#: history changes read per query during a replay
REPLAY_PAGE = 10_000


def event_time(ts_ns: int | float | None = None) -> str:
    """RFC 3339 time of an event (ns since the epoch, or now), in microseconds."""
    return format_rfc3339_ns(int(ts_ns) if ts_ns else time.time_ns(), digits=6)


def parse_time(text: str, what: str) -> dt.datetime:
    """A startTime/stopTime value as an aware datetime, or the rpc-error RFC 5277 asks for."""
    try:
        epoch = parse_rfc3339(text)
    except TimeFormatError:
        raise RpcError("invalid-value", f"{what} {text!r} is not a date-and-time", type="protocol",
                       info={"bad-element": what}) from None
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc)


def streams_element(replay_since: float | None = None) -> etree._Element:
    """/netconf/streams (RFC 5277 section 3.2.5.1).

    `replay_since`: when the replay log (the time machine) begins, or None
    without one; replaySupport is true, with replayLogCreationTime, only for
    the streams whose events it keeps.
    """
    q = "{%s}" % NETMOD_NS
    root = etree.Element(q + "netconf", nsmap={None: NETMOD_NS})
    streams = etree.SubElement(root, q + "streams")
    for name, text in STREAMS.items():
        s = etree.SubElement(streams, q + "stream")
        etree.SubElement(s, q + "name").text = name
        etree.SubElement(s, q + "description").text = text
        replay = replay_since is not None and name in REPLAY_STREAMS
        etree.SubElement(s, q + "replaySupport").text = "true" if replay else "false"
        if replay:
            etree.SubElement(s, q + "replayLogCreationTime").text = format_rfc3339_ns(int(replay_since * 1e9), digits=6)
    return root


class EventBuilder:
    """Change records -> notification bodies."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.schema = codec.schema

    def stream_of(self, path: str) -> str | None:
        info = self.schema.nodes.get(path)
        if info is None:
            return None
        if info.config:
            return "config"
        return STATE_STREAMS.get(path)

    def instance_id(self, path: str, key: tuple) -> tuple[str, dict]:
        info = self.schema.nodes[path]
        chain = []
        cur = info
        while cur is not None:
            chain.append(cur)
            cur = cur.parent
        chain.reverse()
        steps, ns = [], {}
        for node in chain:
            mod = self.schema.module(node.module)
            ns[mod.prefix] = mod.namespace
            step = f"{mod.prefix}:{node.name}"
            if node.kind == "list":
                start = len(node.keys) - len(node.own_keys)
                for k, v in zip(node.own_keys, key[start:len(node.keys)]):
                    step += f"[{mod.prefix}:{k}='{v}']"
            steps.append(step)
        return "/" + "/".join(steps), ns

    def config_change(self, changes: list[Change], user: str | None, session_id: int | None) -> etree._Element:
        q = "{%s}" % NCN_NS
        root = etree.Element(q + "netconf-config-change", nsmap={None: NCN_NS})
        by = etree.SubElement(root, q + "changed-by")
        if user:
            etree.SubElement(by, q + "username").text = user
            etree.SubElement(by, q + "session-id").text = str(session_id or 0)
        else:
            etree.SubElement(by, q + "server")
        etree.SubElement(root, q + "datastore").text = "running"
        for change in changes:
            target, ns = self.instance_id(change.path, change.key)
            edit = etree.SubElement(root, q + "edit")
            etree.SubElement(edit, q + "target", nsmap=ns).text = target
            etree.SubElement(edit, q + "operation").text = "delete" if change.deleted else "merge"
        return root

    def state_change(self, path: str, key: tuple, values: dict | None, removed: tuple = ()) -> etree._Element:
        q = "{%s}" % EVENTS_NS
        info = self.schema.nodes[path]
        root = etree.Element(q + "state-change", nsmap={None: EVENTS_NS})
        target, ns = self.instance_id(path, key)
        etree.SubElement(root, q + "target", nsmap=ns).text = target
        etree.SubElement(root, q + "operation").text = "delete" if values is None else "merge"
        for name in removed:
            etree.SubElement(root, q + "removed").text = name
        mod_ns = self.codec.module_ns[info.module]
        data = etree.SubElement(root, q + "data")
        node = etree.SubElement(data, f"{{{mod_ns}}}{info.name}", nsmap={None: mod_ns})
        start = len(info.keys) - len(info.own_keys)
        own = dict(zip(info.own_keys, key[start:]))
        for k, v in own.items():
            etree.SubElement(node, f"{{{mod_ns}}}{k}").text = str(v)
        for name, value in (values or {}).items():
            leaf = info.leaves.get(name)
            if leaf is None or name in own:
                continue
            for v in (value if leaf.is_list else [value]):
                etree.SubElement(node, f"{{{mod_ns}}}{name}").text = self.codec.leaf_to_text(leaf, v)
        return root


def notification(body: etree._Element, when: str) -> bytes:
    q = "{%s}" % NOTIF_NS
    root = etree.Element(q + "notification", nsmap={None: NOTIF_NS})
    etree.SubElement(root, q + "eventTime").text = when
    root.append(body)
    return etree.tostring(root)


def netmod_marker(name: str) -> bytes:
    """replayComplete / notificationComplete."""
    return notification(etree.Element("{%s}%s" % (NETMOD_NS, name), nsmap={None: NETMOD_NS}), event_time())


class Subscription:
    """One session's create-subscription: filters the feed and writes notifications."""

    def __init__(
        self, builder: EventBuilder, stream: str, filt: Filter | None, send: Callable[[bytes], None],
        writer: Callable[[], tuple[str | None, int | None]], writable: Callable[[], Any] | None = None,
    ) -> None:
        self.builder = builder
        self.stream = stream
        self.filter = filt
        self.send = send
        self.writer = writer
        #: awaitable factory that returns when the session's SSH channel takes more data
        self.writable = writable
        self.queue: collections.deque = collections.deque()
        self.dropped = 0
        self.sent = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._stop_at: dt.datetime | None = None

    def start(self, feed, history: TimeMachine, start: dt.datetime | None, stop: dt.datetime | None) -> None:
        self._stop_at = stop
        self._unsubscribe = feed.subscribe(self._on_changes)
        self._task = asyncio.ensure_future(self._run(history, start, stop))

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None and not self._task.done() and self._task is not asyncio.current_task():
            self._task.cancel()

    def _wants(self, stream: str | None) -> bool:
        return stream is not None and (self.stream == "NETCONF" or self.stream == stream)

    def _on_changes(self, changes: list[Change]) -> None:
        """Feed listener: cheap, just queue what this stream wants."""
        config = [c for c in changes if self.builder.stream_of(c.path) == "config"]
        if config and self._wants("config"):
            self._push(("config", config, self.writer()))
        for c in changes:
            stream = self.builder.stream_of(c.path)
            if stream != "config" and self._wants(stream):
                self._push(("state", c, None))

    def _push(self, item) -> None:
        if len(self.queue) >= QUEUE_LIMIT:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(item)
        self._wake.set()

    def _emit(self, body: etree._Element, when: str) -> None:
        if self.filter is not None and self.filter.kind is not None:
            holder = etree.Element("{%s}data" % NOTIF_NS)
            holder.append(body)
            picked = self.filter.apply(holder, self.builder.codec)
            if not len(picked):
                return
            body = picked[0]
        self.send(notification(body, when))
        self.sent += 1

    async def _run(self, history: TimeMachine, start: dt.datetime | None, stop: dt.datetime | None) -> None:
        try:
            if start is not None:
                await self._replay(history, start, stop)
                self.send(netmod_marker("replayComplete"))
            if stop is not None:
                delay = (stop - dt.datetime.now(dt.timezone.utc)).total_seconds()
                if delay <= 0:
                    self.send(netmod_marker("notificationComplete"))
                    self.close()
                    return
                asyncio.get_running_loop().call_later(delay, self._finish)
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self.queue:
                    if self.writable is not None:
                        await self.writable()  # a slow client fills our bounded queue, not SSH buffers
                    kind, data, who = self.queue.popleft()
                    if kind == "config":
                        user, sid = who
                        self._emit(self.builder.config_change(data, user, sid), event_time(data[0].ts))
                    elif kind == "state":
                        self._emit(self.builder.state_change(data.path, data.key, data.values, data.removed),
                                   event_time(data.ts))
                    elif kind == "complete":
                        self.send(netmod_marker("notificationComplete"))
                        self.close()
                        return
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("notification subscription failed")

    def _finish(self) -> None:
        self.queue.append(("complete", None, None))
        self._wake.set()

    async def _replay(self, history: TimeMachine, start: dt.datetime, stop: dt.datetime | None) -> None:
        end = (stop or dt.datetime.now(dt.timezone.utc)).timestamp()
        begin = start.timestamp()
        while True:
            page = await history.changes(begin, end, limit=REPLAY_PAGE)
            items = page.items
            if page.truncated:  # cut before the last instant; the next page starts at it
                last = items[-1].time
                items = [c for c in items if c.time < last] or items
                begin = last if len(items) < len(page.items) else math.nextafter(last, math.inf)
            for item in items:
                path, keys = item.path, item.keys
                if not path or keys is None or path not in self.builder.schema.nodes:
                    continue
                stream = self.builder.stream_of(path)
                if not self._wants(stream):
                    continue
                values = None if item.deleted else dict(item.data)
                try:
                    body = self.builder.state_change(path, tuple(keys), values)
                except Exception:
                    continue
                self._emit(body, event_time(int(item.time * 1e9)))
                await asyncio.sleep(0)
            if not page.truncated:
                return


