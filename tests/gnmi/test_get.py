"""Get over state written by a producer (in-process server, raw gRPC client)."""
from __future__ import annotations

import json
import time

import grpc
import pytest
from agent.gnmi_proto import gnmi_ext_pb2, gnmi_pb2

from agent.gnmi.paths import parse, to_string
from tests.gnmi.helpers import ADMIN, VPORT, Harness, plain, vport_row
from tests.gnmi.test_subscribe import FakeHistory

CNI = "/kubefabric-k8s:k8s/cni"


@pytest.fixture
async def h(tmp_path):
    harness = await Harness(tmp_path).start()
    yield harness
    await harness.stop()


async def get(h, *paths, encoding="JSON_IETF", type="ALL", extension=None):
    req = gnmi_pb2.GetRequest(path=[parse(p) for p in paths], encoding=gnmi_pb2.Encoding.Value(encoding),
                              type=gnmi_pb2.GetRequest.DataType.Value(type), extension=extension or [])
    return await h.stub.Get(req, metadata=ADMIN)


async def test_state_tables_in_json_ietf_and_proto(h):
    h.ds.state.upsert(CNI, ("c1",), {"cni-plugin": "flannel", "udp-port": 8472, "vxlan": 1,
                                     "pod-network": ["10.244.0.0/16", "fd00::/64"]})
    h.ds.state.upsert(VPORT, ("10.0.0.2",), vport_row(2))
    h.ds.state.upsert(VPORT, ("10.0.0.1",), vport_row(1))
    resp = await get(h, "/k8s/cni[cluster-name=c1]", "/vports/vport")
    cni, vports = resp.notification
    assert json.loads(cni.update[0].val.json_ietf_val)["kubefabric-k8s:pod-network"] == ["10.244.0.0/16", "fd00::/64"]
    assert [to_string(u.path) for u in vports.update] == ["/vports/vport[ip=10.0.0.1]", "/vports/vport[ip=10.0.0.2]"]
    proto = await get(h, "/k8s/cni[cluster-name=c1]", encoding="PROTO")
    vals = {u.path.elem[-1].name: u.val for u in proto.notification[0].update}
    assert [e.string_val for e in vals["pod-network"].leaflist_val.element] == ["10.244.0.0/16", "fd00::/64"]
    assert vals["udp-port"].uint_val == 8472 and vals["cni-plugin"].string_val == "flannel"
    whole = await get(h, "/vports")
    doc = json.loads(whole.notification[0].update[0].val.json_ietf_val)
    assert [v["ip"] for v in doc["kubefabric-vport:vport"]] == ["10.0.0.1", "10.0.0.2"]  # nested: unqualified


async def test_data_types_split_config_and_state(h):
    def add(tree):
        tree["kubefabric-k8s:k8s"] = {"connection": [{"cluster-name": "a", "kube-config": "/k/a"}]}
        return tree

    await h.ds.propose(add, user="t", face="test")
    h.ds.state.upsert("/kubefabric-k8s:k8s/connection/state", ("a",), {"status": "connected", "events": 3})
    config = plain(json.loads((await get(h, "/k8s/connection", type="CONFIG")).notification[0].update[0].val.json_ietf_val))
    state = plain(json.loads((await get(h, "/k8s/connection", type="STATE")).notification[0].update[0].val.json_ietf_val))
    both = plain(json.loads((await get(h, "/k8s/connection")).notification[0].update[0].val.json_ietf_val))
    assert "state" not in config and config["kube-config"] == "/k/a"
    assert "kube-config" not in state and state["state"] == {"status": "connected", "events": "3"}
    assert both["kube-config"] == "/k/a" and both["state"]["status"] == "connected"
    assert (await get(h, "/vports", type="CONFIG")).notification[0].update == []


async def test_use_models_restricts_the_answer(h):
    h.ds.state.upsert(VPORT, ("10.0.0.1",), vport_row(1))
    only_k8s = [gnmi_pb2.ModelData(name="kubefabric-k8s")]
    resp = await h.stub.Get(gnmi_pb2.GetRequest(path=[parse("/")], encoding=4, use_models=only_k8s), metadata=ADMIN)
    assert "vports" not in str(resp)
    resp = await h.stub.Get(gnmi_pb2.GetRequest(path=[parse("/")], encoding=4), metadata=ADMIN)
    assert "vports" in str(resp)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await h.stub.Get(gnmi_pb2.GetRequest(path=[parse("/")], use_models=[gnmi_pb2.ModelData(name="openconfig-x")]),
                         metadata=ADMIN)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_errors(h):
    for paths, kw, code in [
        (["/k8s/cni[cluster-name=none]"], {}, grpc.StatusCode.NOT_FOUND),
        (["/vports/vport[ip=10.9.9.9]/entity"], {}, grpc.StatusCode.NOT_FOUND),
        (["/vports/nothing"], {}, grpc.StatusCode.UNIMPLEMENTED),  # not in the schema: spec 3.3.4's table
        (["/vports"], {"encoding": "BYTES"}, grpc.StatusCode.UNIMPLEMENTED),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await get(h, *paths, **kw)
        assert info.value.code() == code, paths
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await h.stub.Get(gnmi_pb2.GetRequest(path=[parse("/vports")]), metadata=[("username", "admin")])
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_history_snapshot_get(h):
    ext = gnmi_ext_pb2.Extension()
    ext.history.snapshot_time = time.time_ns() - 10**9
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await get(h, "/vports", extension=[ext])
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    t0 = time.time() - 100
    h.ds.history.attach(FakeHistory(t0))
    ext.history.snapshot_time = int((t0 + 3.5) * 1e9)
    resp = await get(h, "/vports/vport", extension=[ext])
    assert [to_string(u.path) for u in resp.notification[0].update] == ["/vports/vport[ip=10.9.0.2]"]
    assert resp.notification[0].timestamp == ext.history.snapshot_time
