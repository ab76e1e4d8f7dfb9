"""Keeping the membership lease alive from a thread of its own.

The agent's event loop can stall for seconds (a producer importing a big
client library at start, a long validation); a keepalive sent from that
loop would then miss the lease TTL and the whole fabric would see the
node flap offline.  This thread refreshes the lease over its own
(synchronous) gRPC channels, so the lease lives exactly as long as the
process does, and reports what it saw: whether the last refresh was
answered, and whether etcd said the lease no longer exists.

A failed round turns ``ok`` False only when the last answer is older than
``stale_after`` (two refresh intervals, at least the timeout): a leader
election after a member died answers "no leader" for a second or two, and
treating that as a lost quorum made a write sent meanwhile fail at once
instead of waiting for the new leader.

One channel per member, not one round-robin channel: a member cut off by
the network (link down, no RST) keeps its TCP connection "established"
until keepalive pings time out, and a round-robin refresh landing on it
would wait the whole timeout while the TTL runs out; the partition tests
saw majority-side agents turn stale that way.  The keeper sticks to the
member that answered last and moves to the next one after a short
per-member timeout, so one dead member costs at most one short wait.
"""
from __future__ import annotations

import logging
import threading
import time

import grpc
from aetcd import rpc

from .etcd_client import REQUIRE_LEADER, channel_options, grpc_target
from .security import EtcdSecurity, TokenAuth, is_invalid_token

log = logging.getLogger("kubefabric.fabric.lease")


class LeaseKeeper(threading.Thread):
    """Refreshes one lease every `interval` seconds until stopped."""

    def __init__(self, endpoints: list[str], interval: float, timeout: float,
                 security: EtcdSecurity | None = None) -> None:
        super().__init__(name="fabric-lease", daemon=True)
        self._targets = [grpc_target([e]) for e in endpoints]
        self._security = security or EtcdSecurity()
        self._options = list(channel_options(endpoints, self._security).items())
        self._auth = TokenAuth(self._security.user, self._security.password) if self._security.user else None
        self.interval = interval
        self.timeout = timeout
        # per member: short enough that a silent member leaves time for the next within the TTL
        self.member_timeout = timeout if len(self._targets) == 1 else max(1.0, timeout / len(self._targets))
        # one failed round is not a lost quorum: a leader election (a member killed) answers "no leader"
        # for a second or two; only failing for this long since the last answer is
        self.stale_after = max(2 * interval, timeout)
        self._current = 0
        self._lease_id = 0
        self._halt = threading.Event()
        self._wake = threading.Event()
        #: last refresh answered (None: nothing tried yet)
        self.ok: bool | None = None
        #: etcd answered that the current lease is gone (TTL <= 0)
        self.expired = False
        self.last_ok = 0.0
        #: etcd's (or gRPC's) words for the last failed refresh ("" after a good one)
        self.error = ""

    def keep(self, lease_id: int) -> None:
        """Refresh this lease from now on (a new registration replaces the old one)."""
        self._lease_id = lease_id
        self.expired = False
        self.last_ok = time.monotonic()
        self._wake.set()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()

    def _channel(self, target: str) -> grpc.Channel:
        if self._security.tls:
            return grpc.secure_channel(target, self._security.credentials(), options=self._options)
        return grpc.insecure_channel(target, options=self._options)

    def run(self) -> None:
        channels = [self._channel(t) for t in self._targets]
        stubs = [rpc.LeaseStub(ch) for ch in channels]
        try:
            while not self._halt.is_set():
                lease_id = self._lease_id
                if lease_id:
                    self._refresh(channels, stubs, lease_id)
                self._wake.wait(self.interval)
                self._wake.clear()
        finally:
            for channel in channels:
                channel.close()

    def _metadata(self, channel) -> tuple:
        if self._auth is None:
            return REQUIRE_LEADER
        token = self._auth.token or self._auth.authenticate_sync(channel, self.member_timeout)
        return REQUIRE_LEADER + (("token", token),)

    def _refresh(self, channels, stubs, lease_id: int) -> None:
        count = len(stubs)
        errors = []
        for step in range(count):
            index = (self._current + step) % count
            for _attempt in range(2):  # the second only after etcd refused an expired token
                try:
                    reply = self._keepalive(channels[index], stubs[index], lease_id)
                except grpc.RpcError as exc:
                    code = exc.code() if hasattr(exc, "code") else None
                    details = exc.details() if hasattr(exc, "details") else str(exc)
                    if is_invalid_token(code, details) and self._auth is not None and _attempt == 0:
                        self._auth.drop(self._auth.token)
                        continue
                    errors.append(details or str(code))
                    break
                self._current = index
                if reply is not None and lease_id == self._lease_id:
                    if reply.TTL <= 0:
                        self.expired = True
                    else:
                        self.last_ok = time.monotonic()
                    self.ok = True
                    self.error = ""
                return
            if self._halt.is_set():
                return
        if self.ok is not False:
            log.debug("lease refresh failed on every member: %s", "; ".join(errors))
        self.error = errors[-1] if errors else "no answer"
        if self.ok is None or time.monotonic() - self.last_ok >= self.stale_after:
            self.ok = False

    def _keepalive(self, channel, stub, lease_id: int):
        replies = stub.LeaseKeepAlive(iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]), timeout=self.member_timeout,
                                      metadata=self._metadata(channel))
        try:
            return next(replies, None)
        finally:
            replies.cancel()
