"""EtcdFabricStore in-process against a real three-member etcd cluster:
replication, the fabric caps under racing writers, membership, ownership,
faults and restarts."""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from core.datastore import ConfigError, UnavailableError
from tests.fabric.conftest import CONN, FABRIC, NODE, add_conn, conn_names, eventually, set_leaf

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_replication_and_monotonic_revisions(make_node):
    a, b, c = [await make_node(n) for n in "ABC"]
    seen = []
    c.feed.subscribe(lambda batch: seen.extend(ch for ch in batch if ch.path == CONN))
    t0 = time.monotonic()
    rev1 = await a.propose(add_conn("k8s01"), user="admin", face="test")
    await eventually(lambda: "k8s01" in conn_names(c) and "k8s01" in conn_names(b), timeout=2)
    assert time.monotonic() - t0 < 0.5
    assert seen and seen[0].key == ("k8s01",)
    assert c.read_node(CONN, ("k8s01",))["owner"] == "A"
    rev2 = await b.propose(set_leaf("k8s01", "create-vport", True), user="admin", face="test")
    assert rev2 > rev1
    await eventually(lambda: a.read_node(CONN, ("k8s01",))["create-vport"] is True, timeout=2)
    await eventually(lambda: a.revision == b.revision == c.revision == rev2, timeout=2)


async def test_thirty_racing_creates_leave_exactly_four(make_node):
    nodes = [await make_node(n) for n in "ABC"]

    async def create(i):
        try:
            await nodes[i % 3].propose(add_conn(f"c{i:02d}"), user="admin", face="test")
            return None
        except ConfigError as exc:
            return exc

    results = await asyncio.gather(*(create(i) for i in range(30)))
    errors = [r for r in results if r is not None]
    assert len(errors) == 26
    assert all(e.app_tag == "too-many-elements" and e.grpc_code_name == "FAILED_PRECONDITION" for e in errors), \
        {str(e) for e in errors}
    await eventually(lambda: all(n.revision == nodes[0].revision for n in nodes), timeout=2)
    names = [conn_names(n) for n in nodes]
    assert len(names[0]) == 4 and names[0] == names[1] == names[2]


async def test_two_racing_overlay_enables_one_wins(make_node):
    a, b = await make_node("A"), await make_node("B")
    await a.propose(add_conn("x"), user="admin", face="test")
    await a.propose(add_conn("y"), user="admin", face="test")
    await eventually(lambda: conn_names(b) == {"x", "y"}, timeout=2)
    results = await asyncio.gather(
        a.propose(set_leaf("x", "overlay-vxlan-analytics", True), user="admin", face="test"),
        b.propose(set_leaf("y", "overlay-vxlan-analytics", True), user="admin", face="test"),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1, results
    assert errors[0].app_tag == "must-violation" and errors[0].grpc_code_name == "FAILED_PRECONDITION"
    await eventually(lambda: a.revision == b.revision, timeout=2)
    overlay = [c["cluster-name"] for c in a.config.raw["kubefabric-k8s:k8s"]["connection"]
               if c.get("overlay-vxlan-analytics")]
    assert len(overlay) == 1


async def test_membership_rows_and_sync_state(make_node):
    a = await make_node("A")
    b = await make_node("B")
    await eventually(lambda: a.read_node(FABRIC)["sync-state"] == "in-sync", timeout=3)
    await eventually(lambda: (a.read_node(NODE, ("B",)) or {}).get("state") == "online", timeout=2)
    row = a.read_node(NODE, ("B",))
    assert row["role"] == "leaf" and row["address"].startswith("127.0.0.1:") and row["last-seen"].endswith("Z")
    await b.stop()
    await eventually(lambda: a.read_node(NODE, ("B",))["state"] == "offline", timeout=2)
    assert a.read_node(NODE, ("A",))["state"] == "online"


async def test_owner_moves_after_grace(make_node):
    a = await make_node("A", owner_grace=1.0)
    b = await make_node("B", owner_grace=1.0)
    c = await make_node("C", owner_grace=1.0)
    await a.propose(add_conn("k1"), user="admin", face="test")
    await eventually(lambda: "k1" in conn_names(b) and "k1" in conn_names(c), timeout=2)
    # a crash: the lease is not revoked, it expires after its TTL (3 s)
    for task in a.fabric._tasks:
        task.cancel()
    a.fabric.keeper.stop()
    await a.fabric.client.close()
    t0 = time.monotonic()
    owner = await eventually(lambda: (b.read_node(CONN, ("k1",))["owner"] in ("B", "C"))
                             and b.read_node(CONN, ("k1",))["owner"], timeout=12)
    took = time.monotonic() - t0
    assert took < 3 + 1.0 + 3, took
    await eventually(lambda: c.read_node(CONN, ("k1",))["owner"] == owner, timeout=2)
    takeovers = make_node.takeovers
    await eventually(lambda: takeovers["B"].moves + takeovers["C"].moves == 1, timeout=2)
    await asyncio.sleep(0.5)
    assert takeovers["B"].moves + takeovers["C"].moves == 1


async def test_restart_keeps_config_and_new_node_gets_everything(make_node, tmp_path):
    a = await make_node("A")
    await a.propose(add_conn("k1"), user="admin", face="test")
    await a.propose(set_leaf("k1", "create-vport", True), user="admin", face="test")
    rev = a.revision
    await a.stop()
    a2 = await make_node("A", data_dir=tmp_path / "data-A")
    assert a2.revision == rev and a2.read_node(CONN, ("k1",))["owner"] == "A"
    d = await make_node("D")
    assert d.read_node(CONN, ("k1",))["create-vport"] is True
    assert d.revision == rev


async def test_watch_resyncs_after_compaction(make_node, etcd):
    a = await make_node("A")
    # B talks to member 2 only, so killing it cuts B off while A keeps writing
    b = await make_node("B", endpoints=[etcd.endpoints[2]])
    await a.propose(add_conn("k1"), user="admin", face="test")
    await eventually(lambda: "k1" in conn_names(b), timeout=2)
    etcd.kill(2)
    await eventually(lambda: b.read_node(FABRIC)["sync-state"] == "stale", timeout=6)
    for name in ("k2", "k3"):
        await a.propose(add_conn(name), user="admin", face="test")
    await a.fabric.client.compact(a.revision)
    etcd.restart(2)
    await eventually(lambda: conn_names(b) == {"k1", "k2", "k3"}, timeout=15)
    await eventually(lambda: b.read_node(FABRIC)["sync-state"] == "in-sync", timeout=5)
    assert b.revision == a.revision


async def test_quorum_loss_and_recovery(make_node, etcd):
    a = await make_node("A")
    b = await make_node("B")
    await a.propose(add_conn("k1"), user="admin", face="test")
    await eventually(lambda: "k1" in conn_names(b), timeout=2)
    etcd.kill(0)
    # one member down: writes still succeed
    await a.propose(add_conn("k2"), user="admin", face="test")
    await eventually(lambda: "k2" in conn_names(b), timeout=3)
    etcd.kill(1)
    t0 = time.monotonic()
    with pytest.raises(UnavailableError) as err:
        await a.propose(add_conn("k3"), user="admin", face="test")
    assert time.monotonic() - t0 < 10
    assert err.value.grpc_code_name == "UNAVAILABLE"
    await eventually(lambda: a.read_node(FABRIC)["sync-state"] == "stale"
                     and b.read_node(FABRIC)["sync-state"] == "stale", timeout=6)
    # reads keep serving the last applied state; a refused write leaves nothing behind
    assert conn_names(a) == conn_names(b) == {"k1", "k2"}
    t0 = time.monotonic()
    with pytest.raises(UnavailableError):
        await b.propose(add_conn("k4"), user="admin", face="test")
    assert time.monotonic() - t0 < 10
    etcd.restart(0)
    etcd.restart(1)
    await eventually(lambda: a.read_node(FABRIC)["sync-state"] == "in-sync"
                     and b.read_node(FABRIC)["sync-state"] == "in-sync", timeout=15)
    await b.propose(add_conn("k5"), user="admin", face="test")
    await eventually(lambda: "k5" in conn_names(a), timeout=2)
    assert conn_names(a) == conn_names(b)
    assert "k4" not in conn_names(a)


async def test_start_while_etcd_down_serves_cache_stale(make_node, tmp_path, fabric_name):
    a = await make_node("A")
    await a.propose(add_conn("k1"), user="admin", face="test")
    await a.stop()
    cache = json.loads((tmp_path / "data-A" / f"fabric-{fabric_name}.json").read_text())
    assert cache["config"]["kubefabric-k8s:k8s"]["connection"][0]["cluster-name"] == "k1"
    # point the restarted agent at a port where nothing listens
    from tests.agentproc import free_port

    t0 = time.monotonic()
    a2 = await make_node("A", endpoints=[f"http://127.0.0.1:{free_port()}"], data_dir=tmp_path / "data-A",
                         connect_timeout=1.0)
    assert time.monotonic() - t0 < 5
    assert conn_names(a2) == {"k1"}
    assert a2.read_node(FABRIC)["sync-state"] == "stale"
    with pytest.raises(UnavailableError):
        await a2.propose(add_conn("k2"), user="admin", face="test")


async def test_newer_tree_arriving_during_own_commit_is_not_lost(make_node):
    """Our write lands, another node writes on top and our watch sees both before
    etcd's answer to our commit comes back: the datastore must end on the newest tree."""
    a, b = await make_node("A"), await make_node("B")
    store = b.fabric
    real = store.client.transaction
    raced = []

    async def answer_late(*args, **kwargs):
        ok, responses = await real(*args, **kwargs)
        if ok and not raced:
            raced.append(True)
            ours = responses[0].response_put.header.revision
            await eventually(lambda: a.revision >= ours, timeout=2)
            await a.propose(add_conn("from-a"), user="admin", face="test")
            await eventually(lambda: store.revision >= a.revision, timeout=2)
        return ok, responses

    store.client.transaction = answer_late
    await b.propose(add_conn("from-b"), user="admin", face="test")
    assert raced
    await eventually(lambda: conn_names(b) == {"from-a", "from-b"}, timeout=2)
    assert b.revision == a.revision
    # and B's next write is based on the newest tree, so nothing of A's is lost
    await b.propose(add_conn("again-b"), user="admin", face="test")
    await eventually(lambda: conn_names(a) == {"from-a", "from-b", "again-b"}, timeout=2)
