"""Every show command with its column filters, time filters and output options (in-process backend)."""
from __future__ import annotations

import json

import pytest

from agent.cli.backend import DatastoreBackend
from agent.cli.engine import Engine

from .conftest import ADMIN, NOW, fail, run


def _column(text: str, name: str) -> list[str]:
    """Values of one column of a table (by the header's position)."""
    lines = text.splitlines()
    start = lines[0].index(name)
    widths = lines[1].split(" ")
    pos, bounds = 0, []
    for w in widths:
        bounds.append((pos, pos + len(w)))
        pos += len(w) + 1
    lo, hi = next(b for b in bounds if b[0] == start)
    return [line[lo:hi].strip() for line in lines[2:]]


async def test_vport_show_matches_the_seed_columns(admin):
    text = await run(admin, "vport-show")
    lines = text.splitlines()
    assert lines[0].split() == ["owner", "mac", "vlan", "ip", "svc-name", "hostname", "entity", "power",
                                "portgroup", "status"]
    assert set(lines[1]) == {"-", " "}
    assert len(lines) == 5
    assert "switch 88:88:88:bf:5d:be 4090 10.244.1.5  pluribus server2  pod-A     Running app:hello-world  host,pod,k8s" in lines
    # rows come in address order (10.244.2.7 before 10.244.2.10)
    assert _column(text, "ip") == ["10.244.1.5", "10.244.2.7", "10.244.2.10"]


async def test_vport_show_column_filters(admin):
    text = await run(admin, "vport-show svc-name pluribus")
    assert _column(text, "entity") == ["pod-A", "pod-B"]
    text = await run(admin, "vport-show hostname server1 power Running")
    assert _column(text, "entity") == ["pod-B"]
    assert await run(admin, "vport-show hostname server9") == ""
    text = await run(admin, "vport-show namespace kube-system format entity,namespace")
    assert text.splitlines()[2].split() == ["coredns-1", "kube-system"]


@pytest.mark.parametrize("filters, expected", [
    ("within-last 1h", ["pod-A", "pod-B"]),
    ("duration 30m", ["pod-B"]),
    ("older-than 1d", ["pod-A", "coredns-1"]),
    ("within-last 3d older-than 1d", ["pod-A"]),
    ("start-time 2026-11-01T12:00:00 end-time 2026-11-01T13:00:00", ["coredns-1"]),
    ("start-time 2026-11-22T11:40:00", ["pod-B"]),
    ("end-time 2026-11-15T00:00:00", ["coredns-1"]),
    ("start-time 2026-11-21T00:00:00 duration 1d", ["pod-A"]),
    ("end-time 2026-11-22T11:35:00 duration 10m", ["pod-B"]),
])
async def test_vport_show_time_filters(admin, filters, expected):
    text = await run(admin, f"vport-show {filters} format entity")
    assert sorted(text.splitlines()[2:]) == sorted(expected)


@pytest.mark.parametrize("filters, message", [
    ("within-last 1x", "invalid duration '1x'"),
    ("start-time yesterday", "invalid time 'yesterday'"),
    ("start-time 2026-11-22T00:00:00 within-last 1h", "cannot be combined"),
    ("start-time 2026-11-22T00:00:00 end-time 2026-11-21T00:00:00", "ends before it starts"),
])
async def test_bad_time_filters(admin, filters, message):
    error = await fail(admin, f"vport-show {filters}")
    assert error.startswith("vport-show: ") and message in error


async def test_output_options(admin):
    text = await run(admin, "vport-show format ip,entity sort-desc entity")
    assert text.splitlines() == ["ip          entity", "----------- ---------",
                                 "10.244.2.7  pod-B", "10.244.1.5  pod-A", "10.244.2.10 coredns-1"]
    text = await run(admin, "vport-show format entity,hostname sort-asc hostname no-show-headers")
    assert [line.split() for line in text.splitlines()] == [["pod-B", "server1"], ["coredns-1", "server1"],
                                                            ["pod-A", "server2"]]
    text = await run(admin, "vport-show format ip,entity,vlan parsable-delim : sort-asc ip")
    assert text.splitlines() == ["ip:entity:vlan", "10.244.1.5:pod-A:4090", "10.244.2.7:pod-B:4090",
                                 "10.244.2.10:coredns-1:4090"]
    text = await run(admin, "vport-show format ip,entity parsable-delim , no-show-headers ip 10.244.1.5")
    assert text == "10.244.1.5,pod-A"
    text = await run(admin, "vport-show ip 10.244.1.5 layout vertical format ip,entity,first-seen")
    assert text == "ip:         10.244.1.5\nentity:     pod-A\nfirst-seen: 2026-11-20T10:00:00"
    text = await run(admin, "vport-show format all ip 10.244.1.5")
    assert "node-ip" in text.splitlines()[0] and "192.168.1.2" in text
    text = await run(admin, "vport-show sort-desc vlan format vlan,ip")  # ties keep address order
    assert _column(text, "ip") == ["10.244.1.5", "10.244.2.7", "10.244.2.10"]


async def test_json_output(ds):
    engine = Engine(DatastoreBackend(ds, ADMIN), as_json=True, now=lambda: NOW)
    rows = json.loads(await run(engine, "vport-show hostname server1"))
    assert [r["entity"] for r in rows] == ["pod-B", "coredns-1"]
    assert rows[0]["vlan"] == 4090 and rows[0]["node-ip"] == "192.168.1.1"
    rows = json.loads(await run(engine, "connection-show format src-ip,latency sort-asc src-ip"))
    assert rows[0] == {"src-ip": "10.244.1.5", "latency": 4010000}
    assert json.loads(await run(engine, "vport-show hostname nobody")) == []
    settings = json.loads(await run(engine, "connection-stats-settings-show"))
    assert settings == {"enable": False, "max-connections": 100000, "idle-timeout": 300, "no-response-timeout": 5}


async def test_k8s_cni_show(admin):
    text = await run(admin, "k8s-cni-show cluster-name pluribus")
    # columns without a value in any row are left out, as the seed's output shows
    assert text.splitlines() == ["cluster-name cni-plugin backend network-type",
                                 "------------ ---------- ------- ------------",
                                 "pluribus     flannel    host-gw underlay"]
    text = await run(admin, "k8s-cni-show")
    assert text.splitlines()[0].split() == ["cluster-name", "cni-plugin", "backend", "udp-port", "vxlan", "network-type"]
    assert "k8s02        calico     vxlan   4789     4096  overlay" in text
    text = await run(admin, "k8s-cni-show vxlan 4096 format cluster-name,pod-network,source")
    assert text.splitlines()[2].split(None, 2) == ["k8s02", "10.245.0.0/16", "IPPool default"]
    text = await run(admin, "k8s-cni-show network-type overlay cni-plugin calico udp-port 4789 format cluster-name")
    assert text.splitlines()[2] == "k8s02"


async def test_connection_show(admin):
    text = await run(admin, "connection-show")
    lines = text.splitlines()
    assert lines[0].split() == ["switch", "vlan", "src-ip", "dst-ip", "dst-port", "cur-state", "latency", "age"]
    # key order: vlan, vxlan, src-ip... (the plain UDP flow has VNI 0)
    assert lines[2].split() == ["switch", "0", "10.244.2.7", "10.97.0.10", "53", "active", "1h30m"]
    assert lines[3].split() == ["switch", "0", "10.244.1.5", "10.244.2.7", "8080", "syn-ack", "4.01s", "9s"]
    text = await run(admin, "connection-show protocol udp format src-ip,protocol,service,bytes")
    assert text.splitlines()[2].split() == ["10.244.2.7", "udp", "kube-system/kube-dns", "300"]
    text = await run(admin, "connection-show protocol 6 format src-pod,dst-pod,bytes,encapsulation")
    assert text.splitlines()[2].split() == ["pod-A", "pod-B", "1.50K", "vxlan"]
    text = await run(admin, "connection-show within-last 5m format dst-port")
    assert text.splitlines()[2:] == ["8080"]
    text = await run(admin, "connection-show sort-desc age format age,cur-state")
    assert [line.split()[1] for line in text.splitlines()[2:]] == ["active", "syn-ack"]
    text = await run(admin, "connection-show cur-state syn-ack latency 4.01s format src-ip")
    assert text.splitlines()[2:] == ["10.244.1.5"]


async def test_service_show_with_virtual_ips_and_backends(admin):
    text = await run(admin, "service-show")
    header = text.splitlines()[0].split()
    assert header == ["cluster-name", "namespace", "name", "type", "cluster-ips", "ports", "backend-pods"]
    assert "default/pod-A@10.244.1.5,default/pod-B@10.244.2.7" in text
    text = await run(admin, "service-show cluster-ips 10.97.0.10 format name,ports")
    assert text.splitlines()[2].split() == ["kube-dns", "53/UDP->53,53/TCP->53"]
    # a list column matches any of its elements
    text = await run(admin, "service-show backend-pods default/pod-B@10.244.2.7 format namespace,name")
    assert text.splitlines()[2].split() == ["default", "web"]


async def test_fabric_node_show(admin):
    text = await run(admin, "fabric-node-show")
    assert text.splitlines()[2].split() == ["leaf1", "online", "standalone"]
    assert (await run(admin, "fabric-node-show state offline")) == ""


async def test_k8s_connection_show_joins_state(admin, ds):
    await run(admin, "k8s-connection-create cluster-name pluribus kube-config /root/.kube/config enable")
    ds.state.merge("/kubefabric-k8s:k8s/connection/state", ("pluribus",),
                   {"status": "connected", "api-server": "https://10.0.0.1:6443", "pod-count": 12,
                    "last-sync": "2026-11-22T11:59:00Z"})
    text = await run(admin, "k8s-connection-show")
    assert text.splitlines()[0].split() == ["cluster-name", "kube-config", "enable", "create-vport",
                                            "overlay-vxlan-analytics", "owner", "status"]
    assert text.splitlines()[2].split() == ["pluribus", "/root/.kube/config", "yes", "no", "no", "leaf1", "connected"]
    text = await run(admin, "k8s-connection-show format cluster-name,api-server,pod-count,last-sync")
    assert text.splitlines()[2].split() == ["pluribus", "https://10.0.0.1:6443", "12", "2026-11-22T11:59:00"]
    assert await run(admin, "k8s-connection-show enable format cluster-name parsable-delim ,") == "cluster-name\npluribus"
    assert await run(admin, "k8s-connection-show disable") == ""
    assert await run(admin, "k8s-connection-show status error") == ""
    assert "pluribus" in await run(admin, "k8s-connection-show within-last 5m")
    assert await run(admin, "k8s-connection-show older-than 1h") == ""


async def test_settings_show(admin):
    assert await run(admin, "connection-stats-settings-show") == (
        "enable:              no\nmax-connections:     100000\nidle-timeout:        300\nno-response-timeout: 5")
    assert await run(admin, "connection-stats-settings-show format enable,idle-timeout parsable-delim ,") == (
        "enable,idle-timeout\nno,300")
    assert await run(admin, "connection-stats-settings-show layout horizontal format idle-timeout") == (
        "idle-timeout\n------------\n300")


async def test_pager_help_and_exit(admin):
    assert (await admin.run("pager off")).ok
    assert (await admin.run("pager on")).ok
    assert "pager: expected on or off" in await fail(admin, "pager sideways")
    assert "vport-show" in await run(admin, "help")
    assert "within-last" in await run(admin, "help vport-show")
    assert "within-last" in await run(admin, "vport-show ?")
    assert (await admin.run("exit")).exit
    assert "unknown command 'nosuch'" in await fail(admin, "help nosuch")
    assert (await admin.run("   ")).output == ""


async def test_time_filters_on_tables_without_time_leaves_use_the_change_time(ds):
    engine = Engine(DatastoreBackend(ds, ADMIN))  # the real clock: rows were written just now
    text = await run(engine, "k8s-cni-show within-last 1h format cluster-name")
    assert sorted(text.splitlines()[2:]) == ["k8s02", "pluribus"]
    assert await run(engine, "k8s-cni-show older-than 1h") == ""
    assert await run(engine, "service-show end-time 2000-01-01T00:00:00") == ""
    assert "web" in await run(engine, "service-show within-last 10m")
