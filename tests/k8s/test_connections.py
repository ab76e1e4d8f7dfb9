"""Kubernetes connections end to end: the real client (kubernetes_asyncio) against the fake API server,
through a real kubeconfig file; assertions are the datastore rows an operator would look at."""
import asyncio
import logging
import statistics
import time

import pytest

from tests.k8s.backends import BACKEND, backend_ids, ready_backends
from tests.k8s.conftest import CNI, SERVICE, STATE, VPORT, connected, pods_by_name, state_of, stop_agent, vports


def conn(name, kubeconfig, **extra):
    return {"cluster-name": name, "kube-config": str(kubeconfig), **extra}


def server_pod_ips(srv) -> dict[str, str]:
    out = {}
    for pod in srv.objects("pods"):
        st = pod["status"]
        if st.get("podIP") and st["phase"] not in ("Succeeded", "Failed"):
            out[st["podIP"]] = pod["metadata"]["name"]
    return out


async def setup(apiserver_factory, manager_factory, tmp_path, scenario="flannel-vxlan", pods=30, name="k8s01",
                create_vport=True, **srv_kwargs):
    srv = await apiserver_factory(scenario, pods=pods, **srv_kwargs)
    kc = srv.write_kubeconfig(tmp_path / f"{name}.kubeconfig", cluster_name=name)
    manager, ds = await manager_factory()
    ds.set_connections(conn(name, kc, **{"create-vport": create_vport}))
    await connected(ds, name)
    return srv, manager, ds


async def test_flannel_vxlan_end_to_end(apiserver_factory, manager_factory, tmp_path):
    srv, manager, ds = await setup(apiserver_factory, manager_factory, tmp_path, pods=30)
    st = state_of(ds, "k8s01")
    assert st["api-server"] == srv.url and st["last-error"] == ""
    assert (st["pod-count"], st["service-count"], st["node-count"]) == (30, 12, 3)
    assert st["last-sync"].endswith("Z")
    assert ds.state.entries(CNI)[("k8s01",)] == {
        "cluster-name": "k8s01", "cni-plugin": "flannel", "backend": "vxlan", "udp-port": 8472, "vxlan": 1,
        "network-type": "overlay", "pod-network": ["10.244.0.0/16"], "source": "ConfigMap kube-flannel/kube-flannel-cfg"}
    assert manager.overlay_ports() == {"k8s01": (8472, 1, "vxlan")}

    table = vports(ds)
    assert {ip: row["entity"] for ip, row in table.items()} == server_pod_ips(srv)
    pod = srv.objects("pods")[0]
    row = table[pod["status"]["podIP"]]
    assert row["owner"] == "leaf1" and row["vlan"] == 4090 and row["svc-name"] == "k8s01"
    assert row["hostname"] == pod["spec"]["nodeName"] and row["power"] == "Running"
    assert row["status"] == "host,pod,k8s" and row["mac"].startswith("88:88:88:")
    assert row["portgroup"] == "app:{},pod-template-hash:5d8f7c9b6d".format(pod["metadata"]["labels"]["app"])
    assert row["node-ip"] == pod["status"]["hostIP"] and row["host-network"] is False

    services = ds.state.entries(SERVICE)
    web0 = services[("k8s01", "default", "web0")]
    expected = sorted(f"default/{p['metadata']['name']}@{p['status']['podIP']}" for p in srv.objects("pods")
                      if p["metadata"]["labels"]["app"] == "web0")
    assert ready_backends(ds, "k8s01", "default", "web0") == expected
    assert web0["backend-count"] == len(expected) and web0["type"] == "ClusterIP" and web0["ports"] == ["80/TCP->8080"]
    backend = ds.state.entries(BACKEND)[("k8s01", "default", "web0", expected[0].rpartition("@")[2], 8080)]
    assert backend["pod"] == expected[0].split("/")[1].split("@")[0] and backend["protocol"] == "TCP"
    assert backend["ready"] is True and backend["serving"] is True and backend["terminating"] is False

    # watch events reach the datastore quickly
    latencies = []
    for i in range(20):
        start = time.monotonic()
        new = srv.add_pod(f"web0-5d8f7c9b6d-n{i:03d}", labels={"app": "web0"})
        ip = new["status"]["podIP"]
        await ds.wait_for(lambda: ip in vports(ds), 5)
        change_time = next(t for t, path, key, _ in reversed(ds.state.changes) if path == VPORT and key == (ip,))
        latencies.append(change_time - start)
    assert statistics.median(latencies) < 0.1, latencies
    await ds.wait_for(lambda: f"default/web0-5d8f7c9b6d-n019@{ip}" in ready_backends(ds, "k8s01", "default", "web0"))

    # a finished pod releases its IP (no delete needed); a deleted pod disappears
    srv.set_pod_phase("default", "web0-5d8f7c9b6d-n000", "Succeeded")
    srv.delete_pod("default", "web0-5d8f7c9b6d-n001")
    await ds.wait_for(lambda: not {"web0-5d8f7c9b6d-n000", "web0-5d8f7c9b6d-n001"} & set(pods_by_name(ds)))
    await ds.wait_for(lambda: state_of(ds, "k8s01")["pod-count"] == 49 and state_of(ds, "k8s01")["events"] >= 22, 3)


@pytest.mark.parametrize("scenario, expected", [
    ("flannel-host-gw", {"cni-plugin": "flannel", "backend": "host-gw", "network-type": "underlay"}),
    ("calico-ipip", {"cni-plugin": "calico", "backend": "ipip", "network-type": "overlay",
                     "pod-network": ["192.168.0.0/16"]}),
    ("k3s-flannel", {"cni-plugin": "flannel", "backend": "host-gw", "network-type": "underlay"}),
    ("unknown-cni", {"cni-plugin": "unknown", "network-type": "unknown"}),
])
async def test_cni_detection_through_the_api(apiserver_factory, manager_factory, tmp_path, scenario, expected):
    srv, manager, ds = await setup(apiserver_factory, manager_factory, tmp_path, scenario=scenario, pods=5)
    row = ds.state.entries(CNI)[("k8s01",)]
    assert {k: row.get(k) for k in expected} == expected
    assert "udp-port" not in row and "vxlan" not in row
    assert manager.overlay_ports() == {}


async def test_calico_vxlan_via_the_operator(apiserver_factory, manager_factory, tmp_path):
    srv, manager, ds = await setup(apiserver_factory, manager_factory, tmp_path, scenario="calico-vxlan-operator", pods=5)
    row = ds.state.entries(CNI)[("k8s01",)]
    assert (row["cni-plugin"], row["backend"], row["network-type"], row["udp-port"], row["vxlan"]) == \
        ("calico", "vxlan", "overlay", 4789, 4096)
    assert manager.overlay_ports() == {"k8s01": (4789, 4096, "vxlan")}
    # the operator's Installation still tells when the pools are not readable
    srv.delete("ippools.crd.projectcalico.org", None, "default-ipv4-ippool")
    srv.delete("ippools.projectcalico.org", None, "default-ipv4-ippool")
    await ds.wait_for(lambda: "Installation default" in ds.state.entries(CNI)[("k8s01",)]["source"], 5)
    assert ds.state.entries(CNI)[("k8s01",)]["backend"] == "vxlan"
    # a changed FelixConfiguration VNI is picked up live
    felix = srv.get("felixconfigurations.crd.projectcalico.org", None, "default")
    srv.apply({"apiVersion": "crd.projectcalico.org/v1", "kind": "FelixConfiguration",
               "metadata": {"name": "default"}, "spec": {**felix["spec"], "vxlanVNI": 5001}})
    await ds.wait_for(lambda: ds.state.entries(CNI)[("k8s01",)]["vxlan"] == 5001, 5)
    assert manager.overlay_ports() == {"k8s01": (4789, 5001, "vxlan")}
    t_changed = time.time()
    assert ds.history.cni_at("k8s01", t_changed - 30) is None
    assert ds.history.cni_at("k8s01", t_changed)["vxlan"] == 5001


async def test_churn_of_1000_pods(apiserver_factory, manager_factory, tmp_path):
    srv, manager, ds = await setup(apiserver_factory, manager_factory, tmp_path, pods=300)
    replaced = []
    for i in range(1000):
        replaced.append(srv.churn_step())
        if i % 50 == 0:
            await asyncio.sleep(0)       # let the watch streams flow while churning
    await ds.wait_for(lambda: {ip: r["entity"] for ip, r in vports(ds).items()} == server_pod_ips(srv), 20)
    services = ds.state.entries(SERVICE)
    for sl in srv.objects("endpointslices"):
        ns, svc = sl["metadata"]["namespace"], sl["metadata"]["labels"]["kubernetes.io/service-name"]
        want = sorted(f"{ns}/{e['targetRef']['name']}@{e['addresses'][0]}" for e in sl["endpoints"]
                      if e["conditions"]["ready"])
        await ds.wait_for(lambda: ready_backends(ds, "k8s01", ns, svc) == want, 5)
    assert len(services) == 12
    await ds.wait_for(lambda: state_of(ds, "k8s01")["pod-count"] == 300 and state_of(ds, "k8s01")["events"] >= 2000, 5)
    # every pod removed by the churn has a closed interval in the time machine
    gone = {old for old, _ in replaced}
    names_now = {row["name"] for row in (ds.history.pod_at(ip) for ip in server_pod_ips(srv)) if row}
    assert not gone & names_now
    assert ds.history.count("pod") >= 1300


async def test_ip_reuse_by_a_new_pod(apiserver_factory, manager_factory, tmp_path):
    srv, manager, ds = await setup(apiserver_factory, manager_factory, tmp_path, pods=0)
    a = srv.add_pod("cart-a", "default", node="worker-001", labels={"app": "cart"})
    ip = a["status"]["podIP"]
    await ds.wait_for(lambda: vports(ds).get(ip, {}).get("entity") == "cart-a")
    t_a = time.time()
    await asyncio.sleep(0.05)
    srv.delete_pod("default", "cart-a")
    await ds.wait_for(lambda: ip not in vports(ds))
    t_gap = time.time()
    await asyncio.sleep(0.05)
    srv.add_pod("cart-b", "default", node="worker-001", ip=ip, labels={"app": "cart"})
    await ds.wait_for(lambda: vports(ds).get(ip, {}).get("entity") == "cart-b")
    t_b = time.time()
    # a job pod finishes (Succeeded, never deleted) and a new pod gets its IP
    c = srv.add_pod("batch-c", "default", node="worker-002", labels={"app": "batch"})
    ip_c = c["status"]["podIP"]
    await ds.wait_for(lambda: vports(ds).get(ip_c, {}).get("entity") == "batch-c")
    t_c = time.time()
    await asyncio.sleep(0.05)
    srv.set_pod_phase("default", "batch-c", "Succeeded")
    await ds.wait_for(lambda: ip_c not in vports(ds))
    srv.add_pod("cart-d", "default", node="worker-002", ip=ip_c, labels={"app": "cart"})
    await ds.wait_for(lambda: vports(ds).get(ip_c, {}).get("entity") == "cart-d")

    history = ds.history
    assert history.pod_at(ip, t_a)["name"] == "cart-a"
    assert history.pod_at(ip, t_gap) is None
    assert history.pod_at(ip, t_b)["name"] == "cart-b"
    assert history.pod_at(ip_c, t_c)["name"] == "batch-c"
    assert history.pod_at(ip_c)["name"] == "cart-d"
    assert history.vports_at(t_a)[ip]["entity"] == "cart-a"
    assert ip not in history.vports_at(t_gap)
    assert history.service_backends("k8s01", "default", "cart", t_a) == []   # no such service: none recorded


async def test_apiserver_restart_mid_watch(apiserver_factory, manager_factory, tmp_path):
    srv, manager, ds = await setup(apiserver_factory, manager_factory, tmp_path, pods=20)
    pods_watcher = manager.connections["k8s01"].watchers[0]
    stop = asyncio.create_task(srv.restart(downtime=1.0))
    await asyncio.sleep(0.3)
    srv.add_pod("born-while-down", labels={"app": "web1"})      # the store (etcd) keeps it, with its event
    await ds.wait_for(lambda: state_of(ds, "k8s01")["status"] == "connecting" and state_of(ds, "k8s01")["last-error"], 5)
    await stop
    await ds.wait_for(lambda: "born-while-down" in pods_by_name(ds), 10)
    await connected(ds, "k8s01")
    assert pods_watcher.lists == 1            # resumed from its resourceVersion, no re-list
    assert {ip: r["entity"] for ip, r in vports(ds).items()} == server_pod_ips(srv)


@pytest.mark.parametrize("gone_mode", ["event", "http"])
async def test_410_during_a_watch_relists(apiserver_factory, manager_factory, tmp_path, gone_mode):
    srv, manager, ds = await setup(apiserver_factory, manager_factory, tmp_path, pods=20, gone_mode=gone_mode)
    pods_watcher = manager.connections["k8s01"].watchers[0]
    # changes whose events were lost (compacted away): only a re-list can reveal them
    victims = [p["metadata"]["name"] for p in srv.objects("pods")[:5]]
    for name in victims:
        srv.delete_pod("default", name, quiet=True) if srv.get("pods", "default", name) else None
    for p in srv.objects("pods")[:0]:
        pass
    for name in [p["metadata"]["name"] for p in srv.objects("pods")[:3]]:
        ns = next(p["metadata"]["namespace"] for p in srv.objects("pods") if p["metadata"]["name"] == name)
        srv.delete_pod(ns, name, quiet=True)
    srv.add_pod("appeared-quietly", labels={"app": "web2"}, quiet=True)
    srv.expire_watches()
    await ds.wait_for(lambda: {ip: r["entity"] for ip, r in vports(ds).items()} == server_pod_ips(srv), 10)
    assert "appeared-quietly" in pods_by_name(ds)
    assert pods_watcher.lists >= 2
    await connected(ds, "k8s01")


async def test_half_open_watch_is_detected_by_the_read_timeout(apiserver_factory, manager_factory, tmp_path):
    srv, manager, ds = await setup(apiserver_factory, manager_factory, tmp_path, pods=5)
    srv.stall_watches(True)
    srv.add_pod("during-stall", labels={"app": "web0"})
    await ds.wait_for(lambda: "no data for 2 s" in state_of(ds, "k8s01")["last-error"], 8)
    srv.stall_watches(False)
    await ds.wait_for(lambda: "during-stall" in pods_by_name(ds), 10)
    await connected(ds, "k8s01")


async def test_injected_errors_back_off_and_recover(apiserver_factory, manager_factory, tmp_path):
    srv = await apiserver_factory("flannel-vxlan", pods=10)
    srv.inject_error(503, count=4, match="/pods")
    kc = srv.write_kubeconfig(tmp_path / "kc", cluster_name="k8s01")
    manager, ds = await manager_factory()
    ds.set_connections(conn("k8s01", kc, **{"create-vport": True}))
    await ds.wait_for(lambda: "HTTP 503" in state_of(ds, "k8s01").get("last-error", ""), 5)
    await connected(ds, "k8s01")
    assert len(vports(ds)) == 10


async def test_bad_token_gives_a_clear_error_without_the_token(apiserver_factory, manager_factory, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    srv = await apiserver_factory("flannel-vxlan", pods=3)
    secret = "eyJhbGciOiJSUzI1NiIsImtpZCI6IndyX3NlY3JldCJ9.not-the-right-token-5f3a9c"
    kc = srv.write_kubeconfig(tmp_path / "bad", cluster_name="k8s01", token=secret)
    manager, ds = await manager_factory()
    ds.set_connections(conn("k8s01", kc, **{"create-vport": True}))
    st = await ds.wait_for(lambda: state_of(ds, "k8s01").get("status") == "error" and state_of(ds, "k8s01"), 10)
    assert "401" in st["last-error"] and "credentials" in st["last-error"]
    assert st["api-server"] == srv.url
    everything = repr(ds.state.nodes) + caplog.text
    assert secret not in everything and secret[:20] not in everything
    assert vports(ds) == {}


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    ("clusters: [\n  token: eyJsecretsecretsecret-in-bad-yaml\n", "not valid YAML"),
    ("apiVersion: v1\nkind: Config\nclusters: []\n", "no clusters"),
])
async def test_unusable_kubeconfig(manager_factory, tmp_path, caplog, content, message):
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)
    manager, ds = await manager_factory()
    ds.set_connections(conn("k8s01", path))
    st = await ds.wait_for(lambda: state_of(ds, "k8s01").get("status") == "error" and state_of(ds, "k8s01"), 5)
    assert message in st["last-error"] and str(path) in st["last-error"]
    assert "eyJsecret" not in repr(ds.state.nodes) + caplog.text


async def test_tls_with_client_certificate_and_ca(apiserver_factory, manager_factory, tmp_path, caplog):
    srv = await apiserver_factory("calico-ipip", pods=4, tls=True, pki_dir=tmp_path / "pki")
    kc = srv.write_kubeconfig(tmp_path / "cert.kubeconfig", cluster_name="tls", client_cert=True)
    no_ca = srv.write_kubeconfig(tmp_path / "noca.kubeconfig", cluster_name="tls2", ca=True)
    manager, ds = await manager_factory()
    ds.set_connections(conn("tls", kc, **{"create-vport": True}))
    st = await connected(ds, "tls")
    assert st["api-server"].startswith("https://") and len(vports(ds)) == 4
    key_line = (tmp_path / "pki" / "client.key").read_text().splitlines()[1]
    assert key_line not in repr(ds.state.nodes) + caplog.text
    assert manager.connections["tls"].client.auth == "client-certificate"
    assert no_ca.exists()


async def test_tls_server_not_trusted_is_an_error(apiserver_factory, manager_factory, tmp_path):
    srv = await apiserver_factory("flannel-vxlan", pods=1, tls=True, pki_dir=tmp_path / "pki")
    other = await apiserver_factory(None, tls=True, pki_dir=tmp_path / "other-pki")
    kc = srv.write_kubeconfig(tmp_path / "kc", cluster_name="k8s01")
    text = kc.read_text().replace(srv.pki["ca.crt"].read_bytes().hex()[:0] or "", "")
    import base64, yaml
    doc = yaml.safe_load(text)
    doc["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(
        other.pki["ca.crt"].read_bytes()).decode()
    kc.write_text(yaml.safe_dump(doc))
    manager, ds = await manager_factory()
    ds.set_connections(conn("k8s01", kc))
    await ds.wait_for(lambda: "certificate" in state_of(ds, "k8s01").get("last-error", "").lower()
                      or "ssl" in state_of(ds, "k8s01").get("last-error", "").lower(), 10)
    assert state_of(ds, "k8s01")["status"] in ("connecting", "error")


async def test_four_connections_at_once(apiserver_factory, manager_factory, tmp_path):
    scenarios = ["flannel-vxlan", "k3s-flannel", "calico-ipip", "calico-vxlan-operator"]   # disjoint pod networks
    servers, conns = [], []
    for i, scenario in enumerate(scenarios):
        srv = await apiserver_factory(scenario, pods=10 + i)
        servers.append(srv)
        conns.append(conn(f"k8s0{i + 1}", srv.write_kubeconfig(tmp_path / f"kc{i}", cluster_name=f"k8s0{i + 1}"),
                          **{"create-vport": True}))
    fifth = await apiserver_factory("flannel-vxlan", pods=1)
    conns.append(conn("k8s05", fifth.write_kubeconfig(tmp_path / "kc5", cluster_name="k8s05")))
    manager, ds = await manager_factory()
    ds.set_connections(*conns)
    for i in range(4):
        st = await connected(ds, f"k8s0{i + 1}")
        assert st["pod-count"] == 10 + i
    assert state_of(ds, "k8s05")["status"] == "error" and "more than 4" in state_of(ds, "k8s05")["last-error"]
    cni = ds.state.entries(CNI)
    assert [cni[(f"k8s0{i + 1}",)]["backend"] for i in range(4)] == ["vxlan", "host-gw", "ipip", "vxlan"]
    assert manager.overlay_ports() == {"k8s01": (8472, 1, "vxlan"), "k8s04": (4789, 4096, "vxlan")}
    # every cluster's pods are in the one vPort table
    assert sorted(len(vports(ds, f"k8s0{i + 1}")) for i in range(4)) == [10, 11, 12, 13]
    # events on all four at once
    for i, srv in enumerate(servers):
        srv.add_pod(f"late-{i}", labels={"app": "late"})
    await ds.wait_for(lambda: all(f"late-{i}" in pods_by_name(ds, f"k8s0{i + 1}") for i in range(4)), 5)


async def test_same_pod_ip_in_two_clusters(apiserver_factory, manager_factory, tmp_path):
    a = await apiserver_factory("flannel-vxlan")
    b = await apiserver_factory("flannel-vxlan")
    a.add_pod("in-a", node="worker-001", ip="10.244.0.50", labels={"app": "x"})
    manager, ds = await manager_factory()
    ds.set_connections(conn("a", a.write_kubeconfig(tmp_path / "a", cluster_name="a"), **{"create-vport": True}),
                       conn("b", b.write_kubeconfig(tmp_path / "b", cluster_name="b"), **{"create-vport": True}))
    await connected(ds, "a")
    await connected(ds, "b")
    assert vports(ds)["10.244.0.50"]["svc-name"] == "a"
    b.add_pod("in-b", node="worker-001", ip="10.244.0.50", labels={"app": "x"})   # newer claim wins
    await ds.wait_for(lambda: vports(ds)["10.244.0.50"]["svc-name"] == "b")
    b.delete_pod("default", "in-b")                                              # the other claim comes back
    await ds.wait_for(lambda: vports(ds)["10.244.0.50"]["entity"] == "in-a")


async def test_remote_disabled_toggled_and_deleted(apiserver_factory, manager_factory, tmp_path):
    srv = await apiserver_factory("flannel-vxlan", pods=8)
    kc = srv.write_kubeconfig(tmp_path / "kc", cluster_name="k8s01")
    manager, ds = await manager_factory()
    ds.set_connections(conn("k8s01", kc, owner="leaf2", **{"create-vport": True}))
    await manager.settle()
    assert state_of(ds, "k8s01")["status"] == "remote" and vports(ds) == {}

    ds.set_connections(conn("k8s01", kc, owner="leaf1", **{"create-vport": True}))
    await connected(ds, "k8s01")
    assert len(vports(ds)) == 8

    ds.set_connections(conn("k8s01", kc, owner="leaf1", **{"create-vport": False}))
    await ds.wait_for(lambda: vports(ds) == {}, 3)
    ds.set_connections(conn("k8s01", kc, **{"create-vport": True}))
    await ds.wait_for(lambda: len(vports(ds)) == 8, 3)

    ds.set_connections(conn("k8s01", kc, enable=False, **{"create-vport": True}))
    await manager.settle()
    assert state_of(ds, "k8s01")["status"] == "disabled"
    srv.add_pod("unseen", labels={"app": "web0"})
    await asyncio.sleep(0.3)
    assert "unseen" not in pods_by_name(ds)           # watchers stopped
    ds.set_connections(conn("k8s01", kc, enable=True, **{"create-vport": True}))
    await ds.wait_for(lambda: "unseen" in pods_by_name(ds), 5)
    await asyncio.sleep(0.05)
    t_before = time.time()
    await asyncio.sleep(0.05)
    ds.set_connections()
    await manager.settle()
    assert vports(ds) == {} and ds.state.entries(SERVICE) == {} and ds.state.entries(CNI) == {}
    assert ds.state.entries(STATE) == {}
    assert ds.history.vports_at() == {} and len(ds.history.vports_at(t_before)) == 9


async def test_time_machine_through_the_manager(apiserver_factory, manager_factory, tmp_path):
    srv, manager, ds = await setup(apiserver_factory, manager_factory, tmp_path, pods=24)
    await asyncio.sleep(0.05)
    t1 = time.time()
    table_t1 = vports(ds)
    backends_t1 = backend_ids(ds, "k8s01", "shop", "shop-app1")
    await asyncio.sleep(0.05)
    for _ in range(10):
        srv.churn_step()
    await ds.wait_for(lambda: {ip: r["entity"] for ip, r in vports(ds).items()} == server_pod_ips(srv), 10)
    await asyncio.sleep(0.05)
    t2 = time.time()
    history = ds.history
    past = history.vports_at(t1)
    assert {ip: r["entity"] for ip, r in past.items()} == {ip: r["entity"] for ip, r in table_t1.items()}
    assert past[next(iter(table_t1))]["mac"] == table_t1[next(iter(table_t1))]["mac"]
    assert history.service_backends("k8s01", "shop", "shop-app1", t1) == backends_t1
    assert history.service_backends("k8s01", "shop", "shop-app1", t2) == backend_ids(ds, "k8s01", "shop", "shop-app1")
    changes = history.changes(t1, t2, kinds=["vport"])
    assert sum(c["op"] == "delete" for c in changes) >= 1 and sum(c["op"] == "update" for c in changes) >= 10
    assert all(c["path"] == VPORT for c in changes)


async def test_forbidden_optional_sources_count_as_absent(apiserver_factory, manager_factory, tmp_path):
    """No RoleBinding in kube-flannel, no Calico rights: still connected, CNI from what is readable."""
    srv = await apiserver_factory("flannel-host-gw", pods=3)
    srv.inject_error(403, count=10_000, match="/namespaces/kube-flannel/configmaps")
    srv.inject_error(403, count=10_000, match="/apis/crd.projectcalico.org/")
    kc = srv.write_kubeconfig(tmp_path / "kc", cluster_name="k8s01")
    manager, ds = await manager_factory()
    ds.set_connections(conn("k8s01", kc, **{"create-vport": True}))
    st = await connected(ds, "k8s01")
    assert st["last-error"] == ""
    assert ds.state.entries(CNI)[("k8s01",)]["backend"] == "host-gw"
    assert len(vports(ds)) == 3


async def test_configmaps_are_requested_by_name(apiserver_factory, manager_factory, tmp_path):
    srv, manager, ds = await setup(apiserver_factory, manager_factory, tmp_path, pods=1)
    cm_requests = [q for m, p, q in srv.requests if p.endswith("/configmaps")]
    assert cm_requests and all("fieldSelector=metadata.name" in q for q in cm_requests)
    # an unrelated ConfigMap in kube-system never reaches the agent
    srv.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
               "data": {"Corefile": ".:53 {}"}})
    srv.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"},
               "data": {"net-conf.json": '{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}'}})
    await ds.wait_for(lambda: ds.state.entries(CNI)[("k8s01",)]["backend"] == "host-gw", 5)
    assert "coredns" not in repr(manager.connections["k8s01"].cni_sources.configmaps)


async def test_history_survives_an_agent_restart(apiserver_factory, manager_factory, tmp_path):
    srv = await apiserver_factory("flannel-vxlan", pods=10)
    kc = srv.write_kubeconfig(tmp_path / "kc", cluster_name="k8s01")
    manager, ds = await manager_factory(data_dir=tmp_path / "agent-data")
    ds.set_connections(conn("k8s01", kc, **{"create-vport": True}))
    await connected(ds, "k8s01")
    before = vports(ds)
    await asyncio.sleep(0.05)
    t_before = time.time()
    await stop_agent(manager, ds)
    gone = [p for p in srv.objects("pods")[:3]]
    for pod in gone:                                    # deleted while the agent was down
        srv.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"])
    await asyncio.sleep(0.05)
    manager2, ds2 = await manager_factory(data_dir=tmp_path / "agent-data")
    ds2.set_connections(conn("k8s01", kc, **{"create-vport": True}))
    await connected(ds2, "k8s01")
    history = ds2.history
    assert {ip: r["entity"] for ip, r in history.vports_at(t_before).items()} == \
        {ip: r["entity"] for ip, r in before.items()}
    for pod in gone:
        ip = pod["status"]["podIP"]
        assert history.pod_at(ip, t_before)["name"] == pod["metadata"]["name"]
        assert history.pod_at(ip) is None and ip not in vports(ds2)
    kept = next(ip for ip in before if ip not in {p["status"]["podIP"] for p in gone})
    assert history.pod_at(kept)["valid_from"] < t_before       # the same interval, not a new one


async def test_fixing_the_kubeconfig_in_place_heals_the_connection(apiserver_factory, manager_factory, tmp_path):
    srv = await apiserver_factory("flannel-vxlan", pods=4)
    kc = srv.write_kubeconfig(tmp_path / "kc", cluster_name="k8s01", token="revoked-token-0123456789")
    manager, ds = await manager_factory()
    ds.set_connections(conn("k8s01", kc, **{"create-vport": True}))
    await ds.wait_for(lambda: state_of(ds, "k8s01").get("status") == "error", 10)
    await asyncio.sleep(0.05)
    srv.write_kubeconfig(kc, cluster_name="k8s01")          # the operator drops in a fresh token
    st = await connected(ds, "k8s01")
    assert len(vports(ds)) == 4 and "revoked-token" not in repr(st)


async def test_paginated_list_and_an_expired_continue_token(apiserver_factory, manager_factory, tmp_path):
    srv = await apiserver_factory("flannel-vxlan", pods=95)
    srv.inject_error(410, count=1, match="continue=", watch=False)     # the snapshot expired mid-list
    kc = srv.write_kubeconfig(tmp_path / "kc", cluster_name="k8s01")
    manager, ds = await manager_factory(watch_options={**__import__("tests.k8s.conftest", fromlist=["FAST"]).FAST,
                                                       "page_size": 10})
    ds.set_connections(conn("k8s01", kc, **{"create-vport": True}))
    await connected(ds, "k8s01")
    assert {ip: r["entity"] for ip, r in vports(ds).items()} == server_pod_ips(srv)
    lists = [(p, q) for m, p, q in srv.requests if "watch" not in q and "limit=10" in q]
    assert sum("continue=" in q for p, q in lists if p == "/api/v1/pods") >= 9      # 95 pods: 10 pages
    starts = {}
    for p, q in lists:
        if "continue=" not in q:
            starts[p] = starts.get(p, 0) + 1
    core = [starts[p] for p in ("/api/v1/pods", "/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices")]
    assert sorted(core) == [1, 1, 2], starts          # the list whose continue expired started over, once
    assert len(ds.state.entries(SERVICE)) == 12      # services and slices paged too (12 each)


async def test_dual_stack_host_network_and_loadbalancer(apiserver_factory, manager_factory, tmp_path):
    srv, manager, ds = await setup(apiserver_factory, manager_factory, tmp_path, pods=0)
    pod = srv.add_pod("dual", node="worker-002", ipv6="fd00:10:244:2::7", labels={"app": "edge"})
    v4 = pod["status"]["podIP"]
    await ds.wait_for(lambda: {v4, "fd00:10:244:2::7"} <= set(vports(ds)))
    assert vports(ds)["fd00:10:244:2::7"]["entity"] == "dual" and vports(ds)[v4]["mac"] != \
        vports(ds)["fd00:10:244:2::7"]["mac"]
    # host-network pods share their node's IP: one row, a pod with its own IP would win over them
    node_ip = srv._node_ips["worker-001"]
    srv.add_pod("kube-proxy-abcde", "kube-system", node="worker-001", host_network=True, labels={"k8s-app": "kube-proxy"})
    await ds.wait_for(lambda: vports(ds).get(node_ip, {}).get("entity") == "kube-proxy-abcde")
    assert vports(ds)[node_ip]["host-network"] is True and vports(ds)[node_ip]["portgroup"] == "k8s-app:kube-proxy"
    srv.add_service("edge", svc_type="LoadBalancer", lb_ingress=[{"ip": "203.0.113.10"}],
                    external_ips=["198.51.100.7"], selector={"app": "edge"})
    row = await ds.wait_for(lambda: ds.state.entries(SERVICE).get(("k8s01", "default", "edge")))
    await ds.wait_for(lambda: ready_backends(ds, "k8s01", "default", "edge") == [f"default/dual@{v4}"])
    row = ds.state.entries(SERVICE)[("k8s01", "default", "edge")]
    assert row["type"] == "LoadBalancer" and row["external-ips"] == ["198.51.100.7", "203.0.113.10"]
    assert len(row["node-ports"]) == 1 and row["ports"] == ["80/TCP->8080"]
    srv.delete_pod("default", "dual")
    await ds.wait_for(lambda: v4 not in vports(ds) and "fd00:10:244:2::7" not in vports(ds))
    await ds.wait_for(lambda: ready_backends(ds, "k8s01", "default", "edge") == [])
