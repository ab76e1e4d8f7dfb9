"""Config commands through the datastore's one write path (in-process backend)."""
from __future__ import annotations

from .conftest import fail, run

K8S = "/kubefabric-k8s:k8s/connection"


def _connections(ds) -> dict:
    return {key[0]: values for key, values, _ in ds.read(K8S)}


async def test_create_modify_show_delete_as_in_the_seed(admin, ds):
    await run(admin, "k8s-connection-create cluster-name pluribus kube-config /root/.kube/config enable")
    assert _connections(ds)["pluribus"]["kube-config"] == "/root/.kube/config"
    # with one connection, cluster-name may be left out (the seed's `k8s-connection-modify create-vport`)
    await run(admin, "k8s-connection-modify create-vport")
    await run(admin, "k8s-connection-modify cluster-name pluribus overlay-vxlan-analytics kube-config /etc/k.conf")
    conn = _connections(ds)["pluribus"]
    assert conn["create-vport"] is True and conn["overlay-vxlan-analytics"] is True
    assert conn["kube-config"] == "/etc/k.conf" and conn["owner"] == "leaf1"
    await run(admin, "k8s-connection-modify cluster-name pluribus disable no-create-vport no-overlay-vxlan-analytics")
    conn = _connections(ds)["pluribus"]
    assert (conn["enable"], conn["create-vport"], conn["overlay-vxlan-analytics"]) == (False, False, False)
    await run(admin, "k8s-connection-delete cluster-name pluribus")
    assert _connections(ds) == {}


async def test_refusals_are_one_line_and_change_nothing(admin, ds):
    await run(admin, "k8s-connection-create cluster-name a kube-config /a overlay-vxlan-analytics")
    assert "k8s-connection-create: cluster-name a already exists" == await fail(
        admin, "k8s-connection-create cluster-name a kube-config /b")
    assert "cluster-name zz does not exist" in await fail(admin, "k8s-connection-modify cluster-name zz enable")
    assert "cluster-name zz does not exist" in await fail(admin, "k8s-connection-delete cluster-name zz")
    assert "nothing to change" in await fail(admin, "k8s-connection-modify cluster-name a")
    error = await fail(admin, "k8s-connection-create cluster-name b kube-config /b overlay-vxlan-analytics")
    assert "At most one Kubernetes connection" in error and "overlay-vxlan-analytics" in error
    error = await fail(admin, "k8s-connection-create cluster-name b kube-config relative/path")
    assert error.startswith("k8s-connection-create: invalid value") and "kube-config" in error
    error = await fail(admin, "k8s-connection-create cluster-name bad_name! kube-config /b")
    assert error.startswith("k8s-connection-create: invalid value") and "bad_name!" in error
    assert set(_connections(ds)) == {"a"}
    for name in "bcd":
        await run(admin, f"k8s-connection-create cluster-name {name} kube-config /{name}")
    error = await fail(admin, "k8s-connection-create cluster-name e kube-config /e")
    assert "at most four" in error
    assert set(_connections(ds)) == {"a", "b", "c", "d"}
    assert "cluster-name is required (4 entries exist)" in await fail(admin, "k8s-connection-modify enable")


async def test_read_only_user_is_refused(admin, viewer, ds):
    await run(admin, "k8s-connection-create cluster-name a kube-config /a")
    for line in ("k8s-connection-create cluster-name b kube-config /b",
                 "k8s-connection-modify cluster-name a disable",
                 "k8s-connection-delete cluster-name a",
                 "connection-stats-settings-modify enable"):
        error = await fail(viewer, line)
        assert error.startswith(line.split()[0] + ": permission denied") and "read-only" in error
    assert set(_connections(ds)) == {"a"} and _connections(ds)["a"]["enable"] is True
    assert "a" in await run(viewer, "k8s-connection-show")


async def test_connection_stats_settings(admin, ds):
    await run(admin, "connection-stats-settings-modify enable max-connections 5000")
    assert ds.read_node("/kubefabric-connection:connection-stats-settings") == {
        "enable": True, "max-connections": 5000, "idle-timeout": 300, "no-response-timeout": 5}
    await run(admin, "connection-stats-settings-modify disable idle-timeout 60 no-response-timeout 3")
    assert await run(admin, "connection-stats-settings-show") == (
        "enable:              no\nmax-connections:     5000\nidle-timeout:        60\nno-response-timeout: 3")
