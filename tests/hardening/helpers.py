"""Helpers the hardening tests share: a plain gRPC gNMI client, a background event loop, RSS readings."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import grpc
from agent.gnmi_proto import gnmi_pb2, gnmi_pb2_grpc

from agent.gnmi.paths import parse
from tests.agentproc import USERS, AgentProcess

K8S_CONN = "/kubefabric-k8s:k8s/connection"
CONN_STATE = "/kubefabric-k8s:k8s/connection/state"


class Gnmi:
    """Synchronous gNMI calls (grpc stubs, username/password metadata) against an AgentProcess."""

    def __init__(self, agent: AgentProcess, user: str = "admin", timeout: float = 10.0) -> None:
        self.channel = grpc.insecure_channel(agent.gnmi_addr)
        self.stub = gnmi_pb2_grpc.gNMIStub(self.channel)
        self.metadata = (("username", user), ("password", USERS[user][0]))
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Gnmi":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set(self, path: str, value, op: str = "update") -> gnmi_pb2.SetResponse:
        update = gnmi_pb2.Update(path=parse(path), val=gnmi_pb2.TypedValue(json_ietf_val=json.dumps(value).encode()))
        req = gnmi_pb2.SetRequest(**{op: [update]}) if op != "delete" else gnmi_pb2.SetRequest(delete=[parse(path)])
        return self.stub.Set(req, metadata=self.metadata, timeout=self.timeout)

    def delete(self, path: str) -> gnmi_pb2.SetResponse:
        return self.stub.Set(gnmi_pb2.SetRequest(delete=[parse(path)]), metadata=self.metadata, timeout=self.timeout)

    def get(self, path: str = "/", data_type: str = "ALL") -> list:
        """Every (path string, decoded JSON value) the Get returned."""
        from agent.gnmi.paths import to_string

        req = gnmi_pb2.GetRequest(path=[parse(path)], encoding=gnmi_pb2.JSON_IETF,
                                  type=gnmi_pb2.GetRequest.DataType.Value(data_type))
        resp = self.stub.Get(req, metadata=self.metadata, timeout=self.timeout)
        out = []
        for n in resp.notification:
            for u in n.update:
                full = gnmi_pb2.Path(elem=list(n.prefix.elem) + list(u.path.elem))
                raw = u.val.json_ietf_val or u.val.json_val
                out.append((to_string(full), json.loads(raw) if raw else str(u.val)))
        return out

    def container(self, path: str) -> dict:
        """The leaves of one container or list entry (module prefixes dropped), {} when absent."""
        found = self.get(path)
        if not found or not isinstance(found[0][1], dict):
            return {}
        return {k.rsplit(":", 1)[-1]: v for k, v in found[0][1].items()}

    def get_raw(self, path: str = "/") -> bytes:
        req = gnmi_pb2.GetRequest(path=[parse(path)], encoding=gnmi_pb2.JSON_IETF)
        return self.stub.Get(req, metadata=self.metadata, timeout=self.timeout).SerializeToString()

    def subscribe_once_cycle(self, path: str = "/fabric") -> int:
        """Open a STREAM subscription, read to sync_response, cancel; returns the responses read."""
        req = gnmi_pb2.SubscribeRequest(subscribe=gnmi_pb2.SubscriptionList(
            mode=gnmi_pb2.SubscriptionList.STREAM, encoding=gnmi_pb2.JSON_IETF,
            subscription=[gnmi_pb2.Subscription(path=parse(path), mode=gnmi_pb2.ON_CHANGE)]))
        done = threading.Event()

        def requests():
            yield req
            done.wait(30)

        call = self.stub.Subscribe(requests(), metadata=self.metadata, timeout=30)
        n = 0
        try:
            for resp in call:
                n += 1
                if resp.sync_response:
                    break
        finally:
            done.set()
            call.cancel()
        return n


class BackgroundLoop:
    """An asyncio loop in a daemon thread (for simulators living beside a sync test)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def rss_kib(pid: int) -> int:
    """Resident set size of a process (KiB) from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.1, what: str = "condition"):
    """Poll until predicate() is truthy; returns it or raises AssertionError with the last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except grpc.RpcError as exc:
            value = exc
        if value and not isinstance(value, Exception):
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s (last: {value!r})")
