"""Set as a config edit: paths and values applied to an RFC 7951 tree (no validation here)."""
from __future__ import annotations

import json

import pytest
from agent.gnmi_proto import gnmi_pb2

from core.schema import default_schema
from agent.gnmi.edit import apply, plan
from agent.gnmi.paths import PathError, parse

S = default_schema()
K = "kubefabric-k8s:k8s"


def req(delete=(), replace=(), update=(), prefix=""):
    def upd(p, v):
        return gnmi_pb2.Update(path=parse(p), val=gnmi_pb2.TypedValue(json_ietf_val=json.dumps(v).encode()))

    return gnmi_pb2.SetRequest(prefix=parse(prefix), delete=[parse(p) for p in delete],
                               replace=[upd(p, v) for p, v in replace], update=[upd(p, v) for p, v in update])


def run(tree, **kw):
    return apply(tree, S, plan(S, req(**kw)))


def base():
    return {K: {"connection": [{"cluster-name": "a", "kube-config": "/a", "enable": False},
                               {"cluster-name": "b", "kube-config": "/b"}]}}


def test_container_list_entry_leaf_and_root():
    tree = run(base(), replace=[("/k8s", {"connection": [{"cluster-name": "z", "kube-config": "/z"}]})])
    assert tree == {K: {"connection": [{"cluster-name": "z", "kube-config": "/z"}]}}
    tree = run(base(), update=[("/k8s/connection[cluster-name=a]", {"kube-config": "/a2"})])
    assert tree[K]["connection"][0] == {"cluster-name": "a", "kube-config": "/a2", "enable": False}
    tree = run(base(), replace=[("/k8s/connection[cluster-name=a]", {"kube-config": "/a3"})])
    assert tree[K]["connection"][0] == {"cluster-name": "a", "kube-config": "/a3"}  # replace drops omitted leaves
    tree = run({}, update=[("/", {K: {"connection": [{"cluster-name": "r", "kube-config": "/r"}]}})])
    assert tree[K]["connection"][0]["cluster-name"] == "r"
    tree = run(base(), update=[("/k8s/connection[cluster-name=b]/enable", False)])
    assert tree[K]["connection"][1]["enable"] is False
    tree = run(base(), update=[("connection[cluster-name=c]", {"kube-config": "/c"})], prefix="/k8s")
    assert [c["cluster-name"] for c in tree[K]["connection"]] == ["a", "b", "c"]
    tree = run(base(), update=[("/k8s/connection[cluster-name=a]", {"kubefabric-k8s:kube-config": "/q"})])
    assert tree[K]["connection"][0]["kube-config"] == "/q"  # module-qualified members accepted


def test_order_is_delete_replace_update():
    tree = run(base(), delete=["/k8s/connection[cluster-name=a]"],
               update=[("/k8s/connection[cluster-name=a]/kube-config", "/again")],
               replace=[("/k8s/connection[cluster-name=b]", {"kube-config": "/b2"})])
    assert tree[K]["connection"] == [{"cluster-name": "b", "kube-config": "/b2"}, {"cluster-name": "a", "kube-config": "/again"}]


def test_deletes_with_wildcards_and_of_absent_nodes():
    assert run(base(), delete=["/k8s/connection[cluster-name=*]"]) == {}
    assert run(base(), delete=["/k8s/connection"]) == {}
    assert run(base(), delete=["/k8s/connection/enable"])[K]["connection"][0] == {"cluster-name": "a", "kube-config": "/a"}
    assert run(base(), delete=["/k8s/connection[cluster-name=none]", "/sflow-collector/port"]) == base()


@pytest.mark.parametrize("kw,code", [
    ({"update": [("/k8s/connection/enable", True)]}, "INVALID_ARGUMENT"),
    ({"update": [("/k8s/*", {})]}, "INVALID_ARGUMENT"),
    ({"update": [("/vports/vport[ip=1.1.1.1]", {})]}, "INVALID_ARGUMENT"),
    ({"delete": ["/k8s/cni"]}, "INVALID_ARGUMENT"),
    ({"update": [("/k8s/connection[cluster-name=a]", [1])]}, "INVALID_ARGUMENT"),
    ({"update": [("/k8s/nothing", 1)]}, "NOT_FOUND"),
    ({"delete": ["/"]}, "INVALID_ARGUMENT"),
])
def test_refusals(kw, code):
    with pytest.raises(PathError) as info:
        run(base(), **kw)
    assert info.value.code == code
