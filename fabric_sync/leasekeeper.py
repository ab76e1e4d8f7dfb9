"""Keeping the membership lease alive from a thread of its own.

The agent's event loop can stall for seconds (a producer importing a big
client library at start, a long validation); a keepalive sent from that
loop would then miss the lease TTL and the whole fabric would see the
node flap offline.  This thread refreshes the lease over its own
(synchronous) gRPC channel, so the lease lives exactly as long as the
process does, and reports what it saw: whether the last refresh was
answered, and whether etcd said the lease no longer exists.
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
        self._target = grpc_target(endpoints)
        self._security = security or EtcdSecurity()
        self._options = list(channel_options(endpoints, self._security).items())
        self._auth = TokenAuth(self._security.user, self._security.password) if self._security.user else None
        #: etcd's (or gRPC's) words for the last failed refresh ("" after a good one)
        self.error = ""
        self.interval = interval
        self.timeout = timeout
        self._lease_id = 0
        self._halt = threading.Event()
        self._wake = threading.Event()
        #: last refresh answered (None: nothing tried yet)
        self.ok: bool | None = None
        #: etcd answered that the current lease is gone (TTL <= 0)
        self.expired = False
        self.last_ok = 0.0

    def keep(self, lease_id: int) -> None:
        """Refresh this lease from now on (a new registration replaces the old one)."""
        self._lease_id = lease_id
        self.expired = False
        self.last_ok = time.monotonic()
        self._wake.set()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()

    def run(self) -> None:
        if self._security.tls:
            channel = grpc.secure_channel(self._target, self._security.credentials(), options=self._options)
        else:
            channel = grpc.insecure_channel(self._target, options=self._options)
        stub = rpc.LeaseStub(channel)
        try:
            while not self._halt.is_set():
                lease_id = self._lease_id
                if lease_id:
                    self._refresh(channel, stub, lease_id)
                self._wake.wait(self.interval)
                self._wake.clear()
        finally:
            channel.close()

    def _metadata(self, channel) -> tuple:
        if self._auth is None:
            return REQUIRE_LEADER
        token = self._auth.token or self._auth.authenticate_sync(channel, self.timeout)
        return REQUIRE_LEADER + (("token", token),)

    def _refresh(self, channel, stub, lease_id: int) -> None:
        for attempt in range(2):  # a member that just died fails at once: the next try goes elsewhere
            try:
                replies = stub.LeaseKeepAlive(iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]), timeout=self.timeout,
                                              metadata=self._metadata(channel))
                try:
                    reply = next(replies, None)
                finally:
                    replies.cancel()
                if reply is not None and lease_id == self._lease_id:
                    if reply.TTL <= 0:
                        self.expired = True
                    else:
                        self.last_ok = time.monotonic()
                    self.ok = True
                    self.error = ""
                return
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                details = exc.details() if hasattr(exc, "details") else str(exc)
                if is_invalid_token(code, details) and self._auth is not None and attempt == 0:
                    self._auth.drop(self._auth.token)
                    continue
                if code == grpc.StatusCode.UNAVAILABLE and attempt == 0 and not self._halt.is_set():
                    continue
                if self.ok is not False:
                    log.debug("lease refresh failed: %s %s", code, details)
                self.error = details or str(code)
                self.ok = False
                return
