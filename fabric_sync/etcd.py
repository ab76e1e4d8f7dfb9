"""Fabric-scope config replicated through etcd (aetcd, asyncio).

The whole fabric-scope tree is one JSON value under
`/kubefabric/<fabric>/config` (see keys.py).  That makes the fabric caps
(four Kubernetes connections, one with overlay analytics) hold across
agents with a single compare: `commit(base_revision, tree)` is one etcd
transaction "if config's mod_revision is still base_revision, put tree",
so of two agents that validated against the same revision only one lands;
the other gets ConflictError, the datastore re-runs the edit on the newer
tree, validates again and reports the cap.  The revisions handed to the
datastore are etcd mod_revisions, monotonically increasing.

Every agent watches the fabric prefix and applies changes as they come
(config, membership), resuming from its last revision after a disconnect
and re-reading everything when that revision was compacted.  The
membership lease keepalive is also the health probe: when etcd cannot
serve it (quorum lost, all members unreachable) the node flags
/fabric/sync-state "stale", keeps serving the last applied tree and
refuses writes with UnavailableError; it turns "in-sync" again on its own
when etcd recovers.  The last applied tree is cached in the data dir so
an agent started while etcd is down serves the last known config.

The store implements ``core.ports.fabric``: it reports config, members and
sync state to its ``FabricEvents`` (the datastore) and writes nothing into
the datastore itself; as a ``FabricMembership`` it offers fabric-wide locks
(``lock(name)``: a key created under this node's membership lease, so a
holder that dies releases it), which the Kubernetes collector uses to move
connections away from offline owners.  Per-node state (``publish_node_state``)
is one key per node and kind, followed by the same prefix watch and handed
to ``FabricEvents.fabric_node_state`` (nodestate.py encodes the values).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from pathlib import Path
from typing import AsyncIterator, Mapping

import aetcd

from core.errors import ConfigError, ConflictError, UnavailableError
from core.ports.fabric import FabricEvents, MemberInfo
from core.tasks import wait_event
from core.times import now_rfc3339

from .cache import LocalCache
from .etcd_client import make_client
from .security import EtcdSecurity
from .keys import FabricKeys
from .leasekeeper import LeaseKeeper
from .membership import Membership
from .nodestate import NodeStates, decode_state, encode_state

log = logging.getLogger("kubefabric.fabric.etcd")


class EtcdFabricStore:
    """``FabricStore`` and ``FabricMembership`` on an etcd cluster shared by every agent of a fabric."""

    replicated = True

    def __init__(
        self,
        endpoints: list[str] | str,
        fabric: str,
        node_name: str,
        address: str = "",
        role: str = "",
        *,
        data_dir: Path | None = None,
        lease_ttl: int = 3,
        op_timeout: float = 2.0,
        commit_timeout: float = 5.0,
        connect_timeout: float = 3.0,
        heartbeat: float = 5.0,
        security: EtcdSecurity | None = None,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",") if e.strip()]
        self.endpoints = list(endpoints)
        self.security = security or EtcdSecurity()
        #: why the store is stale, in words ("" while in-sync)
        self.sync_error = ""
        self.keys = FabricKeys(fabric)
        self.node_name = node_name
        self.op_timeout = op_timeout
        self.commit_timeout = commit_timeout
        self.connect_timeout = connect_timeout
        self.probe_interval = max(0.5, lease_ttl / 3)
        self.keeper: LeaseKeeper | None = None
        self.membership = Membership(self.keys, node_name, address, role, ttl=lease_ttl,
                                     heartbeat=heartbeat, on_change=self._members_changed)
        self.client: aetcd.Client | None = None
        self._events: FabricEvents | None = None
        self.revision = -1  # newest config revision known here
        self._given = -1  # newest revision the datastore has (handed over or committed by it)
        self._inflight = 0  # commits of this node waiting for etcd's answer
        self.sync_state = "stale"
        self._cache: LocalCache | None = LocalCache(self._cache_path(data_dir)) if data_dir else None
        self._tree: dict = {}
        self._exists = False  # whether the config key exists at self.revision
        self._reachable = False  # last health probe answered
        self._denied = False  # etcd refused our identity (auth or rights) since the last good write
        self._watching = False  # the prefix watch is established
        self._watch_rev: int | None = None  # last revision the watch has seen; None: re-read all
        self._abandoned: set[str] = set()  # commit ids we reported as failed
        self._tasks: list[asyncio.Task] = []
        self._watch_ready: asyncio.Event | None = None
        self.node_states = NodeStates(node_name)

    def _cache_path(self, data_dir: Path) -> Path:
        return Path(data_dir) / f"fabric-{self.keys.fabric}.json"

    # -- life cycle ----------------------------------------------------------
    async def start(self, events: FabricEvents) -> None:
        """Join the fabric: register, read everything, follow the prefix; report to ``events``."""
        self._events = events
        self.node_states.events = events
        self._publish_sync()
        log.info("fabric %s: connecting to etcd %s as %s", self.keys.fabric, ",".join(self.endpoints),
                 self.security.identity())
        if self.security.expired():
            log.error("the etcd client certificate %s has expired: etcd will refuse it (fabric config stays stale)",
                      self.security.cert)
        self.client = make_client(self.endpoints, self.op_timeout, self.security)
        self._watch_ready = asyncio.Event()
        self.keeper = LeaseKeeper(self.endpoints, self.probe_interval, self.op_timeout, self.security)
        self.keeper.start()
        synced = False
        try:
            await asyncio.wait_for(self._initial_sync(), self.connect_timeout)
            synced = True
        except (aetcd.ClientError, asyncio.TimeoutError, OSError) as exc:
            self.sync_error = _why(exc)
            log.warning("etcd %s unusable at start (%s): serving the last known fabric config, stale",
                        ",".join(self.endpoints), self.sync_error)
            self._serve_cached()
        self._tasks = [
            asyncio.create_task(self._watch_loop(), name="fabric-watch"),
            asyncio.create_task(self._probe_loop(), name="fabric-probe"),
        ]
        if synced:  # "ready" should mean in-sync: let the watch get established first
            await wait_event(self._watch_ready, self.connect_timeout)

    async def _initial_sync(self) -> None:
        await self._register()
        self._reachable = True
        self._watch_rev = await self._resync()

    def _serve_cached(self) -> None:
        cached = self._cache.load() if self._cache else None
        if cached and cached.get("fabric") == self.keys.fabric:
            self._exists = bool(cached.get("exists", True))
            self._deliver(cached.get("config") or {}, int(cached.get("revision", 0)), save=False)
            self.membership.restore(cached.get("members") or [])
            log.info("fabric %s: serving cached config at revision %s", self.keys.fabric, self.revision)
        else:
            self._deliver({}, 0, save=False)
            self.membership.restore([])
        self._reachable = False
        self._publish_sync()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        if self.keeper is not None:
            self.keeper.stop()
            await asyncio.to_thread(self.keeper.join, 5)
            self.keeper = None
        if self.client is not None:
            if self._reachable:
                try:
                    await asyncio.wait_for(self.membership.leave(self.client), 2.0)
                except (aetcd.ClientError, asyncio.TimeoutError):
                    pass
            try:
                await self.client.close()
            except Exception:  # closing a broken channel must not fail shutdown
                pass
            self.client = None
        if self._cache is not None:
            self._save_cache()
            await self._cache.close()

    # -- reading etcd ----------------------------------------------------------
    async def _resync(self) -> int:
        """Read the whole fabric prefix; deliver config and membership. Returns the read revision."""
        resp = await self.client.get_prefix(self.keys.prefix)
        records: dict[str, dict] = {}
        online: dict[str, dict] = {}
        config_kv = None
        states = {}
        for kv in resp:
            kind, name = self.keys.classify(kv.key)
            if kind == "config":
                config_kv = kv
            elif kind == "state":
                states[name] = (decode_state(kv.value), kv.mod_revision)
            elif kind == "nodes":
                records[name] = _json(kv.value)
            elif kind == "online":
                online[name] = _json(kv.value)
        self.membership.load(records, online)
        self.node_states.load(states, resp.header.revision)
        if config_kv is not None:
            tree, _meta = _parse(config_kv.value)
            self._exists = True
            self._deliver(tree, config_kv.mod_revision)
        else:
            # no config yet: revision = the store's, so it still only grows
            self._exists = False
            self._deliver({}, max(resp.header.revision, self.revision))
        return resp.header.revision

    async def _watch_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                if self._watch_rev is None:
                    self._watch_rev = await self._resync()
                watch = await self.client.watch_prefix(self.keys.prefix, start_revision=self._watch_rev + 1)
                self._set_watching(True)
                backoff = 0.1
                async for event in watch:
                    self._on_event(event)
                    self._watch_rev = max(self._watch_rev, event.kv.mod_revision)
            except asyncio.CancelledError:
                raise
            except aetcd.RevisionCompactedError as exc:
                log.warning("fabric watch: revision %s compacted (%s): reading everything again", self._watch_rev, exc)
                self._watch_rev = None
            except Exception as exc:
                if "token" in str(exc) and hasattr(self.client, "forget_token"):
                    self.client.forget_token()  # an expired etcd token: authenticate again
                elif _refused(exc):
                    self._refusal(exc)
                log.debug("fabric watch interrupted: %r", exc)
            self._set_watching(False)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def _on_event(self, event: aetcd.Event) -> None:
        kind, name = self.keys.classify(event.kv.key)
        deleted = event.kind == "DELETE"
        if kind == "config":
            tree, meta = ({}, {}) if deleted else _parse(event.kv.value)
            if meta.get("commit") in self._abandoned:
                log.warning("a fabric write reported as unavailable (%s by %s) was applied after etcd recovered",
                            meta.get("commit"), meta.get("node"))
            if event.kv.mod_revision > self.revision:
                self._exists = not deleted
            self._deliver(tree, event.kv.mod_revision)
        elif kind in ("nodes", "online"):
            self.membership.apply(kind, name, None if deleted else event.kv.value)
        elif kind == "state":
            self.node_states.apply(name, None if deleted else decode_state(event.kv.value), event.kv.mod_revision)

    def _deliver(self, tree: dict, revision: int, save: bool = True) -> None:
        """Take a newer tree (older or equal revisions are dropped) and hand it to the datastore.

        While one of our commits waits for etcd the hand-over waits too: the
        datastore applies its own candidate when commit() returns, so a newer
        tree handed over before that would be overwritten by an older one.
        (Only our own write or later ones can arrive then: the guard saw to it.)
        """
        if revision <= self.revision:
            return
        self.revision = revision
        self._tree = tree
        if save:
            self._save_cache()
        if not self._inflight:
            self._hand_over()

    def _hand_over(self) -> None:
        if self.revision > self._given and self._events is not None:
            self._given = self.revision
            self._events.fabric_config(self._tree, self.revision)

    # -- writing -------------------------------------------------------------
    async def commit(self, base_revision: int, tree: dict, meta: Mapping[str, str]) -> int:
        """One guarded transaction: put ``tree`` if config is still at ``base_revision``."""
        client = self.client
        if client is None:
            raise UnavailableError("the fabric store is not running")
        self._inflight += 1
        try:
            return await self._commit(client, base_revision, tree, meta)
        finally:
            self._inflight -= 1
            if not self._inflight and self.revision > self._given:
                # after the datastore has applied what commit() returns
                asyncio.get_running_loop().call_soon(self._hand_over)

    async def _commit(self, client: aetcd.Client, base_revision: int, tree: dict, meta: Mapping[str, str]) -> int:
        if not self._reachable:
            await self._gate()
        commit_id = uuid.uuid4().hex
        value = json.dumps({"config": tree, "meta": {**meta, "commit": commit_id, "time": now_rfc3339()}},
                           sort_keys=True, separators=(",", ":")).encode()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.commit_timeout
        key = self.keys.config
        while True:
            guard = (client.transactions.version(key) == 0 if base_revision == self.revision and not self._exists
                     else client.transactions.mod(key) == base_revision)
            remaining = deadline - loop.time()
            try:
                ok, responses = await asyncio.wait_for(client.transaction(
                    compare=[guard], success=[client.transactions.put(key, value)],
                    failure=[client.transactions.get(key)]), max(remaining, 0.01))
                break
            except asyncio.CancelledError:
                raise
            except (aetcd.InvalidArgumentError, aetcd.PreconditionFailedError) as exc:
                raise ConfigError("operation-failed", f"fabric store refused the write: {exc}") from None
            except aetcd.ClientError as exc:
                if _refused(exc):  # our identity has no right to write here: sending again will not help
                    self._abandoned.add(commit_id)
                    self._refusal(exc)
                    raise UnavailableError(f"fabric store (etcd) refused the write: {_why(exc)}") from None
                if loop.time() + 0.1 >= deadline or not self._reachable:
                    self._abandoned.add(commit_id)
                    raise UnavailableError(
                        f"fabric store (etcd) did not confirm the write within {self.commit_timeout:g}s: {_why(exc)}"
                    ) from None
                await asyncio.sleep(0.1)
            except asyncio.TimeoutError as exc:
                # etcd answers "no leader", "request timed out", "context deadline exceeded"
                # (or nothing) while it has no quorum.  Safe to send again: if an earlier
                # attempt landed, the guard now fails and the failure branch shows our commit id.
                if loop.time() + 0.1 >= deadline or not self._reachable:
                    self._abandoned.add(commit_id)
                    raise UnavailableError(
                        f"fabric store (etcd) did not confirm the write within {self.commit_timeout:g}s: {_why(exc)}"
                    ) from None
                await asyncio.sleep(0.1)
        if ok:
            revision = responses[0].response_put.header.revision
            self._committed(tree, revision)
            return revision
        current = responses[0] if responses else []
        if current:
            raw, kv = current[0]
            newer, newer_meta = _parse(raw)
            if newer_meta.get("commit") == commit_id:  # an earlier attempt of ours landed
                self._committed(tree, kv.mod_revision)
                return kv.mod_revision
            self._exists = True
            self._deliver(newer, kv.mod_revision)
        self._hand_over()  # the datastore retries on the newest tree at once
        raise ConflictError(f"fabric config changed since revision {base_revision}")

    def _committed(self, tree: dict, revision: int) -> None:
        self._given = max(self._given, revision)
        if revision > self.revision:
            self.revision = revision
            self._tree = tree
            self._exists = True
            self._save_cache()

    async def _gate(self) -> None:
        """Before writing while flagged stale: is there a quorum again? (linearizable read)."""
        try:
            await asyncio.wait_for(self.client.get(self.keys.config), min(self.op_timeout, 2.0))
        except (aetcd.ClientError, asyncio.TimeoutError) as exc:
            why = _why(exc)
            if not _refused(exc) and not why.startswith(("TLS", "quorum is lost", "no etcd member")):
                # no answer we could use: no quorum can be confirmed from here
                why = f"quorum is lost ({why})"
            raise UnavailableError(
                f"fabric store (etcd) unavailable: {why}; reads serve the last applied config"
            ) from None

    async def publish_node_state(self, kind: str, value: Mapping | None) -> int:
        """Put (or delete, for None) this node's ``state/<node>/<kind>`` key; returns its revision."""
        client = self.client
        if client is None:
            raise UnavailableError("the fabric store is not running")
        key = self.keys.state(self.node_name, NodeStates.check_kind(kind))
        data = None if value is None else encode_state(value)
        try:
            if data is None:
                resp = await asyncio.wait_for(client.delete(key), self.op_timeout)
            else:
                resp = await asyncio.wait_for(client.put(key, data), self.op_timeout)
        except (aetcd.ClientError, asyncio.TimeoutError) as exc:
            raise UnavailableError(f"fabric store (etcd) did not take the {kind} state: {_why(exc)}") from None
        header = getattr(resp, "header", None)
        return int(getattr(header, "revision", 0) or 0)

    # -- health ----------------------------------------------------------------
    async def _register(self) -> None:
        await self.membership.register(self.client)
        self.keeper.keep(self.membership.lease.id)

    async def _probe_loop(self) -> None:
        """Follow the lease keeper's verdict; register again when the lease was lost."""
        while True:
            await asyncio.sleep(self.probe_interval)
            keeper = self.keeper
            try:
                if self.membership.lease is None or keeper.expired:
                    if self.membership.lease is not None:
                        log.warning("lease of %s expired while etcd was unreachable; registering again", self.node_name)
                    self.membership.lease = None
                    await asyncio.wait_for(self._register(), self.op_timeout)
                    ok = True
                else:
                    ok = bool(keeper.ok)
                    if ok:
                        await asyncio.wait_for(self.membership.beat(self.client, force=self._denied),
                                               self.op_timeout)
                        if self._denied:
                            log.info("etcd accepts this agent's writes again")
                            self._denied = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("fabric probe: %r", exc)
                ok = False if self.membership.lease is None else bool(keeper.ok)
                if _refused(exc):
                    self._refusal(exc)
                    ok = False
                elif not ok:
                    self.sync_error = _why(exc)
            if not ok and keeper is not None and keeper.error and not self._denied:
                self.sync_error = _describe(keeper.error)
            if ok != self._reachable:
                if ok:
                    log.info("fabric store (etcd) reachable again")
                else:
                    log.warning("fabric store (etcd) unusable: %s", self.sync_error or "no answer")
            self._reachable = ok
            if ok:
                self.sync_error = ""
            self._publish_sync()

    def _refusal(self, exc: BaseException) -> None:
        """etcd refused our identity mid-run: stale (reads keep being served) until a write goes through."""
        why = _why(exc)
        if not self._denied or why != self.sync_error:
            log.error("fabric store (etcd): %s; serving the last applied fabric config, stale", why)
        self._denied = True
        self.sync_error = why
        self._publish_sync()

    def _set_watching(self, watching: bool) -> None:
        if watching and self._watch_ready is not None:
            self._watch_ready.set()
        if watching != self._watching:
            self._watching = watching
            self._publish_sync()

    def _publish_sync(self) -> None:
        state = "in-sync" if self._reachable and self._watching and not self._denied else "stale"
        if state != self.sync_state:
            self.sync_state = state
            log.info("fabric %s sync-state %s", self.keys.fabric, state)
        if self._events is not None:
            self._events.fabric_sync(state)

    # -- membership (FabricMembership) -------------------------------------------
    def members(self) -> list[MemberInfo]:
        return self.membership.members()

    def online_names(self) -> list[str]:
        return self.membership.online_names()

    def offline_for(self, name: str) -> float | None:
        return self.membership.offline_for(name)

    @contextlib.asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[bool]:
        """A fabric-wide lock: a key created under this node's membership lease (exactly one creation wins).

        Yields False without waiting when another node holds it, when this node
        has no lease or when etcd does not answer.  Released on exit; a holder
        that dies releases it with its lease.
        """
        client, lease = self.client, self.membership.lease
        if client is None or lease is None or self.sync_state != "in-sync":
            yield False
            return
        key = self.keys.lock(name)
        me = self.node_name.encode()
        try:
            won, _ = await client.transaction(
                compare=[client.transactions.create(key) == 0],
                success=[client.transactions.put(key, me, lease=lease)],
                failure=[],
            )
        except aetcd.ClientError as exc:
            log.debug("fabric lock %s: %s", name, exc)
            won = False
        if not won:
            yield False
            return
        try:
            yield True
        finally:
            try:
                await client.transaction(
                    compare=[client.transactions.value(key) == me],
                    success=[client.transactions.delete(key)],
                    failure=[],
                )
            except aetcd.ClientError:
                pass  # the lock goes with our lease

    def _members_changed(self) -> None:
        if self._events is not None:
            self._events.fabric_members(self.membership.members())

    # -- misc ----------------------------------------------------------------
    @property
    def tree(self) -> dict:
        """The last applied fabric-scope tree (do not mutate)."""
        return self._tree

    def _save_cache(self) -> None:
        if self._cache is None:
            return
        snapshot = {"fabric": self.keys.fabric, "revision": self.revision, "exists": self._exists,
                    "config": self._tree, "members": self.membership.snapshot()}
        try:
            self._cache.save(snapshot)
        except RuntimeError:  # no running loop (interpreter shutting down)
            pass


def _parse(raw: bytes) -> tuple[dict, dict]:
    data = _json(raw)
    tree = data.get("config")
    meta = data.get("meta")
    return (tree if isinstance(tree, dict) else {}), (meta if isinstance(meta, dict) else {})


def _json(raw: bytes) -> dict:
    try:
        data = json.loads(raw)
    except ValueError:
        log.error("ignoring a non-JSON value in the fabric prefix")
        return {}
    return data if isinstance(data, dict) else {}


def _why(exc: BaseException) -> str:
    """What a failed etcd call means, in the words an operator acts on."""
    if isinstance(exc, (asyncio.TimeoutError, aetcd.ConnectionTimeoutError)):
        return "quorum is lost (no etcd member answered in time)"
    return _describe(str(exc) or type(exc).__name__)


def _describe(details: str) -> str:
    text = details.lower()
    if "permission denied" in text:
        return f"etcd refused this agent's identity: {details} (the etcd user needs read/write on the fabric prefix)"
    if "refused user" in text or "authentication failed" in text or "invalid auth token" in text \
            or "user name is empty" in text:
        return f"etcd authentication failed: {details}"
    if any(word in text for word in ("handshake", "ssl", "certificate", "tls", "hostname verification")):
        return f"TLS with etcd failed (certificate not trusted, expired or for another name): {details}"
    if "no leader" in text or "timed out" in text or "deadline" in text or "leader changed" in text:
        return f"quorum is lost ({details})"
    if any(word in text for word in ("failed to connect", "connection refused", "unavailable", "no route",
                                     "stream removed", "socket closed", "connection reset", "broken pipe")):
        return f"no etcd member reachable, quorum is lost from here ({details})"
    return details


def _refused(exc: BaseException) -> bool:
    """etcd refused the caller's identity (auth or rights), as opposed to not answering."""
    text = str(exc).lower()
    return isinstance(exc, aetcd.exceptions.UnauthenticatedError) or "permission denied" in text or "refused user" in text
