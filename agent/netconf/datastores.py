"""The three NETCONF datastores over the one agent datastore.

- running is the agent's config: every change goes through
  `Datastore.propose` (validated, replicated, applied) so NETCONF, gNMI
  and the CLI share one write path;
- candidate is one tree shared by all NETCONF sessions (RFC 6241 8.3);
  while nobody has changed it, it *is* running;
- startup is a snapshot under the data dir, written by copy-config.

Locks live here; the running lock is also the datastore's
(`ds.lock_running`), so while a NETCONF session holds it gNMI and CLI writes
are refused too.  The confirmed commit (RFC 6241 8.4, :confirmed-commit:1.1)
is the core's `ds.confirmed`, shared with the gNMI Commit extension and
persisted so a restart rolls back an unconfirmed commit.
"""
from __future__ import annotations

import copy
import logging
from typing import Callable

from core.datastore import Datastore
from core.errors import ConfigError
from core.persist import read_json, write_json_atomic
from core.datastore.confirmed import SYSTEM_SESSION
from core.scope import split

from .rpcerror import RpcError, from_config_error

log = logging.getLogger("kubefabric.netconf")

RUNNING, CANDIDATE, STARTUP = "running", "candidate", "startup"
NAMES = (RUNNING, CANDIDATE, STARTUP)
FACE = "netconf"


class Datastores:
    """running/candidate/startup, their locks and the confirmed-commit state."""

    def __init__(self, ds: Datastore) -> None:
        self.ds = ds
        self.locks: dict[str, int] = {}
        self.lock_times: dict[str, str] = {}
        self._candidate: dict | None = None
        #: running as it was when candidate was first changed (a commit must not undo later writes)
        self._candidate_base: dict | None = None
        self._startup_file = ds.data_dir / "netconf-startup.json"
        self._startup: dict = {}
        #: (user, session-id) of the NETCONF write being applied, for netconf-config-change
        self.writer: tuple[str | None, int | None] = (None, None)
        #: called with (event name, details) on commits and rollbacks (for notifications)
        self.on_event: Callable[[str, dict], None] | None = None
        self.confirmed = ds.confirmed
        self.confirmed.listeners.append(self._on_confirmed_event)

    def load(self) -> None:
        """Read startup (first run: a snapshot of running)."""
        stored = read_json(self._startup_file, None)
        if stored is None:
            stored = copy.deepcopy(self.ds.config.raw)
            write_json_atomic(self._startup_file, stored)
        self._startup = stored

    async def load_running_from_startup(self) -> bool:
        """:startup (RFC 6241 8.7): at boot, running is loaded from startup; True when that changed running.

        In a replicated fabric (etcd) the fabric-scope part of running is the
        fabric's, not this node's: a node booting with an old startup must not
        push it to every switch, so only the node-local part is loaded there.
        """
        startup = copy.deepcopy(self._startup)
        replicated = bool(getattr(self.ds.fabric, "replicated", False))

        def load(running: dict) -> dict:
            if not replicated:
                return copy.deepcopy(startup)
            fabric_part, _ = split(running)
            _, local_part = split(startup)
            return {**copy.deepcopy(fabric_part), **copy.deepcopy(local_part)}

        if load(copy.deepcopy(self.ds.config.raw)) == self.ds.config.raw:
            return False
        try:
            await self.ds.propose(load, user="startup", face=FACE, session=SYSTEM_SESSION)
        except ConfigError as exc:
            log.error("running not loaded from startup (%s): %s; keeping the restored config", self._startup_file, exc)
            return False
        log.info("running loaded from startup (%s)", self._startup_file)
        return True

    async def close(self) -> None:
        """The agent is stopping: release the running lock (the pending confirmed commit is the core's)."""
        for name, holder in list(self.locks.items()):
            if name == RUNNING:
                self.ds.unlock_running(_session(holder))

    @property
    def pending(self):
        """The pending confirmed commit (whichever face made it), or None."""
        return self.confirmed.pending

    def _on_confirmed_event(self, event: str, details: dict) -> None:
        if event == "rollback":
            self._candidate = None
        if event in ("commit", "rollback") and details.get("face") == FACE:
            self._emit(event, details)

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
    def lock(self, name: str, session_id: int, user: str = "") -> None:
        holder = self.locks.get(name)
        if holder is not None:
            raise RpcError("lock-denied", f"{name} is locked by session {holder}", type="protocol",
                           info={"session-id": str(holder)})
        if name == CANDIDATE and self.candidate_dirty:
            raise RpcError("lock-denied", "candidate has uncommitted changes; commit or discard-changes first",
                           type="protocol", info={"session-id": "0"})
        pending = self.pending
        if name == RUNNING and pending is not None and pending.owner != owner_of(session_id):
            raise RpcError("lock-denied", f"a confirmed commit by {pending.owner} is pending", type="protocol",
                           info={"session-id": "0"})
        if name == RUNNING:
            try:
                self.ds.lock_running(_session(session_id), f"NETCONF session {session_id}"
                                     + (f" (user {user})" if user else ""))
            except ConfigError as exc:
                raise RpcError("lock-denied", exc.message, type="protocol", info={"session-id": "0"}) from None
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
        if name == RUNNING:
            self.ds.unlock_running(_session(session_id))

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
            if name == RUNNING:
                self.ds.unlock_running(_session(session_id))
        await self.confirmed.owner_gone(owner_of(session_id), f"session {session_id} ended before the confirming commit")

    # -- writing ---------------------------------------------------------------------
    async def write_running(self, edit: Callable[[dict], dict], user: str, session_id: int) -> None:
        """Change running through the one write path; raises RpcError on refusal."""
        self.check_writable(RUNNING, session_id)
        self.writer = (user, session_id)
        try:
            await self.ds.propose(edit, user=user, face=FACE, peer=f"session {session_id}", session=_session(session_id))
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
        """Copy candidate to running; with `confirmed`, roll back unless confirmed in `timeout` s.

        The confirmed commit is the core's (`ds.confirmed`): one per agent,
        whichever face made it, written to disk before it is applied.
        """
        owner = owner_of(session_id)
        pending = self.pending
        if pending is not None:
            self._check_owner(owner, persist_id)
        elif persist_id is not None:
            raise RpcError("invalid-value", "no confirmed commit is pending for this persist-id",
                           info={"bad-element": "persist-id"})
        self.check_writable(RUNNING, session_id)
        self.check_writable(CANDIDATE, session_id)
        candidate = self._candidate
        candidate_base = self._candidate_base

        async def write() -> None:
            if candidate is None:
                return

            def copy_candidate(current: dict) -> dict:
                # Checked on every attempt: when another writer (gNMI, CLI, another node)
                # changed running after the candidate was edited, copying the candidate
                # over it would silently undo an acknowledged change; the client rebases.
                if candidate_base is not None and current != candidate_base:
                    raise ConfigError("operation-failed", "running changed after the candidate was edited; "
                                      "discard-changes and apply the edit again", app_tag="candidate-stale")
                return copy.deepcopy(candidate)

            await self.write_running(copy_candidate, user, session_id)

        if confirmed:
            # a follow-up confirmed commit keeps the token it was given first (RFC 6241 8.4.5.1)
            token = persist if persist is not None else (pending.token if pending is not None else None)
            try:
                await self.confirmed.commit(write, face=FACE, owner=owner if pending is None else pending.owner,
                                            token=token, user=user, timeout=timeout, proof=persist_id)
            except ConfigError as exc:
                raise from_config_error(exc, self.ds.schema) from None
        else:
            await write()
            if pending is not None:
                self.confirmed.confirm(pending.owner if persist_id is None else owner, persist_id)
        self._candidate = None
        if not confirmed:
            self._emit("commit", {"user": user, "session-id": session_id, "confirmed": False})

    async def cancel_commit(self, session_id: int, persist_id: str | None) -> None:
        if self.pending is None:
            raise RpcError("operation-failed", "no confirmed commit is pending")
        self._check_owner(owner_of(session_id), persist_id)
        try:
            await self.confirmed.cancel(owner_of(session_id), persist_id, f"cancel-commit by session {session_id}")
        except ConfigError as exc:
            raise from_config_error(exc, self.ds.schema) from None

    def _check_owner(self, owner: str, persist_id: str | None) -> None:
        pending = self.pending
        if pending is None:
            return
        if pending.token is not None:
            if persist_id != pending.token:
                raise RpcError("invalid-value", "persist-id does not match the pending confirmed commit",
                               info={"bad-element": "persist-id"})
        elif pending.owner != owner or persist_id is not None:
            raise RpcError("in-use", f"a confirmed commit of {pending.owner} is pending",
                           type="protocol", info={"session-id": pending.owner.rpartition(" ")[2]
                                                  if pending.owner.startswith("NETCONF") else "0"})

    def _emit(self, event: str, details: dict) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event, details)
            except Exception:
                log.exception("netconf event listener failed")


def owner_of(session_id: int) -> str:
    """A NETCONF session as the owner of a confirmed commit."""
    return f"NETCONF session {session_id}"


def _session(session_id: int) -> str:
    """A NETCONF session's identity for the datastore's running lock."""
    return f"netconf:{session_id}"
