"""Partitions, as fabrics fail: three switches in network namespaces, an etcd member (TLS, client
certificates, etcd auth) and a real `kubefabric run` agent on each, joined by a bridge; one switch's
fabric link is taken down and brought back (tests/fabric/netfabric.py).  The test talks gNMI (pygnmi)
to each agent over its management link, which stays up, as a switch's management port does.

* one cut: the isolated agent refuses writes (UNAVAILABLE, "quorum is lost"), answers reads from the
  last known state marked stale; the majority keeps accepting writes with the caps still holding;
  the isolated owner's Kubernetes connection moves to the majority; after the heal the isolated agent
  converges, nothing refused is resurrected, ownership stays where the documented rule puts it, and
  no subscriber saw a value that etcd never committed.
* racing writers on all three agents across a cut (a small Jepsen-style history): every
  acknowledged write is in etcd's history and none is lost in the final state.
"""
from __future__ import annotations

import re
import threading
import time

import pytest
from pygnmi.client import gNMIException

from tests.fabric.agents import CONN, OnChange, client, connections, create, fabric_state, set_leaf, status_of
from tests.fabric.netfabric import NetFabric, wait_until, why_not

pytestmark = [pytest.mark.netns, pytest.mark.slow,
              pytest.mark.skipif(why_not() is not None, reason=why_not() or "")]

ISOLATED = 2


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    fabric = NetFabric(tmp_path_factory.mktemp("netns-fabric"))
    try:
        fabric.build()
        fabric.start_etcd()
        fabric.start_agents(owner_grace=3.0)
        yield fabric
    finally:
        fabric.close()


def sync_state(agent) -> str | None:
    with client(agent) as gc:
        return fabric_state(gc).get("sync-state")


def conns(agent) -> dict[str, dict]:
    with client(agent) as gc:
        return connections(gc)


def committed_leaves(history) -> set[tuple[str, str, str]]:
    """(cluster, leaf, value) of kube-config and owner in every committed version of the config."""
    out = set()
    for _rev, tree in history:
        for conn in tree.get("kubefabric-k8s:k8s", {}).get("connection", []):
            for leaf in ("kube-config", "owner"):
                if leaf in conn:
                    out.add((conn["cluster-name"], leaf, str(conn[leaf])))
    return out


class LeafRecorder:
    """Every kube-config/owner value an ON_CHANGE subscriber on /k8s/connection receives."""

    def __init__(self, agent) -> None:
        self.gc = client(agent).__enter__()
        self.sub = OnChange(self.gc, CONN)
        self.sub.wait_synced(20)
        self.seen: set[tuple[str, str, str]] = set()

    def drain(self) -> set[tuple[str, str, str]]:
        while True:
            try:
                _at, update = self.sub.next(timeout=0.2)
            except Exception:
                return self.seen
            for upd in update.get("update", {}).get("update", []):
                path = upd.get("path", "")
                match = re.search(r"cluster-name=([^\]]+)\]", path)
                if not match:
                    continue
                val = upd.get("val")
                leaf = path.rsplit("/", 1)[-1].split(":")[-1]
                if leaf in ("kube-config", "owner"):
                    self.seen.add((match.group(1), leaf, str(val)))
                elif isinstance(val, dict):
                    for key, value in val.items():
                        key = key.split(":")[-1]
                        if key in ("kube-config", "owner"):
                            self.seen.add((match.group(1), key, str(value)))

    def close(self) -> None:
        self.sub.close()
        self.gc.__exit__(None, None, None)


def test_cut_one_switch_off_then_heal(net):
    a, b, c = net.agents
    watchers = [LeafRecorder(a), LeafRecorder(c)]
    try:
        with client(c) as gc:
            create(gc, "own-c")
        with client(a) as gc:
            create(gc, "k-a")
        with client(b) as gc:
            create(gc, "k-b")
        wait_until(lambda: all(len(conns(x)) == 3 for x in net.agents), 15, what="3 connections everywhere")
        before = conns(c)
        assert before["own-c"]["owner"] == "leaf2"

        net.cut(ISOLATED)
        t_cut = time.monotonic()
        wait_until(lambda: sync_state(c) == "stale", 20, what="isolated agent stale")
        detect = time.monotonic() - t_cut
        # writes through the isolated agent: refused, UNAVAILABLE, saying quorum is lost; nothing applied
        with client(c) as gc:
            with pytest.raises(gNMIException) as refused:
                set_leaf(gc, "k-a", "kube-config", "/refused/while-cut")
        assert status_of(refused.value) is not None and status_of(refused.value).name == "UNAVAILABLE"
        assert "quorum is lost" in refused.value.orig_exc.details(), refused.value.orig_exc.details()
        # reads: the last known state, marked stale
        assert conns(c) == before
        assert sync_state(c) == "stale"
        # the majority keeps accepting writes, and the cap of four still holds across it
        # (a watch that round_robin had put on the cut member moves on after gRPC keepalive gives up: poll)
        wait_until(lambda: sync_state(a) == sync_state(b) == "in-sync", 20, what="majority in-sync")
        with client(b) as gc:
            set_leaf(gc, "k-a", "kube-config", "/etc/kubefabric/majority")
        outcomes: dict[str, object] = {}

        def race(agent, name):
            try:
                with client(agent) as gc:
                    create(gc, name)
                outcomes[name] = "ok"
            except gNMIException as exc:
                outcomes[name] = (status_of(exc), exc.orig_exc.details() if exc.orig_exc else str(exc))

        threads = [threading.Thread(target=race, args=(a, "x-a")), threading.Thread(target=race, args=(b, "x-b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(v == "ok" for v in outcomes.values()) == [False, True], outcomes
        loser = next(v for v in outcomes.values() if v != "ok")
        assert loser[0].name == "FAILED_PRECONDITION" and "too-many-elements" in loser[1], loser
        # the isolated owner's connection moves to the majority (grace 3 s after its lease expired)
        taker = wait_until(lambda: conns(a)["own-c"]["owner"] if conns(a)["own-c"]["owner"] != "leaf2" else None,
                           40, what="ownership of own-c moved")
        assert taker in ("leaf0", "leaf1")
        majority = conns(a)
        assert len(majority) == 4
        wait_until(lambda: conns(b) == majority, 10, what="B agrees with A")
        assert conns(c) == before  # still the last known state while cut off

        net.heal(ISOLATED)
        t_heal = time.monotonic()
        wait_until(lambda: sync_state(c) == "in-sync" and conns(c) == conns(a), 60, what="isolated agent converged")
        convergence = time.monotonic() - t_heal
        # after the heal: ownership stays with the node that took it over (collectors/k8s/ownership.py)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            for agent in net.agents:
                assert conns(agent)["own-c"]["owner"] == taker
            time.sleep(0.5)
        # nothing refused is resurrected; nobody saw a value that was never committed
        history = net.config_history()
        committed = committed_leaves(history)
        assert ("k-a", "kube-config", "/refused/while-cut") not in committed
        for agent in net.agents:
            assert conns(agent)["k-a"]["kube-config"] == "/etc/kubefabric/majority"
        for watcher in watchers:
            seen = watcher.drain()
            assert seen, "the subscriber saw no change at all"
            assert seen <= committed, seen - committed
        print(f"\npartition (one cut): stale detected {detect:.1f}s after the cut; "
              f"heal-to-convergence {convergence:.2f}s; owner of own-c after heal: {taker}")
    finally:
        for watcher in watchers:
            watcher.close()


class Writer(threading.Thread):
    """Writes kube-config of its own connection j<agent> as fast as answers come; records every op."""

    def __init__(self, agent, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.agent = agent
        self.stop_event = stop
        self.ops: list[dict] = []

    def run(self) -> None:
        name = self.agent.node_name
        seq = 0
        gc = None
        while not self.stop_event.is_set():
            seq += 1
            value = f"/w/{name}/{seq}"
            op = {"agent": name, "seq": seq, "value": value, "start": time.monotonic()}
            try:
                if gc is None:
                    gc = client(self.agent).__enter__()
                set_leaf(gc, f"j{name}", "kube-config", value)
                op["result"] = "ok"
            except gNMIException as exc:
                code = status_of(exc)
                details = exc.orig_exc.details() if getattr(exc, "orig_exc", None) is not None else str(exc)
                # "did not confirm" = the transaction may or may not have been committed (Jepsen's "info")
                op["result"] = ("indeterminate" if code is None or "did not confirm" in details
                                else "refused" if code.name == "UNAVAILABLE" else f"error {code.name}")
                op["details"] = details
            except Exception as exc:  # the client's connection broke: indeterminate
                op["result"] = "indeterminate"
                op["details"] = repr(exc)
                gc = None
            op["end"] = time.monotonic()
            self.ops.append(op)
            time.sleep(0.02)
        if gc is not None:
            gc.__exit__(None, None, None)


def test_racing_writes_across_a_cut_lose_nothing(net):
    a, b, c = net.agents
    wait_until(lambda: all(sync_state(x) == "in-sync" for x in net.agents), 60, what="all in-sync")
    with client(a) as gc:
        gc.set(delete=[CONN], encoding="json_ietf")
    wait_until(lambda: all(conns(x) == {} for x in net.agents), 15, what="no connections anywhere")
    for agent in net.agents:
        with client(agent) as gc:
            create(gc, f"j{agent.node_name}")
    wait_until(lambda: all(len(conns(x)) == 3 for x in net.agents), 15, what="three writers' connections")

    stop = threading.Event()
    writers = [Writer(agent, stop) for agent in net.agents]
    for w in writers:
        w.start()
    time.sleep(3)
    net.cut(ISOLATED)
    t_cut = time.monotonic()
    time.sleep(8)
    acked_before_heal = {w.agent.node_name: max((op["seq"] for op in w.ops if op["result"] == "ok"), default=0)
                         for w in writers}
    net.heal(ISOLATED)
    t_heal = time.monotonic()

    def converged():
        if sync_state(c) != "in-sync":
            return False
        view = conns(c)
        return all(int(view[f"j{n}"]["kube-config"].rsplit("/", 1)[1]) >= acked_before_heal[n]
                   for n in ("leaf0", "leaf1"))

    wait_until(converged, 60, interval=0.05, what="isolated agent caught up")
    convergence = time.monotonic() - t_heal
    time.sleep(3)
    stop.set()
    for w in writers:
        w.join(30)
    wait_until(lambda: conns(a) == conns(b) == conns(c), 30, what="identical final state")
    final = conns(a)
    history = net.config_history()
    committed = committed_leaves(history)

    ops = [op for w in writers for op in w.ops]
    acked = [op for op in ops if op["result"] == "ok"]
    refused = [op for op in ops if op["result"] == "refused"]
    indeterminate = [op for op in ops if op["result"] == "indeterminate"]
    other = [op for op in ops if op["result"] not in ("ok", "refused", "indeterminate")]
    lost = [op for op in acked if (f"j{op['agent']}", "kube-config", op["value"]) not in committed]
    for w in writers:  # the final value is the last acknowledged write or a later one (never older)
        last_acked = max((op["seq"] for op in w.ops if op["result"] == "ok"), default=0)
        final_seq = int(final[f"j{w.agent.node_name}"]["kube-config"].rsplit("/", 1)[1])
        if final_seq < last_acked:
            lost.append({"agent": w.agent.node_name, "seq": last_acked, "final": final_seq})
    resurrected = [op for op in refused if (f"j{op['agent']}", "kube-config", op["value"]) in committed]
    landed = [op for op in indeterminate if (f"j{op['agent']}", "kube-config", op["value"]) in committed]
    cut_ops = [op for op in writers[ISOLATED].ops
               if op["start"] > t_cut + 0.5 and op["end"] < t_heal and op["result"] == "ok"]
    print(f"\npartition report: attempted={len(ops)} acknowledged={len(acked)} refused={len(refused)} "
          f"indeterminate={len(indeterminate)} (of which committed: {len(landed)}) lost={len(lost)} "
          f"resurrected={len(resurrected)} heal-to-convergence={convergence:.2f}s")
    assert not other, other[:3]
    assert lost == [], lost[:5]
    assert resurrected == [], resurrected[:5]
    assert refused, "the isolated agent refused nothing: was it cut off?"
    assert all("quorum is lost" in op["details"] for op in refused), {op["details"] for op in refused}
    assert cut_ops == [], "the isolated agent acknowledged writes while it had no quorum"
    assert len(acked) > 20
