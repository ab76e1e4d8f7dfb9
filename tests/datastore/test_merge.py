"""Undoing one change keeps the changes other writers made after it."""
from core.datastore.merge import merge3
from core.schema import default_schema

K8S = "kubefabric-k8s:k8s"


def conns(*entries):
    return {K8S: {"connection": [{"cluster-name": n, "kube-config": "/k", **extra} for n, extra in entries]}}


def test_rollback_of_a_create_keeps_a_later_create():
    before = conns(("a", {}))
    committed = conns(("a", {}), ("ours", {}))
    current = conns(("a", {}), ("ours", {}), ("theirs", {}))
    merged = merge3(committed, before, current, default_schema())
    assert [c["cluster-name"] for c in merged[K8S]["connection"]] == ["a", "theirs"]


def test_rollback_of_a_leaf_change_keeps_a_later_change_of_another_leaf():
    before = conns(("a", {"create-vport": False}))
    committed = conns(("a", {"create-vport": True}))
    current = conns(("a", {"create-vport": True, "enable": False}))
    merged = merge3(committed, before, current, default_schema())
    assert merged[K8S]["connection"] == [{"cluster-name": "a", "kube-config": "/k", "create-vport": False, "enable": False}]


def test_a_later_change_of_the_same_leaf_wins():
    before = conns(("a", {"create-vport": False}))
    committed = conns(("a", {"create-vport": True}))
    current = {K8S: {"connection": [{"cluster-name": "a", "kube-config": "/other", "create-vport": True}]}}
    merged = merge3(committed, before, current, default_schema())
    assert merged[K8S]["connection"][0]["kube-config"] == "/other"
    assert merged[K8S]["connection"][0]["create-vport"] is False


def test_rollback_restores_a_deleted_entry_and_other_containers():
    before = {**conns(("a", {})), "kubefabric-connection:connection-stats-settings": {"enable": True}}
    committed = {}
    current = {"kubefabric-fabric:fabric": {"name": "f1"}}
    merged = merge3(committed, before, current, default_schema())
    assert merged == {**before, "kubefabric-fabric:fabric": {"name": "f1"}}


def test_rollback_to_no_container_keeps_a_later_entry():
    merged = merge3(conns(("ours", {})), {}, conns(("ours", {}), ("later", {})), default_schema())
    assert [c["cluster-name"] for c in merged[K8S]["connection"]] == ["later"]
    assert merge3(conns(("ours", {})), {}, conns(("ours", {})), default_schema()) == {}
