"""CaptureSource in a real datastore: node-local config, tunnel ports from the sFlow config and CNI rows (the
kernel filter follows them), statuses written as YANG state, the ERSPAN receiver turned on and off."""
from __future__ import annotations

import asyncio
import os

import pytest

from collectors.capture.source import INTERFACE_PATH, CaptureSource, ERSPAN_PATH
from collectors.conntrack.table import ConnectionTable
from core import scope
from core.datastore import Datastore
from fabric_sync.embedded import EmbeddedFabricStore


@pytest.fixture
async def ds(tmp_path):
    store = Datastore("leaf1", tmp_path, EmbeddedFabricStore(tmp_path, "leaf1"))
    await store.start()
    yield store
    await store.stop()


async def until(check, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)


def test_capture_config_is_node_local():
    fabric, local = scope.split({"kubefabric-capture:capture": {"interface": [{"name": "mirror0"}]},
                                 "kubefabric-sflow:sflow-collector": {"vxlan-port": [4789]}})
    assert "kubefabric-capture:capture" in local and "kubefabric-capture:capture" not in fabric


async def test_ports_from_sflow_config_and_cni_rows_rebuild_the_filter(ds):
    table = ConnectionTable(ds.state, ds, ds.feed)
    await table.start()
    source = CaptureSource(ds.state, ds, ds.feed, table, stats_interval=0.1)
    await source.start()
    try:
        assert source.vxlan_ports == {4789, 8472} and "udp dst port 8472" in source.expression
        await ds.propose(lambda t: {**t, "kubefabric-sflow:sflow-collector": {"vxlan-port": [4789],
                                                                             "geneve-port": 6082}},
                         user="test", face="test")
        assert source.vxlan_ports == {4789} and "udp dst port 8472" not in source.expression
        assert "udp dst port 6082" in source.expression
        ds.state.upsert("/kubefabric-k8s:k8s/cni", ("k8s01",), {"cni-plugin": "flannel", "udp-port": 8999})
        await until(lambda: 8999 in source.vxlan_ports)
        assert "udp dst port 8999" in source.expression and source.instructions > 100
    finally:
        await source.stop()
        await table.stop()


async def test_interfaces_and_receiver_follow_config_and_report_state(ds):
    source = CaptureSource(ds.state, ds, ds.feed, None, stats_interval=0.1, retry_interval=0.2)
    await source.start()
    try:
        def edit(tree):
            tree["kubefabric-capture:capture"] = {"interface": [{"name": "nosuch0"}, {"name": "off0", "enable": False}],
                                                  "erspan": {"enable": True, "address": "192.0.2.250"}}
            return tree

        await ds.propose(edit, user="test", face="test")
        await until(lambda: len(ds.state.entries(INTERFACE_PATH)) == 2 and ds.state.get(ERSPAN_PATH, ()))
        rows = {k[0]: v for k, v in ds.state.entries(INTERFACE_PATH).items()}
        assert rows["off0"]["status"] == "disabled" and "error" not in rows["off0"]
        assert rows["nosuch0"]["status"] == "error" and rows["nosuch0"]["source"] == "config"
        assert "nosuch0" in rows["nosuch0"]["error"]
        erspan = ds.state.get(ERSPAN_PATH, ())
        assert erspan["status"] == "error" and erspan["address"] == "192.0.2.250"  # not a local address
        if os.geteuid() == 0:
            assert "Cannot assign requested address" in erspan["error"]

        def off(tree):
            tree["kubefabric-capture:capture"] = {"erspan": {"enable": False}}
            return tree

        await ds.propose(off, user="test", face="test")
        await until(lambda: not ds.state.entries(INTERFACE_PATH)
                    and ds.state.get(ERSPAN_PATH, ()).get("status") == "disabled")
    finally:
        await source.stop()


async def test_command_line_overrides_the_node_config(ds):
    source = CaptureSource(ds.state, ds, ds.feed, None, interfaces=["cli0"], stats_interval=0.1)
    await source.start()
    try:
        await ds.propose(lambda t: {**t, "kubefabric-capture:capture": {"interface": [{"name": "cfg0"}]}},
                         user="test", face="test")
        await until(lambda: ds.state.entries(INTERFACE_PATH))
        assert list(source.interfaces) == ["cli0"]
        assert ds.state.get(INTERFACE_PATH, ("cli0",))["source"] == "command-line"
    finally:
        await source.stop()
