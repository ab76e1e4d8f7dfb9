"""Fabric replication end to end: real `kubefabric run --etcd ... --fabric f1`
agent processes on a real three-member etcd cluster, driven with pygnmi."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from pygnmi.client import gNMIException

from tests.fabric.agents import (
    OnChange, client, connections, create, fabric_agent, fabric_state, set_leaf, start_agents, status_of,
    update_paths, wait_ready,
)

pytestmark = pytest.mark.skipif(
    __import__("importlib").util.find_spec("agent.gnmi.server") is None, reason="agent/gnmi is not built yet")


@pytest.fixture
def fabric(etcd, tmp_path, fabric_name):
    """Start agents on the shared cluster: `fabric("A", "B", "C", owner_grace=2)`; all stopped at teardown."""
    started = []

    def start(*names, owner_grace: float = 10.0):
        agents = start_agents(tmp_path, names, etcd, fabric_name, owner_grace)
        started.extend(agents)
        return agents

    start.started = started
    yield start
    for a in started:
        try:
            a.stop(timeout=10)
        except Exception:
            a.kill()


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s (last {value!r})")
        time.sleep(interval)


def test_change_on_a_reaches_on_change_subscriber_on_c(fabric):
    a, b, c = fabric("A", "B", "C")
    with client(a) as ga, client(b) as gb, client(c) as gc:
        sub = OnChange(gc, "/k8s/connection")
        try:
            sub.wait_synced()
            t0 = time.perf_counter()
            create(ga, "k8s01", **{"create-vport": True})
            at, update = sub.wait_for(lambda u: any("k8s01" in p for p, _ in update_paths(u)), timeout=5)
            assert at - t0 < 1.0
            wait_until(lambda: connections(gb).get("k8s01", {}).get("owner") == "A", timeout=2)
            assert connections(gc)["k8s01"]["create-vport"] is True
            # a change made on B reaches the same subscriber on C
            set_leaf(gb, "k8s01", "enable", False)
            sub.wait_for(lambda u: any(p.endswith("enable") or (isinstance(v, dict) and v.get("enable") is False)
                                       for p, v in update_paths(u)), timeout=5)
        finally:
            sub.close()
        nodes = {n["name"]: n for n in fabric_state(ga)["node"]}
        assert set(nodes) == {"A", "B", "C"} and all(n["state"] == "online" for n in nodes.values())
        assert fabric_state(gc)["sync-state"] == "in-sync"


def test_racing_writers_on_three_agents_respect_the_caps(fabric):
    agents = fabric("A", "B", "C")
    clients = [client(a).__enter__() for a in agents]
    try:
        start = threading.Barrier(30)

        def one(i):
            gc = clients[i % 3]
            start.wait()
            try:
                create(gc, f"c{i:02d}")
                return None
            except gNMIException as exc:
                return exc

        with ThreadPoolExecutor(30) as pool:
            results = list(pool.map(one, range(30)))
        losers = [r for r in results if r is not None]
        assert len(losers) == 26
        assert {status_of(e) for e in losers} == {grpc.StatusCode.FAILED_PRECONDITION}, {str(e) for e in losers}
        assert all("four" in str(e) or "too many" in str(e) for e in losers)
        views = [wait_until(lambda g=g: len(connections(g)) == 4 and connections(g)) for g in clients]
        assert set(views[0]) == set(views[1]) == set(views[2])

        # two overlay enables on different agents at once: exactly one wins
        first, second = sorted(views[0])[:2]
        go = threading.Barrier(2)

        def enable(gc, name):
            go.wait()
            try:
                set_leaf(gc, name, "overlay-vxlan-analytics", True)
                return None
            except gNMIException as exc:
                return exc

        with ThreadPoolExecutor(2) as pool:
            outcome = list(pool.map(enable, [clients[0], clients[1]], [first, second]))
        errors = [e for e in outcome if e is not None]
        assert len(errors) == 1 and status_of(errors[0]) == grpc.StatusCode.FAILED_PRECONDITION
        assert "overlay" in str(errors[0])
        for g in clients:
            wait_until(lambda g=g: sum(bool(c.get("overlay-vxlan-analytics")) for c in connections(g).values()) == 1)
    finally:
        for g in clients:
            g.__exit__(None, None, None)


def test_etcd_member_faults(fabric, etcd):
    a, b, c = fabric("A", "B", "C")
    with client(a) as ga, client(b) as gb, client(c) as gc:
        create(ga, "k1")
        wait_until(lambda: "k1" in connections(gc))
        etcd.kill(etcd.leader_index() or 0)
        create(gb, "k2")  # one member down: writes still succeed
        wait_until(lambda: "k2" in connections(ga) and "k2" in connections(gc))
        down = [i for i, m in enumerate(etcd.members) if not m.running]
        second = next(i for i in range(3) if i not in down)
        etcd.kill(second)
        t0 = time.monotonic()
        with pytest.raises(gNMIException) as err:
            create(ga, "k3")
        assert time.monotonic() - t0 < 10
        assert status_of(err.value) == grpc.StatusCode.UNAVAILABLE
        for g in (ga, gb, gc):  # reads are served, flagged stale, nothing half-written
            wait_until(lambda g=g: fabric_state(g).get("sync-state") == "stale", timeout=8)
            assert set(connections(g)) == {"k1", "k2"}
        with pytest.raises(gNMIException) as err:
            set_leaf(gc, "k1", "create-vport", True)
        assert status_of(err.value) == grpc.StatusCode.UNAVAILABLE
        for i, m in enumerate(etcd.members):
            if not m.running:
                etcd.restart(i)
        for g in (ga, gb, gc):
            wait_until(lambda g=g: fabric_state(g).get("sync-state") == "in-sync", timeout=15)
        create(gc, "k4")
        for g in (ga, gb, gc):
            wait_until(lambda g=g: "k4" in connections(g))
            names = set(connections(g))
            assert {"k1", "k2", "k4"} <= names and "k3" not in names or names == {"k1", "k2", "k3", "k4"}
        assert connections(ga) == connections(gb) == connections(gc)


def test_owner_agent_killed_ownership_moves(fabric):
    grace = 2.0
    a, b, c = fabric("A", "B", "C", owner_grace=grace)
    with client(b) as gb, client(c) as gc:
        with client(a) as ga:
            create(ga, "k1")
        wait_until(lambda: connections(gb).get("k1", {}).get("owner") == "A")
        a.kill()
        t0 = time.monotonic()
        def new_owner():
            owner = connections(gb).get("k1", {}).get("owner")
            return owner if owner not in (None, "A") else None

        owner = wait_until(new_owner, timeout=grace + 3 + 5)
        took = time.monotonic() - t0
        assert owner in ("B", "C")
        assert took < grace + 3 + 3, took  # lease TTL 3 s + grace + a little
        wait_until(lambda: connections(gc).get("k1", {}).get("owner") == owner)
        nodes = {n["name"]: n for n in fabric_state(gc)["node"]}
        assert nodes["A"]["state"] == "offline" and nodes["A"]["last-seen"]


def test_restart_keeps_everything_new_agent_gets_full_config_and_starts_without_etcd(
        fabric, etcd, tmp_path, fabric_name):
    a, b = fabric("A", "B")
    with client(a) as ga:
        create(ga, "k1", **{"create-vport": True})
        create(ga, "k2", **{"overlay-vxlan-analytics": True})
        before = connections(ga)
    assert {c["owner"] for c in before.values()} == {"A"}
    # the owner restarts (well within its 10 s grace): config and ownership stay
    assert a.stop() == 0
    a.start(expect_ready=False)
    wait_ready(a)
    with client(a) as ga, client(b) as gb:
        assert connections(ga) == before
        assert fabric_state(ga)["sync-state"] == "in-sync"
        time.sleep(1.0)
        assert connections(gb) == before
    # a brand-new agent joining the fabric gets the full config
    d = fabric_agent(tmp_path, "D", etcd, fabric_name)
    fabric.started.append(d)
    d.start(expect_ready=False)
    wait_ready(d)
    with client(d) as gd:
        assert connections(gd) == before
        wait_until(lambda: {n["name"] for n in fabric_state(gd)["node"]} == {"A", "B", "D"})
    # D restarted while etcd is down: it serves its cached copy, flagged stale, and refuses writes
    assert d.stop() == 0
    for i in range(len(etcd.members)):
        etcd.kill(i)
    d.start(expect_ready=False)
    wait_ready(d, timeout=30)
    with client(d) as gd:
        assert connections(gd) == before
        assert fabric_state(gd)["sync-state"] == "stale"
        with pytest.raises(gNMIException) as err:
            create(gd, "k3")
        assert status_of(err.value) == grpc.StatusCode.UNAVAILABLE
        for i in range(len(etcd.members)):
            etcd.restart(i)
        wait_until(lambda: fabric_state(gd).get("sync-state") == "in-sync", timeout=20)
        create(gd, "k3")
    with client(b) as gb:
        wait_until(lambda: "k3" in connections(gb))
