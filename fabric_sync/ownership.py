"""Moving a Kubernetes connection away from an owner that stays offline.

Every online node looks at each connection's `owner`; once that owner has
been offline (on this node's clock) longer than the grace period, nodes
compete for the connection's takeover lock in etcd (a key created under
the candidate's membership lease: exactly one creation succeeds, and a
candidate that dies releases it with its lease).  The winner rewrites the
owner through the datastore like any other config change, with an edit
that only changes an owner that is still the offline node, so even a
stale second winner writes nothing.

Nodes that own fewer connections try first (one second earlier per rank),
which spreads the orphans of a dead owner over the survivors.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import aetcd

from agent.datastore.errors import ConfigError

if TYPE_CHECKING:
    from .etcd import EtcdFabricStore

log = logging.getLogger("kubefabric.fabric.ownership")

K8S = "kubefabric-k8s:k8s"
RANK_STEP = 1.0


def connections(tree: dict) -> list[dict]:
    return list(tree.get(K8S, {}).get("connection", []))


def move_owner(cluster: str, old: str, new: str):
    """An edit for Datastore.propose: owner old -> new, if it is still old."""

    def edit(tree: dict) -> dict:
        for conn in tree.get(K8S, {}).get("connection", []):
            if conn.get("cluster-name") == cluster and conn.get("owner") == old:
                conn["owner"] = new
        return tree

    return edit


class OwnerTakeover:
    """The loop that adopts connections of offline owners."""

    def __init__(self, store: "EtcdFabricStore", ds: Any, grace: float, interval: float = 0.5) -> None:
        self.store = store
        self.ds = ds
        self.grace = grace
        self.interval = interval
        self.moves = 0

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
        me = self.store.node_name
        online = self.store.membership.online_names()
        if me not in online:
            return None
        owned = {n: 0 for n in online}
        for conn in connections(tree):
            if conn.get("owner") in owned:
                owned[conn["owner"]] += 1
        ranking = sorted(online, key=lambda n: (owned[n], n))
        return ranking.index(me) * RANK_STEP

    async def check(self) -> None:
        store = self.store
        if store.sync_state != "in-sync" or store.membership.lease is None:
            return
        tree = store.tree
        delay = self._delay_for_me(tree)
        if delay is None:
            return
        for conn in connections(tree):
            owner, cluster = conn.get("owner"), conn.get("cluster-name")
            if not owner or not cluster or owner == store.node_name:
                continue
            offline = store.membership.offline_for(owner)
            if offline is None or offline < self.grace + delay:
                continue
            await self._take(cluster, owner)

    async def _take(self, cluster: str, owner: str) -> None:
        store, client = self.store, self.store.client
        lock = store.keys.takeover(cluster)
        me = store.node_name.encode()
        try:
            won, _ = await client.transaction(
                compare=[client.transactions.create(lock) == 0],
                success=[client.transactions.put(lock, me, lease=store.membership.lease)],
                failure=[],
            )
        except aetcd.ClientError as exc:
            log.debug("takeover lock for %s: %s", cluster, exc)
            return
        if not won:
            return
        try:
            if store.membership.offline_for(owner) is None:
                return  # the owner came back while we competed
            log.warning("taking over Kubernetes connection %s from offline node %s", cluster, owner)
            await self.ds.propose(move_owner(cluster, owner, store.node_name), user="fabric-sync", face="fabric")
            self.moves += 1
        except ConfigError as exc:
            log.warning("could not take over connection %s: %s", cluster, exc)
        finally:
            try:
                await client.transaction(
                    compare=[client.transactions.value(lock) == me],
                    success=[client.transactions.delete(lock)],
                    failure=[],
                )
            except aetcd.ClientError:
                pass  # the lock goes with our lease
