"""Fabric membership: who is in the fabric, who is online, since when.

Each agent keeps two keys (see keys.py): a persistent record and a
lease-bound `online/<name>` key.  The lease's keepalive (a LeaseKeeper
thread) doubles as the agent's health probe of etcd: when it cannot be
refreshed the node has lost the fabric (stale); when the lease itself
expired while we were cut off, the node registers again with a new lease.

Observers learn everything from the store's one prefix watch (`load`,
`apply`); "offline since" is measured on the observer's own monotonic
clock, so clock skew between switches never shortens an owner's grace.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Callable

import aetcd

from core.ports.fabric import MemberInfo
from core.times import now_rfc3339

from .keys import FabricKeys

log = logging.getLogger("kubefabric.fabric.membership")


@dataclass
class _Member:
    name: str
    address: str = ""
    role: str = ""
    last_seen: str = ""
    online: bool = False
    offline_since: float = 0.0  # local monotonic time the node was first seen offline

    def info(self) -> MemberInfo:
        return MemberInfo(self.name, "online" if self.online else "offline", self.address, self.role, self.last_seen)


class Membership:
    """This node's registration plus the table of every fabric member."""

    def __init__(
        self,
        keys: FabricKeys,
        node_name: str,
        address: str,
        role: str,
        ttl: int = 3,
        heartbeat: float = 5.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.keys = keys
        self.node_name = node_name
        self.address = address
        self.role = role
        self.ttl = ttl
        self.heartbeat = heartbeat
        self.lease: aetcd.Lease | None = None
        self._on_change = on_change or (lambda: None)
        self._members: dict[str, _Member] = {}
        self._unknown_since: dict[str, float] = {}
        self._last_heartbeat = 0.0

    # -- this node -------------------------------------------------------------
    def _record(self) -> bytes:
        return json.dumps({
            "name": self.node_name, "address": self.address, "role": self.role, "last-seen": now_rfc3339(),
        }, sort_keys=True).encode()

    async def register(self, client: aetcd.Client) -> None:
        """Take a new lease and publish this node as online (one transaction)."""
        lease = await client.lease(self.ttl)
        online = json.dumps({"address": self.address, "role": self.role, "lease": lease.id}).encode()
        await client.transaction(compare=[], success=[
            client.transactions.put(self.keys.online(self.node_name), online, lease=lease),
            client.transactions.put(self.keys.node(self.node_name), self._record()),
        ], failure=[])
        self.lease = lease
        self._last_heartbeat = time.monotonic()
        log.info("registered %s in fabric %s (lease %x, ttl %ss)", self.node_name, self.keys.fabric, lease.id, self.ttl)

    async def beat(self, client: aetcd.Client, force: bool = False) -> None:
        """Refresh last-seen in this node's record when a heartbeat is due (or now: ``force``).

        (The lease itself is refreshed by a LeaseKeeper thread.)
        """
        if force or time.monotonic() - self._last_heartbeat >= self.heartbeat:
            await client.put(self.keys.node(self.node_name), self._record())
            self._last_heartbeat = time.monotonic()

    async def leave(self, client: aetcd.Client) -> None:
        """Graceful stop: record last-seen and drop the online key with the lease."""
        await client.put(self.keys.node(self.node_name), self._record())
        if self.lease is not None:
            await client.revoke_lease(self.lease.id)
            self.lease = None

    # -- the table -------------------------------------------------------------
    def load(self, records: dict[str, dict], online: dict[str, dict]) -> None:
        """Replace the table from a full read of the prefix."""
        now = time.monotonic()
        old = self._members
        self._members = {}
        for name in set(records) | set(online):
            rec = records.get(name, {})
            on = online.get(name)
            m = _Member(name, str(rec.get("address") or (on or {}).get("address", "")),
                        str(rec.get("role") or (on or {}).get("role", "")), str(rec.get("last-seen", "")))
            m.online = on is not None
            prev = old.get(name)
            m.offline_since = prev.offline_since if prev is not None and not prev.online else now
            self._members[name] = m
        self._on_change()

    def apply(self, kind: str, name: str, value: bytes | None) -> None:
        """One watch event on `nodes/<name>` or `online/<name>` (value None: deleted)."""
        m = self._members.get(name)
        if kind == "nodes":
            if value is None:
                self._members.pop(name, None)
                self._on_change()
                return
            rec = _json(value)
            if m is None:
                m = self._members[name] = _Member(name, offline_since=time.monotonic())
            m.address = str(rec.get("address", m.address))
            m.role = str(rec.get("role", m.role))
            m.last_seen = str(rec.get("last-seen", m.last_seen))
        elif kind == "online":
            if m is None:
                m = self._members[name] = _Member(name, offline_since=time.monotonic())
            if value is None:
                if m.online:
                    m.online = False
                    m.offline_since = time.monotonic()
                    log.info("fabric node %s went offline", name)
            else:
                rec = _json(value)
                if not m.online:
                    log.info("fabric node %s is online", name)
                m.online = True
                m.address = str(rec.get("address") or m.address)
                m.role = str(rec.get("role") or m.role)
        self._on_change()

    def members(self) -> list[MemberInfo]:
        return [m.info() for _, m in sorted(self._members.items())]

    def online_names(self) -> list[str]:
        return sorted(n for n, m in self._members.items() if m.online)

    def is_online(self, name: str) -> bool:
        m = self._members.get(name)
        return bool(m and m.online)

    def offline_for(self, name: str) -> float | None:
        """Seconds `name` has been offline as seen from here; None while online.

        A name that is no member at all counts from the first time asked.
        """
        now = time.monotonic()
        m = self._members.get(name)
        if m is None:
            return now - self._unknown_since.setdefault(name, now)
        if m.online:
            return None
        return now - m.offline_since

    def restore(self, cached: list[dict]) -> None:
        """Members from the local cache (etcd unreachable at start): all offline but this node."""
        now = time.monotonic()
        for rec in cached:
            name = str(rec.get("name", ""))
            if name and name not in self._members:
                self._members[name] = _Member(name, str(rec.get("address", "")), str(rec.get("role", "")),
                                              str(rec.get("last-seen", "")), False, now)
        me = self._members.setdefault(self.node_name, _Member(self.node_name, offline_since=now))
        me.address, me.role, me.online = self.address, self.role, True
        self._on_change()

    def snapshot(self) -> list[dict]:
        """Records for the local cache."""
        return [{"name": m.name, "address": m.address, "role": m.role, "last-seen": m.last_seen}
                for m in self._members.values()]


def _json(value: bytes) -> dict:
    try:
        data = json.loads(value)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
