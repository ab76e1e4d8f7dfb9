"""Fabric-wide answers: asking another member on the caller's behalf, with the caller's identity and role.

A gNMI request whose path prefix names another fabric member as its
``target`` (``*`` for every member) is answered by those members; the CLI's
``switch NAME`` / ``switch *`` prefix is built on it.  This module is the
shared part of the gNMI face and the CLI over SSH:

Forwarding (:meth:`FabricForwarder.get`, :meth:`FabricForwarder.set`)
    The members and their gNMI addresses come from ``/fabric/node``.  The
    request goes to each member with ``prefix.target`` set to that member's
    name, all members at once; a member answers with its own name as the
    notifications' target, so the answers are concatenated as they come
    (protobuf repeated fields concatenate; nothing is decoded).  A member
    that is offline, has no address or does not answer is reported in the
    answer itself -- a notification with that target whose updates are
    ``/fabric/node[name=M]/state`` and ``.../forward-error`` -- never left
    out silently.  One named target that cannot answer is an error
    (UNAVAILABLE, NOT_FOUND).

Identity (:meth:`FabricForwarder.verify`)
    The forwarding agent cannot log in as the caller (it has no password, and
    a client certificate stays with its client).  It sends the request with
    an *assertion* it signs with its own Ed25519 key: who the caller is, the
    caller's role, the member it is meant for, the RPC, the SHA-256 of the
    exact request, when, and a random nonce.  Every agent publishes its
    public key as per-node state (kind ``gnmi-forward``) through the fabric
    store; the member accepts the assertion only when the signature checks
    against the forwarder's published key, the target is itself, the digest
    matches the request it received, the time is within ``MAX_SKEW`` seconds
    and the nonce was not seen before.  It then serves the request as the
    asserted user with the asserted role -- or with a lower role when it
    knows that user with one -- so a read-only user stays read-only on every
    member.  The private key never leaves the agent's data directory
    (mode 0600).  Whoever can publish per-node state (write the fabric's etcd
    prefix) can publish a key: etcd access is the fabric's root of trust, as
    it already is for the fabric-scope config.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

import grpc
from agent.gnmi_proto import gnmi_pb2

from agent.auth import ROLES, Authenticator, User
from core import schema_paths
from core.errors import UnavailableError

__all__ = ["FabricForwarder", "ForwardError", "KEY_KIND", "MAX_SKEW", "ASSERTION_HEADERS"]

log = logging.getLogger("kubefabric.forward")

KEY_KIND = "gnmi-forward"
#: seconds an assertion stays valid either side of its issue time (switch clocks drift)
MAX_SKEW = 120.0
FORWARDED_BY, ASSERTION, SIGNATURE = "kubefabric-forwarded-by", "kubefabric-assertion", "kubefabric-signature"
ASSERTION_HEADERS = (FORWARDED_BY, ASSERTION, SIGNATURE)
FABRIC_NODE = schema_paths.FABRIC_NODE
_ROLE_RANK = {"read-only": 0, "network-admin": 1}
JSON_IETF = gnmi_pb2.Encoding.Value("JSON_IETF")
JSON = gnmi_pb2.Encoding.Value("JSON")


class ForwardError(Exception):
    """A request that cannot be forwarded, with the gRPC status to answer."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Member:
    name: str
    state: str
    address: str
    last_seen: str


def request_digest(request) -> str:
    """SHA-256 of a request's deterministic serialization (both ends compute it the same way)."""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _metadata(context) -> dict[str, str]:
    out = {}
    for item in context.invocation_metadata() or ():
        key, value = item[0], item[1]
        out[key] = value.decode(errors="replace") if isinstance(value, bytes) else value
    return out


def forwarded(context) -> bool:
    """Whether a call carries a forwarding assertion (and must be verified as one)."""
    return any(item[0] == FORWARDED_BY for item in context.invocation_metadata() or ())


def forwarder_of(context) -> str:
    """The member a verified forwarded call came through ("" for a direct call), for the audit log."""
    return _metadata(context).get(FORWARDED_BY, "")


class FabricForwarder:
    """Forwards gNMI Get/Set to fabric members and verifies what members forward to us.

    ``ds`` is the datastore (``/fabric/node``, ``node_states``,
    ``publish_node_state``); TLS settings say how to reach members.
    """

    def __init__(self, ds, authenticator: Authenticator, key_path: Path, *, insecure: bool = False,
                 ca: str | None = None, cert: str | None = None, key: str | None = None,
                 timeout: float = 10.0) -> None:
        self.ds = ds
        self.node_name: str = ds.node_name
        self.authenticator = authenticator
        self.key_path = Path(key_path)
        self.insecure = insecure
        self.ca, self.cert, self.key = ca, cert, key
        self.timeout = timeout
        self._private = None
        self.public_key = b""
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._nonces: dict[str, float] = {}
        self._task: asyncio.Task | None = None
        self.stats = {"forwarded": 0, "member_errors": 0, "accepted": 0, "refused": 0}

    # -- life cycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Load (or create) this agent's key and publish its public half."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        if self.key_path.exists():
            self._private = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
            if not isinstance(self._private, Ed25519PrivateKey):
                raise OSError(f"{self.key_path} is not an Ed25519 key")
        else:
            self._private = Ed25519PrivateKey.generate()
            self.key_path.parent.mkdir(parents=True, exist_ok=True)
            pem = self._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
        self.public_key = self._private.public_key().public_bytes(serialization.Encoding.Raw,
                                                                  serialization.PublicFormat.Raw)
        self._task = asyncio.create_task(self._publish_key(), name="forward-key")

    async def _publish_key(self) -> None:
        value = {"algorithm": "ed25519", "public-key": _b64(self.public_key)}
        delay = 0.5
        while True:
            try:
                await self.ds.publish_node_state(KEY_KIND, value)
                return
            except UnavailableError as exc:
                log.warning("cannot publish the forwarding key yet: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    def statistics(self):
        from core.ports.stats import ComponentStats

        return ComponentStats(other={k: float(v) for k, v in self.stats.items()})

    # -- members ------------------------------------------------------------------
    def members(self) -> dict[str, Member]:
        out = {}
        for key, row, _ts in self.ds.read(FABRIC_NODE):
            out[key[0]] = Member(key[0], str(row.get("state", "")), str(row.get("address", "")),
                                 str(row.get("last-seen", "")))
        return out

    def wants_forwarding(self, target: str) -> bool:
        """Whether a prefix target asks for other members (empty and our own name do not)."""
        return bool(target) and target != self.node_name

    def resolve(self, target: str) -> list[Member]:
        """The members a target names (``*``: all, this one included); NOT_FOUND for an unknown name."""
        members = self.members()
        members.setdefault(self.node_name, Member(self.node_name, "online", "", ""))
        if target == "*":
            return [members[name] for name in sorted(members)]
        if target not in members:
            raise ForwardError(grpc.StatusCode.NOT_FOUND,
                               f"no fabric member named {target!r} (members: {', '.join(sorted(members))})")
        return [members[target]]

    # -- forwarding ---------------------------------------------------------------
    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            options = [("grpc.max_receive_message_length", 256 << 20)]
            if self.insecure:
                channel = grpc.aio.insecure_channel(address, options=options)
            else:
                creds = grpc.ssl_channel_credentials(root_certificates=_read(self.ca), private_key=_read(self.key),
                                                     certificate_chain=_read(self.cert))
                channel = grpc.aio.secure_channel(address, creds, options=options)
            self._channels[address] = channel
        return channel

    def _sign(self, member: str, rpc: str, user: User, request) -> tuple[tuple[str, str], ...]:
        assertion = json.dumps({
            "v": 1, "by": self.node_name, "target": member, "rpc": rpc, "user": user.name, "role": user.role,
            "iat": round(time.time(), 3), "nonce": secrets.token_hex(16), "digest": request_digest(request),
        }, separators=(",", ":"), sort_keys=True).encode()
        signature = self._private.sign(assertion)
        return ((FORWARDED_BY, self.node_name), (ASSERTION, _b64(assertion)), (SIGNATURE, _b64(signature)))

    async def _call(self, member: Member, rpc: str, request, user: User, timeout: float) -> bytes:
        if not member.address:
            raise ForwardError(grpc.StatusCode.UNAVAILABLE, f"fabric member {member.name} has no gNMI address")
        call = self._channel(member.address).unary_unary(f"/gnmi.gNMI/{rpc}")   # bytes in, bytes out
        payload = request.SerializeToString(deterministic=True)
        self.stats["forwarded"] += 1
        try:
            return await call(payload, metadata=self._sign(member.name, rpc, user, request), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            self.stats["member_errors"] += 1
            code = exc.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ForwardError(grpc.StatusCode.UNAVAILABLE,
                                   f"fabric member {member.name} ({member.address}) did not answer: "
                                   f"{exc.details() or code.name}") from None
            raise ForwardError(code, f"{member.name}: {exc.details() or code.name}") from None

    def _unreachable(self, member: Member) -> ForwardError | None:
        if member.name == self.node_name:
            return None
        if member.state != "online":
            since = f" (last seen {member.last_seen})" if member.last_seen else ""
            return ForwardError(grpc.StatusCode.UNAVAILABLE, f"fabric member {member.name} is offline{since}")
        return None

    async def get(self, request, user: User, local: Callable[[object], Awaitable[bytes]],
                  timeout: float | None = None) -> bytes:
        """GetResponse bytes for a request whose prefix target names other members (see the module docstring)."""
        target = request.prefix.target
        members = self.resolve(target)
        timeout = timeout or self.timeout

        started = time.perf_counter()
        took: dict[str, float] = {}

        async def one(member: Member) -> bytes:
            copy = type(request)()
            copy.CopyFrom(request)
            copy.prefix.target = member.name
            try:
                if member.name == self.node_name:
                    return await local(copy)
                problem = self._unreachable(member)
                if problem is not None:
                    raise problem
                return await self._call(member, "Get", copy, user, timeout)
            finally:
                took[member.name] = time.perf_counter() - started

        # the members' requests leave first, so they work while this agent computes its own part
        tasks = {m.name: asyncio.ensure_future(one(m)) for m in members if m.name != self.node_name}
        for _ in range(3):
            await asyncio.sleep(0)
        for m in members:
            if m.name == self.node_name:
                tasks[m.name] = asyncio.ensure_future(one(m))
        results = await asyncio.gather(*(tasks[m.name] for m in members), return_exceptions=True)
        log.debug("Get with target %s: %s ms after the start", target,
                  ", ".join(f"{name} {t * 1000:.0f}" for name, t in sorted(took.items())))
        if target != "*":
            result = results[0]
            if isinstance(result, BaseException):
                raise result
            return result
        parts: list[bytes] = []
        for member, result in zip(members, results):
            if isinstance(result, ForwardError):
                parts.append(self.unanswered(member, result.message, request.encoding))
            elif isinstance(result, BaseException):
                if member.name == self.node_name:
                    raise result        # our own part failed: the caller's error handling answers
                log.error("forwarding to %s failed", member.name, exc_info=result)
                parts.append(self.unanswered(member, f"{type(result).__name__}", request.encoding))
            else:
                parts.append(result)
        return b"".join(parts)

    def unanswered(self, member: Member, reason: str, encoding: int) -> bytes:
        """A GetResponse holding one notification that says ``member`` did not answer, and why."""
        def value(text: str) -> gnmi_pb2.TypedValue:
            if encoding in (JSON_IETF, JSON):
                return gnmi_pb2.TypedValue(**{"json_ietf_val" if encoding == JSON_IETF else "json_val":
                                              json.dumps(text).encode()})
            return gnmi_pb2.TypedValue(string_val=text)

        def path(leaf: str) -> gnmi_pb2.Path:
            return gnmi_pb2.Path(elem=[gnmi_pb2.PathElem(name="kubefabric-fabric:fabric"),
                                       gnmi_pb2.PathElem(name="node", key={"name": member.name}),
                                       gnmi_pb2.PathElem(name=leaf)])

        state = "offline" if member.state != "online" else "online"
        notification = gnmi_pb2.Notification(
            timestamp=time.time_ns(), prefix=gnmi_pb2.Path(target=member.name),
            update=[gnmi_pb2.Update(path=path("state"), val=value(state)),
                    gnmi_pb2.Update(path=path("forward-error"), val=value(reason))])
        return gnmi_pb2.GetResponse(notification=[notification]).SerializeToString()

    async def set(self, request, user: User, local: Callable[[object], Awaitable[object]],
                  timeout: float | None = None) -> gnmi_pb2.SetResponse:
        """Apply a Set on the members its prefix target names; all must take it, or the error says who did."""
        target = request.prefix.target
        members = self.resolve(target)
        timeout = timeout or self.timeout

        async def one(member: Member) -> gnmi_pb2.SetResponse:
            copy = type(request)()
            copy.CopyFrom(request)
            copy.prefix.target = member.name
            if member.name == self.node_name:
                return await local(copy)
            problem = self._unreachable(member)
            if problem is not None:
                raise problem
            return gnmi_pb2.SetResponse.FromString(await self._call(member, "Set", copy, user, timeout))

        results = await asyncio.gather(*(one(m) for m in members), return_exceptions=True)
        done = [m.name for m, r in zip(members, results) if not isinstance(r, BaseException)]
        failed = [(m.name, r) for m, r in zip(members, results) if isinstance(r, BaseException)]
        if not failed:
            merged = gnmi_pb2.SetResponse(prefix=request.prefix, timestamp=time.time_ns())
            for result in results:
                merged.response.extend(result.response)
            return merged
        first = failed[0][1]
        code = first.code if isinstance(first, ForwardError) else grpc.StatusCode.INTERNAL
        why = "; ".join(f"{name}: {getattr(exc, 'message', None) or exc}" for name, exc in failed)
        if done:
            raise ForwardError(grpc.StatusCode.ABORTED, f"applied on {', '.join(done)} only; {why}")
        raise ForwardError(code, why if target == "*" else getattr(first, "message", str(first)))

    # -- the member's side --------------------------------------------------------
    def verify(self, context, request, rpc: str) -> User:
        """The caller a forwarded request asserts, when every check passes; ForwardError(UNAUTHENTICATED) otherwise."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        md = _metadata(context)

        def refuse(why: str) -> ForwardError:
            self.stats["refused"] += 1
            log.warning("refused a forwarded %s from %s: %s", rpc, md.get(FORWARDED_BY, "?"), why)
            return ForwardError(grpc.StatusCode.UNAUTHENTICATED, f"forwarded request refused: {why}")

        by = md.get(FORWARDED_BY, "")
        try:
            raw = _unb64(md.get(ASSERTION, ""))
            signature = _unb64(md.get(SIGNATURE, ""))
            claim = json.loads(raw)
        except (ValueError, TypeError):
            raise refuse("the assertion does not decode") from None
        if not isinstance(claim, dict):
            raise refuse("the assertion does not decode")
        published = self.ds.node_states(KEY_KIND).get(by) or {}
        try:
            key = Ed25519PublicKey.from_public_bytes(_unb64(str(published.get("public-key", ""))))
        except (ValueError, TypeError):
            raise refuse(f"no forwarding key is published for fabric member {by!r}") from None
        try:
            key.verify(signature, raw)
        except InvalidSignature:
            raise refuse(f"the signature does not match {by}'s published key") from None
        now = time.time()
        if claim.get("v") != 1 or claim.get("by") != by:
            raise refuse("the assertion names another forwarder")
        if claim.get("target") != self.node_name or claim.get("rpc") != rpc:
            raise refuse("the assertion was made for another member or RPC")
        if request.prefix.target != self.node_name:
            raise refuse("a forwarded request must target this member")
        iat = claim.get("iat")
        if not isinstance(iat, (int, float)) or abs(now - iat) > MAX_SKEW:
            raise refuse(f"the assertion is older than {MAX_SKEW:g}s (or the clocks differ that much)")
        if claim.get("digest") != request_digest(request):
            raise refuse("the request is not the one the assertion was made for")
        nonce = str(claim.get("nonce", ""))
        self._forget_nonces(now)
        if not nonce or nonce in self._nonces:
            raise refuse("the assertion was used before (replay)")
        self._nonces[nonce] = float(iat)
        name, role = str(claim.get("user", "")), str(claim.get("role", ""))
        if not name or role not in ROLES:
            raise refuse("the assertion has no user or an unknown role")
        known = self.authenticator.user(name)
        if known is not None and _ROLE_RANK[known.role] < _ROLE_RANK[role]:
            role = known.role        # never more than this member grants that user itself
        self.stats["accepted"] += 1
        return User(name, role)

    def _forget_nonces(self, now: float) -> None:
        if len(self._nonces) > 4096 or (self._nonces and now - min(self._nonces.values()) > 2 * MAX_SKEW):
            for nonce in [n for n, t in self._nonces.items() if now - t > 2 * MAX_SKEW]:
                del self._nonces[nonce]


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ForwardError(grpc.StatusCode.FAILED_PRECONDITION, f"cannot read {path}: {exc.strerror}") from None
