"""The datastore: validated config writes that are all-or-nothing, state
updates that publish only real changes, and config that survives restarts."""
from __future__ import annotations

import errno
import json
import os

import pytest

from core.datastore import ConfigError, Datastore
from fabric_sync.embedded import EmbeddedFabricStore

K8S = "kubefabric-k8s:k8s"
CONN = "/kubefabric-k8s:k8s/connection"
VPORT = "/kubefabric-vport:vports/vport"


async def new_ds(path, node="leaf1") -> Datastore:
    ds = Datastore(node, path, EmbeddedFabricStore(path, node))
    await ds.start()
    return ds


def add_conn(name, **leaves):
    def edit(tree):
        tree.setdefault(K8S, {}).setdefault("connection", []).append(
            {"cluster-name": name, "kube-config": "/etc/kubefabric/kubeconfig", **leaves}
        )
        return tree

    return edit


async def test_create_fills_defaults_and_owner(tmp_path):
    ds = await new_ds(tmp_path)
    await ds.propose(add_conn("k8s01"), user="admin", face="test")
    row = ds.read_node(CONN, ("k8s01",))
    assert row["owner"] == "leaf1"
    assert row["enable"] is True and row["create-vport"] is False and row["overlay-vxlan-analytics"] is False


@pytest.mark.parametrize(
    "edit, tag, app_tag, path_part",
    [
        (add_conn("bad name!"), "invalid-value", "", "cluster-name"),
        (add_conn("k", enable="yes"), "invalid-value", "", "enable"),
        (add_conn("k", bogus=1), "unknown-element", "", "bogus"),
        (add_conn("k", **{"kube-config": "relative/path"}), "invalid-value", "", "kube-config"),
        (lambda t: {**t, "kubefabric-sflow:sflow-collector": {"port": 70000}}, "invalid-value", "", "port"),
        (lambda t: {**t, "kubefabric-vport:vports": {"vport": []}}, "invalid-value", "", "vports"),
        (lambda t: {**t, K8S: {"connection": [{"cluster-name": "x"}]}}, "data-missing", "missing-element", "connection"),
    ],
)
async def test_bad_config_is_refused_and_changes_nothing(tmp_path, edit, tag, app_tag, path_part):
    ds = await new_ds(tmp_path)
    await ds.propose(add_conn("keep"), user="admin", face="test")
    before = json.dumps(ds.config.raw, sort_keys=True)
    events = []
    ds.feed.subscribe(events.extend)
    with pytest.raises(ConfigError) as err:
        await ds.propose(edit, user="admin", face="test")
    assert err.value.error_tag == tag
    assert err.value.app_tag == app_tag
    assert path_part in err.value.path
    assert json.dumps(ds.config.raw, sort_keys=True) == before
    assert events == []


async def test_fifth_connection_and_second_overlay_are_refused(tmp_path):
    ds = await new_ds(tmp_path)
    await ds.propose(add_conn("c1", **{"overlay-vxlan-analytics": True}), user="admin", face="test")
    with pytest.raises(ConfigError) as err:
        await ds.propose(add_conn("c2", **{"overlay-vxlan-analytics": True}), user="admin", face="test")
    assert err.value.app_tag == "must-violation" and err.value.grpc_code_name == "FAILED_PRECONDITION"
    assert "overlay-vxlan-analytics" in err.value.message
    for name in ("c2", "c3", "c4"):
        await ds.propose(add_conn(name), user="admin", face="test")
    with pytest.raises(ConfigError) as err:
        await ds.propose(add_conn("c5"), user="admin", face="test")
    assert err.value.app_tag == "too-many-elements" and err.value.grpc_code_name == "FAILED_PRECONDITION"
    assert sorted(k[0] for k, *_ in ds.read(CONN)) == ["c1", "c2", "c3", "c4"]


async def test_config_changes_reach_the_feed_once(tmp_path):
    ds = await new_ds(tmp_path)
    events = []
    ds.feed.subscribe(events.extend)
    await ds.propose(add_conn("k8s01"), user="admin", face="test")
    created = [e for e in events if e.path == CONN]
    assert len(created) == 1 and created[0].values["kube-config"] == "/etc/kubefabric/kubeconfig"
    events.clear()

    def enable_vport(tree):
        tree[K8S]["connection"][0]["create-vport"] = True
        return tree

    await ds.propose(enable_vport, user="admin", face="test")
    assert [(e.path, e.values) for e in events] == [(CONN, {"create-vport": True})]
    events.clear()
    await ds.propose(lambda t: {k: v for k, v in t.items() if k != K8S}, user="admin", face="test")
    assert [(e.path, e.key, e.deleted) for e in events] == [(CONN, ("k8s01",), True)]


async def test_config_survives_restart(tmp_path):
    ds = await new_ds(tmp_path)
    await ds.propose(add_conn("k8s01", **{"create-vport": True}), user="admin", face="test")

    def local(tree):
        tree["kubefabric-connection:connection-stats-settings"] = {"enable": True, "idle-timeout": 60}
        return tree

    await ds.propose(local, user="admin", face="test")
    again = await new_ds(tmp_path)
    assert again.read_node(CONN, ("k8s01",))["create-vport"] is True
    assert again.read_node("/kubefabric-connection:connection-stats-settings")["idle-timeout"] == 60


async def test_disk_full_rejects_write_and_keeps_running_config(tmp_path, monkeypatch):
    ds = await new_ds(tmp_path)
    await ds.propose(add_conn("k8s01"), user="admin", face="test")
    before = json.dumps(ds.config.raw, sort_keys=True)

    def no_space(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", no_space)
    with pytest.raises(ConfigError) as err:
        await ds.propose(add_conn("k8s02"), user="admin", face="test")
    monkeypatch.undo()
    assert err.value.error_tag == "resource-denied" and "No space left" in err.value.message
    assert json.dumps(ds.config.raw, sort_keys=True) == before
    again = await new_ds(tmp_path)
    assert json.dumps(again.config.raw, sort_keys=True) == before
    assert not [p for p in tmp_path.iterdir() if ".tmp." in p.name]


async def test_state_publishes_only_real_changes(tmp_path):
    ds = await new_ds(tmp_path)
    events = []
    ds.feed.subscribe(events.extend)
    row = {"entity": "pod-a", "hostname": "server1", "power": "Running"}
    ds.state.upsert(VPORT, ("10.244.1.2",), row)
    ds.state.upsert(VPORT, ("10.244.1.2",), row)
    ds.state.upsert(VPORT, ("10.244.1.2",), {**row, "power": "Succeeded"})
    assert [e.values for e in events] == [{**row, "ip": "10.244.1.2"}, {"power": "Succeeded"}]
    ds.state.upsert(VPORT, ("10.244.1.2",), {"entity": "pod-a"})
    assert set(events[-1].removed) == {"hostname", "power"}
    assert ds.state.delete(VPORT, ("10.244.1.2",)) is True
    assert events[-1].deleted and ds.state.get(VPORT, ("10.244.1.2",)) is None


async def test_state_batch_and_resync(tmp_path):
    ds = await new_ds(tmp_path)
    batches = []
    ds.feed.subscribe(batches.append)
    with ds.state.batch():
        for i in range(100):
            ds.state.upsert(VPORT, (f"10.0.0.{i}",), {"svc-name": "a" if i < 50 else "b"})
    assert len(batches) == 1 and len(batches[0]) == 100
    ds.state.replace_where(VPORT, {("10.0.1.1",): {"svc-name": "a"}}, where=lambda k, v: v.get("svc-name") == "a")
    names = {k[0]: v["svc-name"] for k, v in ds.state.entries(VPORT).items()}
    assert names["10.0.1.1"] == "a" and sum(1 for v in names.values() if v == "a") == 1
    assert sum(1 for v in names.values() if v == "b") == 50


async def test_state_rejects_unknown_paths_and_wrong_keys(tmp_path):
    ds = await new_ds(tmp_path)
    with pytest.raises(KeyError):
        ds.state.upsert("/kubefabric-vport:nothing", ("x",), {})
    with pytest.raises(ValueError):
        ds.state.upsert(VPORT, (), {})


async def test_delete_cascades_to_children(tmp_path):
    ds = await new_ds(tmp_path)
    stats = "/kubefabric-sflow:sflow-collector/statistics"
    ds.state.merge(stats, (), {"datagrams": 5})
    ds.state.upsert(stats + "/exporter", ("10.0.0.1", 0), {"datagrams": 5})
    ds.state.delete(stats, ())
    assert ds.state.entries(stats + "/exporter") == {}
