"""Clients for the NETCONF tests: ncclient (what people use) and a raw asyncssh client (for bad input)."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import asyncssh
from lxml import etree
from ncclient import manager

from agent.netconf.framing import FrameDecoder, encode
from tests.agentproc import USERS

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
K8S = "urn:kubefabric:yang:kubefabric-k8s"
CONN = "urn:kubefabric:yang:kubefabric-connection"
FABRIC = "urn:kubefabric:yang:kubefabric-fabric"
VPORT = "urn:kubefabric:yang:kubefabric-vport"
NSMAP = {"nc": NC, "k8s": K8S, "conn": CONN, "fabric": FABRIC, "vport": VPORT}


def connect(port: int, user: str = "admin", password: str | None = None, **kwargs) -> manager.Manager:
    """An ncclient session as `user` (test password unless given)."""
    return manager.connect(
        host="127.0.0.1", port=port, username=user, password=password or USERS[user][0],
        hostkey_verify=False, look_for_keys=False, allow_agent=False, timeout=30, **kwargs,
    )


def connection_xml(name: str, kube_config: str = "/etc/kubefabric/k.conf", op: str | None = None, **leaves) -> str:
    """<config> holding one k8s connection."""
    attr = f' xmlns:nc="{NC}" nc:operation="{op}"' if op else ""
    extra = "".join(f"<{k.replace('_', '-')}>{str(v).lower() if isinstance(v, bool) else v}</{k.replace('_', '-')}>"
                    for k, v in leaves.items())
    kc = f"<kube-config>{kube_config}</kube-config>" if kube_config else ""
    return (f'<config><k8s xmlns="{K8S}"><connection{attr}><cluster-name>{name}</cluster-name>{kc}{extra}'
            f"</connection></k8s></config>")


def connection_names(data_xml: str | etree._Element) -> list[str]:
    root = etree.fromstring(data_xml.encode()) if isinstance(data_xml, str) else data_xml
    return [e.text for e in root.iterfind(".//k8s:k8s/k8s:connection/k8s:cluster-name", NSMAP)]


def running_names(m: manager.Manager, source: str = "running") -> list[str]:
    return connection_names(m.get_config(source).data_xml)


class RawClient:
    """A NETCONF client written on asyncssh, to send what ncclient never would."""

    def __init__(self, port: int, user: str = "admin") -> None:
        self.port = port
        self.user = user
        self.decoder = FrameDecoder(1 << 30)
        self.messages: asyncio.Queue = asyncio.Queue()
        self.hello: etree._Element | None = None
        self.chunked = False
        self.closed = asyncio.Event()

    async def open(self, base11: bool = True) -> "RawClient":
        self.conn = await asyncssh.connect(
            "127.0.0.1", self.port, username=self.user, password=USERS[self.user][0], known_hosts=None,
        )
        self.chan, _ = await self.conn.create_session(lambda: _RawSession(self), subsystem="netconf", encoding=None)
        self.hello = etree.fromstring(await asyncio.wait_for(self.messages.get(), 10))
        caps = "<capability>urn:ietf:params:netconf:base:1.0</capability>" + (
            "<capability>urn:ietf:params:netconf:base:1.1</capability>" if base11 else "")
        self.chan.write(encode(f'<hello xmlns="{NC}"><capabilities>{caps}</capabilities></hello>'.encode(), False))
        if base11:
            self.chunked = True
            self.decoder.chunked = True
        self.decoder.awaiting_hello = False
        return self

    def send(self, message: bytes | str) -> None:
        if isinstance(message, str):
            message = message.encode()
        self.chan.write(encode(message, self.chunked))

    def send_raw(self, data: bytes) -> None:
        self.chan.write(data)

    async def recv(self, timeout: float = 10) -> etree._Element:
        return etree.fromstring(await asyncio.wait_for(self.messages.get(), timeout))

    async def rpc(self, body: str, message_id: str = "1") -> etree._Element:
        self.send(f'<rpc xmlns="{NC}" message-id="{message_id}">{body}</rpc>')
        return await self.recv()

    async def close(self) -> None:
        self.conn.close()
        await self.conn.wait_closed()


class _RawSession(asyncssh.SSHClientSession):
    def __init__(self, client: RawClient) -> None:
        self.client = client

    def data_received(self, data: bytes, datatype) -> None:
        for message in self.client.decoder.feed(data):
            self.client.messages.put_nowait(message)
            if self.client.hello is None and not self.client.decoder.chunked:
                pass

    def connection_lost(self, exc) -> None:
        self.client.closed.set()


def error_fields(reply: etree._Element) -> dict:
    """The first rpc-error's fields by local name."""
    err = reply.find(f"{{{NC}}}rpc-error")
    assert err is not None, etree.tostring(reply).decode()
    out = {etree.QName(c).localname: (c.text or "").strip() for c in err}
    info = err.find(f"{{{NC}}}error-info")
    if info is not None:
        out.update({f"info:{etree.QName(c).localname}": (c.text or "").strip() for c in info})
    return out


class InProcessAgent:
    """A NetconfServer on a real Datastore in a background event loop (to inject state and history)."""

    def __init__(self, data_dir: Path, extra_users: list | None = None, **server_kwargs) -> None:
        from agent.auth import Authenticator, UserEntry
        from tests.agentproc import users_config

        self.data_dir = data_dir
        self.server_kwargs = server_kwargs
        self.loop = asyncio.new_event_loop()
        users = [UserEntry(u["name"], u["password-hash"], u["role"]) for u in users_config()]
        self.auth = Authenticator(users + list(extra_users or ()))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> "InProcessAgent":
        from core.datastore import Datastore
        from agent.netconf import NetconfServer
        from fabric_sync.embedded import EmbeddedFabricStore

        async def boot():
            self.ds = Datastore("leaf1", self.data_dir, EmbeddedFabricStore(self.data_dir, "leaf1"))
            await self.ds.start()
            self.server = NetconfServer(self.ds, self.auth, "127.0.0.1:0", **self.server_kwargs)
            await self.server.start()

        self.loop.run_until_complete(boot())
        self.thread.start()
        self.port = int(self.server.address.rsplit(":", 1)[1])
        return self

    def call(self, fn, *args, timeout: float = 10):
        """Run `fn(*args)` (sync or coroutine function) in the agent's loop and return its result."""
        async def run():
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self) -> None:
        async def down():
            await self.server.stop()
            await self.ds.stop()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
