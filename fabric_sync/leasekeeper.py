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

from .etcd_client import CHANNEL_OPTIONS, REQUIRE_LEADER, grpc_target

log = logging.getLogger("kubefabric.fabric.lease")


class LeaseKeeper(threading.Thread):
    """Refreshes one lease every `interval` seconds until stopped."""

    def __init__(self, endpoints: list[str], interval: float, timeout: float) -> None:
        super().__init__(name="fabric-lease", daemon=True)
        self._target = grpc_target(endpoints)
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
        channel = grpc.insecure_channel(self._target, options=list(CHANNEL_OPTIONS.items()))
        stub = rpc.LeaseStub(channel)
        try:
            while not self._halt.is_set():
                lease_id = self._lease_id
                if lease_id:
                    self._refresh(stub, lease_id)
                self._wake.wait(self.interval)
                self._wake.clear()
        finally:
            channel.close()

    def _refresh(self, stub, lease_id: int) -> None:
        for attempt in range(2):  # a member that just died fails at once: the next try goes elsewhere
            try:
                replies = stub.LeaseKeepAlive(iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]), timeout=self.timeout,
                                              metadata=REQUIRE_LEADER)
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
                return
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                if code == grpc.StatusCode.UNAVAILABLE and attempt == 0 and not self._halt.is_set():
                    continue
                if self.ok is not False:
                    log.debug("lease refresh failed: %s", code)
                self.ok = False
                return
