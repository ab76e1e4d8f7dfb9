"""What the topology work needs from the Kubernetes collector: k8s/node rows with each node's
addresses (kept in step with the API), and vPort rows that carry the switches and ports of their
node and the real MAC/VLAN of their address, rewritten when a location changes."""
from __future__ import annotations

from core.ports.topology import Endpoint, LocationChange, NodeLocation
from tests.k8s.conftest import VPORT, connected
from tests.k8s.test_connections import conn

NODE = "/kubefabric-k8s:k8s/node"


class Locator:
    """A NodeLocator a test drives (the topology producer's port)."""

    def __init__(self) -> None:
        self.places: dict[tuple[str, str], NodeLocation] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.listeners = []

    def location(self, cluster, node):
        return self.places.get((cluster, node))

    def endpoint(self, ip):
        return self.endpoints.get(ip)

    def on_change(self, listener):
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def change(self, nodes=(), ips=()):
        for listener in list(self.listeners):
            listener(LocationChange(frozenset(nodes), frozenset(ips)))


async def test_node_rows_follow_the_api(apiserver_factory, manager_factory, tmp_path):
    srv = await apiserver_factory("flannel-vxlan", pods=5, nodes=3)
    kc = srv.write_kubeconfig(tmp_path / "kc", cluster_name="k8s01")
    manager, ds = await manager_factory()
    ds.set_connections(conn("k8s01", kc, **{"create-vport": True}))
    await connected(ds, "k8s01")
    rows = ds.state.entries(NODE)
    assert set(rows) == {("k8s01", n) for n in srv.node_names}
    assert rows[("k8s01", "worker-001")] == {"internal-ip": ["192.168.100.10"]}
    srv.add_nodes(1)
    await ds.wait_for(lambda: ("k8s01", "worker-004") in ds.state.entries(NODE))
    srv.delete("nodes", None, "worker-002")
    await ds.wait_for(lambda: ("k8s01", "worker-002") not in ds.state.entries(NODE))
    ds.set_connections()
    await manager.settle()
    assert ds.state.entries(NODE) == {}


async def test_vports_carry_their_nodes_location_and_follow_changes(apiserver_factory, manager_factory, tmp_path):
    locator = Locator()
    locator.places[("k8s01", "worker-001")] = NodeLocation(("leaf1", "leaf2"), ("eth3", "eth3"))
    srv = await apiserver_factory("flannel-vxlan", pods=0, nodes=2)
    host = srv.add_pod("host-agent", node="worker-001", host_network=True)["status"]["podIP"]
    pod = srv.add_pod("web-1", node="worker-001", labels={"app": "web"})["status"]["podIP"]
    other = srv.add_pod("web-2", node="worker-002", labels={"app": "web"})["status"]["podIP"]
    locator.endpoints[host] = Endpoint("02:00:00:00:01:01", 20)
    kc = srv.write_kubeconfig(tmp_path / "kc", cluster_name="k8s01")
    manager, ds = await manager_factory(locator=locator)
    ds.set_connections(conn("k8s01", kc, **{"create-vport": True}))
    await connected(ds, "k8s01")
    await ds.wait_for(lambda: len(ds.state.entries(VPORT)) == 3)
    rows = {k[0]: v for k, v in ds.state.entries(VPORT).items()}
    assert rows[pod]["switch"] == ["leaf1", "leaf2"] and rows[pod]["port"] == ["eth3", "eth3"]
    assert rows[pod]["mac"].startswith("88:88:88") and rows[pod]["vlan"] == 4090     # nothing known: dummies
    assert rows[host]["mac"] == "02:00:00:00:01:01" and rows[host]["vlan"] == 20       # the FDB knows it
    assert "switch" not in rows[other]                                                # not placed
    # worker-002 gets placed, worker-001 loses a link: only their rows are rewritten
    locator.places[("k8s01", "worker-002")] = NodeLocation(("leaf2",), ("eth9",))
    locator.places[("k8s01", "worker-001")] = NodeLocation(("leaf1",), ("eth3",))
    locator.change(nodes=[("k8s01", "worker-002"), ("k8s01", "worker-001")])
    rows = {k[0]: v for k, v in ds.state.entries(VPORT).items()}
    assert rows[other]["switch"] == ["leaf2"] and rows[other]["port"] == ["eth9"]
    assert rows[pod]["switch"] == ["leaf1"]
    # node2 unplaced again: its rows lose switch and port
    del locator.places[("k8s01", "worker-002")]
    locator.endpoints.pop(host)
    locator.change(nodes=[("k8s01", "worker-002")], ips=[host])
    rows = {k[0]: v for k, v in ds.state.entries(VPORT).items()}
    assert "switch" not in rows[other] and "port" not in rows[other] and rows[other]["entity"] == "web-2"
    assert rows[host]["mac"].startswith("88:88:88") and rows[host]["vlan"] == 4090
    # the time machine keeps locations once, in attachment versions: vPort versions carry none
    versions = [v for v in ds.history.store.changes(0, 2e9, kinds=["vport"]).items if v.key == pod]
    assert versions and all("switch" not in v.data and "port" not in v.data for v in versions)
