"""The gNMI face: a grpc.aio server for Capabilities, Get, Set and Subscribe.

Every RPC authenticates first (`auth`, or a fabric member's signed
assertion: `agent.forward`), then hands its work to the module that owns
it: `get`, `edit` (Set through `ds.propose`), `subscribe`.  A Get or Set
whose prefix target names other fabric members is answered by them
(`agent.forward`, the hook in `_get`/`_set`).
Get and Subscribe responses are written as protobuf bytes by `encode`, so
the service is registered with serializers that pass bytes through.

    srv = GnmiServer(ds, authenticator, addr="127.0.0.1:9339", insecure=True)
    await srv.start()        # OSError when the address cannot be bound
    srv.bound_port, srv.stats
    await srv.stop(grace=1.0)
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import grpc
from agent.gnmi_proto import gnmi_pb2

from core.errors import ConfigError
from core.ports.stats import ComponentStats
from core.schema import ORGANIZATION

from . import auth, edit, encode, extensions, history, status
from .get import get as do_get
from .paths import PathError
from agent.gnmi_proto import GNMI_PROTO_VERSION
from .subscribe import Limits, Session
from agent.auth import Authenticator
from agent.forward import FabricForwarder, ForwardError, forwarded, forwarder_of
from agent.nacm import Nacm, follow, for_authenticator
from core.datastore import Datastore

log = logging.getLogger("kubefabric.gnmi")

#: the gNMI version announced by Capabilities: the version of the gnmi.proto the face is built on
GNMI_VERSION = GNMI_PROTO_VERSION
#: rollback of a gNMI Commit without rollback_duration (gnmi-commit-confirmed.md 3.2.1: 10 minutes)
DEFAULT_ROLLBACK_S = 600.0
FACE = "gnmi"
SERVICE = "gnmi.gNMI"
#: Subscribe streams open at once, in all and per user, and Subscriptions in one SubscriptionList
MAX_STREAMS = 256
MAX_STREAMS_PER_USER = 64
MAX_SUBSCRIPTIONS_PER_REQUEST = 1000
#: largest request accepted (a Set of a whole config is a few KiB)
MAX_RECEIVE_BYTES = 16 << 20


def _serialize(message) -> bytes:
    return message if isinstance(message, (bytes, bytearray)) else message.SerializeToString()


def _peer(context) -> str:
    """The client's address for the audit log ("127.0.0.1:50123"), from gRPC's "ipv4:127.0.0.1:50123"."""
    try:
        peer = context.peer() or ""
    except Exception:  # noqa: BLE001 - an audit detail, never a reason to fail the RPC
        return ""
    return peer.split(":", 1)[1] if peer.startswith(("ipv4:", "ipv6:")) else peer


def _remaining(context) -> float | None:
    """Seconds left of the caller's deadline (members must answer within it), None when it set none."""
    try:
        left = context.time_remaining()
    except Exception:  # noqa: BLE001
        return None
    return max(0.1, left - 0.2) if left is not None and left < 1e6 else None


def _split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class GnmiServer:
    """gNMI over gRPC on one address, plaintext (loopback testing) or (mutual) TLS."""

    def __init__(self, ds: Datastore, authenticator: Authenticator, addr: str = "127.0.0.1:9339", insecure: bool = False,
                 tls_cert: str | None = None, tls_key: str | None = None, tls_client_ca: str | None = None,
                 limits: Limits | None = None, extra_handlers: tuple = (), max_streams: int = MAX_STREAMS,
                 max_streams_per_user: int = MAX_STREAMS_PER_USER, nacm: Nacm | None = None,
                 forwarder: FabricForwarder | None = None) -> None:
        self.ds = ds
        #: NACM (RFC 8341), shared with NETCONF and the CLI: Set is edit-config, reads are filtered by node
        self.nacm = nacm if nacm is not None else follow(for_authenticator(ds.schema, authenticator), ds)
        self.authenticator = authenticator
        self.addr = addr
        self.host, _ = _split_addr(addr)
        self.insecure = insecure
        self.tls_cert, self.tls_key, self.tls_client_ca = tls_cert, tls_key, tls_client_ca
        self.limits = limits or Limits()
        self.extra_handlers = tuple(extra_handlers)
        self.bound_port = 0
        self.max_streams = max_streams
        self.max_streams_per_user = max_streams_per_user
        self._streams: dict[str, int] = {}  # user -> open Subscribe streams
        #: counters for metrics: active sessions/subscriptions, totals of the rest
        self.stats: dict[str, int] = {
            "sessions": 0, "subscriptions": 0, "coalesced": 0, "updates": 0, "notifications": 0,
            "rpcs": 0, "auth_failures": 0, "set_commits": 0, "set_rejected": 0,
        }
        self._server: grpc.aio.Server | None = None
        self.arbitration = extensions.MasterArbitration()
        #: asks other fabric members on a caller's behalf (gNMI `target`), and checks what members forward here
        self.forwarder = forwarder

    @property
    def address(self) -> str:
        """host:port actually listened on."""
        return f"{self.host}:{self.bound_port}"

    def statistics(self) -> ComponentStats:
        """Open sessions and subscriptions, coalesced updates, and the other counters."""
        stats = self.stats
        return ComponentStats(sessions=stats["sessions"], subscriptions=stats["subscriptions"],
                              coalesced=stats["coalesced"],
                              other={k: float(v) for k, v in stats.items()
                                     if k not in ("sessions", "subscriptions", "coalesced")})

    # -- life cycle ------------------------------------------------------------
    async def start(self) -> None:
        """Bind and serve; raises OSError when the address is unusable."""
        server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ])
        handlers = {
            "Capabilities": grpc.unary_unary_rpc_method_handler(
                self._capabilities, gnmi_pb2.CapabilityRequest.FromString, _serialize),
            "Get": grpc.unary_unary_rpc_method_handler(self._get, gnmi_pb2.GetRequest.FromString, _serialize),
            "Set": grpc.unary_unary_rpc_method_handler(self._set, gnmi_pb2.SetRequest.FromString, _serialize),
            "Subscribe": grpc.stream_stream_rpc_method_handler(
                self._subscribe, gnmi_pb2.SubscribeRequest.FromString, _serialize),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),) + self.extra_handlers)
        try:
            if self.insecure:
                port = server.add_insecure_port(self.addr)
            else:
                port = server.add_secure_port(self.addr, self._credentials())
        except RuntimeError as exc:
            raise OSError(f"gNMI cannot listen on {self.addr}: address in use or not available ({exc})") from None
        if not port:
            raise OSError(f"gNMI cannot listen on {self.addr}: address in use or not available")
        await server.start()
        self._server = server
        self.bound_port = port

    @property
    def security(self) -> str:
        """How clients must connect, for the start-up line."""
        return "plaintext" if self.insecure else ("mutual TLS" if self.tls_client_ca else "TLS")

    def _credentials(self) -> grpc.ServerCredentials:
        if not (self.tls_cert and self.tls_key):
            raise OSError("gNMI needs a TLS certificate and key (or insecure=True for loopback testing)")

        def read(name: str, path: str) -> bytes:
            try:
                return Path(path).read_bytes()
            except OSError as exc:
                raise OSError(f"gNMI cannot read the TLS {name} {path}: {exc.strerror or exc}") from None

        pair = (read("key", self.tls_key), read("certificate", self.tls_cert))
        ca = read("client CA", self.tls_client_ca) if self.tls_client_ca else None
        return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting RPCs and end the running ones after `grace` seconds."""
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    # -- RPCs --------------------------------------------------------------------
    async def _user(self, context):
        self.stats["rpcs"] += 1
        try:
            return await auth.authenticate(self.authenticator, context,
                                           client_certificates=bool(self.tls_client_ca) and not self.insecure)
        except auth.AuthError as exc:
            self.stats["auth_failures"] += 1
            await status.abort(context, exc.code, exc.message, error_tag="access-denied")

    async def _caller(self, context, request, rpc: str):
        """The user behind an RPC: its credentials, or the signed assertion of the member that forwarded it."""
        if not forwarded(context):
            return await self._user(context)
        self.stats["rpcs"] += 1
        if self.forwarder is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "this agent does not take forwarded requests")
        try:
            return self.forwarder.verify(context, request, rpc)
        except ForwardError as exc:
            self.stats["auth_failures"] += 1
            await context.abort(exc.code, exc.message)

    def _foreign(self, target: str) -> bool:
        return self.forwarder is not None and self.forwarder.wants_forwarding(target)

    async def _internal(self, context, rpc: str, exc: Exception) -> None:
        log.exception("gNMI %s failed", rpc, exc_info=exc)
        await status.abort(context, grpc.StatusCode.INTERNAL, f"internal error in {rpc}: {type(exc).__name__}",
                           error_tag="operation-failed")

    @staticmethod
    async def _refuse(context, exc: PathError, unknown_path_code: str | None = None) -> None:
        """A PathError as the specification's tables say (an unknown path in Get/Subscribe is UNIMPLEMENTED)."""
        code = unknown_path_code if unknown_path_code and exc.error_tag == "unknown-element" else exc.code
        await status.abort(context, code, exc.message, error_tag=exc.error_tag, app_tag=exc.app_tag, path=exc.path)

    @staticmethod
    async def _refuse_config(context, exc: ConfigError) -> None:
        await status.abort(context, exc.grpc_code_name, exc.message, error_tag=exc.error_tag, app_tag=exc.app_tag,
                           path=exc.path)

    async def _capabilities(self, request, context):
        await self._user(context)
        try:
            extensions.parse("Capabilities", request.extension)
        except PathError as exc:
            await self._refuse(context, exc)
        return gnmi_pb2.CapabilityResponse(
            supported_models=[
                gnmi_pb2.ModelData(name=m.name, organization=ORGANIZATION, version=m.revision)
                for m in self.ds.schema.implemented
            ],
            supported_encodings=[encode.JSON, encode.JSON_IETF, encode.PROTO],
            gNMI_version=GNMI_VERSION,
        )

    async def _snapshot_rows(self, request):
        """The tables with history at a Get's snapshot_time, read off the event loop."""
        hist = history.from_extensions(request.extension)
        if hist is None or hist.is_range or hist.snapshot_ns is None or not self.ds.history.available:
            return None  # nothing to fetch, or get() reports the error
        return await history.snapshot(self.ds, hist.snapshot_ns)

    async def _get(self, request, context):
        user = await self._caller(context, request, "Get")
        if self._foreign(request.prefix.target):
            async def local(req):  # this member's own part of a `*` target
                exts = extensions.parse("Get", req.extension)
                return do_get(self.ds, req, await self._snapshot_rows(req), depth=exts.depth,
                              allowed=self.nacm.read_filter(user.name))
            try:
                return await self.forwarder.get(request, user, local, timeout=_remaining(context))
            except ForwardError as exc:
                await context.abort(exc.code, exc.message)
            except PathError as exc:
                await self._refuse(context, exc, unknown_path_code="UNIMPLEMENTED")
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # noqa: BLE001
                await self._internal(context, "Get", exc)
        try:
            exts = extensions.parse("Get", request.extension)
            return do_get(self.ds, request, await self._snapshot_rows(request), depth=exts.depth,
                          allowed=self.nacm.read_filter(user.name))
        except PathError as exc:
            await self._refuse(context, exc, unknown_path_code="UNIMPLEMENTED")
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must answer INTERNAL, not kill the server
            await self._internal(context, "Get", exc)

    async def _set(self, request, context):
        user = await self._caller(context, request, "Set")
        peer = _peer(context)
        if forwarded(context):
            peer = f"{peer} via fabric member {forwarder_of(context)}"
        if self._foreign(request.prefix.target):
            async def local(req):  # this member's own part of a `*` target, refusals as the forwarder reports them
                try:
                    return await self._apply_set(req, user, peer)
                except auth.AuthError as exc:
                    raise ForwardError(exc.code, exc.message) from None
                except PathError as exc:
                    raise ForwardError(grpc.StatusCode[exc.code], exc.message) from None
                except ConfigError as exc:
                    tag = f"{exc.app_tag or exc.error_tag}: "
                    where = f" (at {exc.path})" if exc.path and exc.path not in exc.message else ""
                    raise ForwardError(grpc.StatusCode[exc.grpc_code_name], f"{tag}{exc.message}{where}") from None
            try:
                return await self.forwarder.set(request, user, local, timeout=_remaining(context))
            except ForwardError as exc:
                await context.abort(exc.code, exc.message)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # noqa: BLE001
                await self._internal(context, "Set", exc)
        try:
            return await self._apply_set(request, user, peer)
        except auth.AuthError as exc:
            await status.abort(context, exc.code, exc.message, error_tag="access-denied")
        except PathError as exc:
            await self._refuse(context, exc)
        except ConfigError as exc:
            await self._refuse_config(context, exc)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await self._internal(context, "Set", exc)

    async def _apply_set(self, request, user, peer: str):
        """Set on this agent (extensions, NACM, the Commit extension); refusals raise, counted in stats."""
        ops: list = []
        try:
            exts = extensions.parse("Set", request.extension)
            self.nacm.require_exec(user.name, "edit-config")  # data writes are checked in propose
            self.arbitration.check(exts.arbitration)
            ops = edit.plan(self.ds.schema, request)
            schema = self.ds.schema

            async def write() -> None:
                if ops:
                    await self.ds.propose(lambda tree: edit.apply(tree, schema, ops), user=user.name, face=FACE,
                                          peer=peer, session=f"gnmi:{peer}")

            if exts.commit is None:
                pending = self.ds.confirmed.pending
                if pending is not None and ops:
                    raise PathError("FAILED_PRECONDITION", f"a confirmed commit by {pending.owner} (user "
                                    f"{pending.user}) is pending: confirm or cancel it first (a Set without the Commit "
                                    "extension is refused while the rollback timer runs)", app_tag="commit-pending")
                await write()
            else:
                await self._commit_action(exts.commit, ops, write, user.name)
            if ops:
                self.stats["set_commits"] += 1
        except (auth.AuthError, PathError, ConfigError):
            self.stats["set_rejected"] += 1
            raise
        now = time.time_ns()
        return gnmi_pb2.SetResponse(
            prefix=request.prefix,
            timestamp=now,
            response=[gnmi_pb2.UpdateResult(path=op.path, op=op.kind) for op in ops],
        )

    async def _commit_action(self, commit, ops: list, write, user: str) -> None:
        """The Commit extension (gnmi-commit-confirmed.md): commit, confirm, cancel, set_rollback_duration.

        The pending commit is the datastore's (`ds.confirmed`), the same one
        NETCONF's confirmed commit uses: one at a time per agent, persisted,
        rolled back at start-up if the agent died before the confirmation.
        """
        confirmed = self.ds.confirmed
        if not commit.id:
            raise PathError("INVALID_ARGUMENT", "the Commit extension needs an id", app_tag="missing-commit-id")
        action = commit.WhichOneof("action")
        if action is None:
            raise PathError("INVALID_ARGUMENT", "the Commit extension needs an action (commit, confirm, cancel, "
                            "set_rollback_duration)")
        owner = f"gNMI commit {commit.id!r}"
        if action == "commit":
            if confirmed.pending is not None:
                raise PathError("FAILED_PRECONDITION", f"a confirmed commit by {confirmed.pending.owner} is pending; "
                                "confirm or cancel it before a new commit", app_tag="commit-pending")
            duration = commit.commit.rollback_duration if commit.commit.HasField("rollback_duration") else None
            timeout = extensions.rollback_seconds(duration, DEFAULT_ROLLBACK_S)
            await confirmed.commit(write, face=FACE, owner=owner, token=commit.id, user=user, timeout=timeout,
                                   proof=commit.id)
            return
        if ops:
            raise PathError("INVALID_ARGUMENT", f"a Commit {action} carries no changes; send them with the commit")
        pending = confirmed.pending
        if pending is None:
            raise PathError("FAILED_PRECONDITION", f"no confirmed commit is pending (Commit {action})",
                            app_tag="no-commit-pending")
        if pending.token != commit.id:
            raise PathError("INVALID_ARGUMENT", f"id {commit.id!r} does not match the pending confirmed commit "
                            f"of {pending.owner}", app_tag="commit-id-mismatch")
        if action == "confirm":
            confirmed.confirm(owner, commit.id)
        elif action == "cancel":
            await confirmed.cancel(owner, commit.id, f"cancelled by gNMI Commit {commit.id!r}")
        else:  # set_rollback_duration
            srd = commit.set_rollback_duration
            seconds = extensions.rollback_seconds(srd.rollback_duration if srd.HasField("rollback_duration") else None,
                                                  0.0)
            if seconds <= 0:
                raise PathError("INVALID_ARGUMENT", "set_rollback_duration needs a rollback_duration above 0")
            confirmed.set_timeout(owner, commit.id, seconds)

    async def _subscribe(self, request_iterator, context):
        if forwarded(context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "forwarded requests are Get and Set only")
        user = await self._user(context)
        open_streams = sum(self._streams.values())
        if open_streams >= self.max_streams:
            await status.abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"too many Subscribe streams open ({open_streams}); try again later",
                               error_tag="resource-denied")
        if self._streams.get(user.name, 0) >= self.max_streams_per_user:
            await status.abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"user {user.name!r} has {self.max_streams_per_user} Subscribe streams open already",
                               error_tag="resource-denied")
        self._streams[user.name] = self._streams.get(user.name, 0) + 1
        try:
            try:
                first = await request_iterator.__anext__()
            except StopAsyncIteration:
                return
            if first.WhichOneof("request") == "subscribe" and self._foreign(first.subscribe.prefix.target):
                await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                                    "a prefix target naming other fabric members is served for Get and Set; "
                                    "subscribe on that member itself")
            if first.WhichOneof("request") == "subscribe" and \
                    len(first.subscribe.subscription) > MAX_SUBSCRIPTIONS_PER_REQUEST:
                await status.abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"at most {MAX_SUBSCRIPTIONS_PER_REQUEST} subscriptions in one SubscriptionList",
                                   error_tag="resource-denied")
            try:
                session = Session(self.ds, context, first, self.stats, self.limits,
                                  allowed=self.nacm.read_filter(user.name))
                await session.run(request_iterator)
            except PathError as exc:
                await self._refuse(context, exc, unknown_path_code="UNIMPLEMENTED")
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # noqa: BLE001
                await self._internal(context, "Subscribe", exc)
        finally:
            left = self._streams.get(user.name, 1) - 1
            if left:
                self._streams[user.name] = left
            else:
                self._streams.pop(user.name, None)
