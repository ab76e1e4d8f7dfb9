"""TopologyProducer against a real datastore and time machine: this switch's rows, another switch's
shared state turned into rows, the locator the vPort table reads, unplaced nodes with the reason,
history that follows a cable move, sources that fail, and bad shared state that changes nothing else."""
from __future__ import annotations

import asyncio
import time

from collectors.topology.lldp import SourceReport
from collectors.topology.producer import NODES_KIND, TOPOLOGY_KIND, TopologyProducer
from core import schema_paths

from .conftest import Scripted, add_k8s_node, lldp_report, netlink_report

ATTACHMENT = schema_paths.ATTACHMENT
UNPLACED = schema_paths.UNPLACED
SOURCE = schema_paths.TOPOLOGY_SOURCE


def producer(ds, lldp=None, netlink=None, **kw):
    return TopologyProducer(ds.state, ds.feed, ds.test_history, ds, "leaf1", lldp=lldp, netlink=netlink,
                            membership=ds.fabric, interval=3600, **kw)


async def test_local_rows_sources_and_unplaced(ds):
    add_k8s_node(ds, "node1", "10.0.0.1")
    add_k8s_node(ds, "node2", "10.0.0.2")
    add_k8s_node(ds, "node3", "10.0.0.3")
    lldp = Scripted(lldp_report(("eth1", "node1")))
    nl = Scripted(netlink_report(fdb=[("02:00:00:00:00:02", "eth2", 10)], arp=[("10.0.0.2", "02:00:00:00:00:02")]))
    topo = producer(ds, lldp, nl)
    await topo.start()
    try:
        rows = ds.state.entries(ATTACHMENT)
        assert set(rows) == {("leaf1", "eth1", "prod", "node1"), ("leaf1", "eth2", "prod", "node2")}
        assert rows[("leaf1", "eth2", "prod", "node2")]["vlan"] == 10
        assert rows[("leaf1", "eth1", "prod", "node1")]["first-seen"]
        unplaced = ds.state.entries(UNPLACED)
        assert set(unplaced) == {("prod", "node3")}
        assert "no switch sees an LLDP neighbour named node3" in unplaced[("prod", "node3")]["reason"]
        assert "10.0.0.3" in unplaced[("prod", "node3")]["reason"]
        sources = ds.state.entries(SOURCE)
        assert sources[("lldp",)]["status"] == "up" and sources[("netlink",)]["status"] == "up"
        assert sources[("sflow",)]["status"] == "unavailable"
        assert topo.location("prod", "node1").ports == ("eth1",)
        assert topo.endpoint("10.0.0.2") == ("02:00:00:00:00:02", 10)
        assert topo.location("prod", "node3") is None
    finally:
        await topo.stop()


async def test_a_failing_source_is_reported_and_the_others_keep_working(ds):
    add_k8s_node(ds, "node1", "10.0.0.1")
    add_k8s_node(ds, "node2", "10.0.0.2")
    lldp = Scripted(lldp_report(("eth1", "node1")))
    nl = Scripted(netlink_report(fdb=[("02:00:00:00:00:02", "eth2", 0)], arp=[("10.0.0.2", "02:00:00:00:00:02")]))
    topo = producer(ds, lldp, nl)
    await topo.start()
    try:
        lldp.report = SourceReport("error", "lldpd does not answer: its control socket /x is gone (lldpd stopped?)")
        await topo.refresh()
        assert ds.state.get(SOURCE, ("lldp",))["status"] == "error"
        assert "lldpd stopped" in ds.state.get(SOURCE, ("lldp",))["detail"]
        assert set(ds.state.entries(ATTACHMENT)) == {("leaf1", "eth2", "prod", "node2")}
        assert "LLDP on leaf1: error" in ds.state.get(UNPLACED, ("prod", "node1"))["reason"]
    finally:
        await topo.stop()


async def test_other_switches_state_becomes_rows_and_locations(ds):
    seen = []
    add_k8s_node(ds, "node1", "10.0.0.1")
    topo = producer(ds, Scripted(lldp_report(("eth1", "node1"))), Scripted(netlink_report()))
    topo.on_change(seen.append)
    await topo.start()
    try:
        # leaf2 shares a node of a cluster leaf1 does not watch, and its attachment of node1 (dual-homed)
        ds.fabric_node_state("leaf2", NODES_KIND, {"nodes": [{"cluster-name": "dev", "name": "d1",
                                                             "addresses": ["10.1.0.1"]}]}, 10)
        ds.fabric_node_state("leaf2", TOPOLOGY_KIND, {
            "attachments": [{"switch": "leaf2", "port": "eth7", "cluster-name": "prod", "node": "node1",
                             "learned-by": ["lldp"], "in-discard-percent": 3.0},
                            {"port": "eth9", "cluster-name": "dev", "node": "d1", "learned-by": ["neighbor-fdb"]}],
            "endpoints": {"10.1.0.1": ["02:dd:00:00:00:01", 30]}, "hints": {}}, 11)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert ("leaf2", "eth7", "prod", "node1") in ds.state.entries(ATTACHMENT)
        assert topo.location("prod", "node1") == (("leaf1", "leaf2"), ("eth1", "eth7"))
        assert topo.location("dev", "d1") == (("leaf2",), ("eth9",))
        assert topo.endpoint("10.1.0.1") == ("02:dd:00:00:00:01", 30)
        assert any(("prod", "node1") in change.nodes for change in seen)
        # leaf2 withdraws: its rows go, node1 is single-homed again, d1 is unplaced (its node list stays)
        ds.fabric_node_state("leaf2", TOPOLOGY_KIND, None, 12)
        await asyncio.sleep(0)
        assert topo.location("prod", "node1") == (("leaf1",), ("eth1",))
        await topo.refresh()
        assert ("dev", "d1") in ds.state.entries(UNPLACED)
    finally:
        await topo.stop()


async def test_bad_shared_state_is_skipped_and_nothing_else_lost(ds):
    add_k8s_node(ds, "node1", "10.0.0.1")
    topo = producer(ds, Scripted(lldp_report(("eth1", "node1"))), Scripted(netlink_report()))
    await topo.start()
    try:
        ds.fabric_node_state("leaf3", TOPOLOGY_KIND, {"attachments": ["x", {"port": "eth1"}, None,
                                                                      {"port": "e5", "cluster-name": "prod",
                                                                       "node": "node1"}],
                                                      "endpoints": {"1.2.3.4": "nonsense"}, "hints": []}, 5)
        ds.fabric_node_state("leaf3", NODES_KIND, {"nodes": [{"name": "no-cluster"}, 7, {"cluster-name": "c",
                                                                                          "name": "ok"}]}, 6)
        await asyncio.sleep(0)
        await topo.refresh()
        rows = ds.state.entries(ATTACHMENT)
        assert set(rows) == {("leaf1", "eth1", "prod", "node1"), ("leaf3", "e5", "prod", "node1")}
        assert topo.endpoint("1.2.3.4") is None
        assert ("c", "ok") in ds.state.entries(UNPLACED)
    finally:
        await topo.stop()


async def test_history_follows_a_cable_move(ds):
    add_k8s_node(ds, "node1", "10.0.0.1")
    lldp = Scripted(lldp_report(("eth1", "node1")))
    topo = producer(ds, lldp, Scripted(netlink_report()))
    await topo.start()
    try:
        t0 = time.time()
        lldp.report = lldp_report(("eth7", "node1"))
        await asyncio.sleep(0.01)
        await topo.refresh()
        assert set(ds.state.entries(ATTACHMENT)) == {("leaf1", "eth7", "prod", "node1")}
        history = ds.test_history
        page = history.changes(t0 - 5, time.time() + 1, kinds=["attachment"])
        ops = sorted((c.op, c.keys[1]) for c in page.items)
        assert ops == [("delete", "eth1"), ("update", "eth1"), ("update", "eth7")]
        then = history.rows_at(ATTACHMENT, t0)
        assert [r.key for r in then.items] == [("leaf1", "eth1", "prod", "node1")]
        now = history.rows_at(ATTACHMENT, time.time())
        assert [r.key for r in now.items] == [("leaf1", "eth7", "prod", "node1")]
    finally:
        await topo.stop()


async def test_counter_changes_reach_history_at_most_once_per_interval(ds):
    clock = [1000.0]
    add_k8s_node(ds, "node1", "10.0.0.1")
    topo = producer(ds, Scripted(lldp_report(("eth1", "node1"))), Scripted(netlink_report()),
                    history_interval=60, clock=lambda: clock[0])
    await topo.start()
    try:
        history = ds.test_history
        key = ("leaf1", "eth1", "prod", "node1")
        assert history.count("attachment") == 1
        clock[0] += 10
        ds.state.merge(ATTACHMENT, key, {"in-discard-percent": 1.0})
        topo._rebuild()
        assert history.count("attachment") == 2        # the port's counters appear: recorded at once
        for discard in (2.0, 5.0, 3.04):
            clock[0] += 15
            ds.state.merge(ATTACHMENT, key, {"in-discard-percent": discard})
            topo._rebuild()
        assert history.count("attachment") == 2        # only values moved, 60 s not over: that version stays
        clock[0] += 30
        topo._rebuild()
        assert history.count("attachment") == 3
        versions = history.rows_at(ATTACHMENT, time.time()).items
        assert versions[0].values["in-discard-percent"] == 3.0      # rounded to 0.1 in the time machine
    finally:
        await topo.stop()
