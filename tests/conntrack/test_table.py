"""The connection table in a real datastore: settings, batched writes, pod and service attribution."""
from __future__ import annotations

import pytest

from core.datastore import Datastore
from collectors.conntrack.table import ConnectionTable
from collectors.conntrack.tracker import CONNECTIONS_PATH
from fabric_sync.embedded import EmbeddedFabricStore
from tests.conntrack.sflowgen import ACK, SYN, tcp_frame, udp_frame, vxlan_frame
from core.ports.history import Version
from tests.conntrack.test_tracker import feed


def make_table(ds, history=None, **options) -> ConnectionTable:
    """The connection table on a datastore's ports, as agent.runtime wires it."""
    return ConnectionTable(ds.state, ds, ds.feed, history, **options)

VPORT = "/kubefabric-vport:vports/vport"
BACKEND = "/kubefabric-k8s:k8s/service/backend"
SERVICE = "/kubefabric-k8s:k8s/service"
SETTINGS = "kubefabric-connection:connection-stats-settings"
K8S = "kubefabric-k8s:k8s"
C, S = "10.244.1.2", "10.244.2.3"


@pytest.fixture
async def ds(tmp_path):
    store = Datastore("leaf1", tmp_path, EmbeddedFabricStore(tmp_path, "leaf1"))
    await store.start()
    yield store
    await store.stop()


async def configure(ds, table: ConnectionTable, settings: dict | None = None, analytics: str | None = None,
                    clusters: tuple = ("k8s01", "k8s02")):
    def edit(tree):
        tree[SETTINGS] = {"enable": True, **(settings or {})}
        tree[K8S] = {"connection": [
            {"cluster-name": name, "kube-config": f"/etc/{name}.conf", "overlay-vxlan-analytics": name == analytics}
            for name in clusters
        ]}
        return tree

    await ds.propose(edit, user="test", face="test")
    table.configure(ds.config.full)


def vport(ds, ip, pod, ns="default", cluster="k8s01"):
    ds.state.upsert(VPORT, (ip,), {"entity": pod, "namespace": ns, "svc-name": cluster})


def rows(ds) -> dict:
    return dict(ds.state.entries(CONNECTIONS_PATH))


async def test_disabled_by_default_then_enabled_then_disabled_removes_rows(ds):
    table = make_table(ds)
    table.configure(ds.config.full)
    assert table.enabled is False
    await configure(ds, table)
    assert table.enabled is True
    feed(table.tracker, tcp_frame(C, S, 40000, 80, SYN), 1.0)
    table.flush(2.0)
    assert list(rows(ds)) == [(0, 0, C, S, 40000, 80, 6)]
    await ds.propose(lambda t: {**t, SETTINGS: {"enable": False}}, user="test", face="test")
    table.configure(ds.config.full)
    assert rows(ds) == {} and len(table.tracker) == 0


async def test_one_feed_batch_per_flush_and_only_changed_rows(ds):
    table = make_table(ds)
    await configure(ds, table)
    batches = []
    ds.feed.subscribe(lambda b: batches.append([c for c in b if c.path == CONNECTIONS_PATH]))
    for i in range(200):
        feed(table.tracker, tcp_frame(C, S, 40000 + i % 50, 80, SYN if i < 50 else ACK), 1.0 + i / 1000)
    table.flush(2.0)
    assert len(batches) == 1 and len(batches[0]) == 50
    assert {v["cur-state"] for v in rows(ds).values()} == {"established"}
    feed(table.tracker, tcp_frame(C, S, 40007, 80, ACK), 3.0)
    table.flush(3.1)
    assert len(batches) == 2 and [c.key[4] for c in batches[1]] == [40007]
    assert table.flush(3.2) == 0 and len(batches) == 2


async def test_settings_bound_the_table_and_expire_rows(ds):
    table = make_table(ds)
    await configure(ds, table, {"max-connections": 2, "idle-timeout": 30})
    for i in range(3):
        feed(table.tracker, tcp_frame(C, S, 40000 + i, 80, SYN), 100.0 + i)
    table.flush(103.0)
    assert sorted(k[4] for k in rows(ds)) == [40001, 40002] and table.tracker.evicted == 1
    table.flush(131.5)  # 40001 idle for 30.5 s
    assert sorted(k[4] for k in rows(ds)) == [40002]


async def test_plain_flows_attributed_from_live_vports_and_cluster_ip_service(ds):
    table = make_table(ds)
    await configure(ds, table)
    vport(ds, C, "client-7d9f", ns="shop")
    vport(ds, S, "web-0", ns="shop")
    ds.state.upsert(SERVICE, ("k8s01", "shop", "web"), {
        "type": "ClusterIP", "cluster-ips": ["10.96.0.20"], "node-ports": [], "ports": ["80/TCP->8080"],
        "backend-count": 1})
    ds.state.upsert(BACKEND, ("k8s01", "shop", "web", S, 8080), {
        "ip": S, "port": 8080, "protocol": "TCP", "namespace": "shop", "pod": "web-0", "ready": True,
        "serving": True, "terminating": False})
    feed(table.tracker, tcp_frame(C, "10.96.0.20", 40000, 80, SYN), 1.0)  # to the ClusterIP
    feed(table.tracker, tcp_frame(C, S, 40001, 8080, SYN), 1.0)  # straight to the backend's target port
    feed(table.tracker, tcp_frame(C, S, 40002, 9999, SYN), 1.0)  # another port of the backend: no service
    table.flush(2.0)
    got = rows(ds)
    via_vip = got[(0, 0, C, "10.96.0.20", 40000, 80, 6)]
    assert via_vip["src-pod"] == "client-7d9f" and via_vip["src-namespace"] == "shop"
    assert via_vip["service"] == "shop/web" and via_vip["cluster-name"] == "k8s01" and "dst-pod" not in via_vip
    direct = got[(0, 0, C, S, 40001, 8080, 6)]
    assert (direct["dst-pod"], direct["dst-namespace"], direct["service"]) == ("web-0", "shop", "shop/web")
    assert "service" not in got[(0, 0, C, S, 40002, 9999, 6)]


async def test_node_port_service(ds):
    table = make_table(ds)
    await configure(ds, table)
    ds.state.upsert(SERVICE, ("k8s02", "default", "api"), {
        "type": "NodePort", "cluster-ips": ["10.96.5.5"], "node-ports": [30080], "ports": ["80/TCP->8080"],
        "backend-pods": []})
    feed(table.tracker, tcp_frame("192.0.2.50", "172.16.0.11", 51000, 30080, SYN), 1.0)
    table.flush(2.0)
    row = rows(ds)[(0, 0, "192.0.2.50", "172.16.0.11", 51000, 30080, 6)]
    assert row["service"] == "default/api" and row["cluster-name"] == "k8s02"


async def test_overlay_flows_attributed_only_with_overlay_vxlan_analytics(ds):
    table = make_table(ds)
    await configure(ds, table, analytics=None)
    vport(ds, C, "client", cluster="k8s01")
    vport(ds, S, "server", cluster="k8s01")
    feed(table.tracker, vxlan_frame("10.99.0.1", "10.99.0.2", tcp_frame(C, S, 40000, 80, SYN), vni=1), 1.0)
    table.flush(2.0)
    row = rows(ds)[(0, 1, C, S, 40000, 80, 6)]
    assert row["encapsulation"] == "vxlan" and "src-pod" not in row and "cluster-name" not in row
    # analytics on another cluster: the pods (of k8s01) are not that cluster's
    await configure(ds, table, analytics="k8s02")
    feed(table.tracker, vxlan_frame("10.99.0.1", "10.99.0.2", tcp_frame(C, S, 40000, 80, ACK), vni=1), 3.0)
    table.flush(3.1)
    row = rows(ds)[(0, 1, C, S, 40000, 80, 6)]
    assert "src-pod" not in row and row["cluster-name"] == "k8s02"
    await configure(ds, table, analytics="k8s01")
    feed(table.tracker, vxlan_frame("10.99.0.1", "10.99.0.2", tcp_frame(C, S, 40000, 80, ACK), vni=1), 4.0)
    table.flush(4.1)
    row = rows(ds)[(0, 1, C, S, 40000, 80, 6)]
    assert (row["src-pod"], row["dst-pod"], row["cluster-name"]) == ("client", "server", "k8s01")


class FakeHistory:
    """pods_at as core.history.store.HistoryStore answers it: the pod versions holding an IP at a time."""

    def __init__(self, records):
        self.records = records  # (ip, cluster, namespace, name, valid_from, valid_to or None)
        self.calls = 0

    def pods_at(self, ip, t=None, cluster=None):
        self.calls += 1
        for rip, rcluster, ns, name, start, end in self.records:
            if rip == ip and (cluster is None or cluster == rcluster) and start <= t and (end is None or t < end):
                return [Version("pod", rcluster, ip, name, {"namespace": ns, "name": name, "uid": name, "node": "n1",
                                                           "phase": "Running", "labels": "", "host-network": False},
                                start, end)]
        return []


async def test_history_gives_the_pod_that_held_the_ip_when_the_connection_was_seen(ds):
    history = FakeHistory([
        (C, "k8s01", "shop", "client", 0.0, None),
        (S, "k8s01", "shop", "old-owner", 0.0, 100.0),
        (S, "k8s01", "shop", "new-owner", 100.0, None),
    ])
    table = make_table(ds, history)
    await configure(ds, table, analytics="k8s01")
    vport(ds, S, "new-owner")  # the live table already shows the IP's next pod
    frame = vxlan_frame("10.99.0.1", "10.99.0.2", tcp_frame(C, S, 40000, 80, SYN), vni=1)
    feed(table.tracker, frame, 50.0)
    table.flush(150.0)
    row = rows(ds)[(0, 1, C, S, 40000, 80, 6)]
    assert (row["src-pod"], row["dst-pod"], row["dst-namespace"]) == ("client", "old-owner", "shop")
    feed(table.tracker, vxlan_frame("10.99.0.1", "10.99.0.2", tcp_frame(C, S, 40001, 80, SYN), vni=1), 120.0)
    calls = history.calls
    table.flush(150.5)
    assert rows(ds)[(0, 1, C, S, 40001, 80, 6)]["dst-pod"] == "new-owner"
    assert history.calls == calls + 1  # only the server IP: the client's open record came from the cache


async def test_unknown_pod_is_retried_later(ds):
    table = make_table(ds, attribution_retry=5.0)
    await configure(ds, table)
    feed(table.tracker, udp_frame(C, S, 5000, 53), 1.0)
    table.flush(1.1)
    assert "src-pod" not in rows(ds)[(0, 0, C, S, 5000, 53, 17)]
    vport(ds, C, "late-pod")
    feed(table.tracker, udp_frame(C, S, 5000, 53), 10.0)
    table.flush(10.1)
    assert rows(ds)[(0, 0, C, S, 5000, 53, 17)]["src-pod"] == "late-pod"


async def test_quiet_rows_get_their_age_refreshed(ds):
    table = make_table(ds, age_refresh=30.0, max_refresh_per_flush=1)
    await configure(ds, table)
    feed(table.tracker, udp_frame(C, S, 5000, 53), 100.0)
    feed(table.tracker, udp_frame(C, S, 5001, 53), 100.0)
    table.flush(100.1)
    assert {r["age"] for r in rows(ds).values()} == {0}
    table.flush(120.0)
    assert {r["age"] for r in rows(ds).values()} == {0}  # not due yet
    table.flush(131.0)  # due: one row a flush
    assert sorted(r["age"] for r in rows(ds).values()) == [0, 31]
    table.flush(132.5)
    assert sorted(r["age"] for r in rows(ds).values()) == [31, 32]
