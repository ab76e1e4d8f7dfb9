"""The topology lab (tests/topology/netns.py): two leaves, four servers (node4 dual-homed), real lldpd in
every namespace, one agent per leaf, a three-member etcd and the simulated API server, all in network
namespaces this test creates and removes.  What an operator checks:

- every pod's switch and port, from either agent (`switch * vport-show`), and every attachment on
  both agents (shared through etcd); a host-network pod shows its node's real MAC (from the FDB);
- `switch * vport-show` and a gNMI Get with target `*` agree, from each agent;
- a node without LLDP (its lldpd stopped) stays placed through the neighbour table and FDB;
- a cable moved to another port: the attachment and the vPort follow, and the other agent's
  history shows the old port closed and the new one opened;
- the leaf's lldpd stopped: the source says so, the agent keeps serving;
- a node no switch sees is listed as unplaced with the reason;
- a read-only user stays read-only through the forwarding.
"""
from __future__ import annotations

import math
import time

import pytest

from .netns import LEAVES, LINKS, Lab, eventually, why_not

pytestmark = [pytest.mark.skipif(why_not() is not None, reason=why_not() or ""), pytest.mark.netns, pytest.mark.slow]

NODES = [["node1", "10.20.1.11", "10.244.1.0/24"], ["node2", "10.20.1.12", "10.244.2.0/24"],
         ["node3", "10.20.2.13", "10.244.3.0/24"], ["node4", "10.20.1.14", "10.244.4.0/24"],
         ["node5", "10.20.9.15", "10.244.5.0/24"]]          # node5: a Kubernetes node no switch sees
PODS = [[f"web-{n}", f"node{n}", False] for n in range(1, 5)] + [[f"api-{n}", f"node{n}", False] for n in range(1, 5)]
PODS += [["node2-agent", "node2", True], ["web-5", "node5", False]]
WHERE = {"node1": (["leaf1"], ["p1"]), "node2": (["leaf1"], ["p2"]), "node3": (["leaf2"], ["p1"]),
         "node4": (["leaf1", "leaf2"], ["p4", "p4"])}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("topology-lab"))
    try:
        lab.build()
        for ns in (*LEAVES, *LINKS):
            lab.start_lldpd(ns)
        lab.start_etcd()
        lab.start_apiserver({"nodes": NODES, "pods": PODS})
        for leaf in LEAVES:
            lab.start_agent(leaf)
        lab.chatter()
        created = lab.cli("leaf1", "k8s-connection-create", "cluster-name", "lab", "kube-config", str(lab.kubeconfig),
                          "create-vport")
        assert created.returncode == 0, created.stderr
        yield lab
    finally:
        lab.close()


def located(lab, leaf):
    """ip -> (entity, switches, ports, mac) of every vPort, fabric-wide, asked of ``leaf``."""
    return {r["ip"]: (r["entity"], r.get("switch", []), r.get("port", []), r.get("mac"))
            for r in lab.cli_json(leaf, "switch", "*", "vport-show")}


def all_placed(lab, leaf):
    rows = located(lab, leaf)
    pods = {entity: (switches, ports) for entity, switches, ports, _ in rows.values()}
    want = {name: WHERE[node] for name, node, _ in PODS if node in WHERE}
    return rows if all(pods.get(name) == where for name, where in want.items()) else None


def test_every_pod_located_from_either_agent_and_the_answers_agree(lab):
    for leaf in LEAVES:
        rows = eventually(lambda: all_placed(lab, leaf), 120, what=f"every pod located, asked of {leaf}")
        web5 = next(r for r in rows.values() if r[0] == "web-5")
        assert web5[1] == [] and web5[3].startswith("88:88:88")   # node5 is nowhere: dummy MAC, no port
        agent = next(r for r in rows.values() if r[0] == "node2-agent")
        assert agent[3] == lab.mac("node2", "eth0").lower()   # host-network pod: the FDB's MAC
    # the same vPorts through a gNMI Get with target "*", from each agent
    for leaf in LEAVES:
        reply = lab.gnmi_get(leaf, "/kubefabric-vport:vports", "*")
        entries = [e for n in reply["notification"] for u in n.get("update") or []
                   for e in _vports(u.get("val"))]
        by_ip = {e["ip"]: (e["entity"], e.get("switch", []), e.get("port", [])) for e in entries}
        assert by_ip == {ip: r[:3] for ip, r in located(lab, leaf).items()}
    # every attachment on both agents (each leaf learned its own; etcd shared them)
    for leaf in LEAVES:
        attachments = lab.cli_json(leaf, "attachment-show")
        have = {(a["node"], a["switch"], a["port"]) for a in attachments}
        assert have >= {("node1", "leaf1", "p1"), ("node2", "leaf1", "p2"), ("node3", "leaf2", "p1"),
                        ("node4", "leaf1", "p4"), ("node4", "leaf2", "p4")}, attachments
        unplaced = lab.cli_json(leaf, "unplaced-node-show")
        assert [(u["node"], "no switch sees an LLDP neighbour named node5" in u["reason"]) for u in unplaced] == \
            [("node5", True)]


def _vports(value):
    if isinstance(value, dict):
        value = value.get("kubefabric-vport:vport", value.get("vport", value))
    if isinstance(value, dict):
        value = [value]
    return [{k.split(":")[-1]: v for k, v in e.items()} for e in value or [] if isinstance(e, dict) and "ip" in e]


def test_a_node_without_lldp_is_placed_through_the_neighbour_table_and_fdb(lab):
    eventually(lambda: all_placed(lab, "leaf1"), 120, what="every pod located")
    lab.stop("lldpd-node2")
    lab.send("node2", "10.20.1.12", "10.20.1.1")

    def node2():
        rows = [a for a in lab.cli_json("leaf2", "attachment-show", "node", "node2")]
        return rows if rows and rows[0]["learned-by"] == ["neighbor-fdb"] else None

    row = eventually(node2, 60, what="node2 learned by neighbor-fdb only")[0]
    assert (row["switch"], row["port"]) == ("leaf1", "p2") and row["mac"] == lab.mac("node2", "eth0")


def test_a_moved_cable_is_followed_with_its_history(lab):
    rows = eventually(lambda: all_placed(lab, "leaf1"), 120, what="every pod located")
    web1 = next(ip for ip, r in rows.items() if r[0] == "web-1")
    before = math.ceil(time.time())
    time.sleep(before - time.time() + 1.2)
    lab.unplug("leaf1", "p1")
    lab.plug("node1", "eth0", "leaf1", "p3", "10.20.1.11")
    lab.send("node1", "10.20.1.11", "10.20.1.1")

    def moved():
        where = {r[0]: (r[1], r[2]) for r in located(lab, "leaf2").values()}
        return where.get("web-1") == (["leaf1"], ["p3"]) and where.get("api-1") == (["leaf1"], ["p3"])

    eventually(moved, 60, what="node1's pods on leaf1 p3")
    changes = lab.cli_json("leaf2", "attachment-history-show", "within-last", "10m", "node", "node1")
    seen = {(c["change"], c["port"]) for c in changes}
    assert ("delete", "p1") in seen and ("update", "p3") in seen, changes
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before))
    then = lab.cli_json("leaf1", "vport-history-show", "snapshot-time", stamp, "ip", web1)
    assert [(r["entity"], r["switch"], r["port"]) for r in then] == [("web-1", ["leaf1"], ["p1"])]


def test_lldpd_stopped_is_reported_and_the_agent_keeps_serving(lab):
    lab.stop("lldpd-leaf2")

    def reported():
        rows = {r["name"]: r for r in lab.cli_json("leaf2", "topology-source-show")}
        return rows["lldp"] if rows["lldp"]["status"] == "error" else None

    lldp = eventually(reported, 60, what="leaf2's lldp source in error")
    assert "lldpd" in lldp["detail"]
    assert lab.cli_json("leaf2", "switch", "*", "vport-show")            # still answering
    assert any(a["node"] == "node3" for a in lab.cli_json("leaf2", "attachment-show"))


def test_a_read_only_user_stays_read_only_through_forwarding(lab):
    denied = lab.cli("leaf1", "switch", "leaf2", "connection-stats-settings-modify", "enable", user="viewer")
    assert denied.returncode == 1 and "viewer" in denied.stderr and "read-only" in denied.stderr
    assert lab.cli_json("leaf1", "switch", "leaf2", "connection-stats-settings-show", user="viewer")[0]["enable"] is False
    allowed = lab.cli("leaf1", "switch", "leaf2", "connection-stats-settings-modify", "max-connections", "777")
    assert allowed.returncode == 0, allowed.stderr
    assert lab.cli_json("leaf2", "connection-stats-settings-show")["max-connections"] == 777


def test_where_a_pod_was_and_how_its_port_did_then_is_one_query(lab):
    """"Pod P at T was on node N, plugged into leaf2 p1, and p1 was discarding 3 % then": one CLI
    command, and one gNMI Get with the History extension, asked of leaf1 (leaf2 learned the port)."""
    def web3():
        return next((ip for ip, r in located(lab, "leaf1").items() if r[0] == "web-3" and r[1] == ["leaf2"]), None)

    ip = eventually(web3, 120, what="web-3 located on leaf2")
    # leaf2's ASIC reports p1 (node3's port) twice, 2 s apart: 30 of 1,000 packets discarded
    lab.sflow_counters("leaf2", "p1", in_ucast_pkts=1000)
    time.sleep(2)
    lab.sflow_counters("leaf2", "p1", in_ucast_pkts=1970, in_discards=30, in_octets=25_000_000)

    def counters():
        found = lab.cli_json("leaf1", "attachment-show", "node", "node3")
        return found if found and found[0].get("in-discard-percent") is not None else None

    assert float(eventually(counters, 60, what="p1's counters on leaf1")[0]["in-discard-percent"]) == 3.0
    at = math.ceil(time.time()) + 1
    time.sleep(at - time.time() + 0.5)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
    located_then = lab.cli_json("leaf1", "vport-location-show", "ip", ip, "snapshot-time", stamp)
    assert [(r["entity"], r["hostname"], r["switch"], r["port"], float(r["in-discard-percent"]))
            for r in located_then] == [("web-3", "node3", "leaf2", "p1", 3.0)]
    reply = lab.gnmi_get("leaf1", "/kubefabric-vport:vports|/kubefabric-topology:topology/attachment", "", at=at)
    def entries(update, name):
        value = update["val"]
        if isinstance(value, dict) and any(k.split(":")[-1] == name for k in value):
            value = next(v for k, v in value.items() if k.split(":")[-1] == name)
        for entry in (value if isinstance(value, list) else [value]):
            if isinstance(entry, dict):
                yield {**update["keys"], **{k.split(":")[-1]: v for k, v in entry.items()}}

    updates = [u for n in reply["notification"] for u in n["update"]]
    vport = next(e for u in updates if "vport" in u["path"] for e in entries(u, "vport") if e.get("ip") == ip)
    attachments = [e for u in updates if "attachment" in u["path"] or "topology" in u["path"]
                   for e in entries(u, "attachment") if "port" in e]
    port = next(a for a in attachments if a["node"] == vport["hostname"] and a["switch"] == "leaf2")
    assert (vport["hostname"], port["port"], float(port["in-discard-percent"])) == ("node3", "p1", 3.0)
