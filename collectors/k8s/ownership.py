"""Moving a Kubernetes connection away from an owner that stays offline.

Every online node looks at each connection's ``owner``; once that owner
has been offline (on this node's clock) longer than the grace period, nodes
compete for the connection's fabric-wide lock (``FabricMembership.lock``:
exactly one node holds it, and a holder that dies releases it with its
membership).  The winner rewrites the owner through the one config write
path like any other change, with an edit that only changes an owner that
is still the offline node, so even a stale second winner writes nothing.

Nodes that own fewer connections try first (one second earlier per rank),
which spreads the orphans of a dead owner over the survivors.  The rule
after a heal: ownership stays with the node that took it over (a returning
owner does not take its connections back), so a flapping node cannot make
connections flap with it.

This is the Kubernetes collector's policy, not the store's: the store only
offers membership and locks (``core.ports.fabric``).
"""
from __future__ import annotations

import asyncio
import logging

from core.errors import ConfigError
from core.ports.fabric import FabricMembership
from core.ports.state import ConfigFollower, ConfigWriter
from core.tasks import cancel_and_wait

log = logging.getLogger("kubefabric.k8s.ownership")

K8S = "kubefabric-k8s:k8s"
RANK_STEP = 1.0


def connections(tree: dict) -> list[dict]:
    """The k8s connection entries of a config tree."""
    return list(tree.get(K8S, {}).get("connection", []))


def move_owner(cluster: str, old: str, new: str):  # -> EditFn
    """An edit for ``propose``: owner old -> new, if it is still old."""

    def edit(tree: dict) -> dict:
        for conn in tree.get(K8S, {}).get("connection", []):
            if conn.get("cluster-name") == cluster and conn.get("owner") == old:
                conn["owner"] = new
        return tree

    return edit


class OwnerTakeover:
    """The loop that adopts connections of offline owners (only when the store is replicated)."""

    def __init__(self, membership: FabricMembership, config: ConfigFollower, writer: ConfigWriter,
                 grace: float, interval: float = 0.5) -> None:
        self.membership = membership
        self.writer = writer
        self.grace = grace
        self.interval = interval
        self.moves = 0
        self._running: dict = {}
        self._unsubscribe = config.on_config(self._follow)
        self._task: asyncio.Task | None = None

    def _follow(self, running: dict) -> None:
        self._running = running

    def start(self) -> None:
        """Start checking every ``interval`` seconds."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="k8s-owner-takeover")

    async def stop(self) -> None:
        """Stop checking."""
        self._unsubscribe()
        await cancel_and_wait(self._task)
        self._task = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("owner takeover check failed")

    def _delay_for_me(self, tree: dict) -> float | None:
        """Extra wait after the grace period for this node (None: not a candidate)."""
        me = self.membership.node_name
        online = self.membership.online_names()
        if me not in online:
            return None
        owned = {n: 0 for n in online}
        for conn in connections(tree):
            if conn.get("owner") in owned:
                owned[conn["owner"]] += 1
        ranking = sorted(online, key=lambda n: (owned[n], n))
        return ranking.index(me) * RANK_STEP

    async def check(self) -> None:
        """One pass: take over every connection whose owner has been offline long enough."""
        membership = self.membership
        if not membership.replicated or membership.sync_state != "in-sync":
            return
        tree = self._running
        delay = self._delay_for_me(tree)
        if delay is None:
            return
        for conn in connections(tree):
            owner, cluster = conn.get("owner"), conn.get("cluster-name")
            if not owner or not cluster or owner == membership.node_name:
                continue
            offline = membership.offline_for(owner)
            if offline is None or offline < self.grace + delay:
                continue
            await self._take(cluster, owner)

    async def _take(self, cluster: str, owner: str) -> None:
        membership = self.membership
        async with membership.lock(f"k8s-takeover/{cluster}") as won:
            if not won:
                return
            if membership.offline_for(owner) is None:
                return  # the owner came back while we competed
            log.warning("taking over Kubernetes connection %s from offline node %s", cluster, owner)
            try:
                await self.writer.propose(move_owner(cluster, owner, membership.node_name),
                                          user="fabric-sync", face="fabric")
                self.moves += 1
            except ConfigError as exc:
                log.warning("could not take over connection %s: %s", cluster, exc)
