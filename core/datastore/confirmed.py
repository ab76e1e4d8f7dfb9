"""Confirmed commits: one at a time per agent, rolled back unless confirmed in time.

NETCONF's confirmed commit (RFC 6241 8.4, :confirmed-commit:1.1) and the
gNMI Commit extension (gnmi-commit-confirmed.md) are the same thing: a
config change that is undone unless its confirmation arrives before a
deadline.  Both faces use this one machine, through the datastore
(`ds.confirmed`), so there is at most one pending confirmed commit per
agent, whichever face made it.

What a rollback does: it undoes *that* commit, not the whole config.  The
change from the config before the first confirmed commit (`saved`) to the
config the last confirmed commit left (`committed`) is reversed on top of
the current config by a three-way merge (`merge.merge3`), so a change
another writer made while the commit was pending (another face, another
fabric node) survives; where both touched the same leaf, the rollback puts
back the saved value.

Crash safety (RFC 6241 8.4: "If the device reboots for any reason before
the confirm timeout expires, the server MUST restore the configuration to
its state before the confirmed commit was issued"): a pending commit is
written to `<data-dir>/confirmed-commit.json` *before* its change is
applied and removed when it is confirmed or rolled back; `recover()` at
start-up rolls back whatever the file still holds.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable

from ..errors import ConfigError
from ..persist import read_json, write_json_atomic
from ..ports.state import SYSTEM_SESSION  # the agent's own writes: no lock or NACM stops them
from .merge import merge3

if TYPE_CHECKING:
    from .datastore import Datastore

log = logging.getLogger("kubefabric.datastore")

FILE_NAME = "confirmed-commit.json"


@dataclass
class Pending:
    """A confirmed commit waiting for its confirmation."""

    face: str  # "netconf" or "gnmi"
    owner: str  # who made it, for messages and same-session checks ("NETCONF session 3", "gNMI commit x")
    token: str | None  # the persist-id (NETCONF) or commit id (gNMI) that confirms it from anywhere
    user: str
    saved: dict  # running before the first confirmed commit of this series
    committed: dict | None  # running as the last confirmed commit left it (None while being applied)
    deadline: float  # epoch seconds


class ConfirmedCommits:
    """The agent's one pending confirmed commit, its timer, its file and its rollback."""

    def __init__(self, ds: "Datastore", data_dir: Path) -> None:
        self.ds = ds
        self.path = Path(data_dir) / FILE_NAME
        self.pending: Pending | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        #: called as listener(event, details) after "commit", "confirm" and "rollback"
        self.listeners: list[Callable[[str, dict], None]] = []

    # -- start-up --------------------------------------------------------------------
    async def recover(self) -> bool:
        """Roll back a confirmed commit the last run left unconfirmed; True when one was found."""
        stored = read_json(self.path, None)
        if not isinstance(stored, dict) or not isinstance(stored.get("saved"), dict):
            return False
        committed = stored.get("committed")
        pending = Pending(face=str(stored.get("face") or "netconf"), owner=str(stored.get("owner") or "?"),
                          token=stored.get("token"), user=str(stored.get("user") or "?"), saved=stored["saved"],
                          committed=committed if isinstance(committed, dict) else None,
                          deadline=float(stored.get("deadline") or 0))
        self.pending = pending
        log.warning("a confirmed commit by %s (%s) was not confirmed before the agent stopped: rolling it back",
                    pending.user, pending.owner)
        return await self._rollback("the agent restarted before the confirmation (RFC 6241 8.4)")

    # -- commit, confirm, cancel ---------------------------------------------------------
    async def commit(self, write: Callable[[], Awaitable[object]], *, face: str, owner: str, token: str | None,
                     user: str, timeout: float, proof: str | None = None) -> None:
        """Run `write` (the change, through `ds.propose`) as a confirmed commit rolled back after `timeout` s.

        A pending commit of the same owner (or whose token the caller gives
        as `proof`) is extended: the rollback still returns to the config
        before the first one.  `token` is what confirms the new commit from
        anywhere (None: only its owner can).  Raises ConfigError, and changes
        nothing, when another owner's commit is pending or the write is refused.
        """
        if timeout <= 0:
            raise ConfigError("invalid-value", "the rollback timeout must be positive", app_tag="invalid-timeout")
        previous = self.pending
        if previous is not None and not self.may_act(previous, owner, proof):
            raise ConfigError("in-use", f"a confirmed commit by {previous.owner} (user {previous.user}) is pending; "
                              "it must be confirmed or cancelled first", app_tag="commit-pending")
        saved = previous.saved if previous is not None else copy.deepcopy(self.ds.config.raw)
        pending = Pending(face, owner, token, user, saved, None, time.time() + timeout)
        self._persist(pending)  # first: a crash while the change is applied still rolls it back
        try:
            await write()
        except BaseException:
            if previous is None:
                self._remove_file()
            else:
                self._persist(previous)
            raise
        pending.committed = copy.deepcopy(self.ds.config.raw)
        self._persist(pending)
        self.pending = pending
        self._arm(timeout)
        log.info("confirmed commit by %s (%s): rolled back in %ss unless confirmed", user, owner, timeout)
        self._emit("commit", {"user": user, "owner": owner, "face": face, "timeout": timeout})

    def confirm(self, owner: str, token: str | None) -> Pending:
        """Make the pending commit permanent; ConfigError when none is pending or it is not the caller's."""
        pending = self.require(owner, token)
        self._disarm()
        self.pending = None
        self._remove_file()
        log.info("confirmed commit by %s (%s) confirmed", pending.user, pending.owner)
        self._emit("confirm", {"user": pending.user, "owner": pending.owner, "face": pending.face})
        return pending

    async def cancel(self, owner: str, token: str | None, why: str) -> None:
        """Roll the pending commit back now (cancel-commit, gNMI cancel)."""
        self.require(owner, token)
        await self._rollback(why)

    def set_timeout(self, owner: str, token: str | None, timeout: float) -> None:
        """Restart the pending commit's timer with a new duration (gNMI set_rollback_duration)."""
        pending = self.require(owner, token)
        if timeout <= 0:
            raise ConfigError("invalid-value", "the rollback duration must be positive", app_tag="invalid-timeout")
        pending.deadline = time.time() + timeout
        self._persist(pending)
        self._arm(timeout)

    async def owner_gone(self, owner: str, why: str) -> None:
        """The owner's session ended: roll back its commit unless it can be confirmed by token (persist)."""
        pending = self.pending
        if pending is not None and pending.owner == owner and pending.token is None:
            await self._rollback(why)

    def require(self, owner: str, token: str | None) -> Pending:
        """The pending commit if the caller may act on it, else ConfigError."""
        pending = self.pending
        if pending is None:
            raise ConfigError("operation-failed", "no confirmed commit is pending", app_tag="no-commit-pending")
        if not self.may_act(pending, owner, token):
            if pending.token is not None:
                raise ConfigError("invalid-value", f"the id does not match the pending confirmed commit of "
                                  f"{pending.owner}", app_tag="commit-id-mismatch")
            raise ConfigError("in-use", f"the pending confirmed commit belongs to {pending.owner}",
                              app_tag="commit-pending")
        return pending

    @staticmethod
    def may_act(pending: Pending, owner: str, token: str | None) -> bool:
        """With a token, only the token counts (NETCONF persist-id, gNMI id); without one, the owner."""
        if pending.token is not None:
            return token == pending.token
        return token is None and owner == pending.owner

    @property
    def remaining(self) -> float | None:
        """Seconds until the pending commit is rolled back, or None."""
        return None if self.pending is None else max(0.0, self.pending.deadline - time.time())

    async def close(self) -> None:
        """The agent is stopping: roll the pending commit back now (the file covers a crash instead)."""
        if self.pending is not None:
            await self._rollback("agent shutdown before the confirmation")

    # -- internals -------------------------------------------------------------------------
    def _arm(self, timeout: float) -> None:
        self._disarm()
        pending = self.pending
        self._timer = asyncio.get_running_loop().call_later(timeout, self._expired, pending)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, pending: Pending | None) -> None:
        if pending is not None and self.pending is pending:
            task = asyncio.ensure_future(self._rollback("the confirm timeout expired"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _rollback(self, why: str) -> bool:
        pending = self.pending
        if pending is None:
            return False
        self._disarm()
        self.pending = None
        saved, schema = pending.saved, self.ds.schema
        committed = pending.committed

        def undo(current: dict) -> dict:
            # a crash while the change was being applied left no `committed`: then current is the
            # committed config (the change landed) or the saved one (it did not); both roll back to saved
            return merge3(committed if committed is not None else current, saved, current, schema)

        try:
            await self.ds.propose(undo, user="rollback", face=pending.face, session=SYSTEM_SESSION)
        except ConfigError as exc:  # e.g. the fabric store has no quorum: the file stays, the next start retries
            log.error("confirmed commit rollback failed (%s): %s", why, exc)
            self._emit("rollback-failed", {"reason": why, "owner": pending.owner, "face": pending.face})
            return False
        self._remove_file()
        log.warning("confirmed commit by %s (%s) rolled back: %s", pending.user, pending.owner, why)
        self._emit("rollback", {"reason": why, "owner": pending.owner, "face": pending.face})
        return True

    def _persist(self, pending: Pending) -> None:
        try:
            write_json_atomic(self.path, asdict(pending))
        except OSError as exc:
            raise ConfigError("resource-denied", f"cannot persist the confirmed commit: {exc.strerror or exc}") from None

    def _remove_file(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def _emit(self, event: str, details: dict) -> None:
        for listener in tuple(self.listeners):
            try:
                listener(event, details)
            except Exception:
                log.exception("confirmed-commit listener failed")
