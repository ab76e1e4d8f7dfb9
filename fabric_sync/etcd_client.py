"""One aetcd client for a list of etcd endpoints.

aetcd talks to a single gRPC target, so the endpoints become one
multi-address target ("ipv4:h1:p1,h2:p2,...") with gRPC's round_robin
policy: a dead member's subchannel drops out of the rotation at once and
requests go to the live ones, with short reconnect backoff so a member
that comes back is used again within a second.  Names are resolved once,
at start, because gRPC's multi-address schemes take addresses only.
"""
from __future__ import annotations

import socket
from urllib.parse import urlsplit

import aetcd


# gRPC status codes after which the same request may be sent again to
# another member: the request did not reach a member able to apply it, or
# the guarded transaction makes a repeat harmless (see EtcdFabricStore.commit).
RETRYABLE = (aetcd.ConnectionFailedError,)


class EndpointError(ValueError):
    """An --etcd endpoint that cannot be used (the agent refuses to start with this message)."""


def parse_endpoint(url: str) -> tuple[str, int]:
    """'http://host:port', 'host:port' or 'host' -> (host, port)."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", ""):
        raise EndpointError(f"etcd endpoint {url!r}: only http:// (plain gRPC) is supported")
    if not parts.hostname:
        raise EndpointError(f"etcd endpoint {url!r} has no host")
    return parts.hostname, parts.port or 2379


def grpc_target(endpoints: list[str]) -> str:
    """The multi-address gRPC target for every endpoint (one address family)."""
    if not endpoints:
        raise EndpointError("no etcd endpoints given")
    v4: list[str] = []
    v6: list[str] = []
    for url in endpoints:
        host, port = parse_endpoint(url)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise EndpointError(f"etcd endpoint {url!r}: cannot resolve {host}: {exc.strerror}") from None
        # prefer IPv4 ("localhost" may list ::1 first), so mixed lists stay one family
        family, _, _, _, addr = min(infos, key=lambda info: info[0] != socket.AF_INET)
        if family == socket.AF_INET6:
            v6.append(f"[{addr[0]}]:{port}")
        else:
            v4.append(f"{addr[0]}:{port}")
    if v4 and v6:
        raise EndpointError("etcd endpoints must all be IPv4 or all IPv6")
    return ("ipv4:" + ",".join(v4)) if v4 else ("ipv6:" + ",".join(v6))


CHANNEL_OPTIONS = {
    "grpc.lb_policy_name": "round_robin",
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.min_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 1000,
    # etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time)
    "grpc.keepalive_time_ms": 10000,
    "grpc.keepalive_timeout_ms": 3000,
}


# etcd's "require leader" request metadata: a member that has lost its leader (cut off from
# the others, or the survivor of a lost quorum) refuses the request at once instead of
# hanging, and cancels a watch instead of leaving it silent, so the client moves on.
REQUIRE_LEADER = (("hasleader", "true"),)


class _LeaderClient(aetcd.Client):
    """aetcd client sending REQUIRE_LEADER with every request and watch."""

    async def connect(self) -> None:
        await super().connect()
        if self.metadata is None:
            self.metadata = REQUIRE_LEADER
            if self._watcher is not None:  # created by connect() with the metadata of the moment
                self._watcher._metadata = REQUIRE_LEADER


def make_client(endpoints: list[str], timeout: float) -> aetcd.Client:
    """An aetcd client spreading requests over `endpoints`; `timeout` bounds each call."""
    target = grpc_target(endpoints)
    # aetcd joins host and port as f"{host}:{port}": split the target at its last colon
    host, _, port = target.rpartition(":")
    return _LeaderClient(host=host, port=int(port), timeout=timeout, options=dict(CHANNEL_OPTIONS))
