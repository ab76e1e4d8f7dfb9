"""Fixtures for topology tests: a real datastore (embedded store) and sources that say what a test wants."""
from __future__ import annotations

import pytest

from collectors.topology.lldp import LldpNeighbor, SourceReport
from collectors.topology.netlink import FdbEntry, Interface, NeighborEntry, NetlinkSnapshot
from core.datastore import Datastore
from core.history import HistoryStore
from fabric_sync.embedded import EmbeddedFabricStore

K8S_NODE = "/kubefabric-k8s:k8s/node"


class Scripted:
    """A source whose next report a test sets."""

    def __init__(self, report: SourceReport) -> None:
        self.report = report
        self.reads = 0

    async def read(self) -> SourceReport:
        self.reads += 1
        return self.report


def lldp_report(*pairs, status="up") -> SourceReport:
    """LLDP neighbours as (port, system name[, management address])."""
    neighbors = [LldpNeighbor(p[0], f"02:aa:00:00:00:{i:02x}", "mac", p[1], tuple(p[2:]), f"02:bb:00:00:00:{i:02x}",
                              "mac", "eth0") for i, p in enumerate(pairs)]
    return SourceReport(status, f"{len(neighbors)} neighbours", neighbors, len(neighbors), 1.0)


def netlink_report(ports=("eth1", "eth2", "eth3", "eth7"), fdb=(), arp=()) -> SourceReport:
    interfaces = {i + 2: Interface(i + 2, name, f"7a:00:00:00:00:{i:02x}", "up", 1, 10_000_000_000)
                  for i, name in enumerate(ports)}
    by_name = {i.name: i.ifindex for i in interfaces.values()}
    snap = NetlinkSnapshot(interfaces, [NeighborEntry(ip, mac, 1) for ip, mac in arp],
                           [FdbEntry(mac, by_name[port], vlan) for mac, port, vlan in fdb],
                           frozenset({"127.0.0.1", "10.0.0.254"}))
    return SourceReport("up", "ok", snap, len(snap.fdb), 1.0)


@pytest.fixture
async def ds(tmp_path):
    store = Datastore("leaf1", tmp_path / "ds", EmbeddedFabricStore(tmp_path / "ds", "leaf1"))
    await store.start()
    history = HistoryStore(":memory:")
    store.history.attach(history)
    store.test_history = history
    yield store
    await store.stop()
    history.close()


def add_k8s_node(ds, name, address, cluster="prod"):
    ds.state.upsert(K8S_NODE, (cluster, name), {"internal-ip": [address]})
