"""Issue 13, gNMI items 1-5 and 9, against a real `kubefabric run` process.

pygnmi (what tutorials show: `subscribe()` and `subscribe2()`) for streams and
Get/Set; a raw gRPC client on the agent's own gnmi.proto 0.10 messages
(`agent.gnmi_proto`, wire-compatible with pygnmi's 0.8 ones) for what pygnmi
cannot send: the Commit, Depth and MasterArbitration extensions.
"""
from __future__ import annotations

import json
import time

import grpc
import pytest
from grpc_status import rpc_status
from google.rpc import error_details_pb2
from pygnmi.client import gNMIclient

from agent.gnmi.paths import parse
from agent.gnmi_proto import GNMI_PROTO_VERSION, gnmi_ext_pb2, gnmi_pb2, gnmi_pb2_grpc
from tests.agentproc import USERS, AgentProcess

JSON_IETF = gnmi_pb2.Encoding.Value("JSON_IETF")


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    proc = AgentProcess(tmp_path_factory.mktemp("gnmi-conformance")).start()
    yield proc
    proc.kill()


@pytest.fixture
def raw(agent):
    channel = grpc.insecure_channel(agent.gnmi_addr)
    yield gnmi_pb2_grpc.gNMIStub(channel), [("username", "admin"), ("password", USERS["admin"][0])]
    channel.close()


@pytest.fixture(autouse=True)
def no_connections(agent):
    yield
    with gNMIclient(**agent.gnmi_kwargs("admin")) as gc:
        gc.set(delete=["/k8s/connection"])


def conn(name: str) -> dict:
    return {"kube-config": f"/etc/kubefabric/{name}.kubeconfig"}


def names(gc) -> list[str]:
    got = gc.get(path=["/k8s/connection"], encoding="json_ietf")
    out = []
    for n in got["notification"]:
        for u in n.get("update") or []:
            out.append(u["path"].split("cluster-name=", 1)[1].rstrip("]"))
    return sorted(out)


def set_request(updates: dict | None = None, ext=None) -> gnmi_pb2.SetRequest:
    return gnmi_pb2.SetRequest(
        update=[gnmi_pb2.Update(path=parse(f"/k8s/connection[cluster-name={n}]"),
                                val=gnmi_pb2.TypedValue(json_ietf_val=json.dumps(conn(n)).encode()))
                for n in (updates or {})],
        extension=[ext] if ext is not None else [])


def commit_ext(cid: str, action: str, seconds: float | None = None) -> gnmi_ext_pb2.Extension:
    commit = gnmi_ext_pb2.Commit(id=cid)
    if action == "commit":
        commit.commit.SetInParent()
        if seconds:
            commit.commit.rollback_duration.FromNanoseconds(int(seconds * 1e9))
    elif action == "set_rollback_duration":
        commit.set_rollback_duration.rollback_duration.FromNanoseconds(int(seconds * 1e9))
    else:
        getattr(commit, action).SetInParent()
    return gnmi_ext_pb2.Extension(commit=commit)


# -- 1: STREAM lasts until the client cancels -------------------------------------------------------------------
def test_pygnmi_subscribe_and_subscribe2_streams_outlive_the_half_close(agent):
    """Both pygnmi calls half-close right after the SubscriptionList; the stream must go on sampling."""
    request = {"subscription": [{"path": "/fabric/node", "mode": "sample", "sample_interval": 1_000_000_000}],
               "mode": "stream", "encoding": "json_ietf"}
    with gNMIclient(**agent.gnmi_kwargs("viewer")) as gc:
        stream = gc.subscribe(subscribe=dict(request))  # the legacy call: an iterator of raw responses
        samples, started = 0, time.monotonic()
        for response in stream:
            if response.HasField("update") and response.update.update:
                samples += 1
            if samples >= 4:
                break
            assert time.monotonic() - started < 20, "the stream stopped delivering"
        stream.cancel()
        assert samples >= 4 and time.monotonic() - started >= 2.5  # 4 samples a second apart
        sub2 = gc.subscribe2(subscribe=dict(request))
        got = [sub2.get_update(timeout=10) for _ in range(4)]  # the first is the sync'd snapshot
        assert all("update" in g for g in got)
        sub2.close()


def test_poll_ends_at_half_close_and_once_after_sync(agent):
    with gNMIclient(**agent.gnmi_kwargs("viewer")) as gc:
        poll = gc.subscribe2(subscribe={"subscription": [{"path": "/fabric/node"}], "mode": "poll",
                                        "encoding": "json_ietf"})
        for _ in range(2):
            assert "update" in poll.get_update(timeout=10)
        poll.close()  # half-close: the POLL session ends (the thread joins)
        assert not poll._subscribe_thread.is_alive()
        once = gc.subscribe2(subscribe={"subscription": [{"path": "/fabric/node"}], "mode": "once",
                                        "encoding": "json_ietf"})
        assert [r for r in once if "sync_response" in r]


# -- 2: SAMPLE with sample_interval 0 -------------------------------------------------------------------
def test_sample_interval_zero_is_a_one_second_sample(agent):
    request = {"subscription": [{"path": "/fabric/node", "mode": "sample", "sample_interval": 0}],
               "mode": "stream", "encoding": "json_ietf"}
    with gNMIclient(**agent.gnmi_kwargs("viewer")) as gc:
        sub = gc.subscribe2(subscribe=request)
        sub.get_update(timeout=10)  # snapshot + sync
        stamps = [sub.get_update(timeout=5)["update"]["timestamp"] for _ in range(3)]
        sub.close()
    gaps = [(b - a) / 1e9 for a, b in zip(stamps, stamps[1:])]
    assert all(0.7 < g < 1.6 for g in gaps), gaps


# -- 3: extensions -----------------------------------------------------------------------------------------
def test_commit_extension_confirm_cancel_and_rollback(agent, raw):
    stub, md = raw
    with gNMIclient(**agent.gnmi_kwargs("admin")) as gc:
        gc.set(update=[("/k8s/connection[cluster-name=base]", conn("base"))], encoding="json_ietf")
        # commit + confirm: stays
        stub.Set(set_request({"c1": 1}, commit_ext("one", "commit", 60)), metadata=md)
        assert names(gc) == ["base", "c1"]
        # one confirmed commit at a time, and a plain Set waits too (gnmi-commit-confirmed 3.2.1)
        for request in (set_request({"c9": 1}, commit_ext("two", "commit")), set_request({"c9": 1})):
            with pytest.raises(grpc.RpcError) as err:
                stub.Set(request, metadata=md)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as err:  # a wrong id
            stub.Set(set_request(None, commit_ext("nope", "confirm")), metadata=md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stub.Set(set_request(None, commit_ext("one", "confirm")), metadata=md)
        with pytest.raises(grpc.RpcError) as err:  # nothing pending any more
            stub.Set(set_request(None, commit_ext("one", "confirm")), metadata=md)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        # commit + cancel: rolled back, and only that commit
        stub.Set(set_request({"c2": 1}, commit_ext("three", "commit", 60)), metadata=md)
        stub.Set(set_request(None, commit_ext("three", "cancel")), metadata=md)
        assert names(gc) == ["base", "c1"]
        # commit, shortened rollback duration, no confirm: rolled back by the timer
        stub.Set(set_request({"c3": 1}, commit_ext("four", "commit", 600)), metadata=md)
        stub.Set(set_request(None, commit_ext("four", "set_rollback_duration", 1)), metadata=md)
        assert names(gc) == ["base", "c1", "c3"]
        deadline = time.monotonic() + 15
        while names(gc) != ["base", "c1"]:
            assert time.monotonic() < deadline, "the commit was not rolled back"
            time.sleep(0.2)


def test_gnmi_commit_is_rolled_back_when_the_agent_dies_before_the_confirm(tmp_path):
    proc = AgentProcess(tmp_path).start()
    try:
        with gNMIclient(**proc.gnmi_kwargs("admin")) as gc:
            gc.set(update=[("/k8s/connection[cluster-name=base]", conn("base"))], encoding="json_ietf")
        channel = grpc.insecure_channel(proc.gnmi_addr)
        md = [("username", "admin"), ("password", USERS["admin"][0])]
        gnmi_pb2_grpc.gNMIStub(channel).Set(set_request({"doomed": 1}, commit_ext("x", "commit", 600)), metadata=md)
        channel.close()
        proc.kill()
        proc.start()
        with gNMIclient(**proc.gnmi_kwargs("admin")) as gc:
            assert names(gc) == ["base"]
    finally:
        proc.kill()


def test_depth_extension_limits_get_and_subscribe(agent, raw):
    stub, md = raw
    with gNMIclient(**agent.gnmi_kwargs("admin")) as gc:
        gc.set(update=[("/k8s/connection[cluster-name=d]", conn("d"))], encoding="json_ietf")
    depth = gnmi_ext_pb2.Extension(depth=gnmi_ext_pb2.Depth(level=1))
    # /k8s/connection[cluster-name=d] at depth 1: its own leaves, not its state container
    resp = stub.Get(gnmi_pb2.GetRequest(path=[parse("/k8s/connection[cluster-name=d]")], encoding=JSON_IETF,
                                        extension=[depth]), metadata=md)
    value = json.loads(resp.notification[0].update[0].val.json_ietf_val)
    assert value["kubefabric-k8s:kube-config"] == "/etc/kubefabric/d.kubeconfig"
    assert not any(k.endswith(":state") for k in value)
    full = stub.Get(gnmi_pb2.GetRequest(path=[parse("/k8s/connection[cluster-name=d]")], encoding=JSON_IETF),
                    metadata=md)
    assert any(k.endswith(":state") for k in json.loads(full.notification[0].update[0].val.json_ietf_val))
    # /fabric at depth 1: sync-state only, no node entries
    sub = gnmi_pb2.SubscribeRequest(subscribe=gnmi_pb2.SubscriptionList(
        subscription=[gnmi_pb2.Subscription(path=parse("/fabric"))], mode=gnmi_pb2.SubscriptionList.Mode.Value("ONCE"),
        encoding=JSON_IETF), extension=[depth])
    paths = [u.path for r in stub.Subscribe(iter([sub]), metadata=md) if r.HasField("update") for u in r.update.update]
    assert paths and all(not any(e.name == "node" for e in p.elem) for p in paths)
    with pytest.raises(grpc.RpcError) as err:  # Depth applies to Get and Subscribe only (gnmi-depth 3.3)
        stub.Set(gnmi_pb2.SetRequest(extension=[depth]), metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_master_arbitration_and_unknown_extensions(agent, raw):
    stub, md = raw

    def arbitration(eid: int, role: str = "") -> gnmi_ext_pb2.Extension:
        ma = gnmi_ext_pb2.MasterArbitration(election_id=gnmi_ext_pb2.Uint128(high=0, low=eid))
        if role:
            ma.role.id = role
        return gnmi_ext_pb2.Extension(master_arbitration=ma)

    stub.Set(set_request({"m1": 1}, arbitration(10)), metadata=md)
    with pytest.raises(grpc.RpcError) as err:  # a stale master
        stub.Set(set_request({"m2": 1}, arbitration(9)), metadata=md)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "10" in err.value.details()
    stub.Set(set_request({"m3": 1}, arbitration(1, role="other-role")), metadata=md)  # roles are separate
    with pytest.raises(grpc.RpcError) as err:
        stub.Set(set_request({"m4": 1}, gnmi_ext_pb2.Extension(master_arbitration=gnmi_ext_pb2.MasterArbitration())),
                 metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # a registered extension, and one our gnmi_ext.proto does not know (field 6, ConfigSubscription)
    registered = gnmi_ext_pb2.Extension(registered_ext=gnmi_ext_pb2.RegisteredExtension(id=999, msg=b"x"))
    with pytest.raises(grpc.RpcError) as err:
        stub.Get(gnmi_pb2.GetRequest(path=[parse("/fabric")], extension=[registered]), metadata=md)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED and "999" in err.value.details()
    unknown_ext = b"\x32\x00"  # Extension { field 6: empty message }
    request = gnmi_pb2.GetRequest(path=[parse("/fabric")]).SerializeToString() + b"\x3a" + bytes([len(unknown_ext)]) \
        + unknown_ext
    channel = grpc.insecure_channel(agent.gnmi_addr)
    call = channel.unary_unary("/gnmi.gNMI/Get", request_serializer=lambda b: b,
                               response_deserializer=gnmi_pb2.GetResponse.FromString)
    with pytest.raises(grpc.RpcError) as err:
        call(request, metadata=md)
    channel.close()
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED and "6" in err.value.details()


# -- 4: Get(CONFIG) is configuration only, and restores with Set(replace) ----------------------------------------
def test_get_config_round_trips_through_set_replace(agent):
    with gNMIclient(**agent.gnmi_kwargs("admin")) as gc:
        gc.set(update=[("/k8s/connection[cluster-name=backup]", conn("backup")),
                       ("/connection-stats-settings", {"idle-timeout": 42})], encoding="json_ietf")
        backup = gc.get(path=["/"], encoding="json_ietf", datatype="config")
        tree = {}
        for n in backup["notification"]:
            for u in n["update"]:
                tree.update({k if ":" in k else k: v for k, v in u["val"].items()} if u["path"] == "" else
                            {u["path"]: u["val"]})
        text = json.dumps(tree)
        assert '"node"' not in text and "sync-state" not in text  # /fabric/node keys (state) no longer leak
        gc.set(delete=["/k8s/connection"])
        gc.set(update=[("/connection-stats-settings", {"idle-timeout": 7})], encoding="json_ietf")
        gc.set(replace=[("/", {_qualified(k): _strip(v) for k, v in tree.items()})], encoding="json_ietf")
        assert names(gc) == ["backup"]
        settings = gc.get(path=["/connection-stats-settings"], encoding="json_ietf")["notification"][0]["update"][0]
        assert _strip(settings["val"])["idle-timeout"] == 42
        # a replace at / with one module as origin replaces only that module's data
        gc.set(replace=[("kubefabric-k8s:/", {"kubefabric-k8s:k8s": {"connection": [
            {"cluster-name": "only", **conn("only")}]}})], encoding="json_ietf")
        assert names(gc) == ["only"]
        settings = gc.get(path=["/connection-stats-settings"], encoding="json_ietf")["notification"][0]["update"][0]
        assert _strip(settings["val"])["idle-timeout"] == 42  # the other module kept its data


def _qualified(name: str) -> str:
    """A top-level container's name with its module, as the schema names it."""
    from core.schema import default_schema

    return name if ":" in name else next(q for q, top in default_schema().top.items() if top.name == name)


def _strip(value):
    if isinstance(value, dict):
        return {k.rpartition(":")[2]: _strip(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


# -- 5: errors as the specification's tables say, with google.rpc.Status details ------------------------------------
def test_errors_carry_the_right_code_tag_path_and_status_details(agent, raw):
    stub, md = raw
    cases = [
        # missing data in Get: NOT_FOUND (3.3.4)
        (lambda: stub.Get(gnmi_pb2.GetRequest(path=[parse("/k8s/connection[cluster-name=ghost]")], encoding=JSON_IETF),
                          metadata=md), grpc.StatusCode.NOT_FOUND, "", "ghost"),
        # an unknown path in Subscribe: UNIMPLEMENTED (3.5.2.4)
        (lambda: list(stub.Subscribe(iter([gnmi_pb2.SubscribeRequest(subscribe=gnmi_pb2.SubscriptionList(
            subscription=[gnmi_pb2.Subscription(path=parse("/k8s/bogus"))], encoding=JSON_IETF))]), metadata=md)),
         grpc.StatusCode.UNIMPLEMENTED, "unknown-element", "bogus"),
        # a malformed value in Set: INVALID_ARGUMENT with the YANG error-app-tag / error-tag and the path
        (lambda: stub.Set(gnmi_pb2.SetRequest(update=[gnmi_pb2.Update(
            path=parse("/k8s/connection[cluster-name=a]/kube-config"),
            val=gnmi_pb2.TypedValue(json_ietf_val=b'"relative/path"'))]), metadata=md),
         grpc.StatusCode.INVALID_ARGUMENT, "invalid-value", "kube-config"),
    ]
    for call, code, tag, where in cases:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == code, err.value
        status = rpc_status.from_call(err.value)
        assert status is not None and status.code == code.value[0] and status.message == err.value.details()
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info) and info.domain == "kubefabric.gnmi"
        if tag:
            assert err.value.details().startswith(f"{tag}:") and info.metadata["error-tag"] == tag
        assert where in err.value.details()
    # a YANG must-violation: FAILED_PRECONDITION, error-app-tag first and in the details
    with gNMIclient(**agent.gnmi_kwargs("admin")) as gc:
        gc.set(update=[("/k8s/connection[cluster-name=o1]", {**conn("o1"), "overlay-vxlan-analytics": True})],
               encoding="json_ietf")
    with pytest.raises(grpc.RpcError) as err:
        stub.Set(gnmi_pb2.SetRequest(update=[gnmi_pb2.Update(
            path=parse("/k8s/connection[cluster-name=o2]"), val=gnmi_pb2.TypedValue(json_ietf_val=json.dumps(
                {**conn("o2"), "overlay-vxlan-analytics": True}).encode()))]), metadata=md)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details().startswith("must-violation:") and "overlay-vxlan-analytics" in err.value.details()
    info = error_details_pb2.ErrorInfo()
    rpc_status.from_call(err.value).details[0].Unpack(info)
    assert info.reason == "must-violation" and "overlay-vxlan-analytics" in info.metadata["path"]


# -- 9: Capabilities tell the truth ------------------------------------------------------------------------------
def test_capabilities_version_is_the_gnmi_proto_it_speaks(agent, raw):
    stub, md = raw
    with gNMIclient(**agent.gnmi_kwargs("viewer")) as gc:
        caps = gc.capabilities()
    assert caps["gnmi_version"] == GNMI_PROTO_VERSION == "0.10.0"
    assert {m["name"] for m in caps["supported_models"]} >= {"kubefabric-k8s", "ietf-netconf-acm"}
    # 0.10's union_replace is a field this target knows, and refuses by name rather than ignoring
    request = gnmi_pb2.SetRequest(union_replace=[gnmi_pb2.Update(path=parse("/k8s/connection[cluster-name=u]"),
                                                                 val=gnmi_pb2.TypedValue(json_ietf_val=b"{}"))])
    with pytest.raises(grpc.RpcError) as err:
        stub.Set(request, metadata=md)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED and "union_replace" in err.value.details()

