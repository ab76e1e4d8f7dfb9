"""The one datastore every producer writes and every face reads.

- `config`: running config, validated against YANG as a whole on each
  change; the only way to change it is `propose()`, which validates,
  replicates through the fabric store and applies, or changes nothing.
- `state`: operational nodes written by producers.
- `feed`: the single change feed (config and state alike).

- `history`: the time machine's queries (`core.history.TimeMachine`).

Faces (gNMI, NETCONF, CLI) read nodes with `read()` and subscribe to
`feed`; producers never know which faces exist.  The datastore is the
fabric store's `FabricEvents`: it applies the trees the store delivers and
writes `/fabric/node` and `/fabric/sync-state` from the store's reports.
It is also the producers' `NodeStateChannel`: it publishes this node's
per-node state through the store and hands the other nodes' states to the
producers that follow their kind (which turn them into rows).
"""
from __future__ import annotations

import asyncio
import copy
import logging
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .. import schema_paths
from ..changefeed import Change, ChangeFeed
from ..errors import ConfigError, ConflictError
from ..history.timemachine import TimeMachine
from ..persist import read_json, write_json_atomic
from ..ports.fabric import FabricStore, MemberInfo, NodeStateListener
from ..ports.state import ConfigListener, EditFn, Unsubscribe, WriteAuthorizer
from ..schema import Schema, default_schema
from ..tasks import wait_event
from ..scope import fill_owner, split
from .config import ConfigStore, diff_flat
from .confirmed import SYSTEM_SESSION, ConfirmedCommits
from .state import StateStore
from .tree import flatten

__all__ = ["Datastore"]

log = logging.getLogger("kubefabric.datastore")
audit = logging.getLogger("kubefabric.audit")

FABRIC_PATH = schema_paths.FABRIC
NODE_PATH = schema_paths.FABRIC_NODE


class Datastore:
    """Config, state and the change feed of one agent."""

    def __init__(self, node_name: str, data_dir: Path, fabric: FabricStore, schema: Schema | None = None) -> None:
        self.node_name = node_name
        self.data_dir = Path(data_dir)
        self.schema = schema or default_schema()
        self.feed = ChangeFeed()
        self.config = ConfigStore(self.schema)
        self.state = StateStore(self.schema, self.feed)
        self.fabric = fabric
        #: time-machine queries (answers "unavailable" until a history store is attached)
        self.history = TimeMachine()
        self._local_file = self.data_dir / "local-config.json"
        self._local: dict = {}
        self._applied_revision = -1
        self._write_lock = asyncio.Lock()
        self._revision_event = asyncio.Event()
        self._config_listeners: list[ConfigListener] = []
        self._tasks: set[asyncio.Task] = set()
        self.commits = 0
        #: the one pending confirmed commit (NETCONF confirmed-commit and the gNMI Commit extension)
        self.confirmed = ConfirmedCommits(self, self.data_dir)
        #: (session identity, who for messages) of the NETCONF session holding the running lock, or None
        self.running_lock: tuple[str, str] | None = None
        #: called with (user, face, changes) before a write is applied; raises ConfigError to refuse it (NACM)
        self._write_authorizer: WriteAuthorizer | None = None
        self._node_states: dict[str, dict[str, tuple[int, Mapping]]] = {}  # kind -> node -> (revision, value)
        self._node_state_listeners: dict[str, list[NodeStateListener]] = {}

    # -- life cycle ----------------------------------------------------------
    async def start(self) -> None:
        """Restore local config and join the fabric store (which reports back through FabricEvents)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        local = read_json(self._local_file, {})
        self._local = local if isinstance(local, dict) else {}
        self.fabric_sync(self.fabric.sync_state)
        await self.fabric.start(self)
        self.fabric_members(self.fabric.members())
        await self.confirmed.recover()  # RFC 6241 8.4: an unconfirmed commit does not survive a restart

    # -- running lock and write authorization ----------------------------------
    def lock_running(self, session: str, holder: str) -> None:
        """Hold the running config for one session (NETCONF <lock>): every other writer is refused.

        `session` is the identity writers pass to `propose(session=...)`;
        `holder` names it in the refusal ("NETCONF session 3 (user admin)").
        """
        if self.running_lock is not None and self.running_lock[0] != session:
            raise ConfigError("lock-denied", f"running is locked by {self.running_lock[1]}")
        self.running_lock = (session, holder)

    def unlock_running(self, session: str) -> None:
        """Release the running lock if `session` holds it."""
        if self.running_lock is not None and self.running_lock[0] == session:
            self.running_lock = None

    def authorize_writes(self, authorizer: WriteAuthorizer | None) -> None:
        """Check every config write with `authorizer(user, face, changes, before)` (NACM); None: no checks."""
        self._write_authorizer = authorizer

    def _check_lock(self, session: str | None) -> None:
        lock = self.running_lock
        if lock is not None and session != lock[0] and session != SYSTEM_SESSION:
            raise ConfigError("in-use", f"the running configuration is locked by {lock[1]}; "
                              "nothing was changed", app_tag="locked")

    async def stop(self) -> None:
        """Roll back an unconfirmed commit (the agent stops cleanly), then leave the fabric store."""
        await self.confirmed.close()
        await self.fabric.stop()

    # -- config writes -------------------------------------------------------
    async def propose(self, edit: EditFn, *, user: str, face: str, peer: str = "", session: str | None = None) -> int:
        """Apply `edit` to the running config: validated, replicated, applied.

        `edit` receives a private copy of the running config (RFC 7951) and
        returns the candidate.  It may run more than once: when another node
        wrote first, it is re-run on the newer config and validated again,
        so fabric caps hold across racing writers.  Raises ConfigError (or
        UnavailableError) and changes nothing on refusal.  Returns the
        fabric revision after the commit.  Every applied change is written
        to the "kubefabric.audit" logger: who (`user`), through which face
        (and from which `peer` address when the face knows it), and which
        nodes and leaves changed (leaf names and list keys, never leaf values).

        `session` identifies the writer for the running lock: while a NETCONF
        session holds it (`lock_running`), a write from any other session,
        face or node-local writer is refused with error-tag in-use naming
        the holder.  The write authorizer (NACM) sees every change first.
        """
        async with self._write_lock:
            for _attempt in range(20):
                self._check_lock(session)
                base_revision = self._applied_revision
                base = copy.deepcopy(self.config.raw)
                candidate = edit(copy.deepcopy(base))
                fill_owner(candidate, base, self.node_name)
                full = self.config.validate(candidate)
                if self._write_authorizer is not None and session != SYSTEM_SESSION:
                    before = flatten(base, self.schema)
                    self._write_authorizer(user, face, diff_flat(before, flatten(candidate, self.schema), 0), before)
                fabric_new, local_new = split(candidate)
                fabric_old, local_old = split(base)
                old_flat = self.config.flat
                if local_new != local_old:
                    self._persist_local(local_new)
                    self._local = local_new  # a watch delivery during commit must carry it
                revision = base_revision
                if fabric_new != fabric_old:
                    try:
                        revision = await self.fabric.commit(base_revision, fabric_new, {"node": self.node_name, "user": user})
                    except BaseException as exc:  # refused, raced, or the caller went away (cancelled)
                        if local_new != local_old:
                            self._persist_local(local_old)
                            self._local = local_old
                        if not isinstance(exc, ConflictError):
                            raise
                        await self._wait_newer(base_revision)
                        continue
                if revision != base_revision and self._applied_revision >= revision:
                    # The watch already applied our revision, or a newer one built on
                    # it: applying our candidate now would roll that newer write back.
                    changes = diff_flat(old_flat, self.config.flat, time.time_ns())
                else:
                    if revision != base_revision:
                        self._applied_revision = revision
                    changes = self._apply(candidate, full)
                self.commits += 1
                self._audit(user, face, peer, revision, changes, old_flat)
                return revision
            raise ConfigError("in-use", "the fabric config is changing too fast; retry", app_tag="conflict")

    async def _wait_newer(self, revision: int, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        while self._applied_revision <= revision and time.monotonic() < deadline:
            self._revision_event.clear()
            if not await wait_event(self._revision_event, deadline - time.monotonic()):
                break

    def _persist_local(self, local: dict) -> None:
        try:
            write_json_atomic(self._local_file, local)
        except OSError as exc:
            raise ConfigError("resource-denied", f"cannot persist config: {exc.strerror or exc}") from None

    # -- FabricEvents: what the fabric store reports ------------------------
    def fabric_config(self, tree: dict, revision: int) -> None:
        """The fabric store delivered a tree (initial load or another node's write)."""
        if revision <= self._applied_revision:
            return
        candidate = {**tree, **self._local}
        try:
            full = self.config.validate(candidate)
        except ConfigError as exc:  # should not happen: writers validate
            log.error("ignoring invalid fabric config at revision %s: %s", revision, exc)
            return
        self._applied_revision = revision
        self._apply(candidate, full)
        self._revision_event.set()

    def _audit(self, user: str, face: str, peer: str, revision: int, changes: list[Change], old_flat: dict) -> None:
        entries = [_audit_entry(self.schema, ch, old_flat) for ch in changes]
        where = f" from {peer}" if peer else ""
        text = "; ".join(f"{e['op']} {e['path']}" + (f" ({', '.join(e['leaves'])})" if e["leaves"] else "")
                         for e in entries) or "no change"
        audit.info("config change by %s via %s%s: %s", user, face, where, text, extra={"audit": {
            "user": user, "face": face, "peer": peer, "node": self.node_name, "revision": revision,
            "changes": entries}})

    def _apply(self, candidate: dict, full: dict) -> list[Change]:
        changes = self.config.replace(candidate, full)
        self.feed.publish(changes)
        for listener in tuple(self._config_listeners):
            try:
                self._keep(listener(self.config.full))
            except Exception:
                log.exception("config listener failed")
        return changes

    def fabric_members(self, members: Sequence[MemberInfo]) -> None:
        """The store's member table -> /fabric/node rows (state, address, role, last-seen)."""
        rows = {}
        for m in members:
            leaves = {"state": m.state}
            if m.address:
                leaves["address"] = m.address
            if m.role:
                leaves["role"] = m.role
            if m.last_seen:
                leaves["last-seen"] = m.last_seen
            rows[(m.name,)] = leaves
        self.state.replace_where(NODE_PATH, rows)

    def fabric_sync(self, state: str) -> None:
        """The store's sync state -> /fabric/sync-state ("stale": reads serve the last applied config)."""
        self.state.merge(FABRIC_PATH, (), {"sync-state": state})

    def fabric_node_state(self, node: str, kind: str, value: Mapping | None, revision: int) -> None:
        """Another node's per-node state changed: keep the newest, tell the producers following ``kind``."""
        if node == self.node_name:
            return  # our own (from an earlier run): the producer publishes afresh
        states = self._node_states.setdefault(kind, {})
        held = states.get(node)
        if held is not None and held[0] > revision:
            return
        if value is None:
            if held is None:
                return
            del states[node]
        else:
            states[node] = (revision, value)
        for listener in tuple(self._node_state_listeners.get(kind, ())):
            try:
                listener(node, value)
            except Exception:
                log.exception("node-state listener for %s failed", kind)

    # -- per-node state (NodeStateChannel) -------------------------------------
    async def publish_node_state(self, kind: str, value: Mapping | None) -> int:
        """This node's state of ``kind``, through the fabric store (raises UnavailableError when it cannot)."""
        return await self.fabric.publish_node_state(kind, value)

    def node_states(self, kind: str) -> dict[str, Mapping]:
        """The other nodes' current states of ``kind``."""
        return {node: value for node, (_rev, value) in self._node_states.get(kind, {}).items()}

    def on_node_state(self, kind: str, listener: NodeStateListener) -> Unsubscribe:
        """Call ``listener(node, value)`` on every change of another node's ``kind`` state."""
        listeners = self._node_state_listeners.setdefault(kind, [])
        listeners.append(listener)

        def unsubscribe() -> None:
            try:
                listeners.remove(listener)
            except ValueError:
                pass

        return unsubscribe

    # -- following config ----------------------------------------------------
    def on_config(self, listener: ConfigListener) -> Unsubscribe:
        """Call `listener(running_with_defaults)` now and after every applied change, until unsubscribed."""
        self._config_listeners.append(listener)
        self._keep(listener(self.config.full))

        def unsubscribe() -> None:
            try:
                self._config_listeners.remove(listener)
            except ValueError:
                pass

        return unsubscribe

    def _keep(self, result: Any) -> None:
        """Run a coroutine listener's result as a task we hold (an unheld task may vanish)."""
        if asyncio.iscoroutine(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- reading -------------------------------------------------------------
    def read(self, path: str) -> Iterator[tuple[tuple, dict, int]]:
        """(key, leaves, timestamp) of every node at a schema path, config and state merged."""
        conf = self.config.flat.get(path)
        state = self.state.entries(path)
        if not conf:
            times = self.state.times_of(path)
            for key, values in state.items():
                yield key, values, times.get(key, 0)
            return
        ctimes = self.config.times.get(path, {})
        for key, values in conf.items():
            extra = state.get(key)
            if extra:
                yield key, {**values, **extra}, max(ctimes.get(key, 0), self.state.timestamp(path, key))
            else:
                yield key, values, ctimes.get(key, 0)
        for key, values in state.items():
            if key not in conf:
                yield key, values, self.state.timestamp(path, key)

    def read_node(self, path: str, key: tuple = ()) -> dict | None:
        """One node's merged leaves, or None."""
        conf = self.config.flat.get(path, {}).get(key)
        state = self.state.get(path, key)
        if conf is None:
            return state
        return {**conf, **state} if state else conf

    @property
    def revision(self) -> int:
        """Fabric revision of the applied config."""
        return self._applied_revision


def _audit_entry(schema: Schema, change: Change, old_flat: dict) -> dict:
    """One changed node for the audit log: instance path, create/update/delete and leaf names (never values)."""
    path = _instance_path(schema, change.path, change.key)
    if change.values is None:
        return {"path": path, "op": "delete", "leaves": []}
    op = "update" if change.key in old_flat.get(change.path, {}) else "create"
    return {"path": path, "op": op, "leaves": sorted(set(change.values) | set(change.removed))}


def _instance_path(schema: Schema, path: str, key: tuple) -> str:
    """`/m:a/b[k=v]/c[n=w]` from a schema path and its key tuple."""
    out, walked, keys = [], "", list(key)
    for segment in path.strip("/").split("/"):
        walked += "/" + segment
        info = schema.nodes.get(walked)
        predicates = ""
        for name in (info.own_keys if info is not None else ()):
            if keys:
                predicates += f"[{name}={keys.pop(0)}]"
        out.append(segment + predicates)
    return "/" + "/".join(out)
