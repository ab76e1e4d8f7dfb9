"""The CLI over SSH: the same shell and commands, served by the agent itself.

Users log in with a password or an SSH public key (the `ssh-keys` of their
`users:` entry), checked by the agent's Authenticator, so the same users and
roles as gNMI and NETCONF.  A session runs commands as that user through
`DatastoreBackend`: reads come from the datastore, writes go through
`ds.propose(..., face="cli")` after the role check, so a key login needs
no password and there is no loopback gNMI hop.

With a PTY (ssh, netmiko) the session is interactive with line editing,
history, Tab completion and `?` help; `ssh host COMMAND` runs one command
and exits with 0 or 1.  netmiko's pluribus driver works as against a
switch: it finds `CLI (USER@NODE) >`, sends `pager off`, then commands.

The host key (ed25519) is generated once as `cli-ssh-host-key` in the data
directory, so clients see the same key across restarts.
"""
from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import asyncssh

from agent.auth import Authenticator
from agent.settings import split_addr
from core.ports.stats import ComponentStats

from .backend import DatastoreBackend
from .engine import Engine
from .parser import complete, context_help
from .shell import prompt, respond
from core.datastore import Datastore

log = logging.getLogger("kubefabric.cli")

HOST_KEY_FILE = "cli-ssh-host-key"
DEFAULT_PORT = 2222
#: CLI sessions open at once; SSH connections (authenticated or not) are capped at twice this
MAX_SESSIONS = 32


def load_host_key(data_dir: Path) -> asyncssh.SSHKey:
    """The host key under data_dir, generated (mode 0600) the first time."""
    path = Path(data_dir) / HOST_KEY_FILE
    if path.exists():
        return asyncssh.read_private_key(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    data = key.export_private_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    log.info("generated CLI SSH host key %s (%s)", path, key.get_fingerprint())
    return key


class _Auth(asyncssh.SSHServer):
    """Password and public-key authentication against the agent's users."""

    def __init__(self, auth: Authenticator, connections: set, max_connections: int = 2 * MAX_SESSIONS) -> None:
        self._auth = auth
        self._connections = connections
        self._max_connections = max_connections
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        if len(self._connections) >= self._max_connections:
            log.warning("CLI SSH connection refused: %d connections open", len(self._connections))
            conn.close()
            return
        self._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        keys = self._auth.ssh_keys(username)
        if keys and self._conn is not None:
            try:
                self._conn.set_authorized_keys(asyncssh.import_authorized_keys("\n".join(keys)))
            except (ValueError, asyncssh.KeyImportError) as exc:
                log.warning("user %s: unusable ssh-keys entry: %s", username, exc)
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        # scrypt takes ~50 ms: keep it off the event loop
        user = await asyncio.get_running_loop().run_in_executor(None, self._auth.authenticate, username, password)
        if user is None:
            log.info("CLI SSH login failed for %r", username)
        return user is not None

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return False  # only keys from the user's ssh-keys (set in begin_auth) are accepted


class CliSshServer:
    """The CLI shell served over SSH by a running agent."""

    def __init__(self, ds: Datastore, authenticator: Authenticator, addr: str, settings=None,
                 max_sessions: int = MAX_SESSIONS, nacm=None, forwarder=None) -> None:
        self.ds = ds
        self.nacm = nacm
        self.forwarder = forwarder   # agent.forward.FabricForwarder: the `switch NAME|*` prefix
        self.auth = authenticator
        self.max_sessions = max_sessions
        self.sessions = 0
        self.host, self.port = split_addr(addr, DEFAULT_PORT)
        self.data_dir = Path(getattr(settings, "data_dir", None) or ds.data_dir)
        self._server: asyncssh.SSHAcceptor | None = None
        self._connections: set = set()
        self.address: str | None = None

    async def start(self) -> None:
        """Listen; raises OSError when the address is taken."""
        key = load_host_key(self.data_dir)
        self._server = await asyncssh.create_server(
            lambda: _Auth(self.auth, self._connections, 2 * self.max_sessions), self.host, self.port,
            server_host_keys=[key], process_factory=self._session, encoding="utf-8",
            line_editor=True, agent_forwarding=False, x11_forwarding=False, allow_scp=False,
            kbdint_auth=False, login_timeout=60,
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        self.port = port
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def statistics(self) -> ComponentStats:
        """CLI sessions open now."""
        return ComponentStats(sessions=self.sessions)

    async def stop(self) -> None:
        """Stop listening and close every session."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for conn in list(self._connections):
            conn.close()
        for conn in list(self._connections):
            try:
                await asyncio.wait_for(conn.wait_closed(), 2)
            except (asyncio.TimeoutError, Exception):
                pass
        self._connections.clear()

    async def _session(self, process: asyncssh.SSHServerProcess) -> None:
        username = process.get_extra_info("username")
        user = self.auth.user(username)
        if user is None:  # the user was removed while logging in
            process.stderr.write("unknown user\n")
            process.exit(1)
            return
        peer = process.get_extra_info("peername")
        if self.sessions >= self.max_sessions:
            log.warning("CLI SSH session of %s refused: %d sessions open", username, self.sessions)
            process.stderr.write(f"too many CLI sessions ({self.sessions} open); try again later\n")
            process.exit(1)
            return
        engine = Engine(DatastoreBackend(self.ds, user, face="cli-ssh",
                                         peer=f"{peer[0]}:{peer[1]}" if peer else "", nacm=self.nacm,
                                         authenticator=self.auth, forwarder=self.forwarder))
        self.sessions += 1
        try:
            if process.command:
                outcome = await _run(engine, process.command)
                if outcome.output:
                    process.stdout.write(outcome.output + "\n")
                if outcome.error:
                    process.stderr.write(outcome.error + "\n")
                process.exit(0 if outcome.ok else 1)
                return
            await self._interactive(process, engine, prompt(user.name, self.ds.node_name))
        except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
            process.exit(0)
        except (BrokenPipeError, ConnectionError, asyncssh.DisconnectError):
            pass
        finally:
            self.sessions -= 1
        process.exit(0)

    async def _interactive(self, process: asyncssh.SSHServerProcess, engine: Engine, text: str) -> None:
        _bind_keys(process, text)
        process.stdout.write(text)
        while True:
            try:
                line = await process.stdin.readline()
            except asyncssh.TerminalSizeChanged:
                continue
            except (asyncssh.SignalReceived, asyncssh.BreakReceived):  # Ctrl-C drops the line, as on a switch
                _clear_input(process)
                process.stdout.write("^C\n" + text)
                continue
            if line == "":  # EOF (Ctrl-D or the client closed)
                return
            outcome = await _run(engine, line, interactive=True)
            if outcome.output:
                process.stdout.write(outcome.output + "\n")
            if outcome.error:
                process.stdout.write(outcome.error + "\n")
            if outcome.exit:
                return
            process.stdout.write(text)


async def _run(engine: Engine, line: str, interactive: bool = False):
    """One line; a bug becomes one error line and a log entry, never a traceback for the user."""
    from .engine import Outcome

    try:
        return await (respond(engine, line) if interactive else engine.run(line))
    except Exception as exc:  # noqa: BLE001 - the session must survive
        log.exception("CLI command %r failed", line)
        return Outcome(error=f"internal error: {type(exc).__name__}: {exc}")


def _bind_keys(process: asyncssh.SSHServerProcess, text: str) -> None:
    """Tab completes, `?` shows help (only when the client asked for a PTY)."""
    chan = process.channel

    def show(lines: str) -> None:
        chan.write("\n" + lines + "\n" + text)

    def on_tab(line: str, pos: int):
        before = line[:pos]
        candidates = complete(before)
        if not candidates:
            return False
        start = pos if not before or before[-1].isspace() else pos - len(before.split()[-1])
        current = before[start:]
        common = os.path.commonprefix(candidates)
        if len(candidates) == 1:
            insert = candidates[0] + " "
        elif len(common) > len(current):
            insert = common
        else:
            show("  ".join(candidates))
            return line, pos
        new = line[:start] + insert + line[pos:]
        return new, start + len(insert)

    def on_help(line: str, pos: int):
        show(context_help(line[:pos]))
        return line, pos

    try:
        chan.register_key("\t", on_tab)
        chan.register_key("?", on_help)
    except (AssertionError, AttributeError):  # no PTY, no line editor: plain line input
        pass


def _clear_input(process: asyncssh.SSHServerProcess) -> None:
    try:
        process.channel.clear_input()
    except (AssertionError, AttributeError):  # no line editor
        pass
