"""Prometheus metrics: scraped from a real agent process, and computed from known datastore rows."""
from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.datastore import Datastore
from agent.metrics import METRICS, FabricCollector
from core.ports.stats import ComponentStats
from fabric_sync.embedded import EmbeddedFabricStore
from tests.agentproc import REPO, free_port

pytest.importorskip("agent.gnmi.server", reason="the gNMI face has not landed yet")


def scrape(address: str) -> dict[str, list]:
    """{family name: [(sample name, labels, value)]} of one scrape."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = [(s.name, s.labels, s.value) for s in family.samples]
    return out


def value(families: dict, name: str, **labels) -> float | None:
    family = name[: -len("_total")] if name.endswith("_total") else name
    for sample_name, sample_labels, sample_value in families.get(family, []):
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items()):
            return sample_value
    return None


@pytest.fixture
def metrics_agent(agent_factory):
    port = free_port()
    agent = agent_factory(extra_args=["--metrics-addr", f"127.0.0.1:{port}"])
    agent.metrics_addr = f"127.0.0.1:{port}"
    return agent


def test_scrape_a_running_agent(metrics_agent):
    families = scrape(metrics_agent.metrics_addr)
    assert value(families, "kubefabric_info", node="leaf1") == 1
    assert value(families, "kubefabric_fabric_sync_state", state="in-sync") == 1
    assert value(families, "kubefabric_fabric_nodes", state="online") == 1
    assert value(families, "kubefabric_sflow_datagrams_total") == 0
    assert value(families, "kubefabric_connection_table_size") == 0
    assert value(families, "kubefabric_connection_stats_enabled") == 0
    assert value(families, "kubefabric_face_sessions", face="gNMI") is not None
    assert value(families, "kubefabric_face_subscriptions", face="gNMI") is not None
    assert value(families, "kubefabric_face_coalesced_updates_total", face="gNMI") is not None
    assert "metrics listening on" in metrics_agent.log()


def test_metrics_follow_config_commits_at_scrape_time(metrics_agent):
    from pygnmi.client import gNMIclient

    before = scrape(metrics_agent.metrics_addr)
    commits = value(before, "kubefabric_config_commits_total")
    with gNMIclient(**metrics_agent.gnmi_kwargs()) as gc:
        gc.set(update=[("/kubefabric-connection:connection-stats-settings", {"enable": True, "max-connections": 5000})],
               encoding="json_ietf")
        after = scrape(metrics_agent.metrics_addr)
    assert value(after, "kubefabric_config_commits_total") == commits + 1
    assert value(after, "kubefabric_connection_stats_enabled") == 1
    assert value(after, "kubefabric_connection_table_max") == 5000
    # the scrape itself shows the open gNMI session's RPCs
    assert value(after, "kubefabric_component_stat", component="gNMI", stat="set_commits") >= 1


def test_metrics_refuse_nothing_and_serve_openmetrics(metrics_agent):
    request = urllib.request.Request(f"http://{metrics_agent.metrics_addr}/metrics",
                                     headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert response.read().decode().rstrip().endswith("# EOF")


async def test_collector_reads_producer_rows(tmp_path: Path):
    ds = Datastore("leaf9", tmp_path, EmbeddedFabricStore(tmp_path, "leaf9"))
    await ds.start()
    try:
        ds.state.upsert("/kubefabric-sflow:sflow-collector/statistics/exporter", ("192.0.2.11", 0),
                        {"datagrams": 120, "samples": 800, "malformed": 2, "lost": 3,
                         "last-sequence": 120, "last-seen": "2026-11-22T10:00:00Z"})
        ds.state.upsert("/kubefabric-sflow:sflow-collector/statistics/exporter", ("192.0.2.12", 1),
                        {"datagrams": 10, "samples": 20, "malformed": 0, "lost": 0})
        key = (0, 1, "10.244.0.2", "10.244.1.3", 40000, 8080, 6)
        ds.state.upsert("/kubefabric-connection:connections/connection", key, {"cur-state": "established"})
        key2 = (0, 1, "10.244.0.2", "10.244.2.3", 40001, 8080, 6)
        ds.state.upsert("/kubefabric-connection:connections/connection", key2, {"cur-state": "syn"})
        ds.state.upsert("/kubefabric-k8s:k8s/connection/state", ("prod",),
                        {"status": "connected", "events": 42, "pod-count": 7, "service-count": 2, "node-count": 3,
                         "last-sync": "2026-11-22T10:00:00.000Z"})
        ds.state.upsert("/kubefabric-vport:vports/vport", ("10.244.0.2",), {"hostname": "worker-001"})
        ds.state.upsert("/kubefabric-vport:vports/vport", ("10.244.1.3",), {"hostname": "worker-002"})
        ds.state.upsert("/kubefabric-vport:vports/vport", ("10.244.1.4",), {"hostname": "worker-002"})

        class Face:
            def statistics(self):
                return ComponentStats(sessions=2, subscriptions=5, coalesced=9, other={"rpcs": 11})

        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(FabricCollector(ds, lambda: [("gNMI", Face())]))
        families = {f.name: [(s.name, s.labels, s.value) for s in f.samples]
                    for f in text_string_to_metric_families(generate_latest(registry).decode())}
    finally:
        await ds.stop()
    assert value(families, "kubefabric_sflow_datagrams_total") == 130  # summed over exporters
    assert value(families, "kubefabric_sflow_exporter_malformed_total", agent_address="192.0.2.11") == 2
    assert value(families, "kubefabric_sflow_exporter_lost_total", agent_address="192.0.2.11", sub_agent_id="0") == 3
    assert value(families, "kubefabric_sflow_exporter_last_seen_seconds", agent_address="192.0.2.11") > 1.7e9
    assert value(families, "kubefabric_connection_table_size") == 2
    assert value(families, "kubefabric_connections", state="established") == 1
    assert value(families, "kubefabric_connections", state="syn") == 1
    assert value(families, "kubefabric_k8s_connection_status", cluster_name="prod", status="connected") == 1
    assert value(families, "kubefabric_k8s_connection_status", cluster_name="prod", status="error") == 0
    assert value(families, "kubefabric_k8s_events_total", cluster_name="prod") == 42
    assert value(families, "kubefabric_k8s_pods", cluster_name="prod") == 7
    assert value(families, "kubefabric_vports", hostname="worker-002") == 2
    assert value(families, "kubefabric_face_sessions", face="gNMI") == 2
    assert value(families, "kubefabric_face_subscriptions", face="gNMI") == 5
    assert value(families, "kubefabric_face_coalesced_updates_total", face="gNMI") == 9
    assert value(families, "kubefabric_component_stat", component="gNMI", stat="rpcs") == 11


def test_grafana_dashboard_uses_exported_metric_names():
    dashboard = json.loads((REPO / "examples" / "grafana" / "kubefabric.json").read_text())
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(dashboard)
    assert len(exprs) >= 8
    used = {name for expr in exprs for name in re.findall(r"\bkubefabric_[a-z0-9_]+", expr)}
    known = set(METRICS)
    assert used and used <= known, used - known
    for needed in ("kubefabric_sflow_exporter_datagrams_total", "kubefabric_connection_table_size",
                   "kubefabric_k8s_connection_status", "kubefabric_face_sessions", "kubefabric_fabric_sync_state",
                   "kubefabric_config_commits_total"):
        assert needed in used


async def test_sflow_and_eviction_counters_from_a_real_collector(agent_factory):
    """The simulated switch feeds a real agent whose table holds 5 rows: datagrams per exporter, evictions."""
    import asyncio

    pytest.importorskip("collectors.sflow.collector", reason="the sFlow collector has not landed yet")
    from pygnmi.client import gNMIclient

    from sim.sflow_exporter import Pod, SflowExporter

    metrics_port, sflow_port = free_port(), free_port(socket.SOCK_DGRAM)
    agent = await asyncio.to_thread(agent_factory, extra_args=[
        "--metrics-addr", f"127.0.0.1:{metrics_port}", "--sflow-addr", f"127.0.0.1:{sflow_port}"])

    def configure():
        with gNMIclient(**agent.gnmi_kwargs()) as gc:
            gc.set(update=[("/kubefabric-connection:connection-stats-settings",
                            {"enable": True, "max-connections": 5})], encoding="json_ietf")

    await asyncio.to_thread(configure)
    pods = [Pod(f"10.244.{n}.{i + 2}", f"worker-{n}", f"192.168.100.{10 + n}", "shop", f"app{i % 3}-{n}{i}", f"app{i % 3}")
            for n in range(3) for i in range(4)]
    exporter = SflowExporter([("127.0.0.1", sflow_port)], lambda: pods, rate=100, conversations=20, seed=11)
    await exporter.start()
    try:
        deadline = time.monotonic() + 15
        while True:
            families = await asyncio.to_thread(scrape, f"127.0.0.1:{metrics_port}")
            evicted = (value(families, "kubefabric_connection_evictions_total") or 0) > 0
            published = value(families, "kubefabric_sflow_exporter_datagrams_total", agent_address="192.0.2.11")
            if (evicted and published) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await exporter.stop()
    received = value(families, "kubefabric_sflow_exporter_datagrams_total", agent_address="192.0.2.11")
    assert received, (exporter.datagrams, families.get("kubefabric_sflow_exporter_datagrams"), agent.log()[-2000:])
    assert value(families, "kubefabric_sflow_exporter_lost_total", agent_address="192.0.2.11") == 0
    assert value(families, "kubefabric_sflow_datagrams_total") > 0
    assert value(families, "kubefabric_connection_table_max") == 5
    assert 0 < value(families, "kubefabric_connection_table_size") <= 5
    assert value(families, "kubefabric_connection_evictions_total") > 0


def test_netconf_sessions_are_counted(agent_factory):
    pytest.importorskip("agent.netconf.server", reason="the NETCONF face has not landed yet")
    ncclient = pytest.importorskip("ncclient.manager")
    from tests.agentproc import USERS

    metrics_port, netconf_port = free_port(), free_port()
    agent = agent_factory(extra_args=["--metrics-addr", f"127.0.0.1:{metrics_port}",
                                      "--netconf-addr", f"127.0.0.1:{netconf_port}"])
    assert value(scrape(f"127.0.0.1:{metrics_port}"), "kubefabric_face_sessions", face="NETCONF") == 0
    with ncclient.connect(host="127.0.0.1", port=netconf_port, username="viewer", password=USERS["viewer"][0],
                          hostkey_verify=False, allow_agent=False, look_for_keys=False, timeout=10):
        families = scrape(f"127.0.0.1:{metrics_port}")
    assert value(families, "kubefabric_face_sessions", face="NETCONF") == 1
    assert value(families, "kubefabric_face_subscriptions", face="NETCONF") == 0
    assert agent.node_name == "leaf1"
