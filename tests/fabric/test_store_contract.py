"""The FabricStore contract (core.ports.fabric), checked on both backends (embedded file
store and etcd): the initial tree arrives through FabricEvents.fabric_config, commits
return growing revisions, a write based on a stale revision never lands, members and
sync state are reported, a fabric lock has one holder, and the datastore on top turns
racing writes into the YANG cap errors."""
from __future__ import annotations

import asyncio

import pytest

from core.datastore import ConfigError, Datastore
from core.errors import ConflictError
from fabric_sync.embedded import EmbeddedFabricStore
from tests.fabric.conftest import add_conn

pytestmark = pytest.mark.asyncio(loop_scope="session")

class Recorder:
    """FabricEvents that remember what the store reported."""

    def __init__(self, seen: list | None = None) -> None:
        self.seen = seen if seen is not None else []
        self.members: list = []
        self.sync: list[str] = []
        self.states: list = []

    def fabric_config(self, tree, revision):
        self.seen.append((tree, revision))

    def fabric_members(self, members):
        self.members = list(members)

    def fabric_sync(self, state):
        self.sync.append(state)

    def fabric_node_state(self, node, kind, value, revision):
        self.states.append((node, kind, value, revision))


TREE = {"kubefabric-k8s:k8s": {"connection": [{"cluster-name": "k1", "kube-config": "/k", "owner": "A"}]}}


@pytest.fixture(params=["embedded", "etcd"])
def backend(request, tmp_path):
    """A factory of fresh FabricStores of one backend sharing one fabric."""
    if request.param == "embedded":
        return lambda name="A": EmbeddedFabricStore(tmp_path, name)
    etcd = request.getfixturevalue("etcd")
    fabric = request.getfixturevalue("fabric_name")
    from fabric_sync.etcd import EtcdFabricStore

    return lambda name="A": EtcdFabricStore(etcd.endpoints, fabric, name, data_dir=tmp_path / name)


async def test_commit_revisions_grow_and_stale_base_is_refused(backend):
    store = backend()
    seen = []
    await store.start(Recorder(seen))
    try:
        assert len(seen) == 1 and seen[0][0] == {}
        base = seen[0][1]
        rev1 = await store.commit(base, TREE, {"node": "A", "user": "t"})
        assert rev1 > base
        with pytest.raises(ConflictError):
            await store.commit(base, {}, {"node": "A", "user": "t"})
        rev2 = await store.commit(rev1, {}, {"node": "A", "user": "t"})
        assert rev2 > rev1
        assert [m.state for m in store.members() if m.name == "A"] == ["online"]
    finally:
        await store.stop()


async def test_restart_restores_the_tree(backend):
    store = backend()
    await store.start(Recorder())
    rev = await store.commit(store.revision, TREE, {"node": "A", "user": "t"})
    await store.stop()
    again = backend()
    seen = []
    await again.start(Recorder(seen))
    try:
        assert seen[-1] == (TREE, rev)
    finally:
        await again.stop()


async def test_datastore_caps_hold_on_each_backend(backend, tmp_path):
    ds = Datastore("A", tmp_path / "ds", backend())
    await ds.start()
    try:
        results = await asyncio.gather(
            *(ds.propose(add_conn(f"c{i}"), user="t", face="test") for i in range(6)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, ConfigError)]
        assert len(errors) == 2 and all(e.app_tag == "too-many-elements" for e in errors)
    finally:
        await ds.stop()


async def test_sync_members_and_a_lock_with_one_holder(backend):
    store = backend()
    events = Recorder()
    await store.start(events)
    try:
        assert store.sync_state == "in-sync"
        assert "A" in store.online_names() and store.offline_for("A") is None
        assert [m.name for m in store.members()] == ["A"]
        async with store.lock("k8s-takeover/k1") as first:
            assert first is True
            async with store.lock("k8s-takeover/k1") as second:
                assert second is False  # held: nobody else gets it, not even this node again
            async with store.lock("k8s-takeover/k2") as other:
                assert other is True
        async with store.lock("k8s-takeover/k1") as again:
            assert again is True  # released on exit
    finally:
        await store.stop()


async def test_node_state_is_accepted_and_checked(backend):
    """Both backends take a per-node state, refuse an oversized one, and tell nobody about our own."""
    store = backend()
    events = Recorder()
    await store.start(events)
    try:
        first = await store.publish_node_state("topology", {"attachments": [{"port": "eth1"}]})
        second = await store.publish_node_state("topology", {"attachments": []})
        assert second > first
        import os
        with pytest.raises(ValueError):   # random bytes do not compress: over the limit either way
            await store.publish_node_state("topology", {"blob": os.urandom(3_000_000).hex()})
        await store.publish_node_state("topology", None)
        await asyncio.sleep(0.3)
        assert events.states == []   # our own state is not reported back to us
    finally:
        await store.stop()
