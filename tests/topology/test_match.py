"""The matching rules on one switch's evidence: LLDP system name (short and qualified names),
neighbour table + FDB, LLDP management address, sFlow input ifIndex; uplinks skipped; a port
claimed by two nodes, a name that matches nothing, an address the FDB cannot place."""
from __future__ import annotations

from collectors.topology.lldp import LldpNeighbor
from collectors.topology.match import K8sNode, SwitchView, match
from collectors.topology.netlink import FdbEntry, Interface, NeighborEntry, NetlinkSnapshot
from collectors.topology.sflowports import PortCounters

NODES = [K8sNode("prod", "node1", ("10.0.0.1",)), K8sNode("prod", "node2.dc1.example", ("10.0.0.2",)),
         K8sNode("prod", "node3", ("10.0.0.3",)), K8sNode("prod", "node4", ("10.0.0.4",)),
         K8sNode("prod", "node5", ("10.0.0.5",))]
MAC = {i: f"02:00:00:00:00:0{i}" for i in range(1, 10)}


def neighbor(port, name, mac=None, addresses=(), caps=frozenset()):
    mac = mac or "02:aa:00:00:00:01"
    return LldpNeighbor(port, mac, "mac", name, tuple(addresses), mac, "mac", "eth0", frozenset(caps))


def netlink(ports=("eth1", "eth2", "eth3", "eth4", "eth49"), fdb=(), arp=()):
    interfaces = {i + 2: Interface(i + 2, name, f"7a:00:00:00:00:{i:02x}", "up", 1, 25_000_000_000)
                  for i, name in enumerate(ports)}
    interfaces[1] = Interface(1, "br0", "7a:00:00:00:00:ff", "up", None, None, "bridge")
    by_name = {i.name: i.ifindex for i in interfaces.values()}
    return NetlinkSnapshot(interfaces, [NeighborEntry(ip, mac, 1) for ip, mac in arp],
                           [FdbEntry(mac, by_name[port], vlan) for mac, port, vlan in fdb])


def test_lldp_name_short_and_qualified_and_the_unmatched_neighbour():
    view = SwitchView("leaf1", lldp=[neighbor("eth1", "NODE1"), neighbor("eth2", "node2"),
                                     neighbor("eth3", "printer-7", addresses=["10.9.9.9"])],
                      netlink=netlink())
    result = match(view, NODES)
    assert set(result.attachments) == {("eth1", "prod", "node1"), ("eth2", "prod", "node2.dc1.example")}
    row = result.attachments[("eth1", "prod", "node1")]
    assert row["learned-by"] == ["lldp"] and row["switch"] == "leaf1" and row["ifindex"] == 2
    assert row["speed"] == 25_000_000_000 and row["oper-status"] == "up" and row["lldp-system-name"] == "NODE1"
    assert result.neighbors[("eth1", "02:aa:00:00:00:01")]["node"] == "prod/node1"
    unmatched = result.neighbors[("eth3", "02:aa:00:00:00:01")]
    assert "node" not in unmatched and "no Kubernetes node is named printer-7" in unmatched["note"]


def test_two_different_domains_never_match_on_the_short_name():
    view = SwitchView("leaf1", lldp=[neighbor("eth1", "node1.other.example")], netlink=netlink())
    nodes = [K8sNode("prod", "node1.dc1.example", ("10.0.0.1",))]
    assert match(view, nodes).attachments == {}


def test_neighbour_table_and_fdb_place_a_node_without_lldp():
    view = SwitchView("leaf1", lldp=[], netlink=netlink(fdb=[(MAC[3], "eth3", 20)], arp=[("10.0.0.3", MAC[3])]))
    result = match(view, NODES)
    row = result.attachments[("eth3", "prod", "node3")]
    assert row["learned-by"] == ["neighbor-fdb"] and row["mac"] == MAC[3] and row["vlan"] == 20
    assert row["node-address"] == "10.0.0.3"
    assert result.endpoints == {"10.0.0.3": (MAC[3], 20)}


def test_management_address_and_sflow_rules():
    counters = {4: PortCounters(100.0, 30.0, 10_000_000_000, True, 12.5, 3.0, 1, 0, 30, 0, 3.0, 0.0)}
    view = SwitchView("leaf1", lldp=[neighbor("eth1", "host-without-k8s-name", addresses=["10.0.0.1"])],
                      netlink=netlink(), counters=counters,
                      sightings={5: {"10.0.0.4": (99.0, MAC[4])}})
    result = match(view, NODES)
    assert result.attachments[("eth1", "prod", "node1")]["learned-by"] == ["lldp-management-address"]
    row = result.attachments[("eth4", "prod", "node4")]
    assert row["learned-by"] == ["sflow"] and row["mac"] == MAC[4] and row["ifindex"] == 5


def test_counters_join_the_port():
    counters = {2: PortCounters(100.0, 30.0, 10_000_000_000, True, 12.5, 3.0, 1, 0, 30, 0, 3.0, 0.0)}
    result = match(SwitchView("leaf1", lldp=[neighbor("eth1", "node1")], netlink=netlink(), counters=counters),
                   NODES)
    row = result.attachments[("eth1", "prod", "node1")]
    assert row["in-utilization"] == 12.5 and row["in-discard-percent"] == 3.0 and row["in-discards"] == 30
    assert row["counters-interval"] == 30


def test_uplinks_are_never_attachments_and_say_why():
    # node5's MAC is learned on eth49, whose neighbour is another fabric switch; 40 MACs on eth4 (a trunk)
    fdb = [(MAC[5], "eth49", 0)] + [(f"02:00:00:00:01:{i:02x}", "eth4", 0) for i in range(40)]
    fdb += [("02:00:00:00:01:00", "eth4", 0)]
    view = SwitchView("leaf1", lldp=[neighbor("eth49", "leaf2", caps={"Bridge"})],
                      netlink=netlink(fdb=fdb, arp=[("10.0.0.5", MAC[5]), ("10.0.0.4", "02:00:00:00:01:00")]),
                      sightings={6: {"10.0.0.1": (1.0, "")}}, fabric_members=frozenset({"leaf1", "leaf2"}))
    result = match(view, NODES)
    assert result.attachments == {}
    assert "eth49" in result.hints[("prod", "node5")] and "fabric switch" in result.hints[("prod", "node5")]
    assert "a trunk or uplink" in result.hints[("prod", "node4")]
    assert "sFlow sees 10.0.0.1 arrive on leaf1 eth49" in result.hints[("prod", "node1")]


def test_a_port_claimed_by_two_nodes_keeps_both_with_a_note():
    view = SwitchView("leaf1", lldp=[neighbor("eth1", "node1")],
                      netlink=netlink(fdb=[(MAC[2], "eth1", 0)], arp=[("10.0.0.2", MAC[2])]))
    result = match(view, NODES)
    a, b = result.attachments[("eth1", "prod", "node1")], result.attachments[("eth1", "prod", "node2.dc1.example")]
    assert a["note"] == "port eth1 is also claimed by prod/node2.dc1.example"
    assert b["note"] == "port eth1 is also claimed by prod/node1"


def test_an_address_the_fdb_cannot_place_is_a_hint():
    view = SwitchView("leaf1", lldp=[], netlink=netlink(arp=[("10.0.0.3", MAC[3])]))
    result = match(view, NODES)
    assert result.attachments == {}
    assert result.hints[("prod", "node3")] == ("10.0.0.3 resolves to 02:00:00:00:00:03 in leaf1's neighbour table, "
                                               "but its bridge FDB has no port for that MAC")


def test_nothing_known_is_nothing_matched():
    assert match(SwitchView("leaf1"), NODES).attachments == {}
    assert match(SwitchView("leaf1", lldp=[neighbor("eth1", "node1")]), []).attachments == {}
