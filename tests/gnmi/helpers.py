"""In-process gNMI server on a real Datastore, and a raw grpc.aio client for it.

State-heavy behaviours (ON_CHANGE of list entries, deletes, bursts, slow
subscribers) need a producer writing state; in-process tests write it with
ds.state.* while a real gRPC client talks to the real server over loopback.
"""
from __future__ import annotations

import asyncio
import json

import grpc
from agent.gnmi_proto import gnmi_pb2, gnmi_pb2_grpc

from agent.auth import User
from core.datastore import Datastore
from agent.gnmi.paths import parse, to_string
from agent.gnmi.server import GnmiServer
from agent.gnmi.subscribe import Limits
from fabric_sync.embedded import EmbeddedFabricStore

VPORT = "/kubefabric-vport:vports/vport"
ADMIN = [("username", "admin"), ("password", "pw")]
VIEWER = [("username", "viewer"), ("password", "pw")]
END = object()


class FakeAuth:
    """admin/pw (network-admin) and viewer/pw (read-only)."""

    USERS = {"admin": User("admin", "network-admin"), "viewer": User("viewer", "read-only")}

    def authenticate(self, username, password):
        if password != "pw":
            return None
        return self.USERS.get(username)

    def user(self, username):
        return self.USERS.get(username)

    def groups(self, username):
        """NACM groups: the role (as the settings file gives them)."""
        user = self.USERS.get(username)
        return (user.role,) if user else ()


class Harness:
    """A started Datastore + GnmiServer and an aio stub."""

    def __init__(self, tmp_path, limits: Limits | None = None) -> None:
        self.ds = Datastore("leaf1", tmp_path, EmbeddedFabricStore(tmp_path, "leaf1"))
        self.limits = limits
        self.srv: GnmiServer | None = None

    async def start(self) -> "Harness":
        await self.ds.start()
        self.srv = GnmiServer(self.ds, FakeAuth(), addr="127.0.0.1:0", insecure=True, limits=self.limits)
        await self.srv.start()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.srv.bound_port}")
        self.stub = gnmi_pb2_grpc.gNMIStub(self.channel)
        return self

    async def stop(self) -> None:
        await self.channel.close()
        await self.srv.stop(0.1)
        await self.ds.stop()

    def subscribe(self, paths, mode="STREAM", sub_mode="ON_CHANGE", encoding="JSON_IETF", metadata=ADMIN, **kw):
        subs = []
        for p in paths:
            extra = {}
            if isinstance(p, tuple):
                p, extra = p
            s = gnmi_pb2.Subscription(path=parse(p), mode=gnmi_pb2.SubscriptionMode.Value(extra.pop("mode", sub_mode)), **extra)
            subs.append(s)
        ext = kw.pop("extension", None)
        sl = gnmi_pb2.SubscriptionList(
            subscription=subs, mode=gnmi_pb2.SubscriptionList.Mode.Value(mode),
            encoding=gnmi_pb2.Encoding.Value(encoding), **kw)
        req = gnmi_pb2.SubscribeRequest(subscribe=sl, extension=ext or [])
        return AioSub(self.stub, req, metadata)


class AioSub:
    """A Subscribe RPC whose responses are queued as they arrive."""

    def __init__(self, stub, request, metadata) -> None:
        self.out: asyncio.Queue = asyncio.Queue()
        self.responses: asyncio.Queue = asyncio.Queue()
        self.error: grpc.aio.AioRpcError | None = None
        first = request

        async def requests():
            yield first
            while True:
                msg = await self.out.get()
                if msg is None:
                    return
                yield msg

        self.call = stub.Subscribe(requests(), metadata=metadata)
        self.task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        try:
            async for r in self.call:
                self.responses.put_nowait(r)
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self.responses.put_nowait(END)

    async def next(self, timeout: float = 5.0):
        """The next SubscribeResponse, or END when the RPC finished."""
        return await asyncio.wait_for(self.responses.get(), timeout)

    async def until_sync(self, timeout: float = 5.0) -> list:
        """Notifications up to (not including) the next sync_response."""
        got = []
        while True:
            r = await self.next(timeout)
            if r is END:
                raise AssertionError(f"stream ended before sync_response: {self.error}")
            if r.sync_response:
                return got
            got.append(r.update)

    async def collect(self, timeout: float = 0.5) -> list:
        """Notifications that arrive until `timeout` passes without one."""
        got = []
        while True:
            try:
                r = await self.next(timeout)
            except asyncio.TimeoutError:
                return got
            if r is END:
                return got
            got.append(r.update)

    async def collect_for(self, seconds: float) -> list:
        """Every notification that arrives within `seconds`."""
        got = []
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return got
            try:
                r = await self.next(left)
            except asyncio.TimeoutError:
                return got
            if r is END:
                return got
            got.append(r.update)

    def poll(self) -> None:
        self.out.put_nowait(gnmi_pb2.SubscribeRequest(poll=gnmi_pb2.Poll()))

    def half_close(self) -> None:
        self.out.put_nowait(None)

    def cancel(self) -> None:
        self.call.cancel()


def plain(doc):
    """A JSON_IETF value with the module prefixes of its top-level members removed."""
    if isinstance(doc, dict):
        return {k.split(":", 1)[-1]: v for k, v in doc.items()}
    return doc


def flat(notifications) -> tuple[dict, list]:
    """({path string: value}, [deleted path strings]) of notifications, in order."""
    updates, deletes = {}, []
    for n in notifications:
        for d in n.delete:
            deletes.append(to_string(d))
            updates.pop(to_string(d), None)
        for u in n.update:
            updates[to_string(u.path)] = plain(value(u.val))
    return updates, deletes


def value(tv):
    kind = tv.WhichOneof("value")
    if kind in ("json_ietf_val", "json_val"):
        return json.loads(getattr(tv, kind))
    if kind == "leaflist_val":
        return [value(e) for e in tv.leaflist_val.element]
    return getattr(tv, kind)


def vport_row(i: int, **extra) -> dict:
    return {"owner": "leaf1", "mac": "00:00:00:00:00:01", "vlan": 4090, "svc-name": "c1", "hostname": f"node{i % 3}",
            "entity": f"pod-{i}", "power": "Running", "portgroup": "app:web", "status": "host,pod,k8s",
            "namespace": "default", "node-ip": "192.168.0.1", "host-network": False, **extra}


def ip(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
