"""The time machine: records with validity intervals and the questions operators ask of them."""
from core import schema_paths
from core.history.store import HistoryStore
from core.ports.history import HistoryChange, Page, Row, Version
from tests.historyview import HistoryView

T0 = 1_790_000_000.0   # 2026-09-21


def pod(name, uid, phase="Running", host=False):
    return {"namespace": "shop", "name": name, "uid": uid, "node": "worker-001", "phase": phase,
            "labels": "app:cart", "host-network": host, "node-ip": "192.168.100.10"}


def test_reused_ip_resolves_to_the_pod_of_the_time(tmp_path):
    h = HistoryView(HistoryStore(tmp_path / "h.db"))
    h.set("pod", "k8s01", "10.244.1.5", "uid-a", pod("cart-a", "uid-a"), T0)
    h.end("pod", "k8s01", "10.244.1.5", "uid-a", T0 + 100)          # deleted
    h.set("pod", "k8s01", "10.244.1.5", "uid-b", pod("cart-b", "uid-b"), T0 + 160)   # IP reused
    assert h.pod_at("10.244.1.5", T0 - 1) is None
    assert h.pod_at("10.244.1.5", T0)["name"] == "cart-a"
    assert h.pod_at("10.244.1.5", T0 + 99.9)["name"] == "cart-a"
    assert h.pod_at("10.244.1.5", T0 + 100) is None                 # [valid_from, valid_to)
    assert h.pod_at("10.244.1.5", T0 + 130) is None
    got = h.pod_at("10.244.1.5", T0 + 200)
    assert (got["name"], got["cluster"], got["valid_from"], got["valid_to"]) == ("cart-b", "k8s01", T0 + 160, None)
    h.close()


def test_new_version_only_when_something_but_last_seen_changes(tmp_path):
    h = HistoryView(HistoryStore(":memory:"))
    row = {"ip": "10.0.0.1", "power": "Pending", "last-seen": "a"}
    assert h.set("vport", "c", "10.0.0.1", "", row, T0)
    assert not h.set("vport", "c", "10.0.0.1", "", {**row, "last-seen": "b"}, T0 + 1)
    assert h.set("vport", "c", "10.0.0.1", "", {**row, "power": "Running"}, T0 + 2)
    assert h.vports_at(T0 + 1)["10.0.0.1"]["power"] == "Pending"
    assert h.vports_at(T0 + 3)["10.0.0.1"]["power"] == "Running"
    assert h.count("vport") == 2


def test_vports_at_returns_the_table_as_it_was(tmp_path):
    h = HistoryView(HistoryStore(tmp_path / "h.db"))
    for i in range(10):
        h.set("vport", "k8s01", f"10.0.0.{i}", "", {"ip": f"10.0.0.{i}", "entity": f"p{i}"}, T0 + i)
    for i in range(5):
        h.end("vport", "k8s01", f"10.0.0.{i}", "", T0 + 20 + i)
    assert len(h.vports_at(T0 + 4.5)) == 5
    assert len(h.vports_at(T0 + 15)) == 10
    table = h.vports_at(T0 + 22.5)
    assert sorted(table) == [f"10.0.0.{i}" for i in (3, 4, 5, 6, 7, 8, 9)]
    assert table["10.0.0.7"] == {"ip": "10.0.0.7", "entity": "p7"}
    assert h.vports_at(T0 + 15, cluster="other") == {}


def test_service_backends_at_and_between():
    h = HistoryView(HistoryStore(":memory:"))
    key = "shop/cart"
    h.set("member", "k8s01", key, "shop/cart-a@10.244.1.5", {"pod": "cart-a", "ip": "10.244.1.5", "node": "w1"}, T0)
    h.set("member", "k8s01", key, "shop/cart-b@10.244.2.7", {"pod": "cart-b", "ip": "10.244.2.7", "node": "w2"}, T0 + 10)
    h.end("member", "k8s01", key, "shop/cart-a@10.244.1.5", T0 + 20)
    h.set("member", "k8s01", key, "shop/cart-c@10.244.3.9", {"pod": "cart-c", "ip": "10.244.3.9", "node": "w3"}, T0 + 30)
    assert h.service_backends("k8s01", "shop", "cart", T0 + 5) == ["shop/cart-a@10.244.1.5"]
    assert h.service_backends("k8s01", "shop", "cart", T0 + 15) == ["shop/cart-a@10.244.1.5", "shop/cart-b@10.244.2.7"]
    assert h.service_backends("k8s01", "shop", "cart", T0 + 25) == ["shop/cart-b@10.244.2.7"]
    assert h.service_backends("k8s02", "shop", "cart", T0 + 25) == []
    between = h.service_backends_between("k8s01", "shop", "cart", T0 + 21, T0 + 31)
    assert [b["pod"] for b in between] == ["cart-b", "cart-c"]
    assert between[0]["valid_to"] is None
    assert [b["pod"] for b in h.service_backends_between("k8s01", "shop", "cart", T0, T0 + 12)] == ["cart-a", "cart-b"]


def test_changes_for_replay():
    h = HistoryView(HistoryStore(":memory:"))
    h.set("vport", "k8s01", "10.0.0.1", "", {"ip": "10.0.0.1", "power": "Pending"}, T0)
    h.set("vport", "k8s01", "10.0.0.1", "", {"ip": "10.0.0.1", "power": "Running"}, T0 + 1)
    h.end("vport", "k8s01", "10.0.0.1", "", T0 + 2)
    h.set("cni", "k8s01", "", "", {"cluster-name": "k8s01", "cni-plugin": "flannel"}, T0 + 1.5)
    got = h.changes(T0, T0 + 10)
    assert [(c["time"] - T0, c["op"], c["kind"]) for c in got] == [
        (0, "update", "vport"), (1, "update", "vport"), (1.5, "update", "cni"), (2, "delete", "vport")]
    assert got[0]["path"] == "/kubefabric-vport:vports/vport" and got[0]["keys"] == ("10.0.0.1",)
    assert got[2]["keys"] == ("k8s01",)
    assert got[1]["data"]["power"] == "Running"
    assert [c["op"] for c in h.changes(T0 + 0.5, T0 + 1.9)] == ["update", "update"]
    assert len(h.changes(T0, T0 + 10, kinds=["cni"])) == 1
    assert len(h.changes(T0, T0 + 10, limit=2)) == 2


def test_sync_closes_what_a_relist_no_longer_shows():
    h = HistoryView(HistoryStore(":memory:"))
    h.sync("service", "k8s01", {("shop/a", ""): {"x": 1}, ("shop/b", ""): {"x": 2}}, T0)
    h.sync("service", "k8s01", {("shop/a", ""): {"x": 1}}, T0 + 5)
    assert sorted(h.services_at(T0 + 1)) == [("k8s01", "shop", "a"), ("k8s01", "shop", "b")]
    assert sorted(h.services_at(T0 + 6)) == [("k8s01", "shop", "a")]
    ops = [(c["key"], c["op"]) for c in h.changes(T0, T0 + 10)]
    assert ("shop/b", "delete") in ops and ops.count(("shop/a", "update")) == 1


def test_open_records_survive_a_restart_and_end_cluster(tmp_path):
    h = HistoryView(HistoryStore(tmp_path / "h.db"))
    h.set("pod", "k8s01", "10.0.0.1", "u1", pod("a", "u1"), T0)
    h.set("pod", "k8s02", "10.0.0.2", "u2", pod("b", "u2"), T0)
    h.close()
    h = HistoryView(HistoryStore(tmp_path / "h.db"))
    assert h.is_open("pod", "k8s01", "10.0.0.1", "u1")
    assert not h.set("pod", "k8s01", "10.0.0.1", "u1", pod("a", "u1"), T0 + 5)   # same version: no new record
    assert h.end_cluster("k8s01", T0 + 10) == 1
    assert h.pod_at("10.0.0.1", T0 + 11) is None and h.pod_at("10.0.0.1", T0 + 9)["name"] == "a"
    assert h.pod_at("10.0.0.2", T0 + 11)["name"] == "b"
    h.close()


def test_retention_removes_only_closed_records_older_than_the_horizon():
    h = HistoryView(HistoryStore(":memory:", retention_days=1))
    h.set("pod", "c", "10.0.0.1", "old", pod("old", "old"), T0)
    h.end("pod", "c", "10.0.0.1", "old", T0 + 60)
    h.set("pod", "c", "10.0.0.1", "new", pod("new", "new"), T0 + 120)     # still open: kept however old
    h.set("pod", "c", "10.0.0.2", "recent", pod("r", "recent"), T0 + 86400)
    h.end("pod", "c", "10.0.0.2", "recent", T0 + 86400 + 60)
    assert h.enforce_retention(now=T0 + 86400 + 3600) == 1
    assert h.count() == 2
    assert h.pod_at("10.0.0.1", T0 + 30) is None
    assert h.pod_at("10.0.0.1", T0 + 86400 * 5)["name"] == "new"


def test_host_network_pods_share_the_node_ip_but_a_pod_ip_wins():
    h = HistoryView(HistoryStore(":memory:"))
    h.set("pod", "c", "192.168.1.10", "kp", pod("kube-proxy-x", "kp", host=True), T0)
    h.set("pod", "c", "192.168.1.10", "fl", pod("kube-flannel-x", "fl", host=True), T0 + 1)
    assert h.pod_at("192.168.1.10", T0 + 2)["name"] == "kube-flannel-x"
    assert {p["name"] for p in h.pods_at("192.168.1.10", T0 + 2)} == {"kube-proxy-x", "kube-flannel-x"}


def test_flushing_in_a_thread_while_the_loop_keeps_writing(tmp_path):
    import threading
    h = HistoryView(HistoryStore(tmp_path / "h.db"))
    stop = threading.Event()

    def flusher():
        while not stop.is_set():
            h.flush(50)

    thread = threading.Thread(target=flusher)
    thread.start()
    for i in range(3000):
        h.set("vport", "c", f"10.0.{i // 250}.{i % 250}", "", {"ip": str(i)}, T0 + i)
        if i % 3 == 0:
            h.end("vport", "c", f"10.0.{i // 250}.{i % 250}", "", T0 + i + 0.5)
    stop.set()
    thread.join()
    assert h.count("vport") == 3000
    assert len(h.vports_at(T0 + 5000)) == 2000
    h.close()


def test_typed_answers_and_row_limits():
    """The History port: typed versions, rows and changes; every range query says when it was cut."""
    h = HistoryStore(":memory:")
    for i in range(5):
        h.set("vport", "k8s01", f"10.0.0.{i}", "", {"ip": f"10.0.0.{i}", "entity": f"p{i}"}, T0 + i)
    h.set("pod", "k8s01", "10.0.0.1", "uid-1", pod("p1", "uid-1"), T0 + 1)
    h.set("cni", "k8s01", "", "", {"cni-plugin": "flannel"}, T0)
    h.end("vport", "k8s01", "10.0.0.0", "", T0 + 10)
    page = h.rows_at(schema_paths.VPORT, T0 + 9)
    assert isinstance(page, Page) and not page.truncated and len(page) == 5
    assert all(isinstance(r, Row) for r in page) and {r.key for r in page} == {(f"10.0.0.{i}",) for i in range(5)}
    cut = h.rows_at(schema_paths.VPORT, T0 + 9, limit=3)
    assert cut.truncated and len(cut) == 3
    assert h.rows_at(schema_paths.K8S_CNI, T0).items[0] == Row(("k8s01",), {"cni-plugin": "flannel"})
    assert h.history_paths() == {schema_paths.VPORT, schema_paths.K8S_SERVICE, schema_paths.K8S_SERVICE_BACKEND,
                                 schema_paths.K8S_CNI, schema_paths.ATTACHMENT}
    version = h.pod_at("10.0.0.1", T0 + 2)
    assert isinstance(version, Version) and version.data["name"] == "p1" and version.valid_to is None
    changes = h.changes(T0, T0 + 20, kinds=["vport"])
    assert all(isinstance(c, HistoryChange) for c in changes) and not changes.truncated
    assert [c.op for c in changes][-1] == "delete" and changes.items[-1].keys == ("10.0.0.0",)
    first = h.changes(T0, T0 + 20, kinds=["vport"], limit=2)
    assert first.truncated and [c.time for c in first] == [T0, T0 + 1]
    try:
        h.rows_at("/kubefabric-connection:connections/connection", T0)
    except KeyError as exc:
        assert "no history" in str(exc)
    else:
        raise AssertionError("a table without history must be refused")
    h.close()
