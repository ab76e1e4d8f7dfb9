"""The three NETCONF datastores over the one agent datastore.

- running is the agent's config: every change goes through
  `Datastore.propose` (validated, replicated, applied) so NETCONF, gNMI
  and the CLI share one write path;
- candidate is one tree shared by all NETCONF sessions (RFC 6241 8.3);
  while nobody has changed it, it *is* running;
- startup is a snapshot under the data dir, written by copy-config.

Locks, the confirmed commit (RFC 6241 8.4, :confirmed-commit:1.1) and its
automatic rollback live here too.
"""
from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass, field
from typing import Callable

from core.datastore import Datastore
from core.errors import ConfigError
from core.datastore.merge import merge3
from core.persist import read_json, write_json_atomic

from .rpcerror import RpcError, from_config_error

log = logging.getLogger("kubefabric.netconf")

RUNNING, CANDIDATE, STARTUP = "running", "candidate", "startup"
NAMES = (RUNNING, CANDIDATE, STARTUP)
FACE = "netconf"


@dataclass
class PendingCommit:
    """A confirmed commit waiting for its confirming commit."""

    session_id: int
    rollback: dict
    persist: str | None
    #: running as this commit left it: the rollback undoes only base->committed
    committed: dict = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


class Datastores:
    """running/candidate/startup, their locks and the confirmed-commit state."""

    def __init__(self, ds: Datastore) -> None:
        self.ds = ds
        self.locks: dict[str, int] = {}
        self.lock_times: dict[str, str] = {}
        self._candidate: dict | None = None
        #: running as it was when candidate was first changed (a commit must not undo later writes)
        self._candidate_base: dict | None = None
        self.pending: PendingCommit | None = None
        self._startup_file = ds.data_dir / "netconf-startup.json"
        self._startup: dict = {}
        #: (user, session-id) of the NETCONF write being applied, for netconf-config-change
        self.writer: tuple[str | None, int | None] = (None, None)
        #: called with (event name, details) on commits and rollbacks (for notifications)
        self.on_event: Callable[[str, dict], None] | None = None
        self._tasks: set[asyncio.Task] = set()  # rollbacks in flight (a task nobody holds may vanish)

    def load(self) -> None:
        """Read startup (first run: a snapshot of running)."""
        stored = read_json(self._startup_file, None)
        if stored is None:
            stored = copy.deepcopy(self.ds.config.raw)
            write_json_atomic(self._startup_file, stored)
        self._startup = stored

    async def close(self) -> None:
        """Stop the confirmed-commit timer (the agent is stopping: the pending commit is rolled back)."""
        if self.pending is not None:
            await self._rollback("agent shutdown")

    # -- reading -------------------------------------------------------------------
    def tree(self, name: str) -> dict:
        """A private copy of a datastore's config (no defaults)."""
        if name == RUNNING:
            return copy.deepcopy(self.ds.config.raw)
        if name == CANDIDATE:
            return copy.deepcopy(self._candidate if self._candidate is not None else self.ds.config.raw)
        if name == STARTUP:
            return copy.deepcopy(self._startup)
        raise RpcError("invalid-value", f"unknown datastore {name!r}", type="protocol")

    @property
    def candidate_dirty(self) -> bool:
        """Whether candidate holds changes not yet committed."""
        return self._candidate is not None and self._candidate != self.ds.config.raw

    def with_defaults(self, name: str, tree: dict) -> dict:
        """`tree` with every default filled in (report-all)."""
        if name == RUNNING and tree == self.ds.config.raw:
            return copy.deepcopy(self.ds.config.full)
        try:
            return self.ds.config.validate(tree)
        except ConfigError:
            return tree

    # -- locks -----------------------------------------------------------------------
    def lock(self, name: str, session_id: int) -> None:
        holder = self.locks.get(name)
        if holder is not None:
            raise RpcError("lock-denied", f"{name} is locked by session {holder}", type="protocol",
                           info={"session-id": str(holder)})
        if name == CANDIDATE and self.candidate_dirty:
            raise RpcError("lock-denied", "candidate has uncommitted changes; commit or discard-changes first",
                           type="protocol", info={"session-id": "0"})
        if name == RUNNING and self.pending is not None and self.pending.session_id != session_id:
            raise RpcError("lock-denied", "a confirmed commit is pending", type="protocol", info={"session-id": "0"})
        from .monitoring import now_iso
        self.locks[name] = session_id
        self.lock_times[name] = now_iso()

    def unlock(self, name: str, session_id: int) -> None:
        holder = self.locks.get(name)
        if holder != session_id:
            what = "not locked" if holder is None else f"locked by session {holder}"
            raise RpcError("operation-failed", f"{name} is {what}", type="protocol",
                           info={"session-id": str(holder or 0)})
        del self.locks[name]
        self.lock_times.pop(name, None)

    def check_writable(self, name: str, session_id: int) -> None:
        """Refuse a write to a datastore another session has locked."""
        holder = self.locks.get(name)
        if holder is not None and holder != session_id:
            raise RpcError("in-use", f"{name} is locked by session {holder}", type="protocol",
                           info={"session-id": str(holder)})

    async def session_ended(self, session_id: int) -> None:
        """Release a finished session's locks; discard its candidate; roll back its unconfirmed commit."""
        for name in [n for n, s in self.locks.items() if s == session_id]:
            del self.locks[name]
            self.lock_times.pop(name, None)
            if name == CANDIDATE:
                self._candidate = None
        pending = self.pending
        if pending is not None and pending.session_id == session_id and pending.persist is None:
            await self._rollback(f"session {session_id} ended before the confirming commit")

    # -- writing ---------------------------------------------------------------------
    async def write_running(self, edit: Callable[[dict], dict], user: str, session_id: int) -> None:
        """Change running through the one write path; raises RpcError on refusal."""
        self.check_writable(RUNNING, session_id)
        self.writer = (user, session_id)
        try:
            await self.ds.propose(edit, user=user, face=FACE, peer=f"session {session_id}")
        except ConfigError as exc:
            raise from_config_error(exc, self.ds.schema) from None
        finally:
            self.writer = (None, None)

    def validate(self, tree: dict) -> dict:
        """Validate a whole config tree; RpcError when invalid."""
        try:
            return self.ds.config.validate(tree)
        except ConfigError as exc:
            raise from_config_error(exc, self.ds.schema) from None

    def set_candidate(self, tree: dict, session_id: int) -> None:
        self.check_writable(CANDIDATE, session_id)
        if self._candidate is None:
            self._candidate_base = copy.deepcopy(self.ds.config.raw)
        self._candidate = tree

    def discard_changes(self, session_id: int) -> None:
        self.check_writable(CANDIDATE, session_id)
        self._candidate = None

    def set_startup(self, tree: dict, session_id: int) -> None:
        self.check_writable(STARTUP, session_id)
        try:
            write_json_atomic(self._startup_file, tree)
        except OSError as exc:
            raise RpcError("resource-denied", f"cannot write startup: {exc.strerror or exc}") from None
        self._startup = tree

    # -- commit --------------------------------------------------------------------------
    async def commit(
        self, session_id: int, user: str, *, confirmed: bool = False, timeout: int = 600,
        persist: str | None = None, persist_id: str | None = None,
    ) -> None:
        """Copy candidate to running; with `confirmed`, roll back unless confirmed in `timeout` s."""
        pending = self.pending
        if pending is not None:
            self._check_owner(pending, session_id, persist_id)
        elif persist_id is not None:
            raise RpcError("invalid-value", "no confirmed commit is pending for this persist-id",
                           info={"bad-element": "persist-id"})
        self.check_writable(RUNNING, session_id)
        self.check_writable(CANDIDATE, session_id)
        candidate = self._candidate
        candidate_base = self._candidate_base
        rollback = pending.rollback if pending else copy.deepcopy(self.ds.config.raw)
        if candidate is not None:
            def copy_candidate(current: dict) -> dict:
                # Checked on every attempt: when another writer (gNMI, CLI, another node)
                # changed running after the candidate was edited, copying the candidate
                # over it would silently undo an acknowledged change; the client rebases.
                if candidate_base is not None and current != candidate_base:
                    raise ConfigError("operation-failed", "running changed after the candidate was edited; "
                                      "discard-changes and apply the edit again", app_tag="candidate-stale")
                return copy.deepcopy(candidate)

            await self.write_running(copy_candidate, user, session_id)
        self._candidate = None
        if pending is not None and pending.timer is not None:
            pending.timer.cancel()
        if confirmed:
            self.pending = PendingCommit(session_id, rollback, persist, copy.deepcopy(self.ds.config.raw))
            loop = asyncio.get_running_loop()
            self.pending.timer = loop.call_later(timeout, self._on_timeout, self.pending)
            log.info("confirmed commit by %s (session %s): rollback in %ss unless confirmed", user, session_id, timeout)
        else:
            self.pending = None
        self._emit("commit", {"user": user, "session-id": session_id, "confirmed": confirmed})

    async def cancel_commit(self, session_id: int, persist_id: str | None) -> None:
        pending = self.pending
        if pending is None:
            raise RpcError("operation-failed", "no confirmed commit is pending")
        self._check_owner(pending, session_id, persist_id)
        await self._rollback(f"cancel-commit by session {session_id}")

    def _check_owner(self, pending: PendingCommit, session_id: int, persist_id: str | None) -> None:
        if pending.persist is not None:
            if persist_id != pending.persist:
                raise RpcError("invalid-value", "persist-id does not match the pending confirmed commit",
                               info={"bad-element": "persist-id"})
        elif pending.session_id != session_id:
            raise RpcError("in-use", f"a confirmed commit of session {pending.session_id} is pending",
                           type="protocol", info={"session-id": str(pending.session_id)})

    def _on_timeout(self, pending: PendingCommit) -> None:
        if self.pending is pending:
            task = asyncio.ensure_future(self._rollback("confirm-timeout expired"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _rollback(self, why: str) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        self._candidate = None
        saved, committed, schema = pending.rollback, pending.committed, self.ds.schema
        try:
            # undo this commit only: writes made since (other faces, other nodes) stay
            await self.ds.propose(lambda current: merge3(committed, saved, current, schema), user="rollback", face=FACE)
            log.warning("confirmed commit rolled back: %s", why)
        except ConfigError as exc:  # e.g. the fabric store is unavailable
            log.error("confirmed commit rollback failed (%s): %s", why, exc)
        self._emit("rollback", {"reason": why})

    def _emit(self, event: str, details: dict) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event, details)
            except Exception:
                log.exception("netconf event listener failed")
