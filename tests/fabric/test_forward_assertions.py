"""The member's checks on a forwarded request, one by one: a valid assertion is accepted once (a replay
is refused), and one made for another member, another RPC, another request, too long ago, or signed
by a key other than the one the forwarder published is refused; a role is never raised above what
the member itself grants that user."""
from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from pygnmi.spec.v080 import gnmi_pb2

import agent.forward as forward
from agent.auth import Authenticator, User, UserEntry, hash_password
from agent.forward import FabricForwarder, ForwardError


class FakeDs:
    def __init__(self, name, fabric):
        self.node_name = name
        self.fabric = fabric

    async def publish_node_state(self, kind, value):
        self.fabric.setdefault(kind, {})[self.node_name] = value
        return 1

    def node_states(self, kind):
        return {n: v for n, v in self.fabric.get(kind, {}).items() if n != self.node_name}

    def read(self, path):
        return iter(())


class Context:
    def __init__(self, metadata):
        self.metadata = metadata

    def invocation_metadata(self):
        return self.metadata


@pytest.fixture
async def pair(tmp_path):
    fabric: dict = {}
    auth = Authenticator([UserEntry("viewer", hash_password("x"), "read-only")])
    a = FabricForwarder(FakeDs("A", fabric), auth, tmp_path / "a.key", insecure=True)
    b = FabricForwarder(FakeDs("B", fabric), auth, tmp_path / "b.key", insecure=True)
    await a.start()
    await b.start()
    await asyncio.sleep(0.05)
    yield a, b
    await a.stop()
    await b.stop()


def request(target="B", path="x"):
    return gnmi_pb2.GetRequest(prefix=gnmi_pb2.Path(target=target), path=[gnmi_pb2.Path(
        elem=[gnmi_pb2.PathElem(name=path)])])


def test_the_key_file_is_private(pair, tmp_path):
    assert (tmp_path / "a.key").stat().st_mode & 0o077 == 0


def test_valid_once_then_a_replay(pair):
    a, b = pair
    req = request()
    md = a._sign("B", "Get", User("admin", "network-admin"), req)
    assert b.verify(Context(md), req, "Get") == User("admin", "network-admin")
    with pytest.raises(ForwardError, match="replay"):
        b.verify(Context(md), req, "Get")


@pytest.mark.parametrize("change, why", [
    (lambda a, req: (a._sign("C", "Get", User("u", "read-only"), req), req, "Get"), "another member"),
    (lambda a, req: (a._sign("B", "Set", User("u", "read-only"), req), req, "Get"), "another member or RPC"),
    (lambda a, req: (a._sign("B", "Get", User("u", "read-only"), req), request(path="y"), "Get"), "not the one"),
    (lambda a, req: (a._sign("B", "Get", User("u", "read-only"), req), request(target="C"), "Get"), "must target"),
])
def test_an_assertion_for_something_else_is_refused(pair, change, why):
    a, b = pair
    md, req, rpc = change(a, request())
    with pytest.raises(ForwardError, match=why) as refused:
        b.verify(Context(md), req, rpc)
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_old_assertions_and_other_keys_are_refused(pair, monkeypatch, tmp_path):
    a, b = pair
    req = request()
    real = time.time
    monkeypatch.setattr(forward.time, "time", lambda: real() - forward.MAX_SKEW - 5)
    old = a._sign("B", "Get", User("u", "read-only"), req)
    monkeypatch.setattr(forward.time, "time", real)
    with pytest.raises(ForwardError, match="older than"):
        b.verify(Context(old), req, "Get")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    a._private = Ed25519PrivateKey.generate()     # a key A never published
    with pytest.raises(ForwardError, match="does not match A's published key"):
        b.verify(Context(a._sign("B", "Get", User("u", "read-only"), req)), req, "Get")


def test_a_role_is_never_raised_above_the_members_own(pair):
    a, b = pair
    req = request()
    md = a._sign("B", "Get", User("viewer", "network-admin"), req)     # B knows viewer as read-only
    assert b.verify(Context(md), req, "Get").role == "read-only"
