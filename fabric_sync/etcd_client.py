"""One aetcd client for a list of etcd endpoints, plain or over TLS, with or without etcd users.

aetcd talks to a single gRPC target, so the endpoints become one
multi-address target ("ipv4:h1:p1,h2:p2,...") with gRPC's round_robin
policy: a dead member's subchannel drops out of the rotation at once and
requests go to the live ones, with short reconnect backoff so a member
that comes back is used again within a second.  Names are resolved once,
at start, because gRPC's multi-address schemes take addresses only.

aetcd 1.0 builds only insecure channels and authenticates a user once, at
connect, never again (etcd's simple tokens expire after five idle minutes,
``--auth-token-ttl``).  So the client here builds the channel itself: a
``grpc.aio.secure_channel`` with the CA, client certificate and key when the
endpoints are ``https://``, and a client interceptor (security.py) that puts
etcd's require-leader flag and the user's token on every call and watch and
authenticates again when etcd says the token is no longer valid.
"""
from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

import aetcd
from aetcd import rpc, watcher

from .security import AuthInterceptor, EtcdSecurity, SecurityError, TokenAuth

__all__ = ["CHANNEL_OPTIONS", "EndpointError", "EtcdSecurity", "REQUIRE_LEADER", "RETRYABLE", "SecurityError",
           "channel_options", "endpoint_scheme", "grpc_target", "make_client", "parse_endpoint"]

# gRPC status codes after which the same request may be sent again to
# another member: the request did not reach a member able to apply it, or
# the guarded transaction makes a repeat harmless (see EtcdFabricStore.commit).
RETRYABLE = (aetcd.ConnectionFailedError,)


class EndpointError(ValueError):
    """An --etcd endpoint that cannot be used (the agent refuses to start with this message)."""


def parse_endpoint(url: str) -> tuple[str, int]:
    """'http://host:port', 'https://host:port', 'host:port' or 'host' -> (host, port)."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise EndpointError(f"etcd endpoint {url!r}: only http:// and https:// are supported")
    if not parts.hostname:
        raise EndpointError(f"etcd endpoint {url!r} has no host")
    return parts.hostname, parts.port or 2379


def endpoint_scheme(endpoints: list[str]) -> str:
    """'http' or 'https' for the whole list (one channel: one scheme)."""
    schemes = {(urlsplit(u.strip()).scheme if "://" in u else "http") for u in endpoints}
    if len(schemes) > 1:
        raise EndpointError("etcd endpoints must all be http:// or all https://")
    return schemes.pop() if schemes else "http"


def grpc_target(endpoints: list[str]) -> str:
    """The multi-address gRPC target for every endpoint (one address family)."""
    if not endpoints:
        raise EndpointError("no etcd endpoints given")
    endpoint_scheme(endpoints)
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
    # etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time) and pings on a
    # connection without a stream (so no keepalive_permit_without_calls).  A member cut off by the
    # network (no RST) is found dead within keepalive time + timeout, and a watch on it moves on.
    "grpc.keepalive_time_ms": 5000,
    "grpc.keepalive_timeout_ms": 2000,
}


# etcd's "require leader" request metadata: a member that has lost its leader (cut off from
# the others, or the survivor of a lost quorum) refuses the request at once instead of
# hanging, and cancels a watch instead of leaving it silent, so the client moves on.
REQUIRE_LEADER = (("hasleader", "true"),)


def tls_server_name(endpoints: list[str], security: EtcdSecurity) -> str | None:
    """The one name every member's certificate is checked against (None without TLS).

    One gRPC channel over several addresses verifies every member against one
    name (the channel's authority): ``--etcd-server-name`` when given, else
    the endpoints' host when they all share it.
    """
    if endpoint_scheme(endpoints) != "https":
        return None
    if security.server_name:
        return security.server_name
    hosts = {parse_endpoint(u)[0] for u in endpoints}
    if len(hosts) == 1:
        return hosts.pop()
    raise EndpointError(
        "etcd endpoints on several hosts over TLS: give --etcd-server-name, a name every member's "
        "certificate carries (one gRPC channel checks all members against one name)")


def channel_options(endpoints: list[str], security: EtcdSecurity) -> dict:
    """gRPC channel options: CHANNEL_OPTIONS plus the TLS name check, if any."""
    options = dict(CHANNEL_OPTIONS)
    name = tls_server_name(endpoints, security)
    if name:
        options["grpc.ssl_target_name_override"] = name
        options["grpc.default_authority"] = name
    return options


class _Watcher(watcher.Watcher):
    """aetcd's watcher, plus: a watch etcd cancels (``canceled`` with a reason, e.g. "permission
    denied" when the user lost its rights) ends with that error instead of going silent."""

    async def _handle_response(self, response):
        await super()._handle_response(response)
        if response.canceled and not response.compact_revision:
            async with self._lock:
                callback = self._callbacks.pop(response.watch_id, None)
            if callback is not None:
                reason = response.cancel_reason or "watch canceled by etcd"
                await self._process_callback(callback, aetcd.ClientError(reason))


class _FabricClient(aetcd.Client):
    """aetcd client on a channel built here: TLS when asked, require-leader and token on every call."""

    def __init__(self, *, target: str, security: EtcdSecurity, options: dict, timeout: float) -> None:
        host, _, port = target.rpartition(":")
        super().__init__(host=host, port=int(port), timeout=timeout, options=options)
        self._target = target
        self._security = security
        self._interceptor = AuthInterceptor(TokenAuth(security.user, security.password) if security.user else None,
                                            REQUIRE_LEADER, timeout)

    async def connect(self) -> None:
        """aetcd's connect, with the channel built by us (aetcd 1.0 knows only insecure channels)."""
        if self._connected.is_set():
            return
        if self._is_connecting:
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        try:
            self._is_connecting = True
            options = list(self._options.items())
            if self._security.tls:
                self.channel = rpc.secure_channel(self._target, self._security.credentials(), options=options,
                                                  interceptors=[self._interceptor])
            else:
                self.channel = rpc.insecure_channel(self._target, options=options, interceptors=[self._interceptor])
            self._interceptor.bind(self.channel)
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = _Watcher(rpc.WatchStub(self.channel), timeout=self._timeout, metadata=None)
            self._connected.set()
        finally:
            self._is_connecting = False

    def forget_token(self) -> None:
        """etcd refused the token on a stream (a watch): authenticate again on the next call."""
        auth = self._interceptor.auth
        if auth is not None:
            auth.drop(auth.token)


def make_client(endpoints: list[str], timeout: float, security: EtcdSecurity | None = None) -> aetcd.Client:
    """An aetcd client spreading requests over `endpoints`; `timeout` bounds each call."""
    security = security or EtcdSecurity()
    return _FabricClient(target=grpc_target(endpoints), security=security,
                         options=channel_options(endpoints, security), timeout=timeout)
