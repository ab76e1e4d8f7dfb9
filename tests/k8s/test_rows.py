"""Pure row builders: vPort rows, contested IPs, service rows."""
from collectors.k8s.services import ServiceIndex, service_row, slice_members
from collectors.k8s.vports import IpTable, dummy_mac, pod_view


def raw_pod(name="cart-1", uid="u1", ips=("10.244.1.5",), phase="Running", host=False, created="2026-11-22T10:00:00Z",
            deleting=False, labels=None):
    meta = {"name": name, "namespace": "shop", "uid": uid, "creationTimestamp": created,
            "labels": labels if labels is not None else {"app": "cart", "tier": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-22T11:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": "server1", "hostNetwork": host},
            "status": {"phase": phase, "hostIP": "192.168.1.11", "podIP": ips[0] if ips else None,
                       "podIPs": [{"ip": ip} for ip in ips], "startTime": "2026-11-22T10:00:01Z"}}


def test_dummy_mac_is_netvisor_like_and_deterministic():
    assert dummy_mac("10.244.1.5") == "88:88:88:f4:01:05"
    assert dummy_mac("fd00:10:244::1:5") == dummy_mac("fd00:10:244::1:5")
    assert dummy_mac("fd00:10:244::1:5").startswith("88:88:88:")


def test_vport_row_columns_as_the_seed_shows():
    table = IpTable()
    view = pod_view(raw_pod())
    claim = table.claim("10.244.1.5", "pluribus", view, now=1_790_000_000.0, first_seen=view.start)
    row = claim.row("10.244.1.5", "switch")
    assert row["owner"] == "switch" and row["vlan"] == 4090 and row["svc-name"] == "pluribus"
    assert row["hostname"] == "server1" and row["entity"] == "cart-1" and row["power"] == "Running"
    assert row["portgroup"] == "app:cart,tier:web" and row["status"] == "host,pod,k8s"
    assert row["namespace"] == "shop" and row["node-ip"] == "192.168.1.11" and row["host-network"] is False
    assert row["first-seen"] == "2026-11-22T10:00:01.000Z" and row["last-seen"].endswith("Z")


def test_dual_stack_pod_has_two_ips_and_finished_pods_hold_none():
    view = pod_view(raw_pod(ips=("10.244.1.5", "fd00:10:244:1::5")))
    assert view.ips == ("10.244.1.5", "fd00:10:244:1::5") and view.holds_ips
    assert not pod_view(raw_pod(phase="Succeeded")).holds_ips
    assert not pod_view(raw_pod(phase="Failed")).holds_ips


def test_contested_ip_priorities():
    table = IpTable()
    ip = "10.244.1.5"
    old = pod_view(raw_pod("old", "u-old", created="2026-11-22T09:00:00Z", deleting=True))
    new = pod_view(raw_pod("new", "u-new", created="2026-11-22T10:00:00Z", phase="Pending"))
    table.claim(ip, "c1", old)
    table.claim(ip, "c1", new)
    assert table.winner(ip).pod.name == "new"                 # terminating pod loses
    other = pod_view(raw_pod("other-cluster", "u-x", created="2026-11-22T11:00:00Z"))
    table.claim(ip, "c2", other)
    assert table.winner(ip).cluster == "c2"                    # Running and newer
    table.release(ip, "c2", "u-x")
    assert table.winner(ip).pod.name == "new"                  # the next best comes back
    table.release(ip, "c1", "u-new")
    table.release(ip, "c1", "u-old")
    assert table.winner(ip) is None and len(table) == 0


def test_host_network_pods_lose_to_a_pod_with_its_own_ip():
    table = IpTable()
    table.claim("192.168.1.11", "c", pod_view(raw_pod("kube-proxy", "kp", ips=("192.168.1.11",), host=True,
                                                      created="2026-11-22T12:00:00Z")))
    table.claim("192.168.1.11", "c", pod_view(raw_pod("odd", "o", ips=("192.168.1.11",))))
    assert table.winner("192.168.1.11").pod.name == "odd"


def test_service_row_types_and_ingress():
    svc = {"metadata": {"name": "web", "namespace": "shop"},
           "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00:96::a"],
                    "externalIPs": ["203.0.113.7"],
                    "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 31080},
                              {"port": 53, "protocol": "UDP", "targetPort": "dns"}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.5"}, {"hostname": "lb.example.com"}]}}}
    assert service_row(svc) == {"type": "LoadBalancer", "cluster-ips": ["10.96.0.10", "fd00:96::a"],
                                "external-ips": ["203.0.113.7", "198.51.100.5", "lb.example.com"],
                                "node-ports": [31080], "ports": ["80/TCP->8080", "53/UDP->dns"]}
    headless = {"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}
    assert service_row(headless)["cluster-ips"] == [] and service_row(headless)["ports"] == ["5432/TCP->5432"]


def test_slices_give_ready_backends_across_slices():
    def eps(name, endpoints):
        return {"metadata": {"name": name, "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
                "endpoints": endpoints}
    e1 = eps("web-abc", [
        {"addresses": ["10.244.1.5"], "conditions": {"ready": True}, "nodeName": "w1", "targetRef": {"kind": "Pod", "name": "web-1"}},
        {"addresses": ["10.244.1.6"], "conditions": {"ready": False}, "targetRef": {"kind": "Pod", "name": "web-2"}},
        {"addresses": ["10.244.1.7"], "targetRef": {"kind": "Pod", "name": "web-3"}},      # ready unset = ready
    ])
    members = slice_members(e1)[1]
    assert set(members) == {("10.244.1.5", 0), ("10.244.1.6", 0), ("10.244.1.7", 0)}  # no ports in the slice: 0
    assert members[("10.244.1.5", 0)] == {"ip": "10.244.1.5", "port": 0, "protocol": "TCP", "namespace": "shop",
                                          "pod": "web-1", "node": "w1", "ready": True, "serving": True,
                                          "terminating": False}
    assert members[("10.244.1.6", 0)]["ready"] is False and members[("10.244.1.6", 0)]["serving"] is False
    assert members[("10.244.1.7", 0)]["ready"] is True and "node" not in members[("10.244.1.7", 0)]
    index = ServiceIndex()
    index.set_service({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"clusterIP": "10.96.0.1"}})
    index.set_slice(e1)
    index.set_slice(eps("web-def", [{"addresses": ["10.244.2.9"], "targetRef": {"kind": "Pod", "name": "web-4"}}]))
    assert index.row("shop", "web")["backend-count"] == 3  # ready ones
    assert sorted(b["pod"] for b in index.backends("shop", "web").values()) == ["web-1", "web-2", "web-3", "web-4"]
    index.drop_slice("shop", "web-abc")
    assert index.row("shop", "web")["backend-count"] == 1
    assert [b["pod"] for b in index.backends("shop", "web").values()] == ["web-4"]
