"""NETCONF over SSH (RFC 6242): the asyncssh server and its sessions.

`NetconfServer(ds, authenticator, addr)` listens for SSH connections,
authenticates users with a password or a public key against the same
users and roles as gNMI, and runs a NETCONF session on every `netconf`
subsystem channel: hello exchange, framing (base:1.0 end-of-message, then
base:1.1 chunks when both sides announce it), and one RPC at a time in
arrival order.  Message size and the number of sessions are bounded.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
from pathlib import Path
from typing import Callable

import asyncssh
from lxml import etree

from agent.auth import Authenticator, User
from agent.nacm import Nacm, follow, for_authenticator
from core.datastore import Datastore
from agent.settings import split_addr
from core.ports.stats import ComponentStats

from . import framing, xmlsafe
from .codec import Codec
from .datastores import Datastores
from .edit import EditErrors
from .monitoring import Counters, Statistics, module_capabilities, now_iso, schema_files, yang_library_capability
from .notifications import EventBuilder, Subscription
from .rpc import Operations
from .rpcerror import BASE_NS, RpcError

log = logging.getLogger("kubefabric.netconf")

BASE_10 = "urn:ietf:params:netconf:base:1.0"
BASE_11 = "urn:ietf:params:netconf:base:1.1"
CAPABILITIES = (
    BASE_10,
    BASE_11,
    "urn:ietf:params:netconf:capability:writable-running:1.0",
    "urn:ietf:params:netconf:capability:candidate:1.0",
    "urn:ietf:params:netconf:capability:confirmed-commit:1.1",
    "urn:ietf:params:netconf:capability:rollback-on-error:1.0",
    "urn:ietf:params:netconf:capability:validate:1.1",
    "urn:ietf:params:netconf:capability:startup:1.0",
    "urn:ietf:params:netconf:capability:xpath:1.0",
    "urn:ietf:params:netconf:capability:with-defaults:1.0?basic-mode=explicit&also-supported=report-all,trim",
    "urn:ietf:params:netconf:capability:notification:1.0",
    "urn:ietf:params:netconf:capability:interleave:1.0",
)
MAX_MESSAGE = 16 * 1024 * 1024
MAX_SESSIONS = 32
HELLO_TIMEOUT = 30.0
HOST_KEY_FILE = "netconf-ssh-host-key"
_B = "{%s}" % BASE_NS
_PENDING_LIMIT = 64  # RPCs queued before we stop reading from the client


class NetconfServer:
    """The NETCONF face of one agent."""

    def __init__(
        self, ds: Datastore, authenticator: Authenticator, addr: str = "127.0.0.1:830", *,
        max_sessions: int = MAX_SESSIONS, max_message: int = MAX_MESSAGE, hello_timeout: float = HELLO_TIMEOUT,
        nacm: Nacm | None = None,
    ) -> None:
        self.ds = ds
        #: NACM (RFC 8341): the same decisions as gNMI and the CLI
        self.nacm = nacm if nacm is not None else follow(for_authenticator(ds.schema, authenticator), ds)
        self.auth = authenticator
        self.addr = addr
        self.max_sessions = max_sessions
        self.max_message = max_message
        self.hello_timeout = hello_timeout
        self.codec = Codec(ds.schema)
        self.datastores = Datastores(ds)
        self.events = EventBuilder(self.codec)
        self.schema_files = schema_files(ds.schema)
        # YANG 1.1 modules (all of kubefabric's) are announced by the YANG library only (RFC 7950 5.6.4)
        self.capabilities = list(CAPABILITIES) + [yang_library_capability(self.schema_files)] + \
            module_capabilities(self.schema_files)
        self.sessions: dict[int, Session] = {}
        #: every open NETCONF channel, including those whose hello has not been exchanged yet
        self.channels: set[Session] = set()
        self.stats = Statistics()
        self._ids = itertools.count(1)
        self._server: asyncssh.SSHAcceptor | None = None
        self._connections = 0
        self.address: str | None = None

    # -- life cycle --------------------------------------------------------------------
    async def start(self) -> None:
        host, port = split_addr(self.addr, 830)
        self.datastores.load()
        await self.datastores.load_running_from_startup()
        key = self._host_key()
        self._server = await asyncssh.create_server(
            lambda: _SshServer(self), host, port, server_host_keys=[key], login_timeout=30,
            keepalive_interval=60, allow_scp=False, agent_forwarding=False, x11_forwarding=False,
        )
        sock = self._server.sockets[0].getsockname()
        self.address = f"{sock[0]}:{sock[1]}" if ":" not in sock[0] else f"[{sock[0]}]:{sock[1]}"

    def statistics(self) -> ComponentStats:
        """Sessions, notification subscriptions and the RFC 6022 counters."""
        counters = {k: float(v) for k, v in vars(self.stats).items() if isinstance(v, int)}
        subscribed = sum(1 for session in self.sessions.values() if session.subscription is not None)
        return ComponentStats(sessions=len(self.sessions), subscriptions=subscribed, other=counters)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions.values()):
            await session.abort("agent stopping")
        await self.datastores.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _host_key(self) -> asyncssh.SSHKey:
        """The SSH host key, generated on first start and kept under the data dir."""
        path = Path(self.ds.data_dir) / HOST_KEY_FILE
        if path.exists():
            return asyncssh.read_private_key(str(path))
        key = asyncssh.generate_private_key("ssh-ed25519")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
        os.replace(tmp, path)
        log.info("generated NETCONF SSH host key %s (%s)", path, key.get_fingerprint())
        return key

    # -- helpers for sessions ---------------------------------------------------------------
    def new_session_id(self) -> int:
        return next(self._ids)

    def writer_of_change(self) -> tuple[str | None, int | None]:
        """(user, session-id) of the NETCONF write being applied now, or (None, None)."""
        return self.datastores.writer


class _SshServer(asyncssh.SSHServer):
    """Authentication and channel set-up for one SSH connection."""

    def __init__(self, server: NetconfServer) -> None:
        self.server = server
        self.user: User | None = None
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = ""

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.server._connections += 1
        if self.server._connections > 2 * self.server.max_sessions:
            self.server.stats.dropped_sessions += 1
            conn.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections -= 1

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        loop = asyncio.get_running_loop()
        user = await loop.run_in_executor(None, self.server.auth.authenticate, username, password)
        if user is None:
            log.info("NETCONF login failed for %r from %s", username, self.peer)
            return False
        self.user = user
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        for text in self.server.auth.ssh_keys(username):
            try:
                allowed = asyncssh.import_public_key(text)
            except (asyncssh.KeyImportError, ValueError):
                continue
            if allowed.public_data == key.public_data:
                self.user = self.server.auth.user(username)
                return self.user is not None
        return False

    def session_requested(self):
        if self.user is None:
            return False
        # channels count from the moment they open, so a client cannot hold many before their hellos
        if len(self.server.channels) >= self.server.max_sessions:
            self.server.stats.dropped_sessions += 1
            log.warning("NETCONF session refused: %d sessions open", len(self.server.channels))
            return False
        chan = self.conn.create_server_channel(encoding=None)
        session = Session(self.server, self.user, self.peer)
        self.server.channels.add(session)
        return chan, session


class Session(asyncssh.SSHServerSession):
    """One NETCONF session on an SSH channel."""

    def __init__(self, server: NetconfServer, user: User, peer: str) -> None:
        self.server = server
        self.user = user
        self.peer = peer
        self.id = 0
        self.login_time = now_iso()
        self.counters = Counters()
        self.chunked = False
        self.hello_done = False
        self.subscription: Subscription | None = None
        self.close_after_reply = False
        self.after_reply: list[Callable[[], None]] = []
        self._chan: asyncssh.SSHServerChannel | None = None
        self._decoder = framing.FrameDecoder(server.max_message)
        self._pending: collections.deque = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._hello_timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._closed = False
        self._ops = Operations(server, self)
        self._write_ready = asyncio.Event()
        self._write_ready.set()
        self._out: list[bytes] = []
        self._out_size = 0

    # -- asyncssh callbacks ------------------------------------------------------------------
    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:
        self._chan = chan

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == "netconf"

    def session_started(self) -> None:
        self.id = self.server.new_session_id()
        self.server.sessions[self.id] = self
        self.server.stats.in_sessions += 1
        self._send(self._hello())
        self._hello_timer = asyncio.get_running_loop().call_later(self.server.hello_timeout, self._hello_expired)
        self._task = asyncio.ensure_future(self._serve())
        log.info("NETCONF session %d opened by %s (%s) from %s", self.id, self.user.name, self.user.role, self.peer)

    def data_received(self, data: bytes, datatype) -> None:
        try:
            messages = self._decoder.feed(data)
            while messages:
                more = []
                for message in messages:
                    if not self.hello_done:
                        if not self._on_hello(message):
                            return
                        more = self._decoder.feed(b"")
                    else:
                        self._pending.append(message)
                messages = more
        except framing.FramingError as exc:
            self._send(self._error_reply(None, RpcError("malformed-message", f"framing error: {exc}", type="rpc")))
            self._close(f"framing error: {exc}")
            return
        if self._pending:
            self._wake.set()
            if len(self._pending) > _PENDING_LIMIT and not self._paused and self._chan is not None:
                self._paused = True
                self._chan.pause_reading()

    def eof_received(self) -> bool:
        self._close("client closed the channel")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._close("connection lost")

    def pause_writing(self) -> None:
        self._write_ready.clear()

    def resume_writing(self) -> None:
        self._write_ready.set()

    # -- hello --------------------------------------------------------------------------------------
    def _hello(self) -> bytes:
        hello = etree.Element(_B + "hello", nsmap={None: BASE_NS})
        caps = etree.SubElement(hello, _B + "capabilities")
        for cap in self.server.capabilities:
            etree.SubElement(caps, _B + "capability").text = cap
        etree.SubElement(hello, _B + "session-id").text = str(self.id)
        return etree.tostring(hello, xml_declaration=True, encoding="UTF-8")

    def _on_hello(self, message) -> bool:
        """Check the client's hello and pick the framing; False when the session must end."""
        if isinstance(message, framing.Oversize):
            return self._bad_hello("hello larger than the message limit")
        try:
            root = xmlsafe.parse(message)
        except xmlsafe.XmlError as exc:
            return self._bad_hello(str(exc))
        if root.tag != _B + "hello":
            return self._bad_hello(f"expected <hello>, got <{etree.QName(root).localname}>")
        if root.find(_B + "session-id") is not None:
            return self._bad_hello("a client hello must not carry a session-id")
        caps = {(c.text or "").strip() for c in root.iterfind(f"{_B}capabilities/{_B}capability")}
        if BASE_11 in caps:
            self.chunked = True
            self._decoder.chunked = True
        elif BASE_10 not in caps:
            return self._bad_hello("the client supports neither base:1.0 nor base:1.1")
        self._decoder.awaiting_hello = False
        self.hello_done = True
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        return True

    def _bad_hello(self, why: str) -> bool:
        self.server.stats.in_bad_hellos += 1
        log.info("NETCONF session %d: bad hello: %s", self.id, why)
        self._close(f"bad hello: {why}")
        return False

    def _hello_expired(self) -> None:
        if not self.hello_done:
            self.server.stats.in_bad_hellos += 1
            self._close("no hello from the client")

    # -- RPCs ------------------------------------------------------------------------------------------
    async def _serve(self) -> None:
        try:
            while not self._closed:
                if not self._pending:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                message = self._pending.popleft()
                if self._paused and len(self._pending) < _PENDING_LIMIT // 2 and self._chan is not None:
                    self._paused = False
                    self._chan.resume_reading()
                reply = await self._handle(message)
                if reply is not None:
                    # replies to pipelined RPCs leave in one SSH write (one packet per 32 KiB, not per reply)
                    self._out.append(framing.encode(reply, self.chunked))
                    self._out_size += len(self._out[-1])
                    if not self._pending or self._out_size > 256 * 1024 or self.after_reply or self.close_after_reply:
                        await self._write_ready.wait()
                        self._flush()
                for callback in self.after_reply:
                    callback()
                self.after_reply.clear()
                if self.close_after_reply:
                    self._close("close-session")
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("NETCONF session %d failed", self.id)
            self._close("internal error")

    async def _handle(self, message) -> bytes | None:
        counters, stats = self.counters, self.server.stats
        counters.in_rpcs += 1
        stats.in_rpcs += 1
        if isinstance(message, framing.Oversize):
            return self._bad(None, RpcError(self._malformed_tag(), f"message of {message.size} bytes exceeds the "
                                            f"{self.server.max_message}-byte limit", type="rpc"))
        try:
            root = xmlsafe.parse(message)
        except xmlsafe.XmlError as exc:
            return self._bad(None, RpcError(self._malformed_tag(), str(exc), type="rpc"))
        if root.tag != _B + "rpc":
            qn = etree.QName(root)
            return self._bad(None, RpcError("unknown-element", f"expected <rpc>, got <{qn.localname}>"
                                            + (f" in namespace {qn.namespace}" if qn.namespace != BASE_NS else ""),
                                            type="rpc", info={"bad-element": qn.localname}))
        if root.get("message-id") is None:
            return self._bad(root, RpcError("missing-attribute", "<rpc> needs a message-id attribute", type="rpc",
                                            info={"bad-attribute": "message-id", "bad-element": "rpc"}))
        ops = [c for c in root if isinstance(c.tag, str)]
        if len(ops) != 1:
            return self._bad(root, RpcError("malformed-message" if not ops else "bad-element",
                                            "an <rpc> holds exactly one operation", type="rpc",
                                            info={"bad-element": "rpc"}))
        try:
            body = await self._ops.dispatch(ops[0])
        except RpcError as err:
            counters.out_rpc_errors += 1
            stats.out_rpc_errors += 1
            return self._error_reply(root, err)
        except EditErrors as errs:
            counters.out_rpc_errors += 1
            stats.out_rpc_errors += 1
            return self._error_reply(root, *errs.errors)
        except Exception:
            log.exception("NETCONF session %d: %s failed", self.id, etree.QName(ops[0]).localname)
            counters.out_rpc_errors += 1
            stats.out_rpc_errors += 1
            return self._error_reply(root, RpcError("operation-failed", "internal error; see the agent log"))
        reply = self._reply_element(root)
        if body:
            reply.extend(body)
        else:
            etree.SubElement(reply, _B + "ok")
        return etree.tostring(reply)

    def _malformed_tag(self) -> str:
        # malformed-message is new in base:1.1 and must not be sent on base:1.0 sessions (RFC 6241 Appendix A)
        return "malformed-message" if self.chunked else "operation-failed"

    def _bad(self, root, err: RpcError) -> bytes:
        self.counters.in_bad_rpcs += 1
        self.server.stats.in_bad_rpcs += 1
        self.counters.out_rpc_errors += 1
        self.server.stats.out_rpc_errors += 1
        return self._error_reply(root, err)

    @staticmethod
    def _reply_element(root) -> etree._Element:
        reply = etree.Element(_B + "rpc-reply", nsmap={None: BASE_NS})
        if root is not None:
            for name, value in root.attrib.items():
                reply.set(name, value)
        return reply

    def _error_reply(self, root, *errors: RpcError) -> bytes:
        reply = self._reply_element(root)
        for err in errors:
            reply.append(err.element())
        return etree.tostring(reply)

    # -- output ---------------------------------------------------------------------------------------------
    def _send(self, message: bytes) -> None:
        if self._chan is None or self._closed:
            return
        self._flush()
        self._chan.write(framing.encode(message, self.chunked and self.hello_done))

    def _flush(self) -> None:
        if self._out and self._chan is not None and not self._closed:
            self._chan.write(b"".join(self._out))
        self._out.clear()
        self._out_size = 0

    async def writable(self) -> None:
        """Return when the SSH channel is below its write high-water mark."""
        await self._write_ready.wait()

    def send_notification(self, message: bytes) -> None:
        """Write one notification (interleaved between RPC replies)."""
        if self._closed:
            return
        self.counters.out_notifications += 1
        self.server.stats.out_notifications += 1
        self._send(message)

    # -- ending -------------------------------------------------------------------------------------------------
    async def abort(self, why: str) -> None:
        """End the session now (kill-session, agent stop)."""
        self._close(why)
        await self._finish()

    def _close(self, why: str) -> None:
        if self._closed:
            return
        self._closed = True
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        if self.subscription is not None:
            self.subscription.close()
        if self._chan is not None:
            try:
                self._chan.close()
            except Exception:
                pass
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        log.info("NETCONF session %d closed: %s", self.id, why)
        asyncio.ensure_future(self._finish())

    async def _finish(self) -> None:
        self.server.channels.discard(self)
        if self.server.sessions.get(self.id) is self:
            del self.server.sessions[self.id]
            await self.server.datastores.session_ended(self.id)
